#include "tests/e2e/process.h"

#include <fcntl.h>
#include <linux/close_range.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

extern char** environ;  // NOLINT(readability-redundant-declaration)

namespace crm::testing {
namespace {

constexpr absl::Duration kPollInterval = absl::Milliseconds(2);

std::string ErrnoText(int error) { return std::strerror(error); }  // NOLINT

// The name part of "NAME=value".
std::string EnvName(const std::string& entry) {
  return entry.substr(0, entry.find('='));
}

std::vector<std::string> BuildEnvironment(const ProcessOptions& options) {
  std::vector<std::string> result;
  if (options.inherit_env) {
    std::set<std::string> overridden;
    for (const auto& entry : options.env) overridden.insert(EnvName(entry));
    for (char** entry = environ; entry != nullptr && *entry != nullptr;
         ++entry) {
      if (overridden.count(EnvName(*entry)) == 0) result.emplace_back(*entry);
    }
  }
  result.insert(result.end(), options.env.begin(), options.env.end());
  return result;
}

std::vector<char*> ToArgv(std::vector<std::string>& strings) {
  std::vector<char*> argv;
  argv.reserve(strings.size() + 1);
  for (auto& s : strings) argv.push_back(s.data());
  argv.push_back(nullptr);
  return argv;
}

ExitInfo FromWaitStatus(int status) {
  ExitInfo info;
  if (WIFEXITED(status)) {
    info.exited = true;
    info.code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    info.signaled = true;
    info.signal = WTERMSIG(status);
  }
  return info;
}

// Runs in the child between fork and exec: only async-signal-safe calls.
[[noreturn]] void ExecChild(const ProcessOptions& options, pid_t parent,
                            int stdin_fd, int output_fd, int error_fd,
                            int max_fd, char* const argv[],
                            char* const envp[]) {
  auto fail = [error_fd](int error) {
    // Best effort: the parent reports whatever arrives.
    [[maybe_unused]] ssize_t ignored = write(error_fd, &error, sizeof(error));
    _exit(127);
  };
  if (options.new_process_group && setpgid(0, 0) != 0) fail(errno);
  if (options.kill_with_parent) {
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) fail(errno);
    if (getppid() != parent) _exit(127);  // The parent died before prctl.
  }
  // Signal mask and ignored signals survive exec: give the child defaults
  // (test binaries and gRPC block or ignore some, e.g. SIGPIPE).
  sigset_t empty;
  sigemptyset(&empty);
  sigprocmask(SIG_SETMASK, &empty, nullptr);
  struct sigaction default_action {};
  default_action.sa_handler = SIG_DFL;
  sigemptyset(&default_action.sa_mask);
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig != SIGKILL && sig != SIGSTOP)
      sigaction(sig, &default_action, nullptr);
  }
  if (stdin_fd >= 0 && dup2(stdin_fd, STDIN_FILENO) < 0) fail(errno);
  if (output_fd >= 0) {
    if (dup2(output_fd, STDOUT_FILENO) < 0) fail(errno);
    if (dup2(output_fd, STDERR_FILENO) < 0) fail(errno);
  }
  // Descriptors inherited from the parent (gRPC sockets, files) must not stay
  // open in the child: close them at exec.
  // (error_fd is close-on-exec already.)
#if defined(SYS_close_range) && defined(CLOSE_RANGE_CLOEXEC)
  if (syscall(SYS_close_range, STDERR_FILENO + 1, ~0U, CLOSE_RANGE_CLOEXEC) !=
      0)
#endif
  {
    for (int fd = STDERR_FILENO + 1; fd < max_fd; ++fd)
      fcntl(fd, F_SETFD, FD_CLOEXEC);
  }
  execve(argv[0], argv, envp);
  fail(errno);
  _exit(127);  // Not reached: fail() exits.
}

}  // namespace

std::string ExitInfo::ToString() const {
  if (exited) return absl::StrCat("exit code ", code);
  if (signaled)
    return absl::StrCat("killed by signal ", signal, " (", strsignal(signal),
                        ")");
  return "unknown exit";
}

