// Configuration comes from flags with environment fallbacks: a flag's default
// is read from the environment, so `--port=1` beats `CRM_PORT=2`, which beats
// the built-in default.
//
//   ABSL_FLAG(int, port, crm::common::EnvInt("CRM_PORT", 50052), "gRPC port");
#pragma once

#include <cstdint>
#include <string>

namespace crm::common {

// The variable's value, or `fallback` when it is unset or empty.
std::string EnvString(const char* name, const std::string& fallback);
// The variable as an integer, or `fallback` when unset, empty or not a number.
int64_t EnvInt(const char* name, int64_t fallback);
// "1", "true", "yes", "on" (any case) are true; "0", "false", "no", "off" are
// false; anything else gives `fallback`.
bool EnvBool(const char* name, bool fallback);

}  // namespace crm::common
