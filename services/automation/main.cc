// crm-automation: rules (robots), triggers, scheduled runs, tasks, the run
// log and notifications (crm.automation.v1). Receives deal events as a
// crm.deals.v1.DealEventSink and changes deals through crm.deals.v1. Flags
// fall back to CRM_* environment variables.
#include <algorithm>
#include <memory>
#include <set>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"

#include "common/auth/auth.h"
#include "common/auth/service_token.h"
#include "common/config/env.h"
#include "common/config/service_flags.h"
#include "common/grpc/channel.h"
#include "common/grpc/message_limits.h"
#include "common/grpc/server_runner.h"
#include "common/log/log.h"
#include "common/metrics/metrics.h"
#include "common/pagination/page_token.h"
#include "common/pipelines_client/grpc_pipeline_client.h"
#include "services/automation/api/automation_service_impl.h"
#include "services/automation/demo_rules.h"
#include "services/automation/engine/engine.h"
#include "services/automation/storage/automation_store.h"

using crm::common::EnvBool;
using crm::common::EnvInt;
using crm::common::EnvString;

ABSL_FLAG(int, port, static_cast<int>(EnvInt("CRM_AUTOMATION_PORT", 50053)),
          "gRPC port, 0 = any free port (env CRM_AUTOMATION_PORT)");
ABSL_FLAG(int, http_port,
          static_cast<int>(EnvInt("CRM_AUTOMATION_HTTP_PORT", 9103)),
          "HTTP port for /metrics, /healthz and POST /hooks/<token>, 0 = any, "
          "-1 = off (env CRM_AUTOMATION_HTTP_PORT)");
ABSL_FLAG(std::string, data_dir,
          EnvString("CRM_AUTOMATION_DATA_DIR",
                    EnvString("CRM_DATA_DIR", "./var") + "/automation"),
          "RocksDB directory (env CRM_AUTOMATION_DATA_DIR, else "
          "$CRM_DATA_DIR/automation)");
ABSL_FLAG(std::string, pipeline_config_addr,
          EnvString("CRM_PIPELINE_CONFIG_ADDR", "127.0.0.1:50052"),
          "host:port of pipeline-config (env CRM_PIPELINE_CONFIG_ADDR)");
ABSL_FLAG(int, pipeline_config_start_timeout_seconds,
          static_cast<int>(EnvInt("CRM_PIPELINE_CONFIG_START_TIMEOUT_SECONDS",
                                  10)),
          "How long to wait for pipeline-config at start before exiting "
          "non-zero (env CRM_PIPELINE_CONFIG_START_TIMEOUT_SECONDS)");
ABSL_FLAG(std::string, deals_addr,
          EnvString("CRM_DEALS_ADDR", "127.0.0.1:50051"),
          "host:port of the deals service (env CRM_DEALS_ADDR)");
ABSL_FLAG(std::string, smtp_host, EnvString("CRM_SMTP_HOST", "127.0.0.1"),
          "SMTP server for SendEmail (env CRM_SMTP_HOST)");
ABSL_FLAG(int, smtp_port, static_cast<int>(EnvInt("CRM_SMTP_PORT", 2525)),
          "SMTP port (env CRM_SMTP_PORT)");
ABSL_FLAG(std::string, mail_from, EnvString("CRM_MAIL_FROM", "crm@localhost"),
          "Sender address of automation emails (env CRM_MAIL_FROM)");
ABSL_FLAG(std::string, sms_gateway_url, EnvString("CRM_SMS_GATEWAY_URL", ""),
          "HTTP endpoint SendSms posts to (form fields to, text, message_id); "
          "empty = SMS runs fail with a clear reason (env "
          "CRM_SMS_GATEWAY_URL)");
ABSL_FLAG(bool, allow_private_webhooks,
          EnvBool("CRM_AUTOMATION_ALLOW_PRIVATE_WEBHOOKS", false),
          "Let webhook rules call loopback, private and link-local addresses "
          "(local development and tests; env "
          "CRM_AUTOMATION_ALLOW_PRIVATE_WEBHOOKS)");
ABSL_FLAG(std::string, time_zone, EnvString("CRM_TIME_ZONE", "UTC"),
          "IANA zone of calendar dates in rule timings (env CRM_TIME_ZONE)");
ABSL_FLAG(int, max_attempts,
          static_cast<int>(EnvInt("CRM_AUTOMATION_MAX_ATTEMPTS", 5)),
          "Attempts of an outside call (email, SMS, webhook) before the run "
          "parks as failed (env CRM_AUTOMATION_MAX_ATTEMPTS)");
ABSL_FLAG(int, retry_base_ms,
          static_cast<int>(EnvInt("CRM_AUTOMATION_RETRY_BASE_MS", 1000)),
          "First retry delay; doubles per attempt, +-20% jitter "
          "(env CRM_AUTOMATION_RETRY_BASE_MS)");
