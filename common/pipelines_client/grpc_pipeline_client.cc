#include "common/pipelines_client/grpc_pipeline_client.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "grpcpp/support/sync_stream.h"

#include "common/grpc/deadline.h"
#include "common/log/log.h"
#include "common/pipelines_client/pipeline_channel.h"
#include "common/status/grpc_status.h"
#include "common/status/status_macros.h"

namespace crm::common {

// Not "v1": crm::deals::v1 is the deals API.
namespace pipelines_v1 = ::crm::pipelines::v1;

namespace {

constexpr char kPeer[] = "pipeline-config";
// A server that keeps sending page tokens is broken; stop rather than spin.
constexpr int kMaxPages = 10000;

}  // namespace

std::unique_ptr<GrpcPipelineClient> GrpcPipelineClient::Create(
    const std::shared_ptr<grpc::ChannelInterface>& channel,
    GrpcPipelineClientOptions options) {
  return std::make_unique<GrpcPipelineClient>(
      pipelines_v1::PipelinesService::NewStub(channel),
      pipelines_v1::DealFieldsService::NewStub(channel),
      pipelines_v1::AccessService::NewStub(channel), std::move(options));
}

absl::StatusOr<std::unique_ptr<GrpcPipelineClient>> GrpcPipelineClient::Connect(
    const std::string& address, const std::string& service_name,
    const std::string& jwt_secret, absl::Duration start_timeout) {
  if (service_name.empty()) {
    return absl::InvalidArgumentError("service_name: name the calling service");
  }
  GrpcPipelineClientOptions options;
  options.service_name = service_name;
  options.jwt_secret = jwt_secret;
  options.start_timeout = start_timeout;
  std::unique_ptr<GrpcPipelineClient> client =
      Create(CreatePipelineConfigChannel(address), std::move(options));
  CRM_RETURN_IF_ERROR(client->Start());
  return client;
}

GrpcPipelineClient::GrpcPipelineClient(std::unique_ptr<PipelinesStub> pipelines,
                                       std::unique_ptr<FieldsStub> fields,
                                       std::unique_ptr<AccessStub> access,
                                       GrpcPipelineClientOptions options)
    : pipelines_(std::move(pipelines)),
      fields_(std::move(fields)),
      access_(std::move(access)),
      options_(std::move(options)),
      tokens_(options_.jwt_secret, options_.service_name, options_.token_ttl,
              options_.clock),
      snapshot_(std::make_shared<const ConfigView>()) {}

GrpcPipelineClient::~GrpcPipelineClient() { Stop(); }

// --- Lifecycle ---------------------------------------------------------------

absl::Status GrpcPipelineClient::Start() {
  {
    absl::MutexLock lock(&mu_);
    if (started_ || stopping_) {
      return absl::FailedPreconditionError(
          "pipeline client: Start() after Start() or Stop()");
    }
  }
  // Waits for the channel to connect (gRPC wait-for-ready) up to
  // start_timeout instead of failing on the first refused connection.
  {
    grpc::ClientContext context;
    PrepareContext(&context, options_.start_timeout);
    context.set_wait_for_ready(true);
    pipelines_v1::ConfigVersion version;
    const grpc::Status status = pipelines_->GetConfigVersion(
        &context, pipelines_v1::GetConfigVersionRequest(), &version);
    if (status.error_code() == grpc::StatusCode::UNAVAILABLE ||
        status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
      return absl::UnavailableError(
          absl::StrCat(kPeer, ": not reachable within ",
                       absl::FormatDuration(options_.start_timeout), ": ",
                       status.error_message()));
    }
    CRM_RETURN_IF_ERROR(common::FromPeerStatus(status, kPeer));
  }
  CRM_RETURN_IF_ERROR(Reload());
  absl::MutexLock lock(&mu_);
  started_ = true;
  thread_ = std::thread([this] { WatchLoop(); });
  return absl::OkStatus();
}

void GrpcPipelineClient::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    // ClientContext::TryCancel is safe from another thread while the call
    // runs; the watch thread unregisters a context before destroying it.
    if (watch_context_ != nullptr) watch_context_->TryCancel();
    if (call_context_ != nullptr) call_context_->TryCancel();
  }
  if (thread_.joinable()) thread_.join();
  watching_ = false;
}

