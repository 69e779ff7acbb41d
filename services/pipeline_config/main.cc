// crm-pipeline-config: pipelines, stages, custom deal fields, departments and
// roles (crm.pipelines.v1). Flags fall back to CRM_* environment variables.
#include <memory>
#include <set>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"

#include "common/auth/auth.h"
#include "common/config/env.h"
#include "common/config/service_flags.h"
#include "common/grpc/channel.h"
#include "common/grpc/message_limits.h"
#include "common/grpc/server_runner.h"
#include "common/log/log.h"
#include "common/metrics/metrics.h"
#include "common/pagination/page_token.h"
#include "services/pipeline_config/api/access_service_impl.h"
#include "services/pipeline_config/api/fields_service_impl.h"
#include "services/pipeline_config/api/pipelines_service_impl.h"
#include "services/pipeline_config/clients/grpc_deal_counter.h"
#include "services/pipeline_config/demo_data.h"

using crm::common::EnvBool;
using crm::common::EnvInt;
using crm::common::EnvString;

ABSL_FLAG(int, port,
          static_cast<int>(EnvInt("CRM_PIPELINE_CONFIG_PORT", 50052)),
          "gRPC port, 0 = any free port (env CRM_PIPELINE_CONFIG_PORT)");
ABSL_FLAG(int, http_port,
          static_cast<int>(EnvInt("CRM_PIPELINE_CONFIG_HTTP_PORT", 9102)),
          "HTTP port for /metrics and /healthz, 0 = any, -1 = off "
          "(env CRM_PIPELINE_CONFIG_HTTP_PORT)");
ABSL_FLAG(std::string, data_dir,
          EnvString("CRM_PIPELINE_CONFIG_DATA_DIR",
                    EnvString("CRM_DATA_DIR", "./var") + "/pipeline-config"),
          "RocksDB directory (env CRM_PIPELINE_CONFIG_DATA_DIR, else "
          "$CRM_DATA_DIR/pipeline-config)");
ABSL_FLAG(std::string, deals_addr, EnvString("CRM_DEALS_ADDR", ""),
          "host:port of the deals service, asked how many deals a pipeline or "
          "stage holds before deleting it (env CRM_DEALS_ADDR); empty = no "
          "deals service: everything counts as empty");

int main(int argc, char** argv) {
  crm::common::BlockShutdownSignals();
  absl::StatusOr<crm::common::CommonSettings> common =
      crm::common::SetUpService(argc, argv, "pipeline-config",
                                "pipelines, stages, custom deal fields, "
                                "departments and roles (crm.pipelines.v1).");
  if (!common.ok())
    return crm::common::FailStartup(common.status(), "bad flag");
  const std::set<int64_t>* admins = &common->admin_users;
  const bool insecure = common->insecure_dev_auth;
  const std::string& secret = common->jwt_secret;

  const std::string data_dir = absl::GetFlag(FLAGS_data_dir);
  crm::common::RocksOptions rocks_options;
  rocks_options.sync_writes = absl::GetFlag(FLAGS_sync_writes);
  auto store = crm::pipeline_config::ConfigStore::Open(data_dir, rocks_options);
  if (!store.ok())
    return crm::common::FailStartup(store.status(), "cannot open store");

  // Without a deals service every pipeline and stage counts as empty.
  std::unique_ptr<crm::pipeline_config::DealCounter> deal_counter;
  const std::string deals_addr = absl::GetFlag(FLAGS_deals_addr);
  if (deals_addr.empty()) {
    deal_counter = std::make_unique<crm::pipeline_config::NoDealsCounter>();
  } else {
    deal_counter = std::make_unique<crm::pipeline_config::GrpcDealCounter>(
        crm::deals::v1::DealsService::NewStub(
            crm::common::CreatePeerChannel(deals_addr)),
        secret);
  }
  crm::pipeline_config::VersionNotifier notifier;
  auto manager = crm::pipeline_config::ConfigManager::Create(
      **store, *deal_counter, notifier);
  if (!manager.ok())
    return crm::common::FailStartup(manager.status(),
                                    "cannot load configuration");
  if (absl::GetFlag(FLAGS_seed_demo)) {
    auto seeded = crm::pipeline_config::SeedDemoData(**manager);
    if (!seeded.ok())
      return crm::common::FailStartup(seeded.status(), "cannot seed demo data");
    if (*seeded) CRM_LOG(kInfo, "seeded demo data");
  }

  crm::common::Authenticator authenticator(secret, insecure);
  crm::common::PageTokenCodec page_tokens(secret);
  crm::pipeline_config::ServiceDeps deps{**manager, notifier, authenticator,
                                         page_tokens, *admins};
  crm::pipeline_config::PipelinesServiceImpl pipelines_service(deps);
  crm::pipeline_config::FieldsServiceImpl fields_service(deps);
  crm::pipeline_config::AccessServiceImpl access_service(deps);

  crm::common::MetricsRegistry metrics;
  crm::common::ServerOptions options = crm::common::ServerOptionsFromFlags(
      "pipeline-config", absl::GetFlag(FLAGS_port),
      absl::GetFlag(FLAGS_http_port));
  crm::common::ServerRunner runner(options, metrics);
  runner.AddService(&pipelines_service,
                    crm::pipelines::v1::PipelinesService::service_full_name());
  runner.AddService(&fields_service,
                    crm::pipelines::v1::DealFieldsService::service_full_name());
  runner.AddService(&access_service,
                    crm::pipelines::v1::AccessService::service_full_name());
  if (absl::Status started = runner.Start(); !started.ok()) {
    return crm::common::FailStartup(started, "cannot start server");
  }
  CRM_LOG(kInfo, "started",
          {{"data_dir", data_dir},
           {"config_version", absl::StrCat((*manager)->version())},
           {"sync_writes", rocks_options.sync_writes ? "true" : "false"}});

  const std::string signal = crm::common::WaitForShutdownSignal();
  CRM_LOG(kInfo, "shutting down", {{"signal", signal}});
  notifier
      .Close();  // ends WatchConfig streams so shutdown need not wait for them
  runner.Shutdown();
  return 0;
}
