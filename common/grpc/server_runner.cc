#include "common/grpc/server_runner.h"

#include <signal.h>

#include <chrono>
#include <cstdio>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "google/protobuf/descriptor.h"
#include "grpc/health/v1/health.pb.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_builder.h"
#include "grpcpp/support/server_interceptor.h"

#include "common/log/log.h"

namespace crm::common {
namespace {

// Records every finished call (method, status code, latency) in the registry.
class MetricsInterceptor final : public grpc::experimental::Interceptor {
 public:
  MetricsInterceptor(MetricsRegistry& metrics, const char* method)
      : metrics_(metrics),
        method_(method == nullptr ? "" : method),
        start_(std::chrono::steady_clock::now()) {}

  void Intercept(
      grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_STATUS)) {
      const grpc::Status status = methods->GetSendStatus();
      const std::chrono::duration<double> elapsed =
          std::chrono::steady_clock::now() - start_;
      metrics_.RecordRpc(method_, static_cast<int>(status.error_code()),
                         elapsed.count());
    }
    methods->Proceed();
  }

 private:
  MetricsRegistry& metrics_;
  // Owned by gRPC for the lifetime of the call, which outlives this object.
  const char* method_;
  std::chrono::steady_clock::time_point start_;
};

class MetricsInterceptorFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit MetricsInterceptorFactory(MetricsRegistry& metrics)
      : metrics_(metrics) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    return new MetricsInterceptor(metrics_, info->method());
  }

 private:
  MetricsRegistry& metrics_;
};

}  // namespace

ServerRunner::ServerRunner(ServerOptions options, MetricsRegistry& metrics)
    : options_(std::move(options)),
      metrics_(metrics),
      http_(std::make_unique<HttpServer>(metrics)) {}

ServerRunner::~ServerRunner() { Shutdown(); }

void ServerRunner::AddService(grpc::Service* service, std::string full_name) {
  services_.push_back(service);
  service_names_.push_back(std::move(full_name));
}

absl::Status ServerRunner::Start() {
  // Debian's Abseil checks every Mutex acquisition for lock-order cycles,
  // which costs a few percent of a busy server's CPU; tests keep it on.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  // Links the descriptor of grpc.health.v1 into this binary so reflection can
  // describe the health service (gRPC's built-in one is not built from
  // health.proto), and `grpcurl ... grpc.health.v1.Health/Check` works.
  static_cast<void>(grpc::health::v1::HealthCheckRequest::descriptor());
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();

  for (const std::string& name : service_names_) {
    // A typo would leave the health check of a real service NOT_FOUND.
    if (google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(
            name) == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("AddService: no proto service named \"", name, "\""));
    }
  }
  grpc::ServerBuilder builder;
  builder.AddListeningPort(absl::StrCat(options_.host, ":", options_.grpc_port),
                           grpc::InsecureServerCredentials(), &grpc_port_);
  // Without this, gRPC sets SO_REUSEPORT and a second process could bind the
  // same port and silently share its traffic.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.SetMaxReceiveMessageSize(options_.max_message_bytes);
  builder.SetMaxSendMessageSize(options_.max_message_bytes);
  for (auto* service : services_) builder.RegisterService(service);
  std::vector<
      std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
      interceptors;
  interceptors.push_back(std::make_unique<MetricsInterceptorFactory>(metrics_));
  builder.experimental().SetInterceptorCreators(std::move(interceptors));

  server_ = builder.BuildAndStart();
  if (server_ == nullptr || grpc_port_ == 0) {
    server_.reset();
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", options_.host, ":",
                     options_.grpc_port, " (port in use?)"));
  }
  if (auto* health = server_->GetHealthCheckService(); health != nullptr) {
    // Per service name (what Kubernetes' grpc probe with `service:` and
    // grpcurl '{"service": "..."}' ask for) and "" for the whole server.
    for (const std::string& name : service_names_) {
      health->SetServingStatus(name, true);
    }
    health->SetServingStatus(true);
  }

  if (options_.http_port >= 0) {
    absl::StatusOr<int> port = http_->Start(options_.host, options_.http_port);
    if (!port.ok()) {
      server_->Shutdown();
      server_.reset();
      return port.status();
    }
    http_port_ = *port;
  }
  if (!options_.port_file.empty()) {
    const absl::Status written = WriteFileAtomically(
        options_.port_file, absl::StrCat(grpc_port_, "\n", http_port_, "\n"));
    if (!written.ok()) {
      Shutdown();
      return written;
    }
  }
  CRM_LOG(kInfo, "serving",
          {{"grpc", absl::StrCat(options_.host, ":", grpc_port_)},
           {"http", absl::StrCat(options_.host, ":", http_port_)}});
  return absl::OkStatus();
}

void ServerRunner::Shutdown() {
  if (shut_down_ || server_ == nullptr) return;
  shut_down_ = true;
  http_->SetHealthy(false);
  if (auto* health = server_->GetHealthCheckService(); health != nullptr) {
    health->SetServingStatus(false);
  }
  const auto deadline = std::chrono::system_clock::now() +
                        absl::ToChronoMilliseconds(options_.shutdown_grace);
  server_->Shutdown(deadline);
  server_->Wait();
  http_->Stop();
  CRM_LOG(kInfo, "stopped");
}

void BlockShutdownSignals() {
  // A shell starts background jobs with SIGINT ignored, and an ignored signal
  // never reaches sigwait: restore the default disposition first.
  signal(SIGINT, SIG_DFL);
  signal(SIGTERM, SIG_DFL);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

std::string WaitForShutdownSignal() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  int signal_number = 0;
  while (sigwait(&set, &signal_number) != 0) {
  }
  return signal_number == SIGTERM ? "SIGTERM" : "SIGINT";
}

absl::Status WriteFileAtomically(const std::string& path,
                                 const std::string& content) {
  const std::string temp = path + ".tmp";
  {
    std::ofstream out(temp, std::ios::trunc);
    out << content;
    out.flush();
    if (!out)
      return absl::UnavailableError(absl::StrCat("cannot write ", temp));
  }
  if (std::rename(temp.c_str(), path.c_str()) != 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot rename ", temp, " to ", path));
  }
  return absl::OkStatus();
}

}  // namespace crm::common
