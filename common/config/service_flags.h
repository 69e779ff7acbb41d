// What every service binary does with its common flags before it opens its
// store: logging, the administrator list and the token secret.
//
//   CRM_RETURN_IF_ERROR(SetUpLogging("deals", absl::GetFlag(FLAGS_log_level)));
//   CRM_ASSIGN_OR_RETURN(std::set<int64_t> admins,
//                        ParseAdminUsers(absl::GetFlag(FLAGS_admin_users)));
//   const std::string secret = ResolveJwtSecret(
//       absl::GetFlag(FLAGS_jwt_secret),
//       absl::GetFlag(FLAGS_insecure_dev_auth));
#pragma once

#include <cstdint>
#include <set>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace crm::common {

// Names the service in every log line and applies --log_level (debug, info,
// warn or error); INVALID_ARGUMENT "--log_level: ..." otherwise.
[[nodiscard]] absl::Status SetUpLogging(const std::string& service,
                                        const std::string& level);

// "1, 7,12" -> {1, 7, 12}; INVALID_ARGUMENT "--admin_users: ..." for anything
// but positive ids separated by commas. Empty text gives no administrators.
[[nodiscard]] absl::StatusOr<std::set<int64_t>> ParseAdminUsers(
    const std::string& text);

// `secret`, or the public development secret (with a warning) when it is
// empty; also warns loudly when `insecure_dev_auth` is on.
std::string ResolveJwtSecret(const std::string& secret, bool insecure_dev_auth);

}  // namespace crm::common
