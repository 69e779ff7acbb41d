#include "tests/e2e/service_process.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"

namespace crm::testing {
namespace {

using ::grpc::health::v1::Health;
using ::grpc::health::v1::HealthCheckRequest;
using ::grpc::health::v1::HealthCheckResponse;

constexpr absl::Duration kPollInterval = absl::Milliseconds(10);

// A socket fd closed when it goes out of scope.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<ServiceProcess>> ServiceProcess::Start(
    const ServiceOptions& options) {
  if (options.work_dir.empty())
    return absl::InvalidArgumentError("work_dir: required");
  static std::atomic<int> counter{0};
  const std::string port_file =
      absl::StrCat(options.work_dir, "/service-", getpid(), "-",
                   counter.fetch_add(1), ".ports");
  unlink(port_file.c_str());

  ProcessOptions process_options;
  process_options.binary = options.binary;
  process_options.args = {absl::StrCat("--port=", options.grpc_port),
                          "--http_port=0", "--port_file=" + port_file};
  process_options.args.insert(process_options.args.end(), options.args.begin(),
                              options.args.end());
  process_options.env = options.env;
  process_options.output_file = options.output_file;
  const absl::Time deadline = absl::Now() + options.start_timeout;
  absl::StatusOr<std::unique_ptr<Process>> process =
      Process::Start(process_options);
  if (!process.ok()) return process.status();

  absl::StatusOr<std::vector<std::string>> lines =
      WaitForLines(port_file, 2, options.start_timeout, process->get());
  if (!lines.ok()) return lines.status();  // ~Process kills the child.
  int grpc_port = 0;
  int http_port = 0;
  if (!absl::SimpleAtoi((*lines)[0], &grpc_port) ||
      !absl::SimpleAtoi((*lines)[1], &http_port) || grpc_port <= 0) {
    return absl::InternalError(absl::StrCat("bad port file ", port_file, ": \"",
                                            (*lines)[0], "\", \"", (*lines)[1],
                                            "\""));
  }
  auto service = std::unique_ptr<ServiceProcess>(
      new ServiceProcess(std::move(process).value(), grpc_port, http_port));
  absl::Status serving = WaitForServing(
      service->NewChannel(), "", deadline - absl::Now(), &service->process());
  if (!serving.ok()) return serving;
  return service;
}

std::string ServiceProcess::grpc_address() const {
  return absl::StrCat("127.0.0.1:", grpc_port_);
}

std::shared_ptr<grpc::Channel> ServiceProcess::NewChannel() const {
  return NewLoopbackChannel(grpc_address());
}

std::shared_ptr<grpc::Channel> NewLoopbackChannel(const std::string& address) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(),
                                   args);
}

absl::Status WaitForServing(const std::shared_ptr<grpc::Channel>& channel,
                            const std::string& service, absl::Duration timeout,
                            Process* process) {
  const absl::Time deadline = absl::Now() + timeout;
  auto stub = Health::NewStub(channel);
  std::string last = "no answer yet";
  while (true) {
    if (process != nullptr && !process->Running()) {
      return absl::FailedPreconditionError(
          absl::StrCat("process ", process->pid(), " ended (",
                       process->exit_info()->ToString(), ") before serving"));
    }
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(1));
    HealthCheckRequest request;
    request.set_service(service);
    HealthCheckResponse response;
    const grpc::Status status = stub->Check(&context, request, &response);
    if (status.ok() && response.status() == HealthCheckResponse::SERVING) {
      return absl::OkStatus();
    }
    last = status.ok()
               ? HealthCheckResponse::ServingStatus_Name(response.status())
               : absl::StrCat("error ", status.error_code(), ": ",
                              status.error_message());
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("health of \"", service, "\" not SERVING after ",
                       absl::FormatDuration(timeout), "; last answer: ", last));
    }
    absl::SleepFor(kPollInterval);
  }
}

namespace {

// Sends `request` (a whole HTTP/1.1 request with "Connection: close") to
// 127.0.0.1:port and reads the response until the server closes.
absl::StatusOr<HttpResponse> HttpExchange(int port, const std::string& request,
                                          absl::Duration timeout) {
  Fd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (fd.get() < 0)
    return absl::UnavailableError(absl::StrCat("socket: ", strerror(errno)));
  const timeval tv = absl::ToTimeval(timeout);
  setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd.get(), reinterpret_cast<const sockaddr*>(&address),
              sizeof(address)) != 0) {
    return absl::UnavailableError(
        absl::StrCat("connect 127.0.0.1:", port, ": ", strerror(errno)));
  }
  for (size_t sent = 0; sent < request.size();) {
    const ssize_t n = send(fd.get(), request.data() + sent,
                           request.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0)
      return absl::UnavailableError(absl::StrCat("send: ", strerror(errno)));
    sent += static_cast<size_t>(n);
  }
  std::string raw;
  char buffer[16384];
  while (true) {
    const ssize_t n = recv(fd.get(), buffer, sizeof(buffer), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0)
      return absl::DeadlineExceededError(
          absl::StrCat("recv: ", strerror(errno)));
    if (n == 0) break;
    raw.append(buffer, static_cast<size_t>(n));
  }
  const size_t head_end = raw.find("\r\n\r\n");
  const size_t line_end = raw.find("\r\n");
  if (head_end == std::string::npos || raw.compare(0, 5, "HTTP/") != 0) {
    return absl::DataLossError(
        absl::StrCat("not an HTTP response: \"", raw.substr(0, 100), "\""));
  }
  HttpResponse response;
  const size_t space = raw.find(' ');
  if (space == std::string::npos ||
      !absl::SimpleAtoi(raw.substr(space + 1, 3), &response.status)) {
    return absl::DataLossError(
        absl::StrCat("bad status line: ", raw.substr(0, line_end)));
  }
  response.headers = raw.substr(line_end + 2, head_end - line_end - 2);
  response.body = raw.substr(head_end + 4);
  return response;
}

}  // namespace

absl::StatusOr<HttpResponse> HttpGet(int port, const std::string& path,
                                     absl::Duration timeout) {
  return HttpExchange(port,
                      absl::StrCat("GET ", path,
                                   " HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                   "Connection: close\r\n\r\n"),
                      timeout);
}

absl::StatusOr<HttpResponse> HttpPost(int port, const std::string& path,
                                      const std::string& body,
                                      const std::string& content_type,
                                      absl::Duration timeout) {
  return HttpExchange(
      port,
      absl::StrCat("POST ", path,
                   " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                   "Content-Type: ",
                   content_type, "\r\nContent-Length: ", body.size(),
                   "\r\n\r\n", body),
      timeout);
}

}  // namespace crm::testing
