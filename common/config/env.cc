#include "common/config/env.h"

#include <cstdlib>
#include <vector>

#include "absl/base/const_init.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"

namespace crm::common {
namespace {

const char* Get(const char* name) {
  // Read once at startup, before any thread could call setenv.
  const char* value = std::getenv(name);  // NOLINT(concurrency-mt-unsafe)
  return (value == nullptr || *value == '\0') ? nullptr : value;
}

// Values that did not parse, in the order they were read. Flag defaults are
// evaluated during static initialisation, so this is a function-local static
// (constructed on first use) rather than a global of unknown init order.
absl::Mutex env_errors_mu(absl::kConstInit);
std::vector<std::string>& EnvErrors()
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(env_errors_mu) {
  static auto* errors = new std::vector<std::string>();
  return *errors;
}

void ReportBadValue(const char* name, const char* value, const char* expected) {
  absl::MutexLock lock(&env_errors_mu);
  EnvErrors().push_back(absl::StrCat(name, "=", value, ": ", expected));
}

}  // namespace

std::string EnvString(const char* name, const std::string& fallback) {
  const char* value = Get(name);
  return value == nullptr ? fallback : std::string(value);
}

int64_t EnvInt(const char* name, int64_t fallback) {
  const char* value = Get(name);
  if (value == nullptr) return fallback;
  int64_t parsed = 0;
  if (!absl::SimpleAtoi(value, &parsed)) {
    ReportBadValue(name, value, "not an integer");
    return fallback;
  }
  return parsed;
}

bool EnvBool(const char* name, bool fallback) {
  const char* value = Get(name);
  if (value == nullptr) return fallback;
  const std::string lower = absl::AsciiStrToLower(value);
  if (lower == "1" || lower == "true" || lower == "yes" || lower == "on")
    return true;
  if (lower == "0" || lower == "false" || lower == "no" || lower == "off")
    return false;
  ReportBadValue(name, value,
                 "not a boolean (true/false, 1/0, yes/no, on/off)");
  return fallback;
}

absl::Status CheckEnvironment() {
  absl::MutexLock lock(&env_errors_mu);
  if (EnvErrors().empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("environment: ", absl::StrJoin(EnvErrors(), "; ")));
}

}  // namespace crm::common
