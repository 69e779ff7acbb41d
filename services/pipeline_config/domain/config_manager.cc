#include "services/pipeline_config/domain/config_manager.h"

#include <algorithm>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/util/message_differencer.h"
#include "google/protobuf/util/time_util.h"

#include "common/grpc/update_mask.h"
#include "common/status/status_macros.h"
#include "common/text/etag.h"
#include "common/time/proto_time.h"
#include "services/pipeline_config/domain/validation.h"

namespace crm::pipeline_config {

using ::google::protobuf::FieldMask;

// One change in progress: the copy being edited, the batch being staged, the
// version and time it will carry.
struct ConfigManager::Change {
  ConfigData& data;
  ConfigStore::Batch& batch;
  int64_t version;
  google::protobuf::Timestamp now;
  std::string etag;
};

namespace {

using ::crm::common::ToTimestamp;

using ::crm::common::CheckEtag;

absl::StatusOr<std::set<std::string>> ParseMask(
    const FieldMask& mask, const std::set<std::string>& mutable_paths,
    const std::set<std::string>& immutable_paths) {
  return common::ParseUpdateMask(mask, mutable_paths, immutable_paths);
}

bool SameIgnoringMeta(const google::protobuf::Message& a,
                      const google::protobuf::Message& b) {
  return google::protobuf::util::MessageDifferencer::Equals(a, b);
}

v1::Pipeline WithStages(const PipelineEntry& entry) {
  v1::Pipeline pipeline = entry.pipeline;
  for (const auto& stage : entry.stages) *pipeline.add_stages() = stage;
  return pipeline;
}

absl::Status ValidatePipelineFields(const v1::Pipeline& pipeline) {
  CRM_RETURN_IF_ERROR(ValidateName("pipeline.name", pipeline.name()));
  return ValidateSort("pipeline.sort", pipeline.sort());
}

// Removes every mention of a stage from a role. True if the role changed.
bool ForgetStage(v1::Role* role, int64_t pipeline_id,
                 const std::string& stage_id) {
  bool changed = false;
  for (auto& permissions : *role->mutable_pipelines()) {
    if (permissions.pipeline_id() != pipeline_id) continue;
    changed |= permissions.mutable_stage_levels()->erase(stage_id) > 0;
    changed |= permissions.mutable_transitions()->erase(stage_id) > 0;
    for (auto& [from, rule] : *permissions.mutable_transitions()) {
      auto* targets = rule.mutable_to_stage_ids();
      const int before = targets->size();
      targets->erase(std::remove(targets->begin(), targets->end(), stage_id),
                     targets->end());
      if (targets->size() != before) {
        changed = true;
        if (targets->empty() && rule.mode() == v1::TransitionRule::MODE_LIST) {
          rule.set_mode(v1::TransitionRule::MODE_BLOCKED);
        }
      }
    }
  }
  return changed;
}

absl::Status ValidateLevels(const v1::ActionLevels& levels,
                            const std::string& field) {
  for (int value :
       {static_cast<int>(levels.read()), static_cast<int>(levels.add()),
        static_cast<int>(levels.write()), static_cast<int>(levels.delete_()),
        static_cast<int>(levels.export_()),
        static_cast<int>(levels.import())}) {
    if (!v1::AccessLevel_IsValid(value)) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": unknown access level ", value));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateRole(const ConfigData& data, const v1::Role& role) {
  CRM_RETURN_IF_ERROR(ValidateName("role.name", role.name()));
  std::set<int64_t> seen;
  for (int i = 0; i < role.pipelines_size(); ++i) {
    const auto& permissions = role.pipelines(i);
    const std::string field = absl::StrCat("role.pipelines[", i, "]");
    const PipelineEntry* entry = data.FindPipeline(permissions.pipeline_id());
    if (entry == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".pipeline_id: pipeline ",
                       permissions.pipeline_id(), " does not exist"));
    }
    if (!seen.insert(permissions.pipeline_id()).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".pipeline_id: pipeline ",
                       permissions.pipeline_id(), " is listed twice"));
    }
    CRM_RETURN_IF_ERROR(
        ValidateLevels(permissions.levels(), field + ".levels"));
    if (!v1::AutomationAccess_IsValid(permissions.automation())) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".automation: unknown value"));
    }
    auto has_stage = [&](const std::string& stage_id) {
      return data.FindStage(permissions.pipeline_id(), stage_id) != nullptr;
    };
    for (const auto& [stage_id, levels] : permissions.stage_levels()) {
      if (!has_stage(stage_id)) {
        return absl::InvalidArgumentError(
            absl::StrCat(field, ".stage_levels: stage \"", stage_id,
                         "\" is not in pipeline ", permissions.pipeline_id()));
      }
      CRM_RETURN_IF_ERROR(ValidateLevels(
          levels, absl::StrCat(field, ".stage_levels[", stage_id, "]")));
    }
    for (const auto& [stage_id, rule] : permissions.transitions()) {
      const std::string rule_field =
          absl::StrCat(field, ".transitions[", stage_id, "]");
      if (!has_stage(stage_id)) {
        return absl::InvalidArgumentError(
            absl::StrCat(rule_field, ": stage \"", stage_id,
                         "\" is not in pipeline ", permissions.pipeline_id()));
      }
      if (!v1::TransitionRule::Mode_IsValid(rule.mode())) {
        return absl::InvalidArgumentError(
            absl::StrCat(rule_field, ".mode: unknown value"));
      }
      if (rule.mode() == v1::TransitionRule::MODE_LIST &&
          rule.to_stage_ids_size() == 0) {
        return absl::InvalidArgumentError(
            absl::StrCat(rule_field,
                         ".to_stage_ids: a LIST rule needs target stages (use "
                         "BLOCKED for none)"));
      }
      if (rule.mode() != v1::TransitionRule::MODE_LIST &&
          rule.to_stage_ids_size() > 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            rule_field, ".to_stage_ids: only a LIST rule has target stages"));
      }
      for (const auto& target : rule.to_stage_ids()) {
        if (!has_stage(target)) {
          return absl::InvalidArgumentError(absl::StrCat(
              rule_field, ".to_stage_ids: stage \"", target,
              "\" is not in pipeline ", permissions.pipeline_id()));
        }
      }
    }
  }
  return absl::OkStatus();
}