bool GrpcPipelineClient::stopping() const {
  absl::MutexLock lock(&mu_);
  return stopping_;
}

bool GrpcPipelineClient::WaitForStop(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  return mu_.AwaitWithTimeout(absl::Condition(&stopping_), timeout);
}

// --- Calls -------------------------------------------------------------------

void GrpcPipelineClient::PrepareContext(grpc::ClientContext* context,
                                        absl::Duration timeout) {
  common::SetDeadlineFromNow(context, timeout);
  context->AddMetadata("authorization", tokens_.AuthorizationHeader());
}

bool GrpcPipelineClient::RegisterCall(grpc::ClientContext* context,
                                      grpc::ClientContext** slot) {
  absl::MutexLock lock(&mu_);
  if (stopping_) return false;
  *slot = context;
  return true;
}

void GrpcPipelineClient::UnregisterCall(grpc::ClientContext** slot) {
  absl::MutexLock lock(&mu_);
  *slot = nullptr;
}

template <typename Stub, typename Request, typename Response>
absl::Status GrpcPipelineClient::BackgroundCall(
    Stub& stub,
    grpc::Status (Stub::*method)(grpc::ClientContext*, const Request&,
                                 Response*),
    const Request& request, Response* response) {
  grpc::ClientContext context;
  PrepareContext(&context, options_.call_timeout);
  // Only the watch thread (or Start, before it exists) makes these calls, so
  // one slot is enough.
  if (!RegisterCall(&context, &call_context_)) {
    return absl::CancelledError(absl::StrCat(kPeer, ": client stopping"));
  }
  const grpc::Status status = (stub.*method)(&context, request, response);
  UnregisterCall(&call_context_);
  return common::FromPeerStatus(status, kPeer);
}

// --- Snapshot ----------------------------------------------------------------

std::shared_ptr<const ConfigView> GrpcPipelineClient::GetConfig() const {
  absl::ReaderMutexLock lock(&snapshot_mu_);
  return snapshot_;
}

int64_t GrpcPipelineClient::SnapshotVersion() const {
  return GetConfig()->version();
}

absl::Status GrpcPipelineClient::Reload() {
  // The version is read first: a change landing during the lists makes the
  // snapshot's content newer than its label, never older, so the watch
  // reports that change and it is reloaded again.
  pipelines_v1::ConfigVersion version;
  CRM_RETURN_IF_ERROR(
      BackgroundCall(*pipelines_, &PipelinesStub::GetConfigVersion,
                     pipelines_v1::GetConfigVersionRequest(), &version));

  std::vector<pipelines_v1::Pipeline> pipelines;
  pipelines_v1::ListPipelinesRequest list_pipelines;
  list_pipelines.set_include_stages(true);
  list_pipelines.set_page_size(options_.page_size);
  for (int page = 0;; ++page) {
    if (page == kMaxPages) {
      return absl::InternalError(
          absl::StrCat(kPeer, ": ListPipelines does not end"));
    }
    pipelines_v1::ListPipelinesResponse response;
    CRM_RETURN_IF_ERROR(BackgroundCall(
        *pipelines_, &PipelinesStub::ListPipelines, list_pipelines, &response));
    for (auto& pipeline : *response.mutable_pipelines()) {
      pipelines.push_back(std::move(pipeline));
    }
    if (response.next_page_token().empty()) break;
    list_pipelines.set_page_token(response.next_page_token());
  }

  std::vector<pipelines_v1::FieldDefinition> fields;
  pipelines_v1::ListFieldsRequest list_fields;
  list_fields.set_page_size(options_.page_size);
  for (int page = 0;; ++page) {
    if (page == kMaxPages) {
      return absl::InternalError(
          absl::StrCat(kPeer, ": ListFields does not end"));
    }
    pipelines_v1::ListFieldsResponse response;
    CRM_RETURN_IF_ERROR(BackgroundCall(*fields_, &FieldsStub::ListFields,
                                       list_fields, &response));
    for (auto& field : *response.mutable_fields()) {
      fields.push_back(std::move(field));
    }
    if (response.next_page_token().empty()) break;
    list_fields.set_page_token(response.next_page_token());
  }

  auto snapshot = std::make_shared<const ConfigView>(
      ConfigView::FromProtos(version.version(), pipelines, std::move(fields)));
  {
    absl::MutexLock lock(&snapshot_mu_);
    snapshot_ = std::move(snapshot);
  }
  // Entries are also checked against the snapshot version on lookup; this
  // frees the memory.
  ClearPermissionCache();
  ++snapshot_loads_;
  CRM_LOG(kDebug, "pipeline config loaded",
          {{"version", absl::StrCat(version.version())},
           {"pipelines", absl::StrCat(pipelines.size())}});
  return absl::OkStatus();
}

