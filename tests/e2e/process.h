// Test-only: runs another binary as a child process and controls its life.
//
//   crm::testing::ProcessOptions options;
//   options.binary = "/path/to/crm-pipeline-config";
//   options.args = {"--port=0", "--port_file=" + port_file};
//   options.env = {"CRM_LOG_LEVEL=warn"};
//   absl::StatusOr<std::unique_ptr<Process>> server = Process::Start(options);
//   absl::StatusOr<std::vector<std::string>> ports =
//       WaitForLines(port_file, 2, absl::Seconds(20), server->get());
//   ...
//   absl::StatusOr<ExitInfo> exit = (*server)->Terminate(SIGTERM,
//   absl::Seconds(5));
//
// The child leads a new process group. The destructor SIGKILLs and reaps a
// child that is still running, and whenever the child is found to have ended
// (or is killed) whatever is left in its process group (e.g. processes a
// shell started) is SIGKILLed before the child is reaped, so no process
// outlives its Process object. Children are also started with
// PR_SET_PDEATHSIG=SIGKILL (unless disabled), so they die when the thread
// that started them dies, e.g. when a test binary crashes or is killed by a
// ctest timeout. Start processes from a thread that lives as long as they
// should (the test's main thread).
//
// Not thread-safe: use one Process object from one thread at a time.
#pragma once

#include <sys/types.h>

#include <csignal>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace crm::testing {

struct ProcessOptions {
  // Path of the executable (no PATH lookup).
  std::string binary;
  // Arguments after argv[0] (argv[0] is `binary`).
  std::vector<std::string> args;
  // "NAME=value" entries added to the environment; they replace variables of
  // the same name.
  std::vector<std::string> env;
  // Start from the parent's environment (true) or from `env` alone (false).
  bool inherit_env = true;
  // When set, the child's stdout and stderr are appended to this file;
  // otherwise they are the parent's.
  std::string output_file;
  // Kill the child when the thread that started it dies.
  bool kill_with_parent = true;
  // Run the child in a new process group (setpgid), so that what it starts
  // is cleaned up with it. Without it only the child itself is killed.
  bool new_process_group = true;
};

// How a process ended.
struct ExitInfo {
  bool exited = false;    // exit() or return from main; see `code`
  int code = 0;           // exit code when `exited`
  bool signaled = false;  // killed by `signal`
  int signal = 0;

  bool Success() const { return exited && code == 0; }
  std::string ToString() const;  // "exit code 0", "killed by signal 9 (Killed)"
};

class Process {
 public:
  // Forks and execs. Fails (and reaps the child) if the exec fails, e.g. for
  // a missing binary.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<Process>> Start(
      const ProcessOptions& options);

  // SIGKILLs the child if it is still running and reaps it.
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }
  const ProcessOptions& options() const { return options_; }

  // True until the child has been seen to exit (reaps it without blocking).
  bool Running();

  // Sends `signal` to a running child (not to its process group).
  // FAILED_PRECONDITION if it already exited.
  [[nodiscard]] absl::Status Signal(int signal);

  // Waits up to `timeout` for the child to exit. DEADLINE_EXCEEDED if it is
  // still running then (it keeps running).
  [[nodiscard]] absl::StatusOr<ExitInfo> Wait(absl::Duration timeout);

  // Sends `signal` and waits up to `timeout`. If the child is still running
  // after that it is SIGKILLed, reaped, and DEADLINE_EXCEEDED is returned.
  // A child that had already exited returns its earlier exit.
  [[nodiscard]] absl::StatusOr<ExitInfo> Terminate(int signal,
                                                   absl::Duration timeout);

  // SIGKILL and reap: the simulated crash.
  [[nodiscard]] absl::StatusOr<ExitInfo> Kill() {
    return Terminate(SIGKILL, absl::Seconds(10));
  }

  // The exit of a reaped child.
  const std::optional<ExitInfo>& exit_info() const { return exit_; }

 private:
  Process(ProcessOptions options, pid_t pid)
      : options_(std::move(options)), pid_(pid) {}
  // Non-blocking reap; true once the child is reaped.
  bool Reap();
  // SIGKILLs the child and its process group, then reaps the child
  // (blocking).
  void KillAndReap();
  // SIGKILLs what is left of the process group of an exited, not yet reaped
  // child (its pid still reserves the group id), then reaps it.
  void ReapExited();

  ProcessOptions options_;
  pid_t pid_;
  std::optional<ExitInfo> exit_;
};

// Polls `path` until it holds at least `lines` complete ('\n'-terminated)
// lines and returns the first `lines` of them. Stops early with an error if
// `process` (optional) exits first, or with DEADLINE_EXCEEDED.
[[nodiscard]] absl::StatusOr<std::vector<std::string>> WaitForLines(
    const std::string& path, int lines, absl::Duration timeout,
    Process* process = nullptr);

// The whole file, or "" if it cannot be read.
std::string ReadFileOrEmpty(const std::string& path);

}  // namespace crm::testing
