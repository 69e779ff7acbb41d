// Test-only: one of our gRPC service binaries running as a child process,
// started the way every service of this project supports for tests: free
// ports (--port=0 --http_port=0) reported through --port_file, then polled
// until grpc.health.v1.Health/Check("") answers SERVING.
//
//   ServiceOptions options;
//   options.binary = CRM_PIPELINE_CONFIG_BINARY;
//   options.work_dir = temp_dir.path();
//   options.args = {"--data_dir=" + data_dir};
//   absl::StatusOr<std::unique_ptr<ServiceProcess>> service =
//       ServiceProcess::Start(options);
//   auto stub =
//   crm::pipelines::v1::PipelinesService::NewStub((*service)->NewChannel());
//   ...
//   absl::StatusOr<ExitInfo> exit = (*service)->Terminate(SIGTERM,
//   absl::Seconds(5));
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/channel.h"

#include "tests/e2e/process.h"

namespace crm::testing {

struct ServiceOptions {
  std::string binary;
  // Flags besides the port flags, e.g. "--data_dir=...".
  std::vector<std::string> args;
  // "NAME=value" entries added to the child's environment.
  std::vector<std::string> env;
  // Required: a directory for the port file (and nothing else).
  std::string work_dir;
  // When set, the child's stdout and stderr go to this file.
  std::string output_file;
  // Start-up deadline: port file plus SERVING.
  absl::Duration start_timeout = absl::Seconds(30);
  // The gRPC port to ask for; 0 lets the kernel pick a free one. A fixed
  // port lets a test restart a process where its clients already point.
  int grpc_port = 0;
};

class ServiceProcess {
 public:
  // Starts the binary with --port=<options.grpc_port, default 0>
  // --http_port=0 --port_file=<work_dir>/...
  // plus options.args and waits until it serves. On failure the child is
  // killed; the error carries the reason (exit code when it exited).
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<ServiceProcess>> Start(
      const ServiceOptions& options);

  int grpc_port() const { return grpc_port_; }
  int http_port() const { return http_port_; }
  // "127.0.0.1:<grpc port>".
  std::string grpc_address() const;

  // A new channel with its own connection (a local subchannel pool), so
  // several channels really mean several connections.
  std::shared_ptr<grpc::Channel> NewChannel() const;

  Process& process() { return *process_; }

  // See Process::Terminate.
  [[nodiscard]] absl::StatusOr<ExitInfo> Terminate(int signal,
                                                   absl::Duration timeout) {
    return process_->Terminate(signal, timeout);
  }

 private:
  ServiceProcess(std::unique_ptr<Process> process, int grpc_port, int http_port)
      : process_(std::move(process)),
        grpc_port_(grpc_port),
        http_port_(http_port) {}

  std::unique_ptr<Process> process_;
  int grpc_port_;
  int http_port_;
};

// A channel to a loopback address with its own connection.
std::shared_ptr<grpc::Channel> NewLoopbackChannel(const std::string& address);

// Polls grpc.health.v1.Health/Check(`service`) until it answers SERVING.
// Fails early if `process` (optional) ends, else with DEADLINE_EXCEEDED
// naming the last answer.
[[nodiscard]] absl::Status WaitForServing(
    const std::shared_ptr<grpc::Channel>& channel, const std::string& service,
    absl::Duration timeout, Process* process = nullptr);

struct HttpResponse {
  int status = 0;
  // Header lines as received, without the status line.
  std::string headers;
  std::string body;
};

// A minimal HTTP/1.1 GET over a plain socket to 127.0.0.1:port with
// "Connection: close" (no chunked decoding; our servers send Content-Length).
[[nodiscard]] absl::StatusOr<HttpResponse> HttpGet(
    int port, const std::string& path,
    absl::Duration timeout = absl::Seconds(5));

// The same for a POST of `body` (sent with Content-Length).
[[nodiscard]] absl::StatusOr<HttpResponse> HttpPost(
    int port, const std::string& path, const std::string& body,
    const std::string& content_type = "application/json",
    absl::Duration timeout = absl::Seconds(5));

}  // namespace crm::testing