ABSL_FLAG(int, retry_max_ms,
          static_cast<int>(EnvInt("CRM_AUTOMATION_RETRY_MAX_MS", 300000)),
          "Longest retry delay (env CRM_AUTOMATION_RETRY_MAX_MS)");
ABSL_FLAG(int, loop_max_depth,
          static_cast<int>(EnvInt("CRM_AUTOMATION_LOOP_MAX_DEPTH", 10)),
          "Automated moves of one deal in a row after which the entered "
          "stage's rules stop (env CRM_AUTOMATION_LOOP_MAX_DEPTH)");
ABSL_FLAG(int, loop_window_seconds,
          static_cast<int>(EnvInt("CRM_AUTOMATION_LOOP_WINDOW_SECONDS", 60)),
          "Window of such a chain (env CRM_AUTOMATION_LOOP_WINDOW_SECONDS)");
ABSL_FLAG(int, workers, static_cast<int>(EnvInt("CRM_AUTOMATION_WORKERS", 8)),
          "Threads running rules (env CRM_AUTOMATION_WORKERS)");
ABSL_FLAG(int, rpc_workers,
          static_cast<int>(EnvInt("CRM_AUTOMATION_RPC_WORKERS", 8)),
          "Threads serving gRPC calls, which read and write the store and "
          "call deals (env CRM_AUTOMATION_RPC_WORKERS)");
ABSL_FLAG(bool, test_clock, EnvBool("CRM_AUTOMATION_TEST_CLOCK", false),
          "Let POST /test/clock?advance_seconds=N move the service clock "
          "forward (tests only; env CRM_AUTOMATION_TEST_CLOCK)");
ABSL_FLAG(std::string, demo_email,
          EnvString("CRM_AUTOMATION_DEMO_EMAIL", "sales@example.com"),
          "Recipient of the demo rule's email with --seed_demo "
          "(env CRM_AUTOMATION_DEMO_EMAIL)");

namespace {

// gRPC's default reconnect backoff (up to 120 s) would keep runs failing
// long after deals is back; runs retry every few seconds themselves.
std::shared_ptr<grpc::Channel> DealsChannel(const std::string& address) {
  crm::common::PeerChannelOptions options;
  options.initial_reconnect_backoff = absl::Milliseconds(100);
  options.min_connect_timeout = absl::Milliseconds(100);
  options.max_reconnect_backoff = absl::Seconds(1);
  return crm::common::CreatePeerChannel(address, options);
}

}  // namespace