void GrpcPipelineClient::ReloadOrLog(const char* reason) {
  const absl::Status status = Reload();
  if (status.ok()) return;
  ++reload_failures_;
  if (!stopping()) {
    CRM_LOG(kWarning, "pipeline config reload failed",
            {{"reason", reason}, {"error", status.ToString()}});
  }
}

// --- Watch thread ------------------------------------------------------------

void GrpcPipelineClient::WatchLoop() {
  absl::Duration delay = options_.min_reconnect_delay;
  while (!stopping()) {
    const bool delivered = WatchOnce();
    if (stopping()) break;
    if (delivered) {
      delay = options_.min_reconnect_delay;
    } else {
      delay = std::min(delay * 2, options_.max_reconnect_delay);
    }
    WaitWhileDown(delay);
  }
}

bool GrpcPipelineClient::WatchOnce() {
  grpc::ClientContext context;
  PrepareContext(&context, options_.watch_stream_lifetime);
  if (!RegisterCall(&context, &watch_context_)) return false;

  pipelines_v1::WatchConfigRequest request;
  // One behind, so the server answers at once with its current version.
  request.set_known_version(std::max<int64_t>(0, SnapshotVersion() - 1));
  std::unique_ptr<grpc::ClientReaderInterface<pipelines_v1::ConfigVersion>>
      reader = pipelines_->WatchConfig(&context, request);
  bool delivered = false;
  pipelines_v1::ConfigVersion message;
  while (reader->Read(&message)) {
    if (!delivered) {
      delivered = true;
      watching_ = true;
      ++watch_streams_;
    }
    if (message.version() == SnapshotVersion()) continue;
    const absl::Status reloaded = Reload();
    if (!reloaded.ok()) {
      ++reload_failures_;
      if (!stopping()) {
        CRM_LOG(kWarning, "pipeline config reload failed",
                {{"reason", "watch"}, {"error", reloaded.ToString()}});
      }
      // Closing the stream sends the loop to its retry path: polling, then a
      // new stream that reports the current version again.
      context.TryCancel();
      while (reader->Read(&message)) {
      }
      break;
    }
  }
  const grpc::Status status = reader->Finish();
  watching_ = false;
  UnregisterCall(&watch_context_);
  if (!stopping() &&
      status.error_code() != grpc::StatusCode::DEADLINE_EXCEEDED &&
      status.error_code() != grpc::StatusCode::CANCELLED) {
    // A stream that never opened is logged at debug: during an outage it
    // fails every reconnect delay.
    common::Log(delivered ? common::LogLevel::kInfo : common::LogLevel::kDebug,
                "pipeline config watch ended",
                {{"code", absl::StrCat(status.error_code())},
                 {"error", status.error_message()}});
  }
  return delivered;
}

