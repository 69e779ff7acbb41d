// DealEventPublisher over gRPC: calls the subscriber's
// crm.deals.v1.DealEventSink/DeliverEvents as the service identity "deals",
// with a deadline.
//
// The request is assembled from the stored event bytes (a DeliverEventsRequest
// is just its events, each as field 1), so the relay spends no CPU parsing
// and re-serializing deals; the call is a blocking unary call on the relay's
// own thread (as a generated stub makes it, with the request as bytes); the
// service token (common::ServiceTokenSource) is re-signed after half its
// hour, not per call.
#pragma once

#include <memory>
#include <string>

#include "absl/time/time.h"
#include "grpcpp/channel.h"
#include "grpcpp/impl/rpc_method.h"

#include "common/auth/service_token.h"
#include "services/deals/events/deal_event_publisher.h"

namespace crm::deals {

class GrpcEventPublisher final : public DealEventPublisher {
 public:
  GrpcEventPublisher(std::shared_ptr<grpc::Channel> channel,
                     std::string subscriber, std::string jwt_secret,
                     absl::Duration timeout = absl::Seconds(10));

  absl::StatusOr<int64_t> Deliver(const EventBatch& batch) override;

  // The DeliverEventsRequest bytes of a batch.
  static std::string EncodeRequest(const EventBatch& batch);

 private:
  const std::shared_ptr<grpc::Channel> channel_;
  const grpc::internal::RpcMethod method_;
  const std::string subscriber_;
  common::ServiceTokenSource tokens_;
  const absl::Duration timeout_;
};

}  // namespace crm::deals