int main(int argc, char** argv) {
  crm::common::BlockShutdownSignals();
  absl::StatusOr<crm::common::CommonSettings> common =
      crm::common::SetUpService(
          argc, argv, "automation",
          "rules, triggers, scheduled runs, tasks, the run "
          "log and notifications (crm.automation.v1); receives deal events "
          "as a crm.deals.v1.DealEventSink.");
  if (!common.ok())
    return crm::common::FailStartup(common.status(), "bad flag");
  const std::set<int64_t>* admins = &common->admin_users;
  crm::automation::EngineOptions engine_options;
  if (!absl::LoadTimeZone(absl::GetFlag(FLAGS_time_zone),
                          &engine_options.zone)) {
    return crm::common::FailStartup(
        absl::InvalidArgumentError("--time_zone: unknown zone"), "bad flag");
  }
  if (absl::GetFlag(FLAGS_max_attempts) < 1 ||
      absl::GetFlag(FLAGS_retry_base_ms) < 1 ||
      absl::GetFlag(FLAGS_retry_max_ms) < absl::GetFlag(FLAGS_retry_base_ms) ||
      absl::GetFlag(FLAGS_loop_max_depth) < 1 ||
      absl::GetFlag(FLAGS_loop_window_seconds) < 1) {
    return crm::common::FailStartup(
        absl::InvalidArgumentError(
            "--max_attempts, --retry_base_ms, --loop_max_depth and "
            "--loop_window_seconds must be positive, --retry_max_ms at least "
            "--retry_base_ms"),
        "bad flag");
  }
  engine_options.smtp.host = absl::GetFlag(FLAGS_smtp_host);
  engine_options.smtp.port = absl::GetFlag(FLAGS_smtp_port);
  engine_options.mail_from = absl::GetFlag(FLAGS_mail_from);
  engine_options.sms_gateway_url = absl::GetFlag(FLAGS_sms_gateway_url);
  engine_options.allow_private_webhooks =
      absl::GetFlag(FLAGS_allow_private_webhooks);
  engine_options.max_attempts = absl::GetFlag(FLAGS_max_attempts);
  engine_options.retry_base =
      absl::Milliseconds(absl::GetFlag(FLAGS_retry_base_ms));
  engine_options.retry_max =
      absl::Milliseconds(absl::GetFlag(FLAGS_retry_max_ms));
  engine_options.loop_max_depth = absl::GetFlag(FLAGS_loop_max_depth);
  engine_options.loop_window =
      absl::Seconds(absl::GetFlag(FLAGS_loop_window_seconds));
  engine_options.workers = std::max(1, absl::GetFlag(FLAGS_workers));

  const bool insecure = common->insecure_dev_auth;
  const std::string& secret = common->jwt_secret;

  const std::string data_dir = absl::GetFlag(FLAGS_data_dir);
  crm::common::RocksOptions rocks_options;
  rocks_options.sync_writes = absl::GetFlag(FLAGS_sync_writes);
  auto store = crm::automation::AutomationStore::Open(data_dir, rocks_options);
  if (!store.ok())
    return crm::common::FailStartup(store.status(), "cannot open store");

  auto connected = crm::common::GrpcPipelineClient::Connect(
      absl::GetFlag(FLAGS_pipeline_config_addr), "automation", secret,
      absl::Seconds(std::max(
          1, absl::GetFlag(FLAGS_pipeline_config_start_timeout_seconds))));
  if (!connected.ok()) {
    return crm::common::FailStartup(connected.status(),
                                    "cannot load the pipeline configuration");
  }
  std::unique_ptr<crm::common::GrpcPipelineClient> pipelines =
      *std::move(connected);

  auto deals_stub = crm::deals::v1::DealsService::NewStub(
      DealsChannel(absl::GetFlag(FLAGS_deals_addr)));
  crm::common::ServiceTokenSource tokens(secret, "automation");
  crm::automation::GrpcDealsClient deals(*deals_stub, tokens);
  crm::common::MetricsRegistry metrics;
  engine_options.metrics = &metrics;
  crm::automation::Clock clock(absl::GetFlag(FLAGS_test_clock));
  crm::automation::AutomationEngine engine(**store, *pipelines, deals, clock,
                                           engine_options);
  if (absl::Status started = engine.Start(); !started.ok())
    return crm::common::FailStartup(started, "cannot start the engine");
  if (absl::GetFlag(FLAGS_seed_demo)) {
    auto seeded = crm::automation::SeedDemoAutomation(
        engine, absl::GetFlag(FLAGS_demo_email));
    if (!seeded.ok())
      return crm::common::FailStartup(seeded.status(),
                                      "cannot seed demo automation");
    if (*seeded > 0) {
      CRM_LOG(kInfo, "seeded demo rules and triggers",
              {{"count", absl::StrCat(*seeded)}});
    }
  }

  crm::common::Authenticator authenticator(secret, insecure);
  crm::common::PageTokenCodec page_tokens(secret);
  crm::common::WorkerPoolOptions rpc_pool;
  rpc_pool.threads = std::max(1, absl::GetFlag(FLAGS_rpc_workers));
  crm::common::WorkerPool rpc_workers(rpc_pool);
  crm::automation::ServiceDeps service_deps{engine, *pipelines, authenticator,
                                            page_tokens, *admins};
  service_deps.workers = &rpc_workers;
  crm::automation::AutomationServiceImpl automation_service(
      std::move(service_deps));
  crm::automation::EventSinkImpl event_sink(engine, authenticator,
                                            &rpc_workers);

  crm::common::ServerOptions options = crm::common::ServerOptionsFromFlags(
      "automation", absl::GetFlag(FLAGS_port), absl::GetFlag(FLAGS_http_port));
  crm::common::ServerRunner runner(options, metrics);
  runner.AddService(
      &automation_service,
      crm::automation::v1::AutomationService::service_full_name());
  runner.AddService(&event_sink,
                    crm::deals::v1::DealEventSink::service_full_name());
  crm::automation::RegisterHttpHandlers(runner.http(), engine, clock);
  absl::Status started = runner.Start();
  if (started.ok()) {
    CRM_LOG(kInfo, "started",
            {{"data_dir", data_dir},
             {"deals_addr", absl::GetFlag(FLAGS_deals_addr)},
             {"smtp", absl::StrCat(engine_options.smtp.host, ":",
                                   engine_options.smtp.port)},
             {"test_clock", clock.adjustable() ? "true" : "false"},
             {"sync_writes", rocks_options.sync_writes ? "true" : "false"}});
    const std::string signal = crm::common::WaitForShutdownSignal();
    CRM_LOG(kInfo, "shutting down", {{"signal", signal}});
    runner.Shutdown();
  }
  rpc_workers.Shutdown();
  engine.Stop();
  pipelines->Stop();
  if (!started.ok())
    return crm::common::FailStartup(started, "cannot start server");
  return 0;
}