absl::StatusOr<std::unique_ptr<Process>> Process::Start(
    const ProcessOptions& options) {
  if (options.binary.empty())
    return absl::InvalidArgumentError("binary: required");
  if (access(options.binary.c_str(), X_OK) != 0) {
    return absl::NotFoundError(absl::StrCat("cannot execute ", options.binary,
                                            ": ", ErrnoText(errno)));
  }
  // Everything the child needs is prepared before fork: after it, only
  // async-signal-safe calls are allowed (the parent has threads).
  std::vector<std::string> arg_strings;
  arg_strings.push_back(options.binary);
  arg_strings.insert(arg_strings.end(), options.args.begin(),
                     options.args.end());
  std::vector<std::string> env_strings = BuildEnvironment(options);
  std::vector<char*> argv = ToArgv(arg_strings);
  std::vector<char*> envp = ToArgv(env_strings);

  struct rlimit limit {};
  int max_fd = 4096;
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 &&
      limit.rlim_cur != RLIM_INFINITY) {
    max_fd = static_cast<int>(std::min<rlim_t>(limit.rlim_cur, 1 << 20));
  }

  const int stdin_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  int output_fd = -1;
  if (!options.output_file.empty()) {
    output_fd = open(options.output_file.c_str(),
                     O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (output_fd < 0) {
      const int error = errno;
      if (stdin_fd >= 0) close(stdin_fd);
      return absl::UnavailableError(absl::StrCat(
          "cannot open ", options.output_file, ": ", ErrnoText(error)));
    }
  }
  auto close_parent_fds = [&] {
    if (stdin_fd >= 0) close(stdin_fd);
    if (output_fd >= 0) close(output_fd);
  };
  int error_pipe[2];
  if (pipe2(error_pipe, O_CLOEXEC) != 0) {
    const int error = errno;
    close_parent_fds();
    return absl::UnavailableError(absl::StrCat("pipe2: ", ErrnoText(error)));
  }

  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) {
    const int error = errno;
    close_parent_fds();
    close(error_pipe[0]);
    close(error_pipe[1]);
    return absl::UnavailableError(absl::StrCat("fork: ", ErrnoText(error)));
  }
  if (pid == 0) {
    ExecChild(options, parent, stdin_fd, output_fd, error_pipe[1], max_fd,
              argv.data(), envp.data());
  }
  // Also from the parent, so the group exists before Start returns.
  if (options.new_process_group) setpgid(pid, pid);
  close_parent_fds();
  close(error_pipe[1]);
  // EOF means the exec succeeded (the write end was closed by exec).
  int child_errno = 0;
  ssize_t got = 0;
  do {
    got = read(error_pipe[0], &child_errno, sizeof(child_errno));
  } while (got < 0 && errno == EINTR);
  close(error_pipe[0]);
  auto process = std::unique_ptr<Process>(new Process(options, pid));
  if (got > 0) {
    static_cast<void>(process->Wait(absl::Seconds(10)));  // Reaps the child.
    return absl::UnavailableError(absl::StrCat("cannot start ", options.binary,
                                               ": ", ErrnoText(child_errno)));
  }
  return process;
}

Process::~Process() {
  if (!exit_.has_value()) KillAndReap();
}

void Process::KillAndReap() {
  kill(pid_, SIGKILL);
  ReapExited();
}

void Process::ReapExited() {
  // The child is a zombie or about to be: its pid, and so its process group
  // id, cannot be reused yet, so the group still holds only what the child
  // started.
  if (options_.new_process_group) kill(-pid_, SIGKILL);
  int status = 0;
  pid_t result = 0;
  do {
    result = waitpid(pid_, &status, 0);
  } while (result < 0 && errno == EINTR);
  exit_ = result == pid_ ? FromWaitStatus(status) : ExitInfo{};
}

bool Process::Reap() {
  if (exit_.has_value()) return true;
  siginfo_t info{};
  int result = 0;
  do {
    // WNOWAIT: look without reaping, so the group can be cleaned up first.
    result = waitid(P_PID, static_cast<id_t>(pid_), &info,
                    WEXITED | WNOHANG | WNOWAIT);
  } while (result < 0 && errno == EINTR);
  if (result < 0) {
    // ECHILD: somebody else reaped it. Treat it as gone.
    exit_ = ExitInfo{};
    return true;
  }
  if (info.si_pid != pid_) return false;  // Still running.
  ReapExited();
  return true;
}

bool Process::Running() { return !Reap(); }

absl::Status Process::Signal(int signal) {
  if (Reap()) {
    return absl::FailedPreconditionError(
        absl::StrCat("process ", pid_, " already ended: ", exit_->ToString()));
  }
  if (kill(pid_, signal) != 0) {
    return absl::UnavailableError(
        absl::StrCat("kill(", pid_, ", ", signal, "): ", ErrnoText(errno)));
  }
  return absl::OkStatus();
}

absl::StatusOr<ExitInfo> Process::Wait(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!Reap()) {
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(absl::StrCat(
          "process ", pid_, " (", options_.binary, ") still running after ",
          absl::FormatDuration(timeout)));
    }
    absl::SleepFor(kPollInterval);
  }
  return *exit_;
}

absl::StatusOr<ExitInfo> Process::Terminate(int signal,
                                            absl::Duration timeout) {
  if (Reap()) return *exit_;
  if (kill(pid_, signal) != 0 && errno != ESRCH) {
    return absl::UnavailableError(
        absl::StrCat("kill(", pid_, ", ", signal, "): ", ErrnoText(errno)));
  }
  absl::StatusOr<ExitInfo> exit = Wait(timeout);
  if (exit.ok()) return exit;
  KillAndReap();
  return absl::DeadlineExceededError(absl::StrCat(
      "process ", pid_, " did not exit within ", absl::FormatDuration(timeout),
      " of signal ", signal, "; killed it"));
}

absl::StatusOr<std::vector<std::string>> WaitForLines(const std::string& path,
                                                      int lines,
                                                      absl::Duration timeout,
                                                      Process* process) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    const std::string content = ReadFileOrEmpty(path);
    std::vector<std::string> found;
    size_t start = 0;
    for (size_t end = content.find('\n');
         end != std::string::npos && static_cast<int>(found.size()) < lines;
         end = content.find('\n', start)) {
      found.push_back(content.substr(start, end - start));
      start = end + 1;
    }
    if (static_cast<int>(found.size()) >= lines) return found;
    if (process != nullptr && !process->Running()) {
      return absl::FailedPreconditionError(
          absl::StrCat("process ", process->pid(), " ended (",
                       process->exit_info()->ToString(), ") before writing ",
                       lines, " lines to ", path));
    }
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("no ", lines, " lines in ", path, " after ",
                       absl::FormatDuration(timeout)));
    }
    absl::SleepFor(kPollInterval);
  }
}

std::string ReadFileOrEmpty(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "";
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

}  // namespace crm::testing
