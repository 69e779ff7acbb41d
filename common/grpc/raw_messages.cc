#include "common/grpc/raw_messages.h"

#include "absl/strings/str_cat.h"
#include "grpcpp/support/proto_buffer_reader.h"
#include "grpcpp/support/slice.h"

namespace crm::common {

absl::Status ParseRawRequest(const grpc::ByteBuffer& buffer,
                             google::protobuf::Message* message) {
  grpc::ByteBuffer copy(buffer);  // shares the slices; the reader mutates it
  grpc::ProtoBufferReader reader(&copy);
  if (!message->ParseFromZeroCopyStream(&reader)) {
    return absl::InvalidArgumentError(
        absl::StrCat("request: not a valid ", message->GetTypeName()));
  }
  return absl::OkStatus();
}

void SetRawResponse(const std::string& bytes, grpc::ByteBuffer* response) {
  grpc::Slice slice(bytes);
  *response = grpc::ByteBuffer(&slice, 1);
}

}  // namespace crm::common
