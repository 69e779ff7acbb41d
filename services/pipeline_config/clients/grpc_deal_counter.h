// DealCounter over gRPC: asks the deals service (crm.deals.v1.DealsService/
// CountDeals) as the "pipeline-config" service identity, with a deadline.
// Any failure to get an answer refuses the delete rather than risk it: deals
// away or busy is UNAVAILABLE, anything else (deals refusing this service's
// credentials included) INTERNAL.
#pragma once

#include <memory>
#include <string>

#include "absl/time/time.h"

#include "crm/deals/v1/deals_service.grpc.pb.h"

#include "common/auth/service_token.h"
#include "services/pipeline_config/clients/deal_counter.h"

namespace crm::pipeline_config {

class GrpcDealCounter final : public DealCounter {
 public:
  // `jwt_secret` signs the service token sent with each call.
  GrpcDealCounter(
      std::unique_ptr<crm::deals::v1::DealsService::StubInterface> stub,
      std::string jwt_secret, absl::Duration timeout = absl::Seconds(6));

  absl::StatusOr<int64_t> CountDealsInPipeline(
      int64_t pipeline_id, int64_t min_config_version) override;
  absl::StatusOr<int64_t> CountDealsInStage(
      int64_t pipeline_id, const std::string& stage_id,
      int64_t min_config_version) override;

 private:
  absl::StatusOr<int64_t> Count(
      const crm::deals::v1::CountDealsRequest& request);

  std::unique_ptr<crm::deals::v1::DealsService::StubInterface> stub_;
  common::ServiceTokenSource tokens_;
  absl::Duration timeout_;
};

}  // namespace crm::pipeline_config
