#include "common/config/env.h"

#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"

namespace crm::common {
namespace {

const char* Get(const char* name) {
  // Read once at startup, before any thread could call setenv.
  const char* value = std::getenv(name);  // NOLINT(concurrency-mt-unsafe)
  return (value == nullptr || *value == '\0') ? nullptr : value;
}

}  // namespace

std::string EnvString(const char* name, const std::string& fallback) {
  const char* value = Get(name);
  return value == nullptr ? fallback : std::string(value);
}

int64_t EnvInt(const char* name, int64_t fallback) {
  const char* value = Get(name);
  int64_t parsed = 0;
  if (value == nullptr || !absl::SimpleAtoi(value, &parsed)) return fallback;
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
  return fallback;
}

}  // namespace crm::common