// Members: positive ids, each once (kept in first-seen order).
absl::Status NormalizeMembers(v1::Department* department) {
  if (department->head_user_id() < 0) {
    return absl::InvalidArgumentError("department.head_user_id: must be >= 0");
  }
  if (department->member_user_ids_size() > kMaxDepartmentMembers) {
    return absl::InvalidArgumentError(
        absl::StrCat("department.member_user_ids: at most ",
                     kMaxDepartmentMembers, " members"));
  }
  std::set<int64_t> seen;
  google::protobuf::RepeatedField<int64_t> members;
  for (int64_t id : department->member_user_ids()) {
    if (id <= 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "department.member_user_ids: user ids are positive, got ", id));
    }
    if (seen.insert(id).second) members.Add(id);
  }
  *department->mutable_member_user_ids() = std::move(members);
  return absl::OkStatus();
}

}  // namespace

std::string EtagForVersion(int64_t version) { return common::EtagOf(version); }

ConfigManager::ConfigManager(ConfigStore& store, DealCounter& deal_counter,
                             VersionNotifier& notifier, NowFn now,
                             std::shared_ptr<const ConfigData> snapshot)
    : store_(store),
      deal_counter_(deal_counter),
      notifier_(notifier),
      now_(std::move(now)),
      snapshot_(std::move(snapshot)) {}

absl::StatusOr<std::unique_ptr<ConfigManager>> ConfigManager::Create(
    ConfigStore& store, DealCounter& deal_counter, VersionNotifier& notifier,
    NowFn now) {
  CRM_ASSIGN_OR_RETURN(ConfigData data, store.Load());
  auto manager = std::unique_ptr<ConfigManager>(
      new ConfigManager(store, deal_counter, notifier, std::move(now),
                        std::make_shared<const ConfigData>(std::move(data))));
  if (manager->Snapshot()->FindPipeline(0) == nullptr) {
    CRM_RETURN_IF_ERROR(manager->Mutate([](Change& change) {
      v1::Pipeline pipeline;
      pipeline.set_id(0);
      pipeline.set_name("General");
      pipeline.set_is_default(true);
      *pipeline.mutable_create_time() = change.now;
      *pipeline.mutable_update_time() = change.now;
      pipeline.set_etag(change.etag);
      PipelineEntry& entry = change.data.pipelines[0];
      entry.pipeline = pipeline;
      change.batch.PutPipeline(pipeline);
      entry.stages = DefaultStages(0);
      for (auto& stage : entry.stages) {
        *stage.mutable_create_time() = change.now;
        *stage.mutable_update_time() = change.now;
        stage.set_etag(change.etag);
        change.batch.PutStage(stage);
      }
      if (change.data.counters.next_pipeline_id() < 1) {
        change.data.counters.set_next_pipeline_id(1);
      }
      return absl::OkStatus();
    }));
  }
  // A delete that was between its steps when the process stopped never
  // answered OK: its marks are cleared, so the pipeline or stage is usable
  // again.
  CRM_RETURN_IF_ERROR(manager->Mutate([](Change& change) {
    for (auto& [id, entry] : change.data.pipelines) {
      if (entry.pipeline.deleting()) {
        entry.pipeline.set_deleting(false);
        change.batch.PutPipeline(entry.pipeline);
      }
      for (auto& stage : entry.stages) {
        if (stage.deleting()) {
          stage.set_deleting(false);
          change.batch.PutStage(stage);
        }
      }
    }
    return absl::OkStatus();
  }));
  return manager;
}

std::shared_ptr<const ConfigData> ConfigManager::Snapshot() const {
  absl::MutexLock lock(&snapshot_mu_);
  return snapshot_;
}

absl::Status ConfigManager::Mutate(
    const std::function<absl::Status(Change&)>& fn) {
  absl::MutexLock write_lock(&write_mu_);
  const std::shared_ptr<const ConfigData> current = Snapshot();
  auto next = std::make_shared<ConfigData>(*current);
  const int64_t version = current->counters.version() + 1;
  next->counters.set_version(version);
  ConfigStore::Batch batch = store_.NewBatch();
  Change change{*next, batch, version, ToTimestamp(now_()),
                EtagForVersion(version)};
  CRM_RETURN_IF_ERROR(fn(change));
  if (batch.changes() == 0) return absl::OkStatus();
  batch.PutCounters(next->counters);
  next->RefreshWireViews();
  CRM_RETURN_IF_ERROR(store_.Commit(batch));
  {
    absl::MutexLock lock(&snapshot_mu_);
    snapshot_ = std::move(next);
  }
  notifier_.Notify(version);
  return absl::OkStatus();
}

absl::StatusOr<v1::Pipeline> ConfigManager::GetPipeline(
    int64_t pipeline_id) const {
  const auto snapshot = Snapshot();
  const PipelineEntry* entry = snapshot->FindPipeline(pipeline_id);
  if (entry == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("pipeline ", pipeline_id, " not found"));
  }
  return WithStages(*entry);
}

// --- Pipelines ---------------------------------------------------------------

