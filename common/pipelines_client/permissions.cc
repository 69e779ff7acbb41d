#include "common/pipelines_client/permissions.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"

namespace crm::common {
namespace {

namespace pv1 = crm::pipelines::v1;

constexpr int kActionCount = 6;

// UNSPECIFIED and values this build does not know count as NONE.
AccessLevel Normalize(AccessLevel level) {
  if (level < pv1::ACCESS_LEVEL_NONE || level > pv1::ACCESS_LEVEL_ALL) {
    return pv1::ACCESS_LEVEL_NONE;
  }
  return level;
}

std::array<AccessLevel, kActionCount> LevelsOf(const pv1::ActionLevels& in) {
  std::array<AccessLevel, kActionCount> out;
  out[static_cast<int>(Action::kRead)] = Normalize(in.read());
  out[static_cast<int>(Action::kAdd)] = Normalize(in.add());
  out[static_cast<int>(Action::kWrite)] = Normalize(in.write());
  out[static_cast<int>(Action::kDelete)] = Normalize(in.delete_());
  out[static_cast<int>(Action::kExport)] = Normalize(in.export_());
  out[static_cast<int>(Action::kImport)] = Normalize(in.import());
  return out;
}

IndexedPermissions::Stage EmptyStage() {
  IndexedPermissions::Stage stage;
  stage.levels.fill(pv1::ACCESS_LEVEL_NONE);
  return stage;
}

// Sorted, unique and positive (0 is "no user").
std::shared_ptr<const std::vector<int64_t>> SortedUnique(
    std::vector<int64_t> ids) {
  ids.erase(std::remove_if(ids.begin(), ids.end(),
                           [](int64_t id) { return id <= 0; }),
            ids.end());
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  return std::make_shared<const std::vector<int64_t>>(std::move(ids));
}

bool Contains(const std::vector<int64_t>& sorted, int64_t id) {
  return std::binary_search(sorted.begin(), sorted.end(), id);
}

const std::shared_ptr<const std::vector<int64_t>>& EmptyIds() {
  static const auto* const kEmpty =
      new std::shared_ptr<const std::vector<int64_t>>(
          std::make_shared<const std::vector<int64_t>>());
  return *kEmpty;
}

}  // namespace

const char* ActionName(Action action) {
  switch (action) {
    case Action::kRead:
      return "read";
    case Action::kAdd:
      return "add";
    case Action::kWrite:
      return "write";
    case Action::kDelete:
      return "delete";
    case Action::kExport:
      return "export";
    case Action::kImport:
      return "import";
  }
  return "unknown";
}

// ---------------------------------------------------------------------------
// IndexedPermissions

IndexedPermissions::IndexedPermissions(
    std::shared_ptr<const pv1::EffectivePermissions> proto)
    : proto_(std::move(proto)) {
  for (const auto& entry : proto_->pipelines()) {
    Pipeline& pipeline = pipelines_[entry.pipeline_id()];
    pipeline.hide_sum = entry.hide_sum();
    pipeline.automation = entry.automation();
    for (const auto& [stage_id, levels] : entry.stage_levels()) {
      auto [it, inserted] = pipeline.stages.try_emplace(stage_id, EmptyStage());
      it->second.levels = LevelsOf(levels);
    }
    for (const auto& [stage_id, rule] : entry.transitions()) {
      // A rule for a stage without levels keeps the stage at NONE.
      auto [it, inserted] = pipeline.stages.try_emplace(stage_id, EmptyStage());
      Stage& stage = it->second;
      stage.has_transition = true;
      switch (rule.mode()) {
        case pv1::TransitionRule::MODE_BLOCKED:
          stage.transition_mode = pv1::TransitionRule::MODE_BLOCKED;
          break;
        case pv1::TransitionRule::MODE_LIST:
          stage.transition_mode = pv1::TransitionRule::MODE_LIST;
          stage.transition_targets.insert(rule.to_stage_ids().begin(),
                                          rule.to_stage_ids().end());
          break;
        default:  // MODE_UNSPECIFIED is documented as ANY.
          stage.transition_mode = pv1::TransitionRule::MODE_ANY;
          break;
      }
    }
  }
  // Levels are ordered, so each closure must contain the smaller one: the
  // proto promises it, and the union keeps that true for any input.
  std::vector<int64_t> department(proto_->department_user_ids().begin(),
                                  proto_->department_user_ids().end());
  department.push_back(proto_->user_id());
  std::vector<int64_t> subdepartment(proto_->subdepartment_user_ids().begin(),
                                     proto_->subdepartment_user_ids().end());
  subdepartment.insert(subdepartment.end(), department.begin(),
                       department.end());
  department_users_ = SortedUnique(std::move(department));
  subdepartment_users_ = SortedUnique(std::move(subdepartment));
}

std::shared_ptr<const IndexedPermissions> IndexedPermissions::Build(
    std::shared_ptr<const pv1::EffectivePermissions> proto) {
  return std::make_shared<const IndexedPermissions>(std::move(proto));
}

std::shared_ptr<const IndexedPermissions> IndexedPermissions::Build(
    const pv1::EffectivePermissions& proto) {
  return Build(std::make_shared<const pv1::EffectivePermissions>(proto));
}

const IndexedPermissions::Pipeline* IndexedPermissions::FindPipeline(
    int64_t pipeline_id) const {
  auto it = pipelines_.find(pipeline_id);
  return it == pipelines_.end() ? nullptr : &it->second;
}

const IndexedPermissions::Stage* IndexedPermissions::FindStage(
    int64_t pipeline_id, const std::string& stage_id) const {
  const Pipeline* pipeline = FindPipeline(pipeline_id);
  if (pipeline == nullptr) return nullptr;
  auto it = pipeline->stages.find(stage_id);
  return it == pipeline->stages.end() ? nullptr : &it->second;
}

bool IndexedPermissions::InDepartment(int64_t user_id) const {
  return Contains(*department_users_, user_id);
}

bool IndexedPermissions::InSubdepartments(int64_t user_id) const {
  return Contains(*subdepartment_users_, user_id);
}

std::shared_ptr<const std::vector<int64_t>>
IndexedPermissions::department_user_ids() const {
  return department_users_;
}

std::shared_ptr<const std::vector<int64_t>>
IndexedPermissions::subdepartment_user_ids() const {
  return subdepartment_users_;
}

// ---------------------------------------------------------------------------
// IndexedPermissionsCache

std::shared_ptr<const IndexedPermissions> IndexedPermissionsCache::Get(
    const std::shared_ptr<const pv1::EffectivePermissions>& proto) {
  {
    absl::MutexLock lock(&mu_);
    auto it = by_user_.find(proto->user_id());
    // The cached entry holds its proto, so the address cannot have been
    // reused by another object: same address = same permissions.
    if (it != by_user_.end() && &it->second->proto() == proto.get()) {
      return it->second;
    }
  }
  // Build outside the lock; a concurrent duplicate build is harmless.
  std::shared_ptr<const IndexedPermissions> built =
      IndexedPermissions::Build(proto);
  absl::MutexLock lock(&mu_);
  if (by_user_.size() >= max_users_ && !by_user_.contains(proto->user_id())) {
    by_user_.clear();
  }
  auto& slot = by_user_[proto->user_id()];
  // Keep the newer of two racing builds.
  if (slot == nullptr || slot->config_version() <= built->config_version()) {
    slot = built;
  }
  return built;
}

// ---------------------------------------------------------------------------
// Checks

Caller MakeCaller(const Principal& principal,
                  std::shared_ptr<const IndexedPermissions> permissions) {
  Caller caller;
  caller.user_id = principal.user_id;
  caller.privileged = principal.is_admin || principal.IsService() ||
                      (permissions != nullptr && permissions->is_admin());
  caller.permissions = std::move(permissions);
  return caller;
}

bool IsPrivileged(const Caller& caller) {
  return caller.privileged ||
         (caller.permissions != nullptr && caller.permissions->is_admin());
}

AccessLevel LevelFor(const Caller& caller, Action action, int64_t pipeline_id,
                     const std::string& stage_id) {
  if (IsPrivileged(caller)) return pv1::ACCESS_LEVEL_ALL;
  if (caller.permissions == nullptr) return pv1::ACCESS_LEVEL_NONE;
  const IndexedPermissions::Stage* stage =
      caller.permissions->FindStage(pipeline_id, stage_id);
  if (stage == nullptr) return pv1::ACCESS_LEVEL_NONE;
  return stage->levels[static_cast<int>(action)];
}

bool LevelCovers(const Caller& caller, AccessLevel level, int64_t assignee_id,
                 bool opened) {
  const IndexedPermissions* permissions = caller.permissions.get();
  switch (Normalize(level)) {
    case pv1::ACCESS_LEVEL_ALL:
      return true;
    case pv1::ACCESS_LEVEL_OPEN:
      if (opened) return true;
      return permissions != nullptr &&
             permissions->InSubdepartments(assignee_id);
    case pv1::ACCESS_LEVEL_SUBDEPARTMENTS:
      return permissions != nullptr &&
             permissions->InSubdepartments(assignee_id);
    case pv1::ACCESS_LEVEL_DEPARTMENT:
      return permissions != nullptr && permissions->InDepartment(assignee_id);
    case pv1::ACCESS_LEVEL_SELF:
      // User ids are positive; 0 is "no assignee", never "me".
      return caller.user_id > 0 && assignee_id == caller.user_id;
    default:
      return false;
  }
}

bool HidesSums(const Caller& caller, int64_t pipeline_id) {
  if (IsPrivileged(caller)) return false;
  if (caller.permissions == nullptr) return true;
  const IndexedPermissions::Pipeline* pipeline =
      caller.permissions->FindPipeline(pipeline_id);
  return pipeline == nullptr || pipeline->hide_sum;
}

bool ReadScope::Matches(int64_t assignee_id, bool opened) const {
  switch (level) {
    case pv1::ACCESS_LEVEL_ALL:
      return true;
    case pv1::ACCESS_LEVEL_SELF:
    case pv1::ACCESS_LEVEL_DEPARTMENT:
    case pv1::ACCESS_LEVEL_SUBDEPARTMENTS:
    case pv1::ACCESS_LEVEL_OPEN:
      return (include_opened && opened) ||
             (assignee_ids != nullptr && Contains(*assignee_ids, assignee_id));
    default:
      return false;
  }
}

ReadScope ReadScopeFor(const Caller& caller, int64_t pipeline_id,
                       const std::string& stage_id) {
  ReadScope scope;
  scope.level = LevelFor(caller, Action::kRead, pipeline_id, stage_id);
  scope.assignee_ids = EmptyIds();
  switch (scope.level) {
    case pv1::ACCESS_LEVEL_SELF:
      if (caller.user_id > 0) {
        scope.assignee_ids =
            std::make_shared<const std::vector<int64_t>>(1, caller.user_id);
      }
      break;
    case pv1::ACCESS_LEVEL_DEPARTMENT:
      scope.assignee_ids = caller.permissions->department_user_ids();
      break;
    case pv1::ACCESS_LEVEL_SUBDEPARTMENTS:
      scope.assignee_ids = caller.permissions->subdepartment_user_ids();
      break;
    case pv1::ACCESS_LEVEL_OPEN:
      scope.assignee_ids = caller.permissions->subdepartment_user_ids();
      scope.include_opened = true;
      break;
    default:  // NONE, ALL
      break;
  }
  return scope;
}
}  // namespace crm::common
