#include "common/config/service_flags.h"

#include <openssl/rand.h>

#include <iostream>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

#include "common/config/build_info.h"
#include "common/config/env.h"
#include "common/log/log.h"
#include "common/status/status_macros.h"

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
          "HS256 secret of caller tokens, at least 16 bytes (env "
          "CRM_JWT_SECRET); required unless --insecure_dev_auth");
ABSL_FLAG(bool, insecure_dev_auth, EnvBool("CRM_INSECURE_DEV_AUTH", false),
          "Do not verify tokens; calls without one act as administrator user "
          "1. Local debugging only (env CRM_INSECURE_DEV_AUTH)");
ABSL_FLAG(std::string, admin_users, EnvString("CRM_ADMIN_USERS", ""),
          "Comma-separated user ids that are administrators besides tokens "
          "with admin: true (env CRM_ADMIN_USERS); default none");
ABSL_FLAG(bool, seed_demo, EnvBool("CRM_SEED_DEMO", false),
          "Seed demo data into a fresh store (env CRM_SEED_DEMO)");
ABSL_FLAG(
    int, shutdown_grace_seconds,
    static_cast<int>(EnvInt("CRM_SHUTDOWN_GRACE_SECONDS", 10)),
    "Seconds running calls get on shutdown (env CRM_SHUTDOWN_GRACE_SECONDS)");
ABSL_FLAG(std::string, log_level, EnvString("CRM_LOG_LEVEL", "info"),
          "debug, info, warn or error (env CRM_LOG_LEVEL)");

namespace crm::common {
namespace {

// --help lists the flags defined by the project's own code (the service's
// main.cc and common/), not Abseil's internal ones.
bool IsProjectFlagFile(absl::string_view file) {
  return absl::StrContains(file, "services/") ||
         absl::StrContains(file, "common/");
}

}  // namespace

absl::StatusOr<CommonSettings> SetUpService(int argc, char** argv,
                                            const std::string& service,
                                            const std::string& usage) {
  SetLogService(service);  // names the service in start-up errors too
  const std::string binary = absl::StrCat("crm-", service);
  absl::FlagsUsageConfig config;
  config.contains_help_flags = IsProjectFlagFile;
  config.contains_helpshort_flags = IsProjectFlagFile;
  config.version_string = [binary] {
    return absl::StrCat(binary, " ", BuildVersion(), " (commit ", BuildCommit(),
                        ")\n");
  };
  absl::SetFlagsUsageConfig(config);
  absl::SetProgramUsageMessage(absl::StrCat(
      usage,
      "\n\nEvery flag also reads the CRM_* environment variable its "
      "help names; a flag on the command line wins.\n\nUsage: ",
      binary, " [--flag=value ...]"));
  const std::vector<char*> positional = absl::ParseCommandLine(argc, argv);
  if (positional.size() > 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("unexpected argument '", positional[1],
                     "' (flags are --name=value; see --help)"));
  }
  // Abseil computes a flag's default (where the environment is read) when
  // the flag is first used; read every flag now so a bad CRM_* value is
  // reported before anything starts.
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    static_cast<void>(flag->CurrentValue());
  }
  CRM_RETURN_IF_ERROR(CheckEnvironment());
  CRM_RETURN_IF_ERROR(SetUpLogging(service, absl::GetFlag(FLAGS_log_level)));
  CommonSettings settings;
  CRM_ASSIGN_OR_RETURN(settings.admin_users,
                       ParseAdminUsers(absl::GetFlag(FLAGS_admin_users)));
  settings.insecure_dev_auth = absl::GetFlag(FLAGS_insecure_dev_auth);
  CRM_ASSIGN_OR_RETURN(settings.jwt_secret,
                       ResolveJwtSecret(absl::GetFlag(FLAGS_jwt_secret),
                                        settings.insecure_dev_auth));
  CRM_LOG(kInfo, "starting",
          {{"version", BuildVersion()}, {"commit", BuildCommit()}});
  return settings;
}

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

absl::StatusOr<std::string> ResolveJwtSecret(const std::string& secret,
                                             bool insecure_dev_auth) {
  if (insecure_dev_auth) {
    CRM_LOG(kWarning,
            "--insecure_dev_auth is on: tokens are NOT verified; never use "
            "this outside local debugging");
  }
  if (!secret.empty()) {
    if (secret.size() < kMinJwtSecretBytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--jwt_secret (env CRM_JWT_SECRET): at least ", kMinJwtSecretBytes,
          " bytes; e.g. `openssl rand -hex 32`"));
    }
    return secret;
  }
  if (!insecure_dev_auth) {
    return absl::InvalidArgumentError(
        "--jwt_secret (env CRM_JWT_SECRET) is required: the HS256 secret "
        "every service of the deployment shares (e.g. `openssl rand -hex "
        "32`); only --insecure_dev_auth runs without one");
  }
  unsigned char random[32];
  if (RAND_bytes(random, sizeof(random)) != 1) {
    return absl::InternalError("cannot generate a random secret");
  }
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(random), sizeof(random)));
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
