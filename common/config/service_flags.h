// What every service binary does with its command line and common flags
// before it opens its store: --help and --version, environment values that
// do not parse, logging, the administrator list and the token secret.
//
//   int main(int argc, char** argv) {
//     crm::common::BlockShutdownSignals();
//     absl::StatusOr<CommonSettings> common = crm::common::SetUpService(
//         argc, argv, "deals", "crm-deals: deals, lists and boards ...");
//     if (!common.ok()) return crm::common::FailStartup(common.status(), ...);
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

// The common settings, checked.
struct CommonSettings {
  std::set<int64_t> admin_users;
  std::string jwt_secret;
  bool insecure_dev_auth = false;
};

// Parses the command line (`usage` heads --help, which lists the flags of the
// service and of common/; --version prints "crm-<service> <version>
// (commit <commit>)"; both exit 0), then checks the environment values read
// by flag defaults (CheckEnvironment), positional arguments (refused), sets
// up logging and resolves the administrators and the token secret. The first
// problem comes back as INVALID_ARGUMENT naming the flag or variable.
[[nodiscard]] absl::StatusOr<CommonSettings> SetUpService(
    int argc, char** argv, const std::string& service,
    const std::string& usage);

// Names the service in every log line and applies --log_level (debug, info,
// warn or error); INVALID_ARGUMENT "--log_level: ..." otherwise.
[[nodiscard]] absl::Status SetUpLogging(const std::string& service,
                                        const std::string& level);

// "1, 7,12" -> {1, 7, 12}; INVALID_ARGUMENT "--admin_users: ..." for anything
// but positive ids separated by commas. Empty text gives no administrators.
[[nodiscard]] absl::StatusOr<std::set<int64_t>> ParseAdminUsers(
    const std::string& text);

// The secret tokens are signed with. There is no built-in default: an empty
// secret is INVALID_ARGUMENT ("--jwt_secret ... is required") unless
// `insecure_dev_auth` is on, when a random per-process secret is used (tokens
// are not verified then; it still signs page tokens and the service's own
// calls). Secrets shorter than kMinJwtSecretBytes are refused too. Warns
// loudly when `insecure_dev_auth` is on.
inline constexpr size_t kMinJwtSecretBytes = 16;
[[nodiscard]] absl::StatusOr<std::string> ResolveJwtSecret(
    const std::string& secret, bool insecure_dev_auth);

// Server options from --listen_host, --port_file and
// --shutdown_grace_seconds plus the service's own ports.
ServerOptions ServerOptionsFromFlags(const std::string& service_name,
                                     int grpc_port, int http_port);

}  // namespace crm::common
