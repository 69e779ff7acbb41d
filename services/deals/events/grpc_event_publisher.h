// DealEventPublisher over gRPC: calls the subscriber's
// crm.deals.v1.DealEventSink/DeliverEvents as the service identity "deals",
// with a deadline.
#pragma once

#include <memory>
#include <string>

#include "absl/time/time.h"

#include "crm/deals/v1/deal_events.grpc.pb.h"

#include "services/deals/events/deal_event_publisher.h"

namespace crm::deals {

class GrpcEventPublisher final : public DealEventPublisher {
 public:
  GrpcEventPublisher(
      std::unique_ptr<crm::deals::v1::DealEventSink::StubInterface> stub,
      std::string subscriber, std::string jwt_secret,
      absl::Duration timeout = absl::Seconds(5));

  absl::StatusOr<int64_t> Deliver(
      const std::vector<crm::deals::v1::DealEvent>& events) override;

 private:
  std::unique_ptr<crm::deals::v1::DealEventSink::StubInterface> stub_;
  std::string subscriber_;
  std::string jwt_secret_;
  absl::Duration timeout_;
};

}  // namespace crm::deals
