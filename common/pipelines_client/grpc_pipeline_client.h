// PipelineClient over gRPC: a local cache of pipeline-config's configuration
// kept fresh by a WatchConfig stream, and a per-user cache of effective
// permissions. Handler threads read the cache and never wait on the network
// for configuration.
//
//   GrpcPipelineClientOptions options;
//   options.jwt_secret = secret;
//   auto client = GrpcPipelineClient::Create(
//       CreatePipelineConfigChannel(address), options);
//   CRM_RETURN_IF_ERROR(client->Start());   // first snapshot, then watching
//   ...
//   client->Stop();                          // before the channel goes away
//
// Freshness. A background thread keeps one WatchConfig stream open. On every
// version the stream reports that differs from the snapshot's, it reloads
// the whole snapshot (GetConfigVersion, then ListPipelines with stages and
// ListFields, each paged) and drops the permission cache. When the stream
// breaks (pipeline-config ends streams with UNAVAILABLE on shutdown) it is
// reopened with a backoff of min_reconnect_delay doubling up to
// max_reconnect_delay; while it is down, GetConfigVersion is polled every
// poll_interval and a changed version reloads the snapshot. A reopened
// stream asks for known_version = snapshot version - 1, so pipeline-config
// answers at once with its current version: that confirms the stream and
// catches up anything missed while it was down. A failed reload closes the
// stream, so the same path retries it.
//
// Start() chooses to fail rather than serve without configuration: it waits
// up to start_timeout for pipeline-config to become reachable (gRPC
// wait-for-ready, no busy loop) and returns UNAVAILABLE if it does not, so
// main() exits non-zero and the orchestrator restarts deals. Other errors
// (UNAUTHENTICATED for a wrong secret, ...) are returned at once.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"

#include "crm/pipelines/v1/access.pb.h"
#include "crm/pipelines/v1/pipelines_service.grpc.pb.h"

#include "common/auth/service_token.h"
#include "common/pipelines_client/config_view.h"
#include "common/pipelines_client/pipeline_client.h"

namespace crm::common {

struct GrpcPipelineClientOptions {
  // Required: the HS256 secret shared with pipeline-config (CRM_JWT_SECRET).
  std::string jwt_secret;
  // Required: who calls, the "svc" claim of the service token ("deals",
  // "automation", ...). No default, so that no service calls as another.
  std::string service_name;
  // Lifetime of a service token; it is re-signed after half of it.
  absl::Duration token_ttl = absl::Hours(1);
  // Deadline of every unary call.
  absl::Duration call_timeout = absl::Seconds(2);
  // How long Start() waits for pipeline-config to become reachable.
  absl::Duration start_timeout = absl::Seconds(10);
  // GetConfigVersion polling period while the watch stream is down.
  absl::Duration poll_interval = absl::Seconds(1);
  // Delay before reopening a broken watch stream: starts at the minimum,
  // doubles after each stream that failed before its first message, and
  // returns to the minimum once a stream delivers one.
  absl::Duration min_reconnect_delay = absl::Milliseconds(50);
  absl::Duration max_reconnect_delay = absl::Seconds(1);
  // Deadline of one watch stream; it is reopened at once when it expires
  // (a call without a deadline is a bug, even a stream).
  absl::Duration watch_stream_lifetime = absl::Minutes(10);
  // Page size of ListPipelines and ListFields (1..500).
  int32_t page_size = 500;
  // Users whose permissions are kept (least recently used are dropped).
  size_t max_cached_users = 10000;
  // Time source for signing tokens; absl::Now when empty.
  ServiceTokenSource::Clock clock;
};

class GrpcPipelineClient final : public PipelineClient {
 public:
  using PipelinesStub = crm::pipelines::v1::PipelinesService::StubInterface;
  using FieldsStub = crm::pipelines::v1::DealFieldsService::StubInterface;
  using AccessStub = crm::pipelines::v1::AccessService::StubInterface;

  // Counters for tests and metrics. Each is monotonic.
  struct Stats {
    int64_t snapshot_loads = 0;      // snapshots published
    int64_t reload_failures = 0;     // reloads that failed
    int64_t watch_streams = 0;       // streams that delivered a first message
    int64_t version_polls = 0;       // GetConfigVersion calls while down
    int64_t permission_fetches = 0;  // GetEffectivePermissions calls made
    int64_t permission_cache_hits = 0;
  };

  // Stubs over `channel` (see pipeline_channel.h).
  static std::unique_ptr<GrpcPipelineClient> Create(
      const std::shared_ptr<grpc::ChannelInterface>& channel,
      GrpcPipelineClientOptions options);

  // What a service does at start: a client of pipeline-config at `address`
  // (CreatePipelineConfigChannel), started (Start()'s errors).
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<GrpcPipelineClient>>
  Connect(const std::string& address, const std::string& service_name,
          const std::string& jwt_secret, absl::Duration start_timeout);

