// Configuration comes from flags with environment fallbacks: a flag's default
// is read from the environment, so `--port=1` beats `CRM_PORT=2`, which beats
// the built-in default.
//
//   ABSL_FLAG(int, port, crm::common::EnvInt("CRM_PORT", 50052), "gRPC port");
//
// Flag defaults are computed before main() runs, where nothing can fail a
// start, so a value that does not parse (`CRM_SYNC_WRITES=enabled`) is
// remembered and `CheckEnvironment()` reports it; every service binary calls
// it (through ParseServiceCommandLine) and refuses to start.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"

namespace crm::common {

// The variable's value, or `fallback` when it is unset or empty.
std::string EnvString(const char* name, const std::string& fallback);
// The variable as a decimal integer, or `fallback` when unset or empty.
// Anything else gives `fallback` and is reported by CheckEnvironment().
int64_t EnvInt(const char* name, int64_t fallback);
// "1", "true", "yes", "on" (any case) are true; "0", "false", "no", "off" are
// false; unset or empty gives `fallback`. Anything else gives `fallback` and
// is reported by CheckEnvironment().
bool EnvBool(const char* name, bool fallback);

// OK, or INVALID_ARGUMENT naming every variable read so far whose value did
// not parse, e.g. "CRM_SYNC_WRITES=enabled: not a boolean (true/false, 1/0,
// yes/no, on/off)".
[[nodiscard]] absl::Status CheckEnvironment();

}  // namespace crm::common
