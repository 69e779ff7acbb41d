// Test-only: a PipelineClient whose configuration and permissions a test
// sets, for testing deals' handlers and domain code without pipeline-config.
//
//   FakePipelineClient pipelines;   // pipeline 0 with the 8 default stages
//   pipelines.SetConfig(ConfigView::FromProtos(
//       2, {DefaultPipelineProto(0), DefaultPipelineProto(3, "Partners")},
//       {}));
//   pipelines.SetPermissions(7, permissions_of_user_7);
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

#include "crm/pipelines/v1/access.pb.h"
#include "crm/pipelines/v1/pipeline.pb.h"

#include "common/pipelines_client/config_view.h"
#include "common/pipelines_client/pipeline_client.h"

namespace crm::common {

// A pipeline with the default stage set (NEW ..
// APOLOGY, ids prefixed "C<id>:" outside pipeline 0), as pipeline-config
// creates it.
crm::pipelines::v1::Pipeline DefaultPipelineProto(
    int64_t pipeline_id, const std::string& name = "General");

// A custom field definition (label = code), as tests declare them.
crm::pipelines::v1::FieldDefinition FieldDefinitionProto(
    const std::string& code, crm::pipelines::v1::FieldType type,
    bool multiple = false, bool mandatory = false);

// Thread-safe.
class FakePipelineClient final : public PipelineClient {
 public:
  // Starts with version 1 and pipeline 0 holding the default stages.
  FakePipelineClient();

  void SetConfig(ConfigView config);
  // Returned for `user_id` (config_version is set to the current config's).
  void SetPermissions(int64_t user_id,
                      crm::pipelines::v1::EffectivePermissions permissions);
  // Every GetPermissions fails with `status` until OK is set again.
  void SetPermissionsError(absl::Status status);
  // GetPermissions calls so far.
  int64_t permission_calls() const;

  std::shared_ptr<const ConfigView> GetConfig() const override;
  // Users without SetPermissions get no access at all (no pipelines), as
  // pipeline-config answers for a user without roles.
  absl::StatusOr<
      std::shared_ptr<const crm::pipelines::v1::EffectivePermissions>>
  GetPermissions(int64_t user_id) override;
  // Null unless SetCacheHits(true): by default every call takes the path of
  // a cache miss.
  std::shared_ptr<const crm::pipelines::v1::EffectivePermissions>
  CachedPermissions(int64_t user_id) override;
  void SetCacheHits(bool hits);

 private:
  mutable absl::Mutex mu_;
  std::shared_ptr<const ConfigView> config_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<int64_t, crm::pipelines::v1::EffectivePermissions>
      permissions_ ABSL_GUARDED_BY(mu_);
  absl::Status error_ ABSL_GUARDED_BY(mu_);
  int64_t permission_calls_ ABSL_GUARDED_BY(mu_) = 0;
  bool cache_hits_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace crm::common
