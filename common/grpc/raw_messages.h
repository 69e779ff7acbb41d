// Helpers for raw callback methods (WithRawCallbackMethod_X), which take and
// return grpc::ByteBuffer so that a service can answer with bytes it
// serialized once and kept, instead of serializing the same reply per call.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "google/protobuf/message.h"
#include "grpcpp/support/byte_buffer.h"

namespace crm::common {

// Parses the request of a raw method; INVALID_ARGUMENT "request: not a valid
// <type>" if it does not parse (typed methods get that check from gRPC).
[[nodiscard]] absl::Status ParseRawRequest(const grpc::ByteBuffer& buffer,
                                           google::protobuf::Message* message);

// Sets the reply of a raw method to `bytes` (a serialized message).
void SetRawResponse(const std::string& bytes, grpc::ByteBuffer* response);

}  // namespace crm::common
