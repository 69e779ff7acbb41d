// Shared by the closed-loop benchmarks (crm-bench-pipeline-config,
// crm-deals-bench): the call loop that keeps N unary calls in flight, the
// CPU clocks, the interleaved repeats and the result table.
//
// For every point (method x calls in flight) RunPoint keeps exactly N unary
// calls in flight with the gRPC callback API (a completed call starts the
// next one from its callback). Calls completing in the warm-up are discarded;
// QPS and latency percentiles come from the calls completing in the
// measurement window that follows.
//
// Defines the flags --channels, --warmup_s, --duration_s, --repeats and
// --paced_qps (paced calls instead of a closed loop).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "google/protobuf/message.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/status.h"

namespace crm::bench {

using Clock = std::chrono::steady_clock;

// CPU seconds (user + system) a process has used so far; < 0 if unknown.
using CpuClock = std::function<double()>;

// CPU seconds of process `pid` from /proc/<pid>/stat; < 0 if unknown.
double ProcessCpuSeconds(pid_t pid);
// CPU seconds of this process; < 0 if unknown.
double SelfCpuSeconds();

// A request serialized once, for a generic stub.
grpc::ByteBuffer Serialize(const google::protobuf::Message& message);

// "<code>: <message>" of a failed call.
std::string StatusText(const grpc::Status& status);

// --in_flight style flag values: positive integers. Prints what is wrong and
// returns nullopt otherwise.
std::optional<std::vector<int>> ParseCounts(
    const char* flag, const std::vector<std::string>& values);

// The loop flags: --channels, --warmup_s, --duration_s, --repeats.
struct LoopSettings {
  int channels = 1;  // at least 1
  absl::Duration warmup;
  absl::Duration duration;  // positive
  int repeats = 1;          // at least 1
  double rate = 0;          // calls/s to start at most; 0 = closed loop
};
// Prints what is wrong and returns nullopt when a flag is out of range.
std::optional<LoopSettings> LoopSettingsFromFlags();

// `count` loopback channels (each its own connection) to `address`, each
// connected; prints an error and returns none when one does not connect
// within 10 s.
std::vector<std::shared_ptr<grpc::Channel>> ConnectChannels(
    const std::string& address, int count);

struct PointResult {
  int in_flight = 0;
  int64_t calls = 0;   // completed OK in the window
  int64_t errors = 0;  // completed with an error in the window
  double seconds = 0;
  double qps = 0;
  double p50_us = 0;
  double p99_us = 0;
  // CPU time per OK call in the window; < 0 when unknown.
  double server_cpu_us = -1;
  double client_cpu_us = -1;
  std::string first_error;
};

// The calls of one point: what one call slot sends and how.
class CallDriver {
 public:
  virtual ~CallDriver() = default;

  // Starts the next call of call slot `slot` (0 .. in flight - 1) on
  // `context` (deadline and metadata set); `done` runs once it completes.
  virtual void Start(size_t slot, grpc::ClientContext* context,
                     std::function<void(grpc::Status)> done) = 0;

  // Runs first in the completion callback of a call of `slot`; may turn an
  // OK `status` into an error (a reply that does not parse).
  virtual void Finish(size_t /*slot*/, grpc::Status* /*status*/) {}
};

// One measurement point: `in_flight` call chains, each restarting its call
// from the completion callback until the window closes (--warmup_s from now,
// then --duration_s). Calls have a 10 s deadline and carry `authorization`
// as "authorization" metadata unless it is empty. `server_cpu` is the CPU
// clock of the server process (for its CPU per call).
PointResult RunPoint(CallDriver& driver, int in_flight,
                     const LoopSettings& loop, const CpuClock& server_cpu,
                     const std::string& authorization);

// Prints the column header of the result table.
void PrintTableHeader();

// Runs the point of every method (`run(i)` for the method `names[i]`)
// `repeats` times, the methods taking turns, and prints a table row per
// method for the run with the median QPS (with the QPS spread over the runs
// and the first error of any run, which sets *had_errors). On shared cores a
// single window is noisy and drifts, and interleaving keeps the drift from
// favouring one method. Returns the median runs in the order of `names`.
std::vector<PointResult> RunRepeats(
    int in_flight, const std::vector<std::string>& names, int repeats,
    const std::function<PointResult(size_t)>& run, bool* had_errors);

// "1.23x", or "-" when not measured.
std::string RatioCell(std::optional<double> ratio);

}  // namespace crm::bench
