#include "services/deals/events/grpc_event_publisher.h"

#include <utility>

#include "absl/time/clock.h"
#include "grpcpp/client_context.h"
#include "grpcpp/impl/client_unary_call.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/slice.h"

#include "crm/deals/v1/deal_events.pb.h"

#include "common/auth/auth.h"
#include "common/grpc/deadline.h"
#include "common/status/grpc_status.h"

namespace crm::deals {
namespace {

constexpr char kMethod[] = "/crm.deals.v1.DealEventSink/DeliverEvents";

void AppendVarint(std::string* out, uint64_t value) {
  while (value >= 0x80) {
    out->push_back(static_cast<char>((value & 0x7f) | 0x80));
    value >>= 7;
  }
  out->push_back(static_cast<char>(value));
}

}  // namespace

GrpcEventPublisher::GrpcEventPublisher(std::shared_ptr<grpc::Channel> channel,
                                       std::string subscriber,
                                       std::string jwt_secret,
                                       absl::Duration timeout)
    : channel_(std::move(channel)),
      method_(kMethod, grpc::internal::RpcMethod::NORMAL_RPC, channel_),
      subscriber_(std::move(subscriber)),
      tokens_(std::move(jwt_secret), "deals"),
      timeout_(timeout) {}

std::string GrpcEventPublisher::EncodeRequest(const EventBatch& batch) {
  std::string request;
  request.reserve(batch.bytes() + 6 * batch.events.size());
  for (const std::string& event : batch.events) {
    request.push_back('\x0a');  // field 1 (events), length-delimited
    AppendVarint(&request, event.size());
    request += event;
  }
  return request;
}

absl::StatusOr<int64_t> GrpcEventPublisher::Deliver(const EventBatch& batch) {
  // The slice takes the encoded bytes without a copy and frees them.
  auto* bytes = new std::string(EncodeRequest(batch));
  grpc::Slice slice(
      bytes->data(), bytes->size(),
      [](void* owned) { delete static_cast<std::string*>(owned); }, bytes);
  grpc::ByteBuffer request(&slice, 1);
  grpc::ClientContext context;
  common::SetDeadlineFromNow(&context, timeout_);
  context.AddMetadata("authorization", tokens_.AuthorizationHeader());
  grpc::ByteBuffer response;
  const grpc::Status status =
      grpc::internal::BlockingUnaryCall<grpc::ByteBuffer, grpc::ByteBuffer>(
          channel_.get(), method_, &context, request, &response);
  if (!status.ok()) return common::FromGrpcStatus(status, subscriber_);
  std::vector<grpc::Slice> slices;
  std::string reply_bytes;
  if (!response.Dump(&slices).ok()) {
    return absl::InternalError(subscriber_ + ": unreadable reply");
  }
  for (const auto& piece : slices) {
    reply_bytes.append(reinterpret_cast<const char*>(piece.begin()),
                       piece.size());
  }
  crm::deals::v1::DeliverEventsResponse reply;
  if (!reply.ParseFromString(reply_bytes)) {
    return absl::InternalError(subscriber_ +
                               ": reply is not a DeliverEventsResponse");
  }
  return reply.applied_sequence();
}

}  // namespace crm::deals
