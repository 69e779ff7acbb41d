// What every service binary does with its common flags before it opens its
// store: logging, the administrator list and the token secret.
//
//   CRM_RETURN_IF_ERROR(SetUpLogging("deals", absl::GetFlag(FLAGS_log_level)));
//   CRM_ASSIGN_OR_RETURN(std::set<int64_t> admins,
//                        ParseAdminUsers(absl::GetFlag(FLAGS_admin_users)));
//   const std::string secret = ResolveJwtSecret(
//       absl::GetFlag(FLAGS_jwt_secret),
//       absl::GetFlag(FLAGS_insecure_dev_auth));
//
// The flags every service binary has are defined here once (each with its
// CRM_* environment fallback): --listen_host, --port_file, --sync_writes,
// --jwt_secret, --insecure_dev_auth, --admin_users, --seed_demo,
// --shutdown_grace_seconds and --log_level. A binary links this library and
// defines only its own flags (ports, data dir, peers).
#pragma once

#include <cstdint>
#include <set>
#include <string>

#include "absl/flags/declare.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"

#include "common/grpc/server_runner.h"

ABSL_DECLARE_FLAG(std::string, listen_host);
ABSL_DECLARE_FLAG(std::string, port_file);
ABSL_DECLARE_FLAG(bool, sync_writes);
ABSL_DECLARE_FLAG(std::string, jwt_secret);
ABSL_DECLARE_FLAG(bool, insecure_dev_auth);
ABSL_DECLARE_FLAG(std::string, admin_users);
ABSL_DECLARE_FLAG(bool, seed_demo);
ABSL_DECLARE_FLAG(int, shutdown_grace_seconds);
ABSL_DECLARE_FLAG(std::string, log_level);

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

// Server options from --listen_host, --port_file and
// --shutdown_grace_seconds plus the service's own ports.
ServerOptions ServerOptionsFromFlags(const std::string& service_name,
                                     int grpc_port, int http_port);

}  // namespace crm::common