absl::StatusOr<v1::Pipeline> ConfigManager::CreatePipeline(
    const v1::Pipeline& input, const std::string& request_id) {
  CRM_RETURN_IF_ERROR(ValidatePipelineFields(input));
  CRM_RETURN_IF_ERROR(ValidateRequestId(request_id));
  const std::string fingerprint =
      absl::StrCat(input.name().size(), ":", input.name(), "|", input.sort());
  int64_t created_id = -1;
  CRM_RETURN_IF_ERROR(Mutate([&](Change& change) -> absl::Status {
    if (!request_id.empty()) {
      CRM_ASSIGN_OR_RETURN(auto previous, store_.GetRequest(request_id));
      if (previous.has_value()) {
        if (previous->fingerprint() != fingerprint) {
          return absl::AlreadyExistsError(
              "request_id: used already for a different request");
        }
        created_id = previous->pipeline_id();
        return absl::OkStatus();  // Nothing staged: a replay writes nothing.
      }
    }
    if (change.data.pipelines.size() >= static_cast<size_t>(kMaxPipelines)) {
      return absl::ResourceExhaustedError(
          absl::StrCat("pipelines: at most ", kMaxPipelines, " pipelines"));
    }
    auto& counters = change.data.counters;
    const int64_t id = std::max<int64_t>(1, counters.next_pipeline_id());
    counters.set_next_pipeline_id(id + 1);
    v1::Pipeline pipeline;
    pipeline.set_id(id);
    pipeline.set_name(input.name());
    pipeline.set_sort(input.sort());
    *pipeline.mutable_create_time() = change.now;
    *pipeline.mutable_update_time() = change.now;
    pipeline.set_etag(change.etag);
    PipelineEntry& entry = change.data.pipelines[id];
    entry.pipeline = pipeline;
    change.batch.PutPipeline(pipeline);
    entry.stages = DefaultStages(id);
    for (auto& stage : entry.stages) {
      *stage.mutable_create_time() = change.now;
      *stage.mutable_update_time() = change.now;
      stage.set_etag(change.etag);
      change.batch.PutStage(stage);
    }
    if (!request_id.empty()) {
      crm::pipelines::storage::RequestRecord record;
      record.set_fingerprint(fingerprint);
      record.set_pipeline_id(id);
      change.batch.PutRequest(request_id, record);
    }
    created_id = id;
    return absl::OkStatus();
  }));
  auto pipeline = GetPipeline(created_id);
  if (!pipeline.ok() && absl::IsNotFound(pipeline.status())) {
    return absl::FailedPreconditionError(
        absl::StrCat("request_id: the pipeline ", created_id,
                     " created by this request was deleted"));
  }
  return pipeline;
}

absl::StatusOr<v1::Pipeline> ConfigManager::UpdatePipeline(
    const v1::Pipeline& input, const FieldMask& mask, const std::string& etag) {
  CRM_ASSIGN_OR_RETURN(std::set<std::string> paths,
                       ParseMask(mask, {"name", "sort"},
                                 {"id", "create_time", "update_time", "etag",
                                  "stages", "is_default", "deleting"}));
  CRM_RETURN_IF_ERROR(Mutate([&](Change& change) -> absl::Status {
    auto it = change.data.pipelines.find(input.id());
    if (it == change.data.pipelines.end()) {
      return absl::NotFoundError(
          absl::StrCat("pipeline ", input.id(), " not found"));
    }
    v1::Pipeline& pipeline = it->second.pipeline;
    CRM_RETURN_IF_ERROR(CheckEtag(etag, pipeline.etag(), "the pipeline"));
    v1::Pipeline updated = pipeline;
    if (paths.count("name") > 0) updated.set_name(input.name());
    if (paths.count("sort") > 0) updated.set_sort(input.sort());
    CRM_RETURN_IF_ERROR(ValidatePipelineFields(updated));
    if (SameIgnoringMeta(updated, pipeline)) return absl::OkStatus();
    *updated.mutable_update_time() = change.now;
    updated.set_etag(change.etag);
    pipeline = updated;
    change.batch.PutPipeline(pipeline);
    return absl::OkStatus();
  }));
  return GetPipeline(input.id());
}

