// Durable storage of the pipeline-config service.
//
// The whole configuration is small (pipelines, stages, field definitions,
// departments, roles): it is loaded into memory at start (ConfigData) and
// every change is one atomic WriteBatch that also carries the new config
// version and id counters, so the store can never hold a change without its
// version bump.
//
// Column families (one per record kind; keys from common/rocks/key_codec):
//   pipelines         int64 id                    -> crm.pipelines.v1.Pipeline
//   (no stages) stages            int64 pipeline id, stage id ->
//   crm.pipelines.v1.Stage fields            code                        ->
//   crm.pipelines.v1.FieldDefinition departments       int64 id ->
//   crm.pipelines.v1.Department roles             int64 id ->
//   crm.pipelines.v1.Role role_assignments  int64 id                    ->
//   crm.pipelines.v1.RoleAssignment request_ids       request id ->
//   crm.pipelines.storage.RequestRecord meta              "counters" ->
//   crm.pipelines.storage.Counters
//
// Values are the API resource messages themselves. These resources are
// plain configuration whose API shape is exactly what has to be kept; a
// second record schema would only be a copy to keep in sync. Fields are
// evolved under the proto compatibility rules (never renumbered), which
// keeps old records readable.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#include "crm/pipelines/v1/access.pb.h"
#include "crm/pipelines/v1/pipeline.pb.h"
#include "crm/pipelines/v1/pipelines_service.pb.h"

#include "common/rocks/rocks_db.h"
#include "services/pipeline_config/storage/config_records.pb.h"

namespace crm::pipeline_config {

namespace v1 = ::crm::pipelines::v1;

struct PipelineEntry {
  v1::Pipeline pipeline;          // stages field left empty
  std::vector<v1::Stage> stages;  // ordered by (sort, stage_id)
  // The two hottest replies, serialized once per config version so reads
  // send bytes instead of copying and serializing protos on every call:
  // the v1::Pipeline with its stages, and the v1::ListStagesResponse.
  std::string wire_pipeline;
  std::string wire_stages;
};

// The whole configuration at one version.
struct ConfigData {
  crm::pipelines::storage::Counters counters;
  std::map<int64_t, PipelineEntry> pipelines;
  std::map<std::string, v1::FieldDefinition> fields;
  std::map<int64_t, v1::Department> departments;
  std::map<int64_t, v1::Role> roles;
  std::map<int64_t, v1::RoleAssignment> assignments;

  const PipelineEntry* FindPipeline(int64_t id) const;
  // Re-serializes every pipeline's wire_* replies. Call after changing
  // pipelines or stages, before the data is published.
  void RefreshWireViews();
  const v1::Stage* FindStage(int64_t pipeline_id,
                             const std::string& stage_id) const;
};

class ConfigStore {
 public:
  // A set of changes committed atomically by Commit().
  class Batch {
   public:
    ~Batch();
    Batch(Batch&&) noexcept;
    void PutPipeline(const v1::Pipeline& pipeline);
    void DeletePipeline(int64_t pipeline_id);
    void PutStage(const v1::Stage& stage);
    void DeleteStage(int64_t pipeline_id, const std::string& stage_id);
    void PutField(const v1::FieldDefinition& field);
    void DeleteField(const std::string& code);
    void PutDepartment(const v1::Department& department);
    void DeleteDepartment(int64_t department_id);
    void PutRole(const v1::Role& role);
    void DeleteRole(int64_t role_id);
    void PutAssignment(const v1::RoleAssignment& assignment);
    void DeleteAssignment(int64_t assignment_id);
    void PutRequest(const std::string& request_id,
                    const crm::pipelines::storage::RequestRecord& record);
    void PutCounters(const crm::pipelines::storage::Counters& counters);
    // Number of record changes (counters excluded).
    int changes() const { return changes_; }

   private:
    friend class ConfigStore;
    struct Impl;
    explicit Batch(const ConfigStore& store);
    std::unique_ptr<Impl> impl_;
    int changes_ = 0;
  };

  // Opens or creates the store under `path`.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<ConfigStore>> Open(
      const std::string& path, const common::RocksOptions& options);

  // Reads everything. DATA_LOSS if a record does not parse.
  [[nodiscard]] absl::StatusOr<ConfigData> Load() const;

  Batch NewBatch() const;
  // Writes the batch atomically (and durably per RocksOptions).
  [[nodiscard]] absl::Status Commit(Batch& batch);

  [[nodiscard]] absl::StatusOr<
      std::optional<crm::pipelines::storage::RequestRecord>>
  GetRequest(const std::string& request_id) const;

 private:
  explicit ConfigStore(std::unique_ptr<common::RocksDb> db)
      : db_(std::move(db)) {}
  std::unique_ptr<common::RocksDb> db_;
};

}  // namespace crm::pipeline_config
