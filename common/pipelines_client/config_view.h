// An immutable snapshot of the pipeline-config data the deals service needs:
// pipelines with their ordered stages, custom field definitions by code, and
// the config version the snapshot was read at. Built once per config version
// by GrpcPipelineClient and shared (std::shared_ptr<const ConfigView>) with
// every handler thread; nothing in it changes after construction.
//
//   std::shared_ptr<const ConfigView> config = client.GetConfig();
//   const StageView* stage = config->FindStage(pipeline_id, stage_id);
//   if (stage == nullptr) return absl::InvalidArgumentError("stage_id: ...");
//   const StageView* won = config->FirstStageWithSemantics(
//       pipeline_id, crm::pipelines::v1::STAGE_SEMANTICS_SUCCESS);
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"

#include "crm/pipelines/v1/pipeline.pb.h"

namespace crm::common {

// One stage as deals sees it (a copy of crm.pipelines.v1.Stage without the
// bookkeeping fields).
struct StageView {
  std::string stage_id;  // "NEW" in pipeline 0, "C3:NEW" elsewhere
  int64_t pipeline_id = 0;
  std::string name;
  int32_t sort = 0;
  crm::pipelines::v1::StageSemantics semantics =
      crm::pipelines::v1::STAGE_SEMANTICS_UNSPECIFIED;
  int32_t default_probability = 0;  // 0..100
  std::string color;                // "#RRGGBB"
  int32_t rotting_days = 0;         // 0 = off
  // pipeline-config is deleting it: no deal may enter it.
  bool deleting = false;
};

// One pipeline with its stages in order (sort, then stage id).
struct PipelineView {
  int64_t id = 0;
  std::string name;
  int32_t sort = 0;
  bool is_default = false;  // pipeline 0
  // pipeline-config is deleting it: no deal may be added to it.
  bool deleting = false;
  std::vector<StageView> stages;
};

// Thread-safe: immutable after construction. Pointers returned by the
// lookups stay valid as long as the ConfigView does (hold the shared_ptr).
class ConfigView {
 public:
  // An empty configuration at version 0 (what GetConfig() returns before the
  // first snapshot is loaded).
  ConfigView() = default;

  // Sorts pipelines by (sort, id), stages by (sort, stage_id) and fields by
  // (sort, code). On duplicate ids the first one wins (pipeline-config never
  // sends duplicates).
  ConfigView(int64_t version, std::vector<PipelineView> pipelines,
             std::vector<crm::pipelines::v1::FieldDefinition> fields);

  // Converts API messages (pipelines with their stages, as ListPipelines
  // with include_stages returns them).
  static ConfigView FromProtos(
      int64_t version,
      const std::vector<crm::pipelines::v1::Pipeline>& pipelines,
      std::vector<crm::pipelines::v1::FieldDefinition> fields);

  // The pipeline-config version this snapshot was read at; 0 when empty.
  int64_t version() const { return version_; }

  // Every pipeline, ordered by (sort, id).
  const std::vector<PipelineView>& pipelines() const { return pipelines_; }
  // Every custom field definition, ordered by (sort, code).
  const std::vector<crm::pipelines::v1::FieldDefinition>& fields() const {
    return fields_;
  }

  // nullptr when there is no such pipeline.
  [[nodiscard]] const PipelineView* FindPipeline(int64_t pipeline_id) const;

  // nullptr when the pipeline does not exist or the stage is not one of its
  // stages (a stage id of another pipeline is not found).
  [[nodiscard]] const StageView* FindStage(int64_t pipeline_id,
                                           const std::string& stage_id) const;

  // The stage a caller means by `stage_id` in `pipeline_id`: its full id
  // ("C3:WON"), or outside pipeline 0 also the bare id ("WON"), as
  // pipeline-config accepts both. nullptr when it names no stage of the
  // pipeline (a full id of another pipeline included). Every deals path
  // that takes a stage id for a known pipeline resolves it here, so a
  // stage id means the same in create, moves and columns.
  [[nodiscard]] const StageView* ResolveStage(
      int64_t pipeline_id, const std::string& stage_id) const;

  // The first stage in order (a PROCESS stage); nullptr when the pipeline
  // does not exist or has no stages.
  [[nodiscard]] const StageView* FirstStage(int64_t pipeline_id) const;

  // The first stage in order with `semantics`: PROCESS -> the first process
  // stage, SUCCESS -> the success stage, FAILURE -> the first failure stage.
  // nullptr when the pipeline does not exist or has no such stage.
  [[nodiscard]] const StageView* FirstStageWithSemantics(
      int64_t pipeline_id, crm::pipelines::v1::StageSemantics semantics) const;

  // Position of the stage in its pipeline's order (0 = first); nullopt when
  // FindStage would return nullptr. Compare two positions to tell whether a
  // stage comes before another.
  [[nodiscard]] std::optional<int> StageIndex(
      int64_t pipeline_id, const std::string& stage_id) const;

  // nullptr when no custom field has this code.
  [[nodiscard]] const crm::pipelines::v1::FieldDefinition* FindField(
      const std::string& code) const;

 private:
  int64_t version_ = 0;
  std::vector<PipelineView> pipelines_;
  std::vector<crm::pipelines::v1::FieldDefinition> fields_;
  // pipeline id -> index in pipelines_.
  absl::flat_hash_map<int64_t, size_t> pipeline_index_;
  // Per index in pipelines_: stage id -> index in its stages.
  std::vector<absl::flat_hash_map<std::string, size_t>> stage_index_;
  // field code -> index in fields_.
  absl::flat_hash_map<std::string, size_t> field_index_;
};

}  // namespace crm::common