absl::Status ConfigManager::DeletePipeline(int64_t pipeline_id,
                                           const std::string& etag) {
  if (pipeline_id == 0) {
    return absl::FailedPreconditionError(
        "pipeline 0 is the default pipeline and cannot be deleted");
  }
  // What must hold in every step: it exists, the etag is current, no other
  // delete of it is under way.
  auto check = [&](const ConfigData& data) -> absl::Status {
    const PipelineEntry* entry = data.FindPipeline(pipeline_id);
    if (entry == nullptr) {
      return absl::NotFoundError(
          absl::StrCat("pipeline ", pipeline_id, " not found"));
    }
    CRM_RETURN_IF_ERROR(
        CheckEtag(etag, entry->pipeline.etag(), "the pipeline"));
    if (entry->pipeline.deleting()) {
      return absl::AbortedError(absl::StrCat(
          "pipeline ", pipeline_id, " is being deleted by another request"));
    }
    return absl::OkStatus();
  };
  auto still_holds = [&](int64_t deals) {
    return absl::FailedPreconditionError(
        absl::StrCat("pipeline ", pipeline_id, " still holds ", deals,
                     " deals; move or delete them first"));
  };
  // Step 0: the usual refusal (deals remain, or deals cannot answer) writes
  // nothing.
  CRM_RETURN_IF_ERROR(check(*Snapshot()));
  CRM_ASSIGN_OR_RETURN(const int64_t seen,
                       deal_counter_.CountDealsInPipeline(pipeline_id, 0));
  if (seen > 0) return still_holds(seen);
  // Step 1: mark it `deleting` (etag unchanged). From the version this
  // writes, deals refuses to add deals to it.
  int64_t marked_version = 0;
  CRM_RETURN_IF_ERROR(Mutate([&](Change& change) -> absl::Status {
    CRM_RETURN_IF_ERROR(check(change.data));
    v1::Pipeline& pipeline = change.data.pipelines[pipeline_id].pipeline;
    pipeline.set_deleting(true);
    change.batch.PutPipeline(pipeline);
    marked_version = change.version;
    return absl::OkStatus();
  }));
  // Step 2: count again, without the writer lock. Deals answers once it
  // holds the marked configuration and no write that began on an older one
  // is running, so nothing can arrive after this count.
  const absl::StatusOr<int64_t> deals =
      deal_counter_.CountDealsInPipeline(pipeline_id, marked_version);
  // Step 3: delete, or clear the mark and say why not.
  absl::Status outcome = absl::OkStatus();
  CRM_RETURN_IF_ERROR(Mutate([&](Change& change) -> absl::Status {
    auto it = change.data.pipelines.find(pipeline_id);
    if (it == change.data.pipelines.end()) {
      return absl::NotFoundError(
          absl::StrCat("pipeline ", pipeline_id, " not found"));
    }
    v1::Pipeline& pipeline = it->second.pipeline;
    if (!deals.ok()) {
      outcome = deals.status();
    } else if (*deals > 0) {
      outcome = still_holds(*deals);
    } else {
      // The pipeline may have been edited meanwhile.
      outcome = CheckEtag(etag, pipeline.etag(), "the pipeline");
    }
    if (!outcome.ok()) {
      pipeline.set_deleting(false);
      change.batch.PutPipeline(pipeline);
      return absl::OkStatus();
    }
    for (const auto& stage : it->second.stages) {
      change.batch.DeleteStage(pipeline_id, stage.stage_id());
    }
    change.batch.DeletePipeline(pipeline_id);
    change.data.pipelines.erase(it);
    for (auto& [role_id, role] : change.data.roles) {
      auto* entries = role.mutable_pipelines();
      const int before = entries->size();
      entries->erase(std::remove_if(entries->begin(), entries->end(),
                                    [&](const v1::PipelinePermissions& p) {
                                      return p.pipeline_id() == pipeline_id;
                                    }),
                     entries->end());
      if (entries->size() != before) {
        *role.mutable_update_time() = change.now;
        role.set_etag(change.etag);
        change.batch.PutRole(role);
      }
    }
    return absl::OkStatus();
  }));
  return outcome;
}

// --- Stages ------------------------------------------------------------------

absl::StatusOr<v1::Stage> ConfigManager::CreateStage(int64_t pipeline_id,
                                                     const v1::Stage& input) {
  CRM_ASSIGN_OR_RETURN(std::string stage_id,
                       NormalizeStageId(pipeline_id, input.stage_id()));
  v1::Stage stage = input;
  stage.set_stage_id(stage_id);
  stage.set_pipeline_id(pipeline_id);
  stage.clear_create_time();
  stage.clear_update_time();
  stage.clear_etag();
  stage.clear_deleting();
  if (stage.color().empty())
    stage.set_color(DefaultStageColor(stage.semantics()));
  CRM_RETURN_IF_ERROR(ValidateStageFields(stage));
  CRM_RETURN_IF_ERROR(Mutate([&](Change& change) -> absl::Status {
    auto it = change.data.pipelines.find(pipeline_id);
    if (it == change.data.pipelines.end()) {
      return absl::NotFoundError(
          absl::StrCat("pipeline ", pipeline_id, " not found"));
    }
    auto& stages = it->second.stages;
    if (stages.size() >= static_cast<size_t>(kMaxStagesPerPipeline)) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "stages: a pipeline has at most ", kMaxStagesPerPipeline, " stages"));
    }
    for (const auto& existing : stages) {
      if (existing.stage_id() == stage_id) {
        return absl::AlreadyExistsError(absl::StrCat(
            "stage ", stage_id, " already exists in pipeline ", pipeline_id));
      }
    }
    *stage.mutable_create_time() = change.now;
    *stage.mutable_update_time() = change.now;
    stage.set_etag(change.etag);
    stages.push_back(stage);
    SortStages(&stages);
    CRM_RETURN_IF_ERROR(CheckStageOrder(stages));
    change.batch.PutStage(stage);
    return absl::OkStatus();
  }));
  return stage;
}

absl::StatusOr<v1::Stage> ConfigManager::UpdateStage(const v1::Stage& input,
                                                     const FieldMask& mask,
                                                     const std::string& etag) {
  CRM_ASSIGN_OR_RETURN(
      std::set<std::string> paths,
      ParseMask(
          mask,
          {"name", "sort", "color", "default_probability", "rotting_days"},
          {"stage_id", "pipeline_id", "semantics", "create_time", "update_time",
           "etag", "deleting"}));
  CRM_ASSIGN_OR_RETURN(const std::string stage_id,
                       NormalizeStageId(input.pipeline_id(), input.stage_id()));
  v1::Stage result;
  CRM_RETURN_IF_ERROR(Mutate([&](Change& change) -> absl::Status {
    auto it = change.data.pipelines.find(input.pipeline_id());
    if (it == change.data.pipelines.end()) {
      return absl::NotFoundError(
          absl::StrCat("pipeline ", input.pipeline_id(), " not found"));
    }
    auto& stages = it->second.stages;
    auto stage_it = std::find_if(
        stages.begin(), stages.end(),
        [&](const v1::Stage& s) { return s.stage_id() == stage_id; });
    if (stage_it == stages.end()) {
      return absl::NotFoundError(absl::StrCat("stage \"", stage_id,
                                              "\" not found in pipeline ",
                                              input.pipeline_id()));
    }
    CRM_RETURN_IF_ERROR(CheckEtag(etag, stage_it->etag(), "the stage"));
    v1::Stage updated = *stage_it;
    if (paths.count("name") > 0) updated.set_name(input.name());
    if (paths.count("sort") > 0) updated.set_sort(input.sort());
    if (paths.count("color") > 0) updated.set_color(input.color());
    if (paths.count("default_probability") > 0) {
      updated.set_default_probability(input.default_probability());
    }
    if (paths.count("rotting_days") > 0)
      updated.set_rotting_days(input.rotting_days());
    CRM_RETURN_IF_ERROR(ValidateStageFields(updated));
    if (SameIgnoringMeta(updated, *stage_it)) {
      result = *stage_it;
      return absl::OkStatus();
    }
    *updated.mutable_update_time() = change.now;
    updated.set_etag(change.etag);
    *stage_it = updated;
    SortStages(&stages);
    CRM_RETURN_IF_ERROR(CheckStageOrder(stages));
    change.batch.PutStage(updated);
    result = updated;
    return absl::OkStatus();
  }));
  return result;
}

