// crm-deals: deals, their stages, lists, kanban boards, group actions and
// the deal event outbox (crm.deals.v1). Flags fall back to CRM_* environment
// variables.
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"

#include "common/auth/auth.h"
#include "common/concurrency/worker_pool.h"
#include "common/config/env.h"
#include "common/config/service_flags.h"
#include "common/grpc/channel.h"
#include "common/grpc/message_limits.h"
#include "common/grpc/server_runner.h"
#include "common/log/log.h"
#include "common/metrics/metrics.h"
#include "common/pagination/page_token.h"
#include "common/pipelines_client/grpc_pipeline_client.h"
#include "services/deals/api/deals_service_impl.h"
#include "services/deals/demo_data.h"
#include "services/deals/events/grpc_event_publisher.h"
#include "services/deals/events/outbox_relay.h"

using crm::common::EnvBool;
using crm::common::EnvInt;
using crm::common::EnvString;

ABSL_FLAG(int, port, static_cast<int>(EnvInt("CRM_DEALS_PORT", 50051)),
          "gRPC port, 0 = any free port (env CRM_DEALS_PORT)");
ABSL_FLAG(int, http_port, static_cast<int>(EnvInt("CRM_DEALS_HTTP_PORT", 9101)),
          "HTTP port for /metrics and /healthz, 0 = any, -1 = off "
          "(env CRM_DEALS_HTTP_PORT)");
ABSL_FLAG(
    std::string, data_dir,
    EnvString("CRM_DEALS_DATA_DIR",
              EnvString("CRM_DATA_DIR", "./var") + "/deals"),
    "RocksDB directory (env CRM_DEALS_DATA_DIR, else $CRM_DATA_DIR/deals)");
ABSL_FLAG(int, shard, static_cast<int>(EnvInt("CRM_DEALS_SHARD", 0)),
          "Shard number 0..1023, the low 10 bits of every deal id this "
          "process creates (env CRM_DEALS_SHARD)");
ABSL_FLAG(std::string, pipeline_config_addr,
          EnvString("CRM_PIPELINE_CONFIG_ADDR", "127.0.0.1:50052"),
          "host:port of pipeline-config (env CRM_PIPELINE_CONFIG_ADDR)");
ABSL_FLAG(int, pipeline_config_start_timeout_seconds,
          static_cast<int>(EnvInt("CRM_PIPELINE_CONFIG_START_TIMEOUT_SECONDS",
                                  10)),
          "How long to wait for pipeline-config at start before exiting "
          "non-zero (env CRM_PIPELINE_CONFIG_START_TIMEOUT_SECONDS)");
ABSL_FLAG(std::string, subscribers, EnvString("CRM_DEALS_SUBSCRIBERS", ""),
          "Event subscribers as name=host:port, comma-separated; each gets "
          "its own relay and durable cursor (env CRM_DEALS_SUBSCRIBERS)");
ABSL_FLAG(int, relay_max_backoff_ms,
          static_cast<int>(EnvInt("CRM_DEALS_RELAY_MAX_BACKOFF_MS", 5000)),
          "Longest wait between delivery attempts to a failing subscriber "
          "(env CRM_DEALS_RELAY_MAX_BACKOFF_MS)");
ABSL_FLAG(int, event_retention_days,
          static_cast<int>(EnvInt("CRM_DEALS_EVENT_RETENTION_DAYS", 30)),
          "Days events stay in the outbox for replay "
          "(env CRM_DEALS_EVENT_RETENTION_DAYS)");
ABSL_FLAG(int, workers, static_cast<int>(EnvInt("CRM_DEALS_WORKERS", 8)),
          "Worker threads for calls that may block (env CRM_DEALS_WORKERS)");
ABSL_FLAG(int, durable_write_workers,
          static_cast<int>(EnvInt("CRM_DEALS_DURABLE_WRITE_WORKERS", 128)),
          "With --sync_writes: threads for writes waiting for their fsync; "
          "concurrent ones share it (env CRM_DEALS_DURABLE_WRITE_WORKERS)");
ABSL_FLAG(
    std::string, time_zone, EnvString("CRM_TIME_ZONE", "UTC"),
    "IANA zone of calendar days (begin, close dates) (env CRM_TIME_ZONE)");

