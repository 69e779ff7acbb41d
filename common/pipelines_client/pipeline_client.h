// What the deals service needs from pipeline-config, as an interface so that
// handlers and domain code can be tested with FakePipelineClient
// (fake_pipeline_client.h) and run against GrpcPipelineClient in production.
//
//   std::shared_ptr<const ConfigView> config = pipelines.GetConfig();
//   const StageView* first = config->FirstStage(request.pipeline_id());
//   CRM_ASSIGN_OR_RETURN(auto permissions,
//                        pipelines.GetPermissions(caller.user_id));
#pragma once

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"

#include "crm/pipelines/v1/access.pb.h"

#include "common/pipelines_client/config_view.h"

namespace crm::common {

class PipelineClient {
 public:
  virtual ~PipelineClient() = default;

  // The current configuration snapshot. Never null (an empty ConfigView at
  // version 0 before the first load). Never blocks on the network: it
  // returns what the cache holds, so handler threads may call it on every
  // request. Hold the returned pointer for the whole request so that every
  // lookup of one request sees the same version. Thread-safe.
  [[nodiscard]] virtual std::shared_ptr<const ConfigView> GetConfig() const = 0;

  // The effective permissions of `user_id` (> 0), computed by
  // pipeline-config from roles and departments. Cached per user for the
  // current config version; a cache miss makes one call to pipeline-config
  // and blocks for at most the call deadline, so deals calls it where one
  // RPC is acceptable (see clients/README.md). Thread-safe.
  //
  // INVALID_ARGUMENT for user_id <= 0; otherwise the peer's status with its
  // code kept (UNAVAILABLE, DEADLINE_EXCEEDED, UNAUTHENTICATED, ...) and the
  // message prefixed "pipeline-config: ".
  [[nodiscard]] virtual absl::StatusOr<
      std::shared_ptr<const crm::pipelines::v1::EffectivePermissions>>
  GetPermissions(int64_t user_id) = 0;

  // The permissions GetPermissions would return without a network call, or
  // null when they are not cached for the current config version. Never
  // blocks, so a handler can decide to answer inline or hand the call to a
  // worker thread. Thread-safe.
  [[nodiscard]] virtual std::shared_ptr<
      const crm::pipelines::v1::EffectivePermissions>
  CachedPermissions(int64_t user_id) = 0;
};

}  // namespace crm::common
