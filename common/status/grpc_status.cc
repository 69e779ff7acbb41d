#include "common/status/grpc_status.h"

#include <atomic>
#include <string>

#include "absl/strings/str_cat.h"

#include "common/log/log.h"

namespace crm::common {

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  const auto code = static_cast<grpc::StatusCode>(status.code());
  switch (status.code()) {
    case absl::StatusCode::kInternal:
    case absl::StatusCode::kDataLoss:
    case absl::StatusCode::kUnknown: {
      static std::atomic<uint64_t> next_ref{1};
      const uint64_t ref = next_ref.fetch_add(1, std::memory_order_relaxed);
      CRM_LOG(kError, "internal error",
              {{"ref", absl::StrCat(ref)},
               {"code", absl::StatusCodeToString(status.code())},
               {"error", std::string(status.message())}});
      return grpc::Status(code, absl::StrCat("internal error (ref ", ref, ")"));
    }
    default:
      return grpc::Status(code, std::string(status.message()));
  }
}

absl::Status FromGrpcStatus(const grpc::Status& status, std::string_view peer) {
  if (status.ok()) return absl::OkStatus();
  const auto code = static_cast<absl::StatusCode>(status.error_code());
  if (peer.empty()) return absl::Status(code, status.error_message());
  return absl::Status(
      code, absl::StrCat(std::string(peer), ": ", status.error_message()));
}

absl::Status FromPeerStatus(const grpc::Status& status, std::string_view peer) {
  if (status.error_code() == grpc::StatusCode::UNAUTHENTICATED ||
      status.error_code() == grpc::StatusCode::PERMISSION_DENIED) {
    const absl::Status refused = FromGrpcStatus(status);
    return absl::InternalError(
        absl::StrCat(std::string(peer), " refused this service's credentials (",
                     absl::StatusCodeToString(refused.code()), ": ",
                     refused.message(), ")"));
  }
  return FromGrpcStatus(status, peer);
}

}  // namespace crm::common