void GrpcPipelineClient::WaitWhileDown(absl::Duration delay) {
  const absl::Time until = absl::Now() + delay;
  for (;;) {
    if (absl::Now() >= next_poll_) {
      PollVersion();
      next_poll_ = absl::Now() + options_.poll_interval;
    }
    if (WaitForStop(std::min(until, next_poll_) - absl::Now())) return;
    if (absl::Now() >= until) return;
  }
}

void GrpcPipelineClient::PollVersion() {
  ++version_polls_;
  pipelines_v1::ConfigVersion version;
  const absl::Status polled =
      BackgroundCall(*pipelines_, &PipelinesStub::GetConfigVersion,
                     pipelines_v1::GetConfigVersionRequest(), &version);
  if (!polled.ok()) return;  // The peer is down; the next poll tries again.
  if (version.version() != SnapshotVersion()) ReloadOrLog("poll");
}

// --- Permissions
// ---------------------------------------------------------------

void GrpcPipelineClient::ClearPermissionCache() {
  absl::MutexLock lock(&cache_mu_);
  cache_.clear();
  lru_.clear();
}

std::shared_ptr<const pipelines_v1::EffectivePermissions>
GrpcPipelineClient::CachedPermissions(int64_t user_id) {
  const int64_t version = SnapshotVersion();
  absl::MutexLock lock(&cache_mu_);
  auto it = cache_.find(user_id);
  if (it == cache_.end() ||
      it->second.permissions->config_version() != version) {
    return nullptr;
  }
  lru_.splice(lru_.begin(), lru_, it->second.lru_position);
  ++permission_cache_hits_;
  return it->second.permissions;
}

absl::StatusOr<std::shared_ptr<const pipelines_v1::EffectivePermissions>>
GrpcPipelineClient::GetPermissions(int64_t user_id) {
  if (user_id <= 0) {
    return absl::InvalidArgumentError("user_id: must be > 0");
  }
  const int64_t version = SnapshotVersion();
  {
    absl::MutexLock lock(&cache_mu_);
    auto it = cache_.find(user_id);
    if (it != cache_.end()) {
      if (it->second.permissions->config_version() == version) {
        lru_.splice(lru_.begin(), lru_, it->second.lru_position);
        ++permission_cache_hits_;
        return it->second.permissions;
      }
      lru_.erase(it->second.lru_position);
      cache_.erase(it);
    }
  }

  grpc::ClientContext context;
  PrepareContext(&context, options_.call_timeout);
  pipelines_v1::GetEffectivePermissionsRequest request;
  request.set_user_id(user_id);
  auto response = std::make_shared<pipelines_v1::EffectivePermissions>();
  ++permission_fetches_;
  CRM_RETURN_IF_ERROR(common::FromPeerStatus(
      access_->GetEffectivePermissions(&context, request, response.get()),
      kPeer));
  std::shared_ptr<const pipelines_v1::EffectivePermissions> permissions =
      std::move(response);

  // Cached only when computed from the configuration the snapshot holds: an
  // answer from a newer configuration is fetched again once the snapshot
  // catches up (a reload clears the cache anyway).
  if (permissions->config_version() == SnapshotVersion() &&
      options_.max_cached_users > 0) {
    absl::MutexLock lock(&cache_mu_);
    auto it = cache_.find(user_id);
    if (it != cache_.end()) {
      lru_.erase(it->second.lru_position);
      cache_.erase(it);
    }
    while (cache_.size() >= options_.max_cached_users && !lru_.empty()) {
      cache_.erase(lru_.back());
      lru_.pop_back();
    }
    lru_.push_front(user_id);
    cache_.emplace(user_id, CacheEntry{permissions, lru_.begin()});
  }
  return permissions;
}

GrpcPipelineClient::Stats GrpcPipelineClient::stats() const {
  Stats stats;
  stats.snapshot_loads = snapshot_loads_.load();
  stats.reload_failures = reload_failures_.load();
  stats.watch_streams = watch_streams_.load();
  stats.version_polls = version_polls_.load();
  stats.permission_fetches = permission_fetches_.load();
  stats.permission_cache_hits = permission_cache_hits_.load();
  return stats;
}

}  // namespace crm::common
