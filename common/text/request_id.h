// Request ids: the caller's name for one mutation, so that a retry is
// recognised (see each service's README for what a repeat answers).
//
// One rule everywhere: printable ASCII without spaces, at most
// kMaxRequestIdChars. A service that derives ids of its own from a caller's
// (a batch's items, automation's calls to deals) reserves the characters it
// appends, so every derived id is itself valid:
//
//   // items are "<request_id>/<deal id>", a deal id has up to 19 digits
//   CRM_RETURN_IF_ERROR(ValidateRequestId(id, /*reserved=*/1 + 19));
#pragma once

#include <cstddef>
#include <string_view>

#include "absl/status/status.h"

namespace crm::common {

inline constexpr size_t kMaxRequestIdChars = 128;
// Digits of the largest int64 (an id appended to a request id).
inline constexpr size_t kMaxInt64Digits = 19;

// INVALID_ARGUMENT "<field>: at most N characters" (N = kMaxRequestIdChars
// - reserved) or "<field>: printable ASCII without spaces only". Empty is
// valid (no request id).
[[nodiscard]] absl::Status ValidateRequestId(
    std::string_view request_id, size_t reserved = 0,
    std::string_view field = "request_id");

}  // namespace crm::common