absl::Status ConfigManager::DeleteStage(int64_t pipeline_id,
                                        const std::string& raw_stage_id,
                                        const std::string& etag) {
  CRM_ASSIGN_OR_RETURN(const std::string stage_id,
                       NormalizeStageId(pipeline_id, raw_stage_id));
  // What must hold in every step: the stage exists with a current etag, the
  // pipeline's order stays valid without it, and no other delete of it is
  // under way.
  auto check = [&](const ConfigData& data) -> absl::Status {
    const PipelineEntry* entry = data.FindPipeline(pipeline_id);
    if (entry == nullptr) {
      return absl::NotFoundError(
          absl::StrCat("pipeline ", pipeline_id, " not found"));
    }
    const v1::Stage* stage = data.FindStage(pipeline_id, stage_id);
    if (stage == nullptr) {
      return absl::NotFoundError(absl::StrCat(
          "stage \"", stage_id, "\" not found in pipeline ", pipeline_id));
    }
    CRM_RETURN_IF_ERROR(CheckEtag(etag, stage->etag(), "the stage"));
    if (stage->deleting()) {
      return absl::AbortedError(absl::StrCat(
          "stage ", stage_id, " is being deleted by another request"));
    }
    std::vector<v1::Stage> rest;
    for (const auto& other : entry->stages) {
      if (other.stage_id() != stage_id) rest.push_back(other);
    }
    return CheckStageOrder(rest);
  };
  auto find = [&](Change& change) {
    auto& stages = change.data.pipelines[pipeline_id].stages;
    return std::find_if(stages.begin(), stages.end(), [&](const v1::Stage& s) {
      return s.stage_id() == stage_id;
    });
  };
  auto still_holds = [&](int64_t deals) {
    return absl::FailedPreconditionError(
        absl::StrCat("stage ", stage_id, " still holds ", deals,
                     " deals; move them to another stage first"));
  };
  // Step 0: the usual refusals write nothing.
  CRM_RETURN_IF_ERROR(check(*Snapshot()));
  CRM_ASSIGN_OR_RETURN(const int64_t seen, deal_counter_.CountDealsInStage(
                                               pipeline_id, stage_id, 0));
  if (seen > 0) return still_holds(seen);
  // Step 1: mark the stage `deleting` (etag unchanged); from this version
  // deals refuses to put deals into it.
  int64_t marked_version = 0;
  CRM_RETURN_IF_ERROR(Mutate([&](Change& change) -> absl::Status {
    CRM_RETURN_IF_ERROR(check(change.data));
    auto stage_it = find(change);
    stage_it->set_deleting(true);
    change.batch.PutStage(*stage_it);
    marked_version = change.version;
    return absl::OkStatus();
  }));
  // Step 2: count as of the marked version, without the writer lock.
  const absl::StatusOr<int64_t> deals =
      deal_counter_.CountDealsInStage(pipeline_id, stage_id, marked_version);
  // Step 3: delete, or clear the mark and say why not.
  absl::Status outcome = absl::OkStatus();
  CRM_RETURN_IF_ERROR(Mutate([&](Change& change) -> absl::Status {
    if (change.data.FindStage(pipeline_id, stage_id) == nullptr) {
      return absl::NotFoundError(absl::StrCat(
          "stage \"", stage_id, "\" not found in pipeline ", pipeline_id));
    }
    auto stage_it = find(change);
    if (!deals.ok()) {
      outcome = deals.status();
    } else if (*deals > 0) {
      outcome = still_holds(*deals);
    } else {
      // The stage or its neighbours may have been edited meanwhile; the
      // mark itself is what this request set.
      stage_it->set_deleting(false);
      outcome = check(change.data);
    }
    if (!outcome.ok()) {
      stage_it->set_deleting(false);
      change.batch.PutStage(*stage_it);
      return absl::OkStatus();
    }
    change.data.pipelines[pipeline_id].stages.erase(stage_it);
    change.batch.DeleteStage(pipeline_id, stage_id);
    for (auto& [role_id, role] : change.data.roles) {
      if (ForgetStage(&role, pipeline_id, stage_id)) {
        *role.mutable_update_time() = change.now;
        role.set_etag(change.etag);
        change.batch.PutRole(role);
      }
    }
    return absl::OkStatus();
  }));
  return outcome;
}

