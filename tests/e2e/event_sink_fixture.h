// Shared pieces of the tests that use crm-test-event-sink (see
// event_sink_main.cc): starting it, and reading back what it applied.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

#include "tests/e2e/service_process.h"

namespace crm::testing {

// One applied event: a line of the sink's --out_file.
struct SinkEvent {
  std::string event_id;
  int64_t sequence = 0;
  // DealEventType name without "DEAL_EVENT_TYPE_": "CREATED", ...
  std::string type;
  int64_t deal_id = 0;
  // Empty unless the event moved the deal.
  std::string to_stage_id;
};

// The files of one sink; they outlive its processes, so a restarted sink
// continues where the killed one stopped.
struct SinkFiles {
  // A directory for the files and the port file.
  explicit SinkFiles(const std::string& directory);
  std::string dir;
  std::string out_file;
  std::string dup_file;
  std::string reject_file;
  std::string log_file;
};

struct SinkOptions {
  // 0 = any free port.
  int port = 0;
  // When set, DeliverEvents needs a service token signed with it.
  std::string jwt_secret;
  std::vector<std::string> extra_args;
};

// Starts crm-test-event-sink on `files` and waits until it serves.
[[nodiscard]] absl::StatusOr<std::unique_ptr<ServiceProcess>> StartEventSink(
    const std::string& binary, const SinkFiles& files,
    const SinkOptions& options = {});

// Every event in the out file, in file (apply) order. Fails on a line that
// does not parse.
[[nodiscard]] absl::StatusOr<std::vector<SinkEvent>> ReadSinkEvents(
    const std::string& out_file);

// The event ids of the "dup\t<event_id>" lines of a dup file.
std::vector<std::string> ReadSinkDuplicates(const std::string& dup_file);

// Non-empty lines of a file ("" when it does not exist).
std::vector<std::string> ReadLines(const std::string& path);

// A loopback port that was free a moment ago (bound to port 0, then
// closed). For a process that must be restarted on the same port.
[[nodiscard]] absl::StatusOr<int> PickFreePort();

}  // namespace crm::testing