  // Takes the stubs so tests can pass generated Mock*Stub objects.
  // REQUIRES: all three non-null, options.jwt_secret and
  // options.service_name non-empty.
  GrpcPipelineClient(std::unique_ptr<PipelinesStub> pipelines,
                     std::unique_ptr<FieldsStub> fields,
                     std::unique_ptr<AccessStub> access,
                     GrpcPipelineClientOptions options);
  // Calls Stop().
  ~GrpcPipelineClient() override;

  GrpcPipelineClient(const GrpcPipelineClient&) = delete;
  GrpcPipelineClient& operator=(const GrpcPipelineClient&) = delete;
  GrpcPipelineClient(GrpcPipelineClient&&) = delete;
  GrpcPipelineClient& operator=(GrpcPipelineClient&&) = delete;

  // Loads the first snapshot and starts the watch thread. UNAVAILABLE when
  // pipeline-config is not reachable within start_timeout; any other error
  // of the first calls as received (code kept, "pipeline-config: " prefix);
  // FAILED_PRECONDITION when called twice or after Stop(). The client is
  // usable (GetConfig, GetPermissions) even when Start failed or was not
  // called, only without a snapshot and its freshness.
  // REQUIRES: not concurrently with Stop().
  [[nodiscard]] absl::Status Start();

  // Ends the watch thread: cancels the open stream and any call it is
  // making, then joins it. Returns within moments, not a call deadline.
  // Idempotent. GetConfig keeps returning the last snapshot afterwards.
  // REQUIRES: not concurrently with Start() or another Stop().
  void Stop();

  // PipelineClient. Thread-safe.
  std::shared_ptr<const ConfigView> GetConfig() const override;
  absl::StatusOr<
      std::shared_ptr<const crm::pipelines::v1::EffectivePermissions>>
  GetPermissions(int64_t user_id) override;
  std::shared_ptr<const crm::pipelines::v1::EffectivePermissions>
  CachedPermissions(int64_t user_id) override;

  // True while a watch stream is open and has delivered its first message.
  bool watching() const { return watching_.load(); }
  Stats stats() const;

 private:
  struct CacheEntry {
    std::shared_ptr<const crm::pipelines::v1::EffectivePermissions> permissions;
    std::list<int64_t>::iterator lru_position;
  };

  // Deadline plus the service token.
  void PrepareContext(grpc::ClientContext* context, absl::Duration timeout);
  // A unary call of the watch thread (or Start), cancellable by Stop().
  template <typename Stub, typename Request, typename Response>
  [[nodiscard]] absl::Status BackgroundCall(
      Stub& stub,
      grpc::Status (Stub::*method)(grpc::ClientContext*, const Request&,
                                   Response*),
      const Request& request, Response* response);
  // Registers the context so Stop() can cancel it; false when stopping.
  bool RegisterCall(grpc::ClientContext* context, grpc::ClientContext** slot);
  void UnregisterCall(grpc::ClientContext** slot);

  // Reads the whole configuration and publishes it as the snapshot.
  [[nodiscard]] absl::Status Reload();
  void ReloadOrLog(const char* reason);
  int64_t SnapshotVersion() const;

  void WatchLoop();
  // One WatchConfig stream, until it ends. True if it delivered a message.
  bool WatchOnce();
  // Waits `delay` (or until Stop), polling the version every poll_interval.
  void WaitWhileDown(absl::Duration delay);
  void PollVersion();
  // Waits up to `timeout` for Stop(); true when stopping.
  bool WaitForStop(absl::Duration timeout);
  bool stopping() const;

  void ClearPermissionCache();

  const std::unique_ptr<PipelinesStub> pipelines_;
  const std::unique_ptr<FieldsStub> fields_;
  const std::unique_ptr<AccessStub> access_;
  const GrpcPipelineClientOptions options_;
  ServiceTokenSource tokens_;

  mutable absl::Mutex snapshot_mu_;
  std::shared_ptr<const ConfigView> snapshot_ ABSL_GUARDED_BY(snapshot_mu_);

  absl::Mutex cache_mu_;
  absl::flat_hash_map<int64_t, CacheEntry> cache_ ABSL_GUARDED_BY(cache_mu_);
  // Most recently used first.
  std::list<int64_t> lru_ ABSL_GUARDED_BY(cache_mu_);

  mutable absl::Mutex mu_;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  grpc::ClientContext* watch_context_ ABSL_GUARDED_BY(mu_) = nullptr;
  grpc::ClientContext* call_context_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::thread thread_;

  // Used by the watch thread only.
  absl::Time next_poll_ = absl::InfinitePast();

  std::atomic<bool> watching_{false};
  std::atomic<int64_t> snapshot_loads_{0};
  std::atomic<int64_t> reload_failures_{0};
  std::atomic<int64_t> watch_streams_{0};
  std::atomic<int64_t> version_polls_{0};
  std::atomic<int64_t> permission_fetches_{0};
  std::atomic<int64_t> permission_cache_hits_{0};
};

}  // namespace crm::common