absl::StatusOr<std::vector<v1::Stage>> ConfigManager::ReorderStages(
    int64_t pipeline_id, const std::vector<std::string>& raw_stage_ids) {
  std::vector<v1::Stage> result;
  CRM_RETURN_IF_ERROR(Mutate([&](Change& change) -> absl::Status {
    auto it = change.data.pipelines.find(pipeline_id);
    if (it == change.data.pipelines.end()) {
      return absl::NotFoundError(
          absl::StrCat("pipeline ", pipeline_id, " not found"));
    }
    auto& stages = it->second.stages;
    std::vector<std::string> ids;
    for (size_t i = 0; i < raw_stage_ids.size(); ++i) {
      auto id = NormalizeStageId(pipeline_id, raw_stage_ids[i]);
      if (!id.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "stage_ids[", i, "]: ", std::string(id.status().message())));
      }
      ids.push_back(*std::move(id));
    }
    const std::vector<std::string>& stage_ids = ids;
    std::set<std::string> given(stage_ids.begin(), stage_ids.end());
    if (given.size() != stage_ids.size()) {
      return absl::InvalidArgumentError("stage_ids: a stage is listed twice");
    }
    if (stage_ids.size() != stages.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("stage_ids: must list all ", stages.size(),
                       " stages of the pipeline, got ", stage_ids.size()));
    }
    std::vector<v1::Stage> reordered;
    for (size_t i = 0; i < stage_ids.size(); ++i) {
      auto stage_it = std::find_if(
          stages.begin(), stages.end(),
          [&](const v1::Stage& s) { return s.stage_id() == stage_ids[i]; });
      if (stage_it == stages.end()) {
        return absl::InvalidArgumentError(
            absl::StrCat("stage_ids[", i, "]: stage \"", stage_ids[i],
                         "\" is not in pipeline ", pipeline_id));
      }
      v1::Stage stage = *stage_it;
      stage.set_sort(static_cast<int32_t>((i + 1) * 10));
      reordered.push_back(std::move(stage));
    }
    CRM_RETURN_IF_ERROR(CheckStageOrder(reordered));
    for (auto& stage : reordered) {
      const v1::Stage* old =
          change.data.FindStage(pipeline_id, stage.stage_id());
      if (old->sort() == stage.sort()) continue;
      *stage.mutable_update_time() = change.now;
      stage.set_etag(change.etag);
      change.batch.PutStage(stage);
    }
    stages = std::move(reordered);
    result = stages;
    return absl::OkStatus();
  }));
  return result;
}

// --- Custom fields -----------------------------------------------------------

