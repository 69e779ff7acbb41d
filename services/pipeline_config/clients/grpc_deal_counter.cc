#include "services/pipeline_config/clients/grpc_deal_counter.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

#include "common/auth/auth.h"
#include "common/grpc/deadline.h"
#include "common/status/grpc_status.h"

namespace crm::pipeline_config {

GrpcDealCounter::GrpcDealCounter(
    std::unique_ptr<crm::deals::v1::DealsService::StubInterface> stub,
    std::string jwt_secret, absl::Duration timeout)
    : stub_(std::move(stub)),
      tokens_(std::move(jwt_secret), "pipeline-config"),
      timeout_(timeout) {}

absl::StatusOr<int64_t> GrpcDealCounter::CountDealsInPipeline(
    int64_t pipeline_id, int64_t min_config_version) {
  crm::deals::v1::CountDealsRequest request;
  request.set_pipeline_id(pipeline_id);
  request.set_min_config_version(min_config_version);
  return Count(request);
}

absl::StatusOr<int64_t> GrpcDealCounter::CountDealsInStage(
    int64_t pipeline_id, const std::string& stage_id,
    int64_t min_config_version) {
  crm::deals::v1::CountDealsRequest request;
  request.set_pipeline_id(pipeline_id);
  request.set_stage_id(stage_id);
  request.set_min_config_version(min_config_version);
  return Count(request);
}

absl::StatusOr<int64_t> GrpcDealCounter::Count(
    const crm::deals::v1::CountDealsRequest& request) {
  grpc::ClientContext context;
  common::SetDeadlineFromNow(&context, timeout_);
  context.AddMetadata("authorization", tokens_.AuthorizationHeader());
  crm::deals::v1::CountDealsResponse response;
  const grpc::Status status = stub_->CountDeals(&context, request, &response);
  if (!status.ok()) {
    // Deals away or busy is UNAVAILABLE (try again); a refusal of this
    // service's credentials or any other answer is INTERNAL: the request
    // was ours, not the caller's.
    const absl::Status error = common::FromPeerStatus(status, "deals");
    const bool away =
        absl::IsUnavailable(error) || absl::IsDeadlineExceeded(error) ||
        absl::IsResourceExhausted(error) || absl::IsAborted(error);
    const std::string message = absl::StrCat(
        "cannot count the deals before deleting (", error.ToString(), ")");
    return away ? absl::UnavailableError(message)
                : absl::InternalError(message);
  }
  return response.count();
}

}  // namespace crm::pipeline_config
