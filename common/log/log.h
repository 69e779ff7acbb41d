// Structured one-line logs on stderr:
//
//   ts=2026-11-27T10:31:02.123456Z level=info svc=pipeline-config
//   msg="listening" port=50052
//
// Values are quoted when they hold spaces, quotes or '='. Thread-safe: each
// line is written with one write(2).
//
//   crm::common::SetLogService("pipeline-config");
//   CRM_LOG(kInfo, "listening", {{"port", "50052"}});
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

#include "absl/status/status.h"

namespace crm::common {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

using LogField = std::pair<std::string_view, std::string_view>;

// Names the service in every line. Call once at startup.
void SetLogService(std::string_view service);
// Lines below `level` are dropped (default kInfo).
void SetMinLogLevel(LogLevel level);
bool ParseLogLevel(std::string_view text, LogLevel* level);

// Formats one line without the trailing newline (exposed for tests).
std::string FormatLogLine(LogLevel level, std::string_view message,
                          std::initializer_list<LogField> fields);

void Log(LogLevel level, std::string_view message,
         std::initializer_list<LogField> fields = {});

// Logs `what` with the status as an error and returns 1, the exit code of a
// binary that cannot start: `return FailStartup(status, "cannot open store");`
int FailStartup(const absl::Status& status, std::string_view what);

}  // namespace crm::common

#define CRM_LOG(level, ...) \
  ::crm::common::Log(::crm::common::LogLevel::level, __VA_ARGS__)