namespace {

struct Subscriber {
  std::string name;
  std::string address;
};

absl::StatusOr<std::vector<Subscriber>> ParseSubscribers(
    const std::string& text) {
  std::vector<Subscriber> subscribers;
  std::set<std::string> names;
  for (absl::string_view part :
       absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    std::vector<std::string> pieces = absl::StrSplit(part, '=');
    if (pieces.size() != 2 || pieces[0].empty() || pieces[1].empty()) {
      return absl::InvalidArgumentError(
          "--subscribers: entries look like name=host:port");
    }
    if (!names.insert(pieces[0]).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("--subscribers: ", pieces[0], " is listed twice"));
    }
    subscribers.push_back({pieces[0], pieces[1]});
  }
  return subscribers;
}

// gRPC's own reconnect backoff (1 s growing to 120 s by default) would keep
// calls failing fast long after a subscriber is back; cap it at the relay's
// backoff so delivery resumes within one relay retry.
std::shared_ptr<grpc::Channel> SubscriberChannel(
    const std::string& address, const crm::deals::RelayOptions& relay) {
  crm::common::PeerChannelOptions options;
  options.initial_reconnect_backoff = relay.min_backoff;
  options.min_connect_timeout = relay.min_backoff;
  options.max_reconnect_backoff = relay.max_backoff;
  return crm::common::CreatePeerChannel(address, options);
}

}  // namespace

