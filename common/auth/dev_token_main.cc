// Prints a signed token for local testing:
//
//   crm-dev-token --user=7 [--admin] [--ttl_hours=24] [--secret_file=F]
//   crm-dev-token --service=automation [--ttl_hours=24] [--secret_file=F]
//
// The secret is read from --secret_file (its first line), else --secret,
// else $CRM_JWT_SECRET; there is no default. Only the token is written to
// stdout; errors go to stderr with exit code 2.
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

#include "common/auth/auth.h"

namespace {

constexpr char kUsage[] =
    "usage: crm-dev-token --user=<id> [--admin] [--ttl_hours=24] "
    "[--secret_file=F | --secret=S]\n"
    "       crm-dev-token --service=<name> [--ttl_hours=24] "
    "[--secret_file=F | --secret=S]\n"
    "The secret is the first line of --secret_file, else --secret, else "
    "$CRM_JWT_SECRET.\n";

int UsageError(std::string_view message) {
  std::cerr << "crm-dev-token: " << message << "\n" << kUsage;
  return 2;
}

// Matches "--name=value" and stores the value.
bool FlagValue(std::string_view arg, std::string_view name,
               std::optional<std::string>* value) {
  if (arg.size() <= name.size() + 3 || arg.substr(0, 2) != "--" ||
      arg.substr(2, name.size()) != name || arg[name.size() + 2] != '=') {
    return false;
  }
  *value = std::string(arg.substr(name.size() + 3));
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  std::optional<std::string> user;
  std::optional<std::string> service;
  std::optional<std::string> ttl_hours;
  std::optional<std::string> secret;
  std::optional<std::string> secret_file;
  bool admin = false;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::cout << kUsage;
      return 0;
    }
    if (arg == "--admin") {
      admin = true;
    } else if (!FlagValue(arg, "user", &user) &&
               !FlagValue(arg, "service", &service) &&
               !FlagValue(arg, "ttl_hours", &ttl_hours) &&
               !FlagValue(arg, "secret", &secret) &&
               !FlagValue(arg, "secret_file", &secret_file)) {
      return UsageError("unknown or empty argument: " + std::string(arg));
    }
  }

  double hours = 24;
  if (ttl_hours.has_value() &&
      (!absl::SimpleAtod(*ttl_hours, &hours) || !(hours > 0))) {
    return UsageError("--ttl_hours must be a positive number");
  }
  const absl::Duration ttl = absl::Hours(hours);

  if (secret_file.has_value()) {
    std::ifstream in(*secret_file);
    std::string line;
    if (!in || !std::getline(in, line) || line.empty()) {
      return UsageError("cannot read a secret from " + *secret_file);
    }
    secret = line;
  } else if (!secret.has_value()) {
    const char* env = std::getenv("CRM_JWT_SECRET");
    if (env == nullptr || *env == '\0') {
      return UsageError(
          "no secret: give --secret_file, --secret or "
          "$CRM_JWT_SECRET");
    }
    secret = std::string(env);
  }

  const absl::Time now = absl::Now();
  std::string token;
  if (service.has_value()) {
    if (user.has_value() || admin) {
      return UsageError("--service cannot be combined with --user or --admin");
    }
    token = crm::common::MakeServiceToken(*secret, *service, ttl, now);
  } else {
    if (!user.has_value()) {
      return UsageError("--user or --service is required");
    }
    int64_t user_id = 0;
    if (!absl::SimpleAtoi(*user, &user_id) || user_id <= 0) {
      return UsageError("--user must be a positive integer");
    }
    token = crm::common::MakeUserToken(*secret, user_id, admin, ttl, now);
  }
  // Refuse to print a token the services would reject (e.g. a service name
  // with invalid characters).
  const absl::StatusOr<crm::common::Principal> check =
      crm::common::JwtVerifier(*secret).Verify(token, now);
  if (!check.ok()) {
    return UsageError("cannot build a valid token: " +
                      std::string(check.status().message()));
  }
  std::cout << token << "\n";
  return 0;
}