namespace {

// Gives new options ids and checks that kept ids belong to `previous`.
absl::Status AssignOptionIds(v1::FieldDefinition* field,
                             const v1::FieldDefinition* previous,
                             crm::pipelines::storage::Counters* counters) {
  std::set<int64_t> known;
  if (previous != nullptr) {
    for (const auto& option : previous->options()) known.insert(option.id());
  }
  for (int i = 0; i < field->options_size(); ++i) {
    auto* option = field->mutable_options(i);
    if (option->id() != 0 && previous != nullptr) {
      if (known.erase(option->id()) == 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("field.options[", i, "].id: option ", option->id(),
                         " is not an option of ", field->code(),
                         " (use 0 for a new option)"));
      }
      continue;
    }
    const int64_t id = std::max<int64_t>(1, counters->next_option_id());
    counters->set_next_option_id(id + 1);
    option->set_id(id);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<v1::FieldDefinition> ConfigManager::CreateField(
    const v1::FieldDefinition& input) {
  v1::FieldDefinition field = input;
  field.clear_create_time();
  field.clear_update_time();
  field.clear_etag();
  for (auto& option : *field.mutable_options()) option.set_id(0);
  CRM_RETURN_IF_ERROR(ValidateFieldDefinition(field));
  CRM_RETURN_IF_ERROR(Mutate([&](Change& change) -> absl::Status {
    if (change.data.fields.count(field.code()) > 0) {
      return absl::AlreadyExistsError(
          absl::StrCat("field ", field.code(), " already exists"));
    }
    if (change.data.fields.size() >= static_cast<size_t>(kMaxFields)) {
      return absl::ResourceExhaustedError(
          absl::StrCat("fields: at most ", kMaxFields, " custom fields"));
    }
    CRM_RETURN_IF_ERROR(
        AssignOptionIds(&field, nullptr, &change.data.counters));
    *field.mutable_create_time() = change.now;
    *field.mutable_update_time() = change.now;
    field.set_etag(change.etag);
    change.data.fields[field.code()] = field;
    change.batch.PutField(field);
    return absl::OkStatus();
  }));
  return field;
}

absl::StatusOr<v1::FieldDefinition> ConfigManager::UpdateField(
    const v1::FieldDefinition& input, const FieldMask& mask,
    const std::string& etag) {
  CRM_ASSIGN_OR_RETURN(
      std::set<std::string> paths,
      ParseMask(
          mask, {"label", "sort", "mandatory", "options"},
          {"code", "type", "multiple", "create_time", "update_time", "etag"}));
  v1::FieldDefinition result;
  CRM_RETURN_IF_ERROR(Mutate([&](Change& change) -> absl::Status {
    auto it = change.data.fields.find(input.code());
    if (it == change.data.fields.end()) {
      return absl::NotFoundError(
          absl::StrCat("field ", input.code(), " not found"));
    }
    CRM_RETURN_IF_ERROR(CheckEtag(etag, it->second.etag(), "the field"));
    v1::FieldDefinition updated = it->second;
    if (paths.count("label") > 0) updated.set_label(input.label());
    if (paths.count("sort") > 0) updated.set_sort(input.sort());
    if (paths.count("mandatory") > 0) updated.set_mandatory(input.mandatory());
    if (paths.count("options") > 0) {
      *updated.mutable_options() = input.options();
      CRM_RETURN_IF_ERROR(
          AssignOptionIds(&updated, &it->second, &change.data.counters));
    }
    CRM_RETURN_IF_ERROR(ValidateFieldDefinition(updated));
    if (SameIgnoringMeta(updated, it->second)) {
      result = it->second;
      return absl::OkStatus();
    }
    *updated.mutable_update_time() = change.now;
    updated.set_etag(change.etag);
    it->second = updated;
    change.batch.PutField(updated);
    result = updated;
    return absl::OkStatus();
  }));
  return result;
}

absl::Status ConfigManager::DeleteField(const std::string& code,
                                        const std::string& etag) {
  return Mutate([&](Change& change) -> absl::Status {
    auto it = change.data.fields.find(code);
    if (it == change.data.fields.end()) {
      return absl::NotFoundError(absl::StrCat("field ", code, " not found"));
    }
    CRM_RETURN_IF_ERROR(CheckEtag(etag, it->second.etag(), "the field"));
    change.data.fields.erase(it);
    change.batch.DeleteField(code);
    return absl::OkStatus();
  });
}

// --- Departments -------------------------------------------------------------

absl::StatusOr<v1::Department> ConfigManager::CreateDepartment(
    const v1::Department& input) {
  v1::Department department = input;
  department.clear_create_time();
  department.clear_update_time();
  department.clear_etag();
  CRM_RETURN_IF_ERROR(ValidateName("department.name", department.name()));
  CRM_RETURN_IF_ERROR(NormalizeMembers(&department));
  CRM_RETURN_IF_ERROR(Mutate([&](Change& change) -> absl::Status {
    if (department.parent_id() != 0 &&
        change.data.departments.count(department.parent_id()) == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("department.parent_id: department ",
                       department.parent_id(), " does not exist"));
    }
    auto& counters = change.data.counters;
    const int64_t id = std::max<int64_t>(1, counters.next_department_id());
    counters.set_next_department_id(id + 1);
    department.set_id(id);
    *department.mutable_create_time() = change.now;
    *department.mutable_update_time() = change.now;
    department.set_etag(change.etag);
    change.data.departments[id] = department;
    change.batch.PutDepartment(department);
    return absl::OkStatus();
  }));
  return department;
}

absl::StatusOr<v1::Department> ConfigManager::UpdateDepartment(
    const v1::Department& input, const FieldMask& mask,
    const std::string& etag) {
  CRM_ASSIGN_OR_RETURN(
      std::set<std::string> paths,
      ParseMask(mask, {"name", "parent_id", "head_user_id", "member_user_ids"},
                {"id", "create_time", "update_time", "etag"}));
  v1::Department result;
  CRM_RETURN_IF_ERROR(Mutate([&](Change& change) -> absl::Status {
    auto it = change.data.departments.find(input.id());
    if (it == change.data.departments.end()) {
      return absl::NotFoundError(
          absl::StrCat("department ", input.id(), " not found"));
    }
    CRM_RETURN_IF_ERROR(CheckEtag(etag, it->second.etag(), "the department"));
    v1::Department updated = it->second;
    if (paths.count("name") > 0) updated.set_name(input.name());
    if (paths.count("head_user_id") > 0)
      updated.set_head_user_id(input.head_user_id());
    if (paths.count("member_user_ids") > 0) {
      *updated.mutable_member_user_ids() = input.member_user_ids();
    }
    if (paths.count("parent_id") > 0) {
      const int64_t parent = input.parent_id();
      if (parent != 0 && change.data.departments.count(parent) == 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            "department.parent_id: department ", parent, " does not exist"));
      }
      // The new parent must not be the department itself or one below it.
      for (int64_t current = parent; current != 0;
           current = change.data.departments.at(current).parent_id()) {
        if (current == input.id()) {
          return absl::FailedPreconditionError(absl::StrCat(
              "department.parent_id: department ", parent, " is ", input.id(),
              " itself or below it; the tree would get a cycle"));
        }
      }
      updated.set_parent_id(parent);
    }
    CRM_RETURN_IF_ERROR(ValidateName("department.name", updated.name()));
    CRM_RETURN_IF_ERROR(NormalizeMembers(&updated));
    if (SameIgnoringMeta(updated, it->second)) {
      result = it->second;
      return absl::OkStatus();
    }
    *updated.mutable_update_time() = change.now;
    updated.set_etag(change.etag);
    it->second = updated;
    change.batch.PutDepartment(updated);
    result = updated;
    return absl::OkStatus();
  }));
  return result;
}

absl::Status ConfigManager::DeleteDepartment(int64_t department_id,
                                             const std::string& etag) {
  return Mutate([&](Change& change) -> absl::Status {
    auto it = change.data.departments.find(department_id);
    if (it == change.data.departments.end()) {
      return absl::NotFoundError(
          absl::StrCat("department ", department_id, " not found"));
    }
    CRM_RETURN_IF_ERROR(CheckEtag(etag, it->second.etag(), "the department"));
    int children = 0;
    for (const auto& [id, department] : change.data.departments) {
      if (department.parent_id() == department_id) ++children;
    }
    if (children > 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("department ", department_id, " has ", children,
                       " subdepartments; delete or move them first"));
    }
    change.data.departments.erase(it);
    change.batch.DeleteDepartment(department_id);
    for (auto a = change.data.assignments.begin();
         a != change.data.assignments.end();) {
      if (a->second.subject_case() == v1::RoleAssignment::kDepartmentId &&
          a->second.department_id() == department_id) {
        change.batch.DeleteAssignment(a->first);
        a = change.data.assignments.erase(a);
      } else {
        ++a;
      }
    }
    return absl::OkStatus();
  });
}

// --- Roles -------------------------------------------------------------------