int main(int argc, char** argv) {
  crm::common::BlockShutdownSignals();
  absl::StatusOr<crm::common::CommonSettings> common =
      crm::common::SetUpService(
          argc, argv, "deals",
          "deals, their stages, lists, kanban boards, group "
          "actions and the deal event outbox (crm.deals.v1).");
  if (!common.ok())
    return crm::common::FailStartup(common.status(), "bad flag");
  const std::set<int64_t>* admins = &common->admin_users;
  auto subscribers = ParseSubscribers(absl::GetFlag(FLAGS_subscribers));
  if (!subscribers.ok())
    return crm::common::FailStartup(subscribers.status(), "bad flag");
  absl::TimeZone zone;
  if (!absl::LoadTimeZone(absl::GetFlag(FLAGS_time_zone), &zone)) {
    return crm::common::FailStartup(
        absl::InvalidArgumentError("--time_zone: unknown zone"), "bad flag");
  }
  if (absl::GetFlag(FLAGS_event_retention_days) < 1) {
    return crm::common::FailStartup(
        absl::InvalidArgumentError("--event_retention_days: at least 1"),
        "bad flag");
  }
  const bool insecure = common->insecure_dev_auth;
  const std::string& secret = common->jwt_secret;

  const std::string data_dir = absl::GetFlag(FLAGS_data_dir);
  crm::common::RocksOptions rocks_options;
  rocks_options.sync_writes = absl::GetFlag(FLAGS_sync_writes);
  // Deals are read by id far more than they are written; hot ones skip the
  // block search.
  rocks_options.row_cache_bytes = 16u << 20;
  auto store = crm::deals::DealStore::Open(data_dir, rocks_options,
                                           absl::GetFlag(FLAGS_shard));
  if (!store.ok())
    return crm::common::FailStartup(store.status(), "cannot open store");

  auto connected = crm::common::GrpcPipelineClient::Connect(
      absl::GetFlag(FLAGS_pipeline_config_addr), "deals", secret,
      absl::Seconds(std::max(
          1, absl::GetFlag(FLAGS_pipeline_config_start_timeout_seconds))));
  if (!connected.ok()) {
    return crm::common::FailStartup(connected.status(),
                                    "cannot load the pipeline configuration");
  }
  std::unique_ptr<crm::common::GrpcPipelineClient> pipelines =
      *std::move(connected);

  crm::common::MetricsRegistry metrics;
  // Relays, one per subscriber.
  std::vector<std::unique_ptr<crm::deals::GrpcEventPublisher>> publishers;
  std::vector<std::unique_ptr<crm::deals::OutboxRelay>> relays;
  crm::deals::RelayOptions relay_options;
  relay_options.max_backoff =
      absl::Milliseconds(absl::GetFlag(FLAGS_relay_max_backoff_ms));
  relay_options.metrics = &metrics;
  if (relay_options.min_backoff > relay_options.max_backoff)
    relay_options.min_backoff = relay_options.max_backoff;
  for (const auto& subscriber : *subscribers) {
    publishers.push_back(std::make_unique<crm::deals::GrpcEventPublisher>(
        SubscriberChannel(subscriber.address, relay_options), subscriber.name,
        secret));
    relays.push_back(std::make_unique<crm::deals::OutboxRelay>(
        **store, subscriber.name, *publishers.back(), relay_options));
  }

  crm::common::Authenticator authenticator(secret, insecure);
  crm::common::PageTokenCodec page_tokens(secret);
  crm::common::WorkerPoolOptions pool_options;
  pool_options.threads = std::max(1, absl::GetFlag(FLAGS_workers));
  crm::common::WorkerPool workers(pool_options);
  std::unique_ptr<crm::common::WorkerPool> durable_writers;
  if (absl::GetFlag(FLAGS_sync_writes)) {
    crm::common::WorkerPoolOptions durable_options;
    durable_options.threads =
        std::max(1, absl::GetFlag(FLAGS_durable_write_workers));
    durable_writers =
        std::make_unique<crm::common::WorkerPool>(durable_options);
  }
  crm::deals::DealOperationsOptions operations;
  operations.zone = zone;
  operations.on_event = [&relays] {
    for (auto& relay : relays) relay->Notify();
  };
  crm::deals::DealsServiceImpl deals_service(crm::deals::DealsServiceDeps{
      **store, *pipelines, authenticator, page_tokens, workers, *admins,
      operations, durable_writers.get()});

  if (absl::GetFlag(FLAGS_seed_demo)) {
    auto seeded =
        crm::deals::SeedDemoDeals(**store, *pipelines->GetConfig(), operations);
    if (!seeded.ok())
      return crm::common::FailStartup(seeded.status(),
                                      "cannot seed demo deals");
    if (*seeded > 0)
      CRM_LOG(kInfo, "seeded demo deals", {{"count", absl::StrCat(*seeded)}});
  }
  for (auto& relay : relays) relay->Start();

  // Event retention: prune hourly, never past what a subscriber still lacks.
  absl::Notification stop_pruning;
  const absl::Duration retention =
      absl::Hours(24) * absl::GetFlag(FLAGS_event_retention_days);
  std::thread pruner([&] {
    do {
      std::vector<std::string> names;
      for (const auto& subscriber : *subscribers)
        names.push_back(subscriber.name);
      auto pruned = crm::deals::PruneDeliveredEvents(**store, names,
                                                     absl::Now() - retention);
      if (!pruned.ok()) {
        CRM_LOG(kWarning, "outbox pruning failed",
                {{"error", pruned.status().ToString()}});
      } else if (*pruned > 0) {
        CRM_LOG(kInfo, "pruned expired events",
                {{"count", absl::StrCat(*pruned)}});
      }
    } while (!stop_pruning.WaitForNotificationWithTimeout(absl::Hours(1)));
  });

  crm::common::ServerOptions options = crm::common::ServerOptionsFromFlags(
      "deals", absl::GetFlag(FLAGS_port), absl::GetFlag(FLAGS_http_port));
  crm::common::ServerRunner runner(options, metrics);
  runner.AddService(&deals_service,
                    crm::deals::v1::DealsService::service_full_name());
  absl::Status started = runner.Start();
  if (started.ok()) {
    CRM_LOG(
        kInfo, "started",
        {{"data_dir", data_dir},
         {"shard", absl::StrCat((*store)->shard())},
         {"subscribers", absl::StrCat(subscribers->size())},
         {"config_version", absl::StrCat(pipelines->GetConfig()->version())},
         {"sync_writes", rocks_options.sync_writes ? "true" : "false"}});
    const std::string signal = crm::common::WaitForShutdownSignal();
    CRM_LOG(kInfo, "shutting down", {{"signal", signal}});
    runner.Shutdown();
  }
  stop_pruning.Notify();
  pruner.join();
  workers.Shutdown();
  if (durable_writers != nullptr) durable_writers->Shutdown();
  for (auto& relay : relays) relay->Stop();
  pipelines->Stop();
  if (!started.ok())
    return crm::common::FailStartup(started, "cannot start server");
  return 0;
}
