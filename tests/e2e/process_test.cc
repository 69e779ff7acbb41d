// Tests of the child-process helper with /bin/sh and /bin/sleep.
#include "tests/e2e/process.h"

#include <signal.h>

#include <memory>
#include <string>

#include "absl/time/clock.h"
#include "gtest/gtest.h"

#include "common/testing/temp_dir.h"

namespace crm::testing {
namespace {

std::unique_ptr<Process> StartOrDie(const ProcessOptions& options) {
  absl::StatusOr<std::unique_ptr<Process>> process = Process::Start(options);
  EXPECT_TRUE(process.ok()) << process.status();
  return process.ok() ? std::move(process).value() : nullptr;
}

ProcessOptions Shell(const std::string& script) {
  ProcessOptions options;
  options.binary = "/bin/sh";
  options.args = {"-c", script};
  return options;
}

TEST(ProcessTest, ReportsExitCode) {
  auto process = StartOrDie(Shell("exit 3"));
  ASSERT_NE(process, nullptr);
  absl::StatusOr<ExitInfo> exit = process->Wait(absl::Seconds(10));
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_TRUE(exit->exited);
  EXPECT_EQ(exit->code, 3);
  EXPECT_FALSE(process->Running());
  EXPECT_EQ(exit->ToString(), "exit code 3");
}

TEST(ProcessTest, TerminateWithSignal) {
  ProcessOptions options;
  options.binary = "/bin/sleep";
  options.args = {"60"};
  auto process = StartOrDie(options);
  ASSERT_NE(process, nullptr);
  EXPECT_TRUE(process->Running());
  absl::StatusOr<ExitInfo> exit =
      process->Terminate(SIGTERM, absl::Seconds(10));
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_TRUE(exit->signaled);
  EXPECT_EQ(exit->signal, SIGTERM);
  EXPECT_FALSE(process->Signal(SIGTERM).ok()) << "signalled a reaped child";
}

TEST(ProcessTest, TerminateEscalatesToSigkill) {
  // The shell ignores SIGTERM (and so does its sleeping child).
  auto process = StartOrDie(Shell("trap '' TERM; echo ready; sleep 60"));
  ASSERT_NE(process, nullptr);
  // Give the shell time to install the trap: a signal before that kills it.
  absl::SleepFor(absl::Milliseconds(200));
  absl::StatusOr<ExitInfo> exit =
      process->Terminate(SIGTERM, absl::Milliseconds(300));
  EXPECT_EQ(exit.status().code(), absl::StatusCode::kDeadlineExceeded);
  ASSERT_TRUE(process->exit_info().has_value());
  EXPECT_TRUE(process->exit_info()->signaled);
  EXPECT_EQ(process->exit_info()->signal, SIGKILL);
}

TEST(ProcessTest, PassesArgsEnvironmentAndOutput) {
  TempDir temp;
  ProcessOptions options = Shell("echo \"$1 $CRM_PROCESS_TEST\"; echo err >&2");
  options.args.push_back("argv0");  // $0 of the script
  options.args.push_back("first");
  options.env = {"CRM_PROCESS_TEST=value"};
  options.output_file = temp.path() + "/out";
  auto process = StartOrDie(options);
  ASSERT_NE(process, nullptr);
  absl::StatusOr<ExitInfo> exit = process->Wait(absl::Seconds(10));
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_TRUE(exit->Success()) << exit->ToString();
  EXPECT_EQ(ReadFileOrEmpty(options.output_file), "first value\nerr\n");
}

TEST(ProcessTest, EmptyEnvironmentWithoutInherit) {
  TempDir temp;
  ProcessOptions options = Shell("echo \"[$HOME][$ONLY]\"");
  options.inherit_env = false;
  options.env = {"ONLY=1"};
  options.output_file = temp.path() + "/out";
  auto process = StartOrDie(options);
  ASSERT_NE(process, nullptr);
  ASSERT_TRUE(process->Wait(absl::Seconds(10)).ok());
  EXPECT_EQ(ReadFileOrEmpty(options.output_file), "[][1]\n");
}

TEST(ProcessTest, MissingBinaryFailsToStart) {
  ProcessOptions options;
  options.binary = "/nonexistent/binary";
  absl::StatusOr<std::unique_ptr<Process>> process = Process::Start(options);
  EXPECT_FALSE(process.ok());
}

TEST(ProcessTest, WaitForLinesSeesFileOrEarlyExit) {
  TempDir temp;
  const std::string file = temp.path() + "/ports";
  auto writer = StartOrDie(Shell(
      "printf '1\\n2' > " + file + ".tmp && mv " + file + ".tmp " + file +
      " && sleep 0.1 && printf '1\\n2\\n3\\n' > " + file + " && sleep 60"));
  ASSERT_NE(writer, nullptr);
  absl::StatusOr<std::vector<std::string>> lines =
      WaitForLines(file, 2, absl::Seconds(10), writer.get());
  ASSERT_TRUE(lines.ok()) << lines.status();
  EXPECT_EQ(*lines, (std::vector<std::string>{"1", "2"}));

  auto quitter = StartOrDie(Shell("exit 7"));
  ASSERT_NE(quitter, nullptr);
  lines =
      WaitForLines(temp.path() + "/never", 2, absl::Seconds(10), quitter.get());
  EXPECT_EQ(lines.status().code(), absl::StatusCode::kFailedPrecondition)
      << lines.status();

  lines = WaitForLines(temp.path() + "/never", 1, absl::Milliseconds(50));
  EXPECT_EQ(lines.status().code(), absl::StatusCode::kDeadlineExceeded)
      << lines.status();
}

TEST(ProcessTest, DestructorKillsAndReaps) {
  pid_t pid = 0;
  {
    ProcessOptions options;
    options.binary = "/bin/sleep";
    options.args = {"60"};
    auto process = StartOrDie(options);
    ASSERT_NE(process, nullptr);
    pid = process->pid();
    ASSERT_EQ(kill(pid, 0), 0);
  }
  // Reaped: the pid no longer names our child.
  EXPECT_NE(kill(pid, 0), 0);
}

// True while `pid` names a live (not zombie) process.
bool Alive(pid_t pid) {
  const std::string stat =
      ReadFileOrEmpty("/proc/" + std::to_string(pid) + "/stat");
  const size_t paren = stat.rfind(')');
  return paren != std::string::npos && paren + 2 < stat.size() &&
         stat[paren + 2] != 'Z';
}

TEST(ProcessTest, DestructorKillsWhatTheChildStarted) {
  TempDir temp;
  const std::string file = temp.path() + "/grandchild";
  pid_t grandchild = 0;
  {
    auto process =
        StartOrDie(Shell("sleep 60 & echo $! > " + file + ".tmp && mv " + file +
                         ".tmp " + file + " && wait"));
    ASSERT_NE(process, nullptr);
    absl::StatusOr<std::vector<std::string>> lines =
        WaitForLines(file, 1, absl::Seconds(10), process.get());
    ASSERT_TRUE(lines.ok()) << lines.status();
    grandchild = std::stoi((*lines)[0]);
    ASSERT_TRUE(Alive(grandchild));
  }
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (Alive(grandchild) && absl::Now() < deadline)
    absl::SleepFor(absl::Milliseconds(5));
  EXPECT_FALSE(Alive(grandchild)) << "the grandchild outlived the Process";
}

}  // namespace
}  // namespace crm::testing
