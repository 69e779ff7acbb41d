#include "common/pipelines_client/config_view.h"

#include <algorithm>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"

namespace crm::common {

// Not "v1": crm::deals::v1 is the deals API.
namespace pipelines_v1 = ::crm::pipelines::v1;

ConfigView::ConfigView(int64_t version, std::vector<PipelineView> pipelines,
                       std::vector<pipelines_v1::FieldDefinition> fields)
    : version_(version) {
  std::stable_sort(pipelines.begin(), pipelines.end(),
                   [](const PipelineView& a, const PipelineView& b) {
                     return std::tie(a.sort, a.id) < std::tie(b.sort, b.id);
                   });
  pipelines_.reserve(pipelines.size());
  for (PipelineView& pipeline : pipelines) {
    if (!pipeline_index_.emplace(pipeline.id, pipelines_.size()).second) {
      continue;
    }
    std::stable_sort(pipeline.stages.begin(), pipeline.stages.end(),
                     [](const StageView& a, const StageView& b) {
                       return std::tie(a.sort, a.stage_id) <
                              std::tie(b.sort, b.stage_id);
                     });
    absl::flat_hash_map<std::string, size_t> stages;
    std::vector<StageView> unique_stages;
    unique_stages.reserve(pipeline.stages.size());
    for (StageView& stage : pipeline.stages) {
      if (!stages.emplace(stage.stage_id, unique_stages.size()).second) {
        continue;
      }
      unique_stages.push_back(std::move(stage));
    }
    pipeline.stages = std::move(unique_stages);
    stage_index_.push_back(std::move(stages));
    pipelines_.push_back(std::move(pipeline));
  }

  std::stable_sort(fields.begin(), fields.end(),
                   [](const pipelines_v1::FieldDefinition& a,
                      const pipelines_v1::FieldDefinition& b) {
                     return std::make_pair(a.sort(), a.code()) <
                            std::make_pair(b.sort(), b.code());
                   });
  fields_.reserve(fields.size());
  for (pipelines_v1::FieldDefinition& field : fields) {
    if (!field_index_.emplace(field.code(), fields_.size()).second) continue;
    fields_.push_back(std::move(field));
  }
}

ConfigView ConfigView::FromProtos(
    int64_t version, const std::vector<pipelines_v1::Pipeline>& pipelines,
    std::vector<pipelines_v1::FieldDefinition> fields) {
  std::vector<PipelineView> views;
  views.reserve(pipelines.size());
  for (const pipelines_v1::Pipeline& pipeline : pipelines) {
    PipelineView view;
    view.id = pipeline.id();
    view.name = pipeline.name();
    view.sort = pipeline.sort();
    view.is_default = pipeline.is_default();
    view.deleting = pipeline.deleting();
    view.stages.reserve(pipeline.stages_size());
    for (const pipelines_v1::Stage& stage : pipeline.stages()) {
      StageView stage_view;
      stage_view.stage_id = stage.stage_id();
      // ListPipelines fills pipeline_id on stages; do not rely on it.
      stage_view.pipeline_id = pipeline.id();
      stage_view.name = stage.name();
      stage_view.sort = stage.sort();
      stage_view.semantics = stage.semantics();
      stage_view.default_probability = stage.default_probability();
      stage_view.color = stage.color();
      stage_view.rotting_days = stage.rotting_days();
      stage_view.deleting = stage.deleting();
      view.stages.push_back(std::move(stage_view));
    }
    views.push_back(std::move(view));
  }
  return ConfigView(version, std::move(views), std::move(fields));
}

const PipelineView* ConfigView::FindPipeline(int64_t pipeline_id) const {
  auto it = pipeline_index_.find(pipeline_id);
  return it == pipeline_index_.end() ? nullptr : &pipelines_[it->second];
}

std::optional<int> ConfigView::StageIndex(int64_t pipeline_id,
                                          const std::string& stage_id) const {
  auto pipeline = pipeline_index_.find(pipeline_id);
  if (pipeline == pipeline_index_.end()) return std::nullopt;
  const auto& stages = stage_index_[pipeline->second];
  auto it = stages.find(stage_id);
  if (it == stages.end()) return std::nullopt;
  return static_cast<int>(it->second);
}

const StageView* ConfigView::FindStage(int64_t pipeline_id,
                                       const std::string& stage_id) const {
  const std::optional<int> index = StageIndex(pipeline_id, stage_id);
  if (!index.has_value()) return nullptr;
  return &FindPipeline(pipeline_id)->stages[static_cast<size_t>(*index)];
}

const StageView* ConfigView::ResolveStage(int64_t pipeline_id,
                                          const std::string& stage_id) const {
  const StageView* stage = FindStage(pipeline_id, stage_id);
  // Pipeline 0's stage ids carry no prefix; any other bare id gets its
  // pipeline's "C<id>:" (a prefixed id was looked up as it is above).
  if (stage == nullptr && pipeline_id != 0 && !stage_id.empty() &&
      stage_id.find(':') == std::string::npos) {
    stage =
        FindStage(pipeline_id, absl::StrCat("C", pipeline_id, ":", stage_id));
  }
  return stage;
}

const StageView* ConfigView::FirstStage(int64_t pipeline_id) const {
  const PipelineView* pipeline = FindPipeline(pipeline_id);
  if (pipeline == nullptr || pipeline->stages.empty()) return nullptr;
  return &pipeline->stages.front();
}

const StageView* ConfigView::FirstStageWithSemantics(
    int64_t pipeline_id, pipelines_v1::StageSemantics semantics) const {
  const PipelineView* pipeline = FindPipeline(pipeline_id);
  if (pipeline == nullptr) return nullptr;
  for (const StageView& stage : pipeline->stages) {
    if (stage.semantics == semantics) return &stage;
  }
  return nullptr;
}

const pipelines_v1::FieldDefinition* ConfigView::FindField(
    const std::string& code) const {
  auto it = field_index_.find(code);
  return it == field_index_.end() ? nullptr : &fields_[it->second];
}

}  // namespace crm::common
