#include "common/status/grpc_status.h"

#include <atomic>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

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

namespace {

// Logs a refusal of our credentials: the first one, then at most one line
// per kRefusalLogInterval with how many were not logged in between, so a
// wrong secret is visible at once without flooding the log on every call.
constexpr absl::Duration kRefusalLogInterval = absl::Seconds(10);

void LogRefusal(std::string_view peer, const absl::Status& refused) {
  static std::atomic<int64_t> next_log_ns{0};
  static std::atomic<int64_t> unlogged{0};
  const int64_t now = absl::GetCurrentTimeNanos();
  int64_t due = next_log_ns.load(std::memory_order_relaxed);
  if (now < due || !next_log_ns.compare_exchange_strong(
                       due, now + absl::ToInt64Nanoseconds(kRefusalLogInterval),
                       std::memory_order_relaxed)) {
    unlogged.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  CRM_LOG(kError, "a peer refused this service's credentials",
          {{"peer", std::string(peer)},
           {"code", absl::StatusCodeToString(refused.code())},
           {"error", std::string(refused.message())},
           {"not_logged_since_last",
            absl::StrCat(unlogged.exchange(0, std::memory_order_relaxed))}});
}

}  // namespace

absl::Status FromPeerStatus(const grpc::Status& status, std::string_view peer) {
  if (status.error_code() == grpc::StatusCode::UNAUTHENTICATED ||
      status.error_code() == grpc::StatusCode::PERMISSION_DENIED) {
    const absl::Status refused = FromGrpcStatus(status);
    LogRefusal(peer, refused);
    return absl::InternalError(
        absl::StrCat(std::string(peer), " refused this service's credentials (",
                     absl::StatusCodeToString(refused.code()), ": ",
                     refused.message(), ")"));
  }
  return FromGrpcStatus(status, peer);
}

}  // namespace crm::common
