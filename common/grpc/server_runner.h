// Runs a gRPC server the way every service of this project needs it:
// callback services, the standard health service, server reflection (so
// grpcurl works without .proto files), per-method metrics, message size
// limits, port 0 plus a port file for tests, an operator HTTP port with
// /metrics and /healthz, and graceful shutdown within a deadline.
//
//   crm::common::BlockShutdownSignals();           // first thing in main()
//   MetricsRegistry metrics;
//   ServerRunner runner(options, metrics);
//   runner.AddService(&pipelines_service,
//                     v1::PipelinesService::service_full_name());
//   CRM_RETURN_IF_ERROR(runner.Start());
//   crm::common::WaitForShutdownSignal();
//   runner.Shutdown();
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "grpcpp/server.h"

#include "common/grpc/message_limits.h"
#include "common/http/http_server.h"
#include "common/metrics/metrics.h"

namespace crm::common {

struct ServerOptions {
  // Name used in logs.
  std::string service_name;
  std::string host = "127.0.0.1";
  // 0 picks a free port; see port_file.
  int grpc_port = 0;
  // HTTP port for /metrics and /healthz; 0 picks a free one; -1 disables it.
  int http_port = 0;
  // When set, "<grpc port>\n<http port>\n" is written here (atomically) once
  // both ports are bound.
  std::string port_file;
  // Calls still running after this are cancelled on shutdown.
  absl::Duration shutdown_grace = absl::Seconds(10);
  int max_message_bytes = kMaxMessageBytes;
};

class ServerRunner {
 public:
  ServerRunner(ServerOptions options, MetricsRegistry& metrics);
  ~ServerRunner();

  // REQUIRES: before Start(); `service` outlives the runner. `full_name` is
  // the proto service it implements ("crm.deals.v1.DealsService", the
  // generated class's service_full_name()): the health service answers for
  // it as well as for "".
  void AddService(grpc::Service* service, std::string full_name);
  // The HTTP server, to add routes before Start().
  HttpServer& http() { return *http_; }

  // Binds both ports and starts serving. UNAVAILABLE when a port is taken.
  [[nodiscard]] absl::Status Start();

  int grpc_port() const { return grpc_port_; }
  int http_port() const { return http_port_; }
  grpc::Server* server() { return server_.get(); }

  // Marks every service NOT_SERVING (health and /healthz), stops accepting
  // calls, waits up to shutdown_grace for running calls, then cancels the
  // rest. Idempotent.
  void Shutdown();

 private:
  ServerOptions options_;
  MetricsRegistry& metrics_;
  std::unique_ptr<HttpServer> http_;
  std::vector<grpc::Service*> services_;
  std::vector<std::string> service_names_;
  std::unique_ptr<grpc::Server> server_;
  int grpc_port_ = 0;
  int http_port_ = 0;
  bool shut_down_ = false;
};

// Blocks SIGTERM and SIGINT in the calling thread and every thread it starts
// later (after restoring their default disposition, in case the parent
// ignored them). Call at the top of main(), before any thread exists.
void BlockShutdownSignals();
// Waits for SIGTERM or SIGINT (blocked by BlockShutdownSignals) and returns
// its name.
std::string WaitForShutdownSignal();

// Writes `content` to `path` through a temporary file and a rename, so a
// reader never sees a partial file.
[[nodiscard]] absl::Status WriteFileAtomically(const std::string& path,
                                               const std::string& content);

}  // namespace crm::common