absl::StatusOr<v1::Role> ConfigManager::CreateRole(const v1::Role& input) {
  v1::Role role = input;
  role.clear_create_time();
  role.clear_update_time();
  role.clear_etag();
  CRM_RETURN_IF_ERROR(Mutate([&](Change& change) -> absl::Status {
    CRM_RETURN_IF_ERROR(ValidateRole(change.data, role));
    auto& counters = change.data.counters;
    const int64_t id = std::max<int64_t>(1, counters.next_role_id());
    counters.set_next_role_id(id + 1);
    role.set_id(id);
    *role.mutable_create_time() = change.now;
    *role.mutable_update_time() = change.now;
    role.set_etag(change.etag);
    change.data.roles[id] = role;
    change.batch.PutRole(role);
    return absl::OkStatus();
  }));
  return role;
}

absl::StatusOr<v1::Role> ConfigManager::UpdateRole(const v1::Role& input,
                                                   const FieldMask& mask,
                                                   const std::string& etag) {
  CRM_ASSIGN_OR_RETURN(std::set<std::string> paths,
                       ParseMask(mask, {"name", "pipelines", "config"},
                                 {"id", "create_time", "update_time", "etag"}));
  v1::Role result;
  CRM_RETURN_IF_ERROR(Mutate([&](Change& change) -> absl::Status {
    auto it = change.data.roles.find(input.id());
    if (it == change.data.roles.end()) {
      return absl::NotFoundError(
          absl::StrCat("role ", input.id(), " not found"));
    }
    CRM_RETURN_IF_ERROR(CheckEtag(etag, it->second.etag(), "the role"));
    v1::Role updated = it->second;
    if (paths.count("name") > 0) updated.set_name(input.name());
    if (paths.count("pipelines") > 0)
      *updated.mutable_pipelines() = input.pipelines();
    if (paths.count("config") > 0) updated.set_config(input.config());
    CRM_RETURN_IF_ERROR(ValidateRole(change.data, updated));
    if (SameIgnoringMeta(updated, it->second)) {
      result = it->second;
      return absl::OkStatus();
    }
    *updated.mutable_update_time() = change.now;
    updated.set_etag(change.etag);
    it->second = updated;
    change.batch.PutRole(updated);
    result = updated;
    return absl::OkStatus();
  }));
  return result;
}

absl::Status ConfigManager::DeleteRole(int64_t role_id,
                                       const std::string& etag) {
  return Mutate([&](Change& change) -> absl::Status {
    auto it = change.data.roles.find(role_id);
    if (it == change.data.roles.end()) {
      return absl::NotFoundError(absl::StrCat("role ", role_id, " not found"));
    }
    CRM_RETURN_IF_ERROR(CheckEtag(etag, it->second.etag(), "the role"));
    change.data.roles.erase(it);
    change.batch.DeleteRole(role_id);
    for (auto a = change.data.assignments.begin();
         a != change.data.assignments.end();) {
      if (a->second.role_id() == role_id) {
        change.batch.DeleteAssignment(a->first);
        a = change.data.assignments.erase(a);
      } else {
        ++a;
      }
    }
    return absl::OkStatus();
  });
}

// --- Role assignments --------------------------------------------------------

absl::StatusOr<v1::RoleAssignment> ConfigManager::CreateRoleAssignment(
    const v1::RoleAssignment& input) {
  v1::RoleAssignment assignment = input;
  assignment.clear_create_time();
  switch (assignment.subject_case()) {
    case v1::RoleAssignment::kUserId:
      if (assignment.user_id() <= 0) {
        return absl::InvalidArgumentError(
            "assignment.user_id: user ids are positive");
      }
      if (assignment.include_subdepartments()) {
        return absl::InvalidArgumentError(
            "assignment.include_subdepartments: only for a department subject");
      }
      break;
    case v1::RoleAssignment::kDepartmentId:
      break;
    default:
      return absl::InvalidArgumentError(
          "assignment.subject: set user_id or department_id");
  }
  CRM_RETURN_IF_ERROR(Mutate([&](Change& change) -> absl::Status {
    if (change.data.roles.count(assignment.role_id()) == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("assignment.role_id: role ", assignment.role_id(),
                       " does not exist"));
    }
    if (assignment.subject_case() == v1::RoleAssignment::kDepartmentId &&
        change.data.departments.count(assignment.department_id()) == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("assignment.department_id: department ",
                       assignment.department_id(), " does not exist"));
    }
    for (const auto& [id, existing] : change.data.assignments) {
      if (existing.role_id() == assignment.role_id() &&
          existing.subject_case() == assignment.subject_case() &&
          existing.user_id() == assignment.user_id() &&
          existing.department_id() == assignment.department_id() &&
          existing.include_subdepartments() ==
              assignment.include_subdepartments()) {
        return absl::AlreadyExistsError(
            absl::StrCat("the same assignment exists already (id ", id, ")"));
      }
    }
    auto& counters = change.data.counters;
    const int64_t id = std::max<int64_t>(1, counters.next_assignment_id());
    counters.set_next_assignment_id(id + 1);
    assignment.set_id(id);
    *assignment.mutable_create_time() = change.now;
    change.data.assignments[id] = assignment;
    change.batch.PutAssignment(assignment);
    return absl::OkStatus();
  }));
  return assignment;
}

absl::Status ConfigManager::DeleteRoleAssignment(int64_t assignment_id) {
  return Mutate([&](Change& change) -> absl::Status {
    auto it = change.data.assignments.find(assignment_id);
    if (it == change.data.assignments.end()) {
      return absl::NotFoundError(
          absl::StrCat("role assignment ", assignment_id, " not found"));
    }
    change.data.assignments.erase(it);
    change.batch.DeleteAssignment(assignment_id);
    return absl::OkStatus();
  });
}

}  // namespace crm::pipeline_config
