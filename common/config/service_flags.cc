#include "common/config/service_flags.h"

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"

#include "common/auth/auth.h"
#include "common/config/env.h"
#include "common/log/log.h"

using crm::common::EnvBool;
using crm::common::EnvInt;
using crm::common::EnvString;

ABSL_FLAG(std::string, listen_host, EnvString("CRM_LISTEN_HOST", "127.0.0.1"),
          "Address to listen on (env CRM_LISTEN_HOST); 0.0.0.0 in a container");
ABSL_FLAG(std::string, port_file, "",
          "Write the bound gRPC and HTTP ports to this file");
ABSL_FLAG(bool, sync_writes, EnvBool("CRM_SYNC_WRITES", false),
          "fsync every commit so it survives power loss (env CRM_SYNC_WRITES)");
ABSL_FLAG(std::string, jwt_secret, EnvString("CRM_JWT_SECRET", ""),
          "HS256 secret of caller tokens (env CRM_JWT_SECRET); unset = the dev "
          "secret, with a warning");
ABSL_FLAG(bool, insecure_dev_auth, EnvBool("CRM_INSECURE_DEV_AUTH", false),
          "Do not verify tokens; calls without one act as administrator user "
          "1. Local debugging only (env CRM_INSECURE_DEV_AUTH)");
ABSL_FLAG(
    std::string, admin_users, EnvString("CRM_ADMIN_USERS", "1"),
    "Comma-separated user ids that are administrators (env CRM_ADMIN_USERS)");
ABSL_FLAG(bool, seed_demo, EnvBool("CRM_SEED_DEMO", false),
          "Seed demo data into a fresh store (env CRM_SEED_DEMO)");
ABSL_FLAG(
    int, shutdown_grace_seconds,
    static_cast<int>(EnvInt("CRM_SHUTDOWN_GRACE_SECONDS", 10)),
    "Seconds running calls get on shutdown (env CRM_SHUTDOWN_GRACE_SECONDS)");
ABSL_FLAG(std::string, log_level, EnvString("CRM_LOG_LEVEL", "info"),
          "debug, info, warn or error (env CRM_LOG_LEVEL)");

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

ServerOptions ServerOptionsFromFlags(const std::string& service_name,
                                     int grpc_port, int http_port) {
  ServerOptions options;
  options.service_name = service_name;
  options.host = absl::GetFlag(FLAGS_listen_host);
  options.grpc_port = grpc_port;
  options.http_port = http_port;
  options.port_file = absl::GetFlag(FLAGS_port_file);
  options.shutdown_grace =
      absl::Seconds(absl::GetFlag(FLAGS_shutdown_grace_seconds));
  return options;
}

}  // namespace crm::common
