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

ABSL_FLAG(std::string, listen_host, EnvString("CRM_LISTEN_HOST", "127.0.0.1"),
          "Address to listen on (env CRM_LISTEN_HOST); 0.0.0.0 in a container");
ABSL_FLAG(int, port,
          static_cast<int>(EnvInt("CRM_PIPELINE_CONFIG_PORT", 50052)),
          "gRPC port, 0 = any free port (env CRM_PIPELINE_CONFIG_PORT)");
ABSL_FLAG(int, http_port,
          static_cast<int>(EnvInt("CRM_PIPELINE_CONFIG_HTTP_PORT", 9102)),
          "HTTP port for /metrics and /healthz, 0 = any, -1 = off "
          "(env CRM_PIPELINE_CONFIG_HTTP_PORT)");
ABSL_FLAG(std::string, port_file, "",
          "Write the bound gRPC and HTTP ports to this file");
ABSL_FLAG(std::string, data_dir,
          EnvString("CRM_PIPELINE_CONFIG_DATA_DIR",
                    EnvString("CRM_DATA_DIR", "./var") + "/pipeline-config"),
          "RocksDB directory (env CRM_PIPELINE_CONFIG_DATA_DIR, else "
          "$CRM_DATA_DIR/pipeline-config)");
ABSL_FLAG(bool, sync_writes, EnvBool("CRM_SYNC_WRITES", false),
          "fsync every commit so it survives power loss (env CRM_SYNC_WRITES)");
ABSL_FLAG(std::string, jwt_secret, EnvString("CRM_JWT_SECRET", ""),
          "HS256 secret of caller tokens (env CRM_JWT_SECRET); unset = the dev "
          "secret, "
          "with a warning");
ABSL_FLAG(bool, insecure_dev_auth, EnvBool("CRM_INSECURE_DEV_AUTH", false),
          "Do not verify tokens; calls without one act as administrator user "
          "1. Local "
          "debugging only (env CRM_INSECURE_DEV_AUTH)");
ABSL_FLAG(
    std::string, admin_users, EnvString("CRM_ADMIN_USERS", "1"),
    "Comma-separated user ids that are administrators (env CRM_ADMIN_USERS)");
ABSL_FLAG(std::string, deals_addr, EnvString("CRM_DEALS_ADDR", ""),
          "host:port of the deals service, asked how many deals a pipeline or "
          "stage holds before deleting it (env CRM_DEALS_ADDR); empty = no "
          "deals service: everything counts as empty");
ABSL_FLAG(bool, seed_demo, EnvBool("CRM_SEED_DEMO", false),
          "Seed demo data into a fresh store (env CRM_SEED_DEMO)");
ABSL_FLAG(
    int, shutdown_grace_seconds,
    static_cast<int>(EnvInt("CRM_SHUTDOWN_GRACE_SECONDS", 10)),
    "Seconds running calls get on shutdown (env CRM_SHUTDOWN_GRACE_SECONDS)");
ABSL_FLAG(std::string, log_level, EnvString("CRM_LOG_LEVEL", "info"),
          "debug, info, warn or error (env CRM_LOG_LEVEL)");

namespace {

int Fail(const absl::Status& status, const char* what) {
  CRM_LOG(kError, what, {{"error", status.ToString()}});
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  crm::common::BlockShutdownSignals();
  absl::ParseCommandLine(argc, argv);
  if (absl::Status logging = crm::common::SetUpLogging(
          "pipeline-config", absl::GetFlag(FLAGS_log_level));
      !logging.ok()) {
    return Fail(logging, "bad flag");
  }
  auto admins = crm::common::ParseAdminUsers(absl::GetFlag(FLAGS_admin_users));
  if (!admins.ok()) return Fail(admins.status(), "bad flag");
  const bool insecure = absl::GetFlag(FLAGS_insecure_dev_auth);
  const std::string secret =
      crm::common::ResolveJwtSecret(absl::GetFlag(FLAGS_jwt_secret), insecure);

  const std::string data_dir = absl::GetFlag(FLAGS_data_dir);
  crm::common::RocksOptions rocks_options;
  rocks_options.sync_writes = absl::GetFlag(FLAGS_sync_writes);
  auto store = crm::pipeline_config::ConfigStore::Open(data_dir, rocks_options);
  if (!store.ok()) return Fail(store.status(), "cannot open store");

  // Without a deals service every pipeline and stage counts as empty.
  std::unique_ptr<crm::pipeline_config::DealCounter> deal_counter;
  const std::string deals_addr = absl::GetFlag(FLAGS_deals_addr);
  if (deals_addr.empty()) {
    deal_counter = std::make_unique<crm::pipeline_config::NoDealsCounter>();
  } else {
    deal_counter = std::make_unique<crm::pipeline_config::GrpcDealCounter>(
        crm::deals::v1::DealsService::NewStub(grpc::CreateChannel(
            deals_addr, grpc::InsecureChannelCredentials())),
        secret);
  }
  crm::pipeline_config::VersionNotifier notifier;
  auto manager = crm::pipeline_config::ConfigManager::Create(
      **store, *deal_counter, notifier);
  if (!manager.ok()) return Fail(manager.status(), "cannot load configuration");
  if (absl::GetFlag(FLAGS_seed_demo)) {
    auto seeded = crm::pipeline_config::SeedDemoData(**manager);
    if (!seeded.ok()) return Fail(seeded.status(), "cannot seed demo data");
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
  crm::common::ServerOptions options;
  options.service_name = "pipeline-config";
  options.host = absl::GetFlag(FLAGS_listen_host);
  options.grpc_port = absl::GetFlag(FLAGS_port);
  options.http_port = absl::GetFlag(FLAGS_http_port);
  options.port_file = absl::GetFlag(FLAGS_port_file);
  options.shutdown_grace =
      absl::Seconds(absl::GetFlag(FLAGS_shutdown_grace_seconds));
  crm::common::ServerRunner runner(options, metrics);
  runner.AddService(&pipelines_service);
  runner.AddService(&fields_service);
  runner.AddService(&access_service);
  if (absl::Status started = runner.Start(); !started.ok()) {
    return Fail(started, "cannot start server");
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
