// Test-only: the real pipeline-config service (its three gRPC services over
// a real RocksDB store) served in the test's process by common::ServerRunner
// on a kernel-picked or given port, wired as main.cc wires it, for tests of
// its clients (the deals service).
//
//   InProcessPipelineConfig server(dir + "/config", secret, {1});
//   ASSERT_OK(server.Start(0));
//   ... CreatePipelineConfigChannel(absl::StrCat("127.0.0.1:", server.port()))
//   server.Stop();   // and Start(port) again on the same directory
#pragma once

#include <cstdint>
#include <memory>
#include <set>
#include <string>

#include "absl/status/status.h"

#include "common/auth/auth.h"
#include "common/grpc/server_runner.h"
#include "common/metrics/metrics.h"
#include "common/pagination/page_token.h"
#include "services/pipeline_config/api/access_service_impl.h"
#include "services/pipeline_config/api/call_context.h"
#include "services/pipeline_config/api/fields_service_impl.h"
#include "services/pipeline_config/api/pipelines_service_impl.h"
#include "services/pipeline_config/clients/deal_counter.h"
#include "services/pipeline_config/domain/config_manager.h"
#include "services/pipeline_config/domain/version_notifier.h"
#include "services/pipeline_config/storage/config_store.h"

namespace crm::pipeline_config {

class InProcessPipelineConfig {
 public:
  // `deal_counter` (optional) answers the delete checks; every pipeline and
  // stage counts as empty without one.
  InProcessPipelineConfig(std::string data_dir, std::string secret,
                          std::set<int64_t> admin_user_ids,
                          DealCounter* deal_counter = nullptr);
  ~InProcessPipelineConfig();
  InProcessPipelineConfig(const InProcessPipelineConfig&) = delete;
  InProcessPipelineConfig& operator=(const InProcessPipelineConfig&) = delete;

  // Opens the store and serves on `port` (0 = any free port).
  [[nodiscard]] absl::Status Start(int port);
  // As main.cc on SIGTERM: watch streams end with UNAVAILABLE, then the
  // server stops; the store is closed. Idempotent.
  void Stop();

  int port() const;
  // REQUIRES: started.
  int64_t version() const;
  ConfigManager& manager() { return *manager_; }

 private:
  const std::string data_dir_;
  const std::set<int64_t> admin_user_ids_;
  NoDealsCounter no_deals_;
  DealCounter* deal_counter_;
  common::Authenticator authenticator_;
  common::PageTokenCodec page_tokens_;
  common::MetricsRegistry metrics_;
  std::unique_ptr<ConfigStore> store_;
  std::unique_ptr<VersionNotifier> notifier_;
  std::unique_ptr<ConfigManager> manager_;
  std::unique_ptr<ServiceDeps> deps_;
  std::unique_ptr<PipelinesServiceImpl> pipelines_;
  std::unique_ptr<FieldsServiceImpl> fields_;
  std::unique_ptr<AccessServiceImpl> access_;
  std::unique_ptr<common::ServerRunner> runner_;
};

}  // namespace crm::pipeline_config
