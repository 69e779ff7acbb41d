#include "common/config/service_flags.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"

#include "common/auth/auth.h"
#include "common/log/log.h"

namespace crm::common {

absl::Status SetUpLogging(const std::string& service,
                          const std::string& level) {
  SetLogService(service);
  LogLevel parsed = LogLevel::kInfo;
  if (!ParseLogLevel(level, &parsed)) {
    return absl::InvalidArgumentError(
        "--log_level: one of debug, info, warn, error");
  }
  SetMinLogLevel(parsed);
  return absl::OkStatus();
}

absl::StatusOr<std::set<int64_t>> ParseAdminUsers(const std::string& text) {
  std::set<int64_t> admins;
  for (absl::string_view part :
       absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    int64_t id = 0;
    if (!absl::SimpleAtoi(part, &id) || id <= 0) {
      return absl::InvalidArgumentError(
          "--admin_users: positive ids separated by commas");
    }
    admins.insert(id);
  }
  return admins;
}

std::string ResolveJwtSecret(const std::string& secret,
                             bool insecure_dev_auth) {
  if (insecure_dev_auth) {
    CRM_LOG(kWarning,
            "--insecure_dev_auth is on: tokens are NOT verified; never use "
            "this outside local debugging");
  }
  if (!secret.empty()) return secret;
  CRM_LOG(kWarning,
          "CRM_JWT_SECRET is not set: using the public development secret");
  return kDevJwtSecret;
}

}  // namespace crm::common
