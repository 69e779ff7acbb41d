// The pipeline-config domain: holds the configuration as an immutable
// in-memory snapshot (reads never lock for long and never touch RocksDB) and
// applies every change as validate -> one atomic store batch (with the new
// config version) -> publish the new snapshot -> notify watchers.
//
// Writes are serialised by one writer lock; configuration changes are rare
// and small, and one writer makes every invariant check race-free.
//
// Errors: INVALID_ARGUMENT naming the field, NOT_FOUND for an unknown target,
// ABORTED for a stale etag, FAILED_PRECONDITION for a broken rule (stage
// order, deals present, subdepartments present, default pipeline),
// ALREADY_EXISTS for a duplicate, RESOURCE_EXHAUSTED past a limit.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "google/protobuf/field_mask.pb.h"

#include "services/pipeline_config/clients/deal_counter.h"
#include "services/pipeline_config/domain/version_notifier.h"
#include "services/pipeline_config/storage/config_store.h"

namespace crm::pipeline_config {

using NowFn = std::function<absl::Time()>;

class ConfigManager {
 public:
  // Loads the store; on first start writes pipeline 0 with its default
  // stages. Clears `deleting` marks a stopped process left behind.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<ConfigManager>> Create(
      ConfigStore& store, DealCounter& deal_counter, VersionNotifier& notifier,
      NowFn now = absl::Now);

  // The current configuration. Never null. Thread-safe.
  std::shared_ptr<const ConfigData> Snapshot() const;
  int64_t version() const { return Snapshot()->counters.version(); }

  // Pipeline with its stages. NOT_FOUND.
  [[nodiscard]] absl::StatusOr<v1::Pipeline> GetPipeline(
      int64_t pipeline_id) const;

  [[nodiscard]] absl::StatusOr<v1::Pipeline> CreatePipeline(
      const v1::Pipeline& pipeline, const std::string& request_id);
  [[nodiscard]] absl::StatusOr<v1::Pipeline> UpdatePipeline(
      const v1::Pipeline& pipeline, const google::protobuf::FieldMask& mask,
      const std::string& etag);
  // Deletes in three steps so no deal can arrive after the count: mark it
  // `deleting` (one version), ask deals to count as of that version without
  // holding the writer lock, then delete, or clear the mark and answer
  // FAILED_PRECONDITION (deals remain), UNAVAILABLE (deals not reachable)
  // or ABORTED (stale etag, or another delete of it is in progress).
  // DeleteStage works the same way.
  [[nodiscard]] absl::Status DeletePipeline(int64_t pipeline_id,
                                            const std::string& etag);

  [[nodiscard]] absl::StatusOr<v1::Stage> CreateStage(int64_t pipeline_id,
                                                      const v1::Stage& stage);
  // Stage ids in the calls below may be bare ("NEW") or prefixed ("C3:NEW").
  [[nodiscard]] absl::StatusOr<v1::Stage> UpdateStage(
      const v1::Stage& stage, const google::protobuf::FieldMask& mask,
      const std::string& etag);
  [[nodiscard]] absl::Status DeleteStage(int64_t pipeline_id,
                                         const std::string& stage_id,
                                         const std::string& etag);
  [[nodiscard]] absl::StatusOr<std::vector<v1::Stage>> ReorderStages(
      int64_t pipeline_id, const std::vector<std::string>& stage_ids);

  [[nodiscard]] absl::StatusOr<v1::FieldDefinition> CreateField(
      const v1::FieldDefinition& field);
  [[nodiscard]] absl::StatusOr<v1::FieldDefinition> UpdateField(
      const v1::FieldDefinition& field, const google::protobuf::FieldMask& mask,
      const std::string& etag);
  [[nodiscard]] absl::Status DeleteField(const std::string& code,
                                         const std::string& etag);

  [[nodiscard]] absl::StatusOr<v1::Department> CreateDepartment(
      const v1::Department& department);
  [[nodiscard]] absl::StatusOr<v1::Department> UpdateDepartment(
      const v1::Department& department, const google::protobuf::FieldMask& mask,
      const std::string& etag);
  [[nodiscard]] absl::Status DeleteDepartment(int64_t department_id,
                                              const std::string& etag);

  [[nodiscard]] absl::StatusOr<v1::Role> CreateRole(const v1::Role& role);
  [[nodiscard]] absl::StatusOr<v1::Role> UpdateRole(
      const v1::Role& role, const google::protobuf::FieldMask& mask,
      const std::string& etag);
  [[nodiscard]] absl::Status DeleteRole(int64_t role_id,
                                        const std::string& etag);

  [[nodiscard]] absl::StatusOr<v1::RoleAssignment> CreateRoleAssignment(
      const v1::RoleAssignment& assignment);
  [[nodiscard]] absl::Status DeleteRoleAssignment(int64_t assignment_id);

 private:
  struct Change;

  ConfigManager(ConfigStore& store, DealCounter& deal_counter,
                VersionNotifier& notifier, NowFn now,
                std::shared_ptr<const ConfigData> snapshot);

  // Runs `fn` on a copy of the configuration under the writer lock. If it
  // succeeds and staged changes, commits them with the next version and
  // publishes the copy; if it staged nothing, nothing is written.
  [[nodiscard]] absl::Status Mutate(
      const std::function<absl::Status(Change&)>& fn);

  ConfigStore& store_;
  DealCounter& deal_counter_;
  VersionNotifier& notifier_;
  NowFn now_;

  absl::Mutex write_mu_;
  mutable absl::Mutex snapshot_mu_;
  std::shared_ptr<const ConfigData> snapshot_ ABSL_GUARDED_BY(snapshot_mu_);
};

// "\"<version>\"": the etag of a resource last changed at that config version.
std::string EtagForVersion(int64_t version);

}  // namespace crm::pipeline_config
