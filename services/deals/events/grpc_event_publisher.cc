#include "services/deals/events/grpc_event_publisher.h"

#include <utility>

#include "absl/time/clock.h"

#include "common/auth/auth.h"
#include "common/grpc/deadline.h"
#include "common/status/grpc_status.h"

namespace crm::deals {

GrpcEventPublisher::GrpcEventPublisher(
    std::unique_ptr<crm::deals::v1::DealEventSink::StubInterface> stub,
    std::string subscriber, std::string jwt_secret, absl::Duration timeout)
    : stub_(std::move(stub)),
      subscriber_(std::move(subscriber)),
      jwt_secret_(std::move(jwt_secret)),
      timeout_(timeout) {}

absl::StatusOr<int64_t> GrpcEventPublisher::Deliver(
    const std::vector<crm::deals::v1::DealEvent>& events) {
  crm::deals::v1::DeliverEventsRequest request;
  for (const auto& event : events) *request.add_events() = event;
  grpc::ClientContext context;
  common::SetDeadlineFromNow(&context, timeout_);
  context.AddMetadata(
      "authorization",
      "Bearer " + common::MakeServiceToken(jwt_secret_, "deals",
                                           absl::Minutes(5), absl::Now()));
  crm::deals::v1::DeliverEventsResponse response;
  const grpc::Status status =
      stub_->DeliverEvents(&context, request, &response);
  if (!status.ok()) return common::FromGrpcStatus(status, subscriber_);
  return response.applied_sequence();
}

}  // namespace crm::deals
