#include "services/pipeline_config/domain/permissions.h"

#include <algorithm>
#include <map>
#include <string>
#include <vector>

namespace crm::pipeline_config {
namespace {

v1::AccessLevel Max(v1::AccessLevel a, v1::AccessLevel b) {
  return static_cast<int>(a) >= static_cast<int>(b) ? a : b;
}

void MergeLevels(const v1::ActionLevels& from, v1::ActionLevels* into) {
  into->set_read(Max(into->read(), from.read()));
  into->set_add(Max(into->add(), from.add()));
  into->set_write(Max(into->write(), from.write()));
  into->set_delete_(Max(into->delete_(), from.delete_()));
  into->set_export_(Max(into->export_(), from.export_()));
  into->set_import(Max(into->import(), from.import()));
}

bool GrantsAnything(const v1::ActionLevels& levels) {
  for (v1::AccessLevel level :
       {levels.read(), levels.add(), levels.write(), levels.delete_(),
        levels.export_(), levels.import()}) {
    if (static_cast<int>(level) > static_cast<int>(v1::ACCESS_LEVEL_NONE))
      return true;
  }
  return false;
}

// Accumulates transition rules of several roles for one current stage: ANY
// wins over everything, lists are united, BLOCKED only if all block.
struct TransitionAccumulator {
  bool any = false;
  bool seen = false;
  std::set<std::string> targets;

  void Add(const v1::TransitionRule& rule) {
    seen = true;
    switch (rule.mode()) {
      case v1::TransitionRule::MODE_BLOCKED:
        break;
      case v1::TransitionRule::MODE_LIST:
        targets.insert(rule.to_stage_ids().begin(), rule.to_stage_ids().end());
        break;
      default:
        any = true;
    }
  }

  v1::TransitionRule Result(const std::vector<v1::Stage>& order) const {
    v1::TransitionRule rule;
    if (!seen) {
      // No role may change deals in this stage, so none may move them.
      rule.set_mode(v1::TransitionRule::MODE_BLOCKED);
    } else if (any) {
      rule.set_mode(v1::TransitionRule::MODE_ANY);
    } else if (targets.empty()) {
      rule.set_mode(v1::TransitionRule::MODE_BLOCKED);
    } else {
      rule.set_mode(v1::TransitionRule::MODE_LIST);
      for (const auto& stage : order) {
        if (targets.count(stage.stage_id()) > 0)
          rule.add_to_stage_ids(stage.stage_id());
      }
    }
    return rule;
  }
};

}  // namespace

v1::ActionLevels UniformLevels(v1::AccessLevel level) {
  v1::ActionLevels levels;
  levels.set_read(level);
  levels.set_add(level);
  levels.set_write(level);
  levels.set_delete_(level);
  levels.set_export_(level);
  levels.set_import(level);
  return levels;
}

std::set<int64_t> DirectDepartments(const ConfigData& data, int64_t user_id) {
  std::set<int64_t> result;
  for (const auto& [id, department] : data.departments) {
    if (user_id <= 0) break;  // 0 is "nobody" (a department without a head).
    if (department.head_user_id() == user_id ||
        std::find(department.member_user_ids().begin(),
                  department.member_user_ids().end(),
                  user_id) != department.member_user_ids().end()) {
      result.insert(id);
    }
  }
  return result;
}

std::set<int64_t> DepartmentClosure(const ConfigData& data,
                                    const std::set<int64_t>& roots) {
  std::map<int64_t, std::vector<int64_t>> children;
  for (const auto& [id, department] : data.departments) {
    children[department.parent_id()].push_back(id);
  }
  std::set<int64_t> result;
  std::vector<int64_t> stack(roots.begin(), roots.end());
  while (!stack.empty()) {
    const int64_t id = stack.back();
    stack.pop_back();
    if (!result.insert(id).second) continue;
    auto it = children.find(id);
    if (it != children.end())
      stack.insert(stack.end(), it->second.begin(), it->second.end());
  }
  return result;
}

std::set<int64_t> RolesOfUser(const ConfigData& data, int64_t user_id) {
  const std::set<int64_t> direct = DirectDepartments(data, user_id);
  // Departments above the user's ones, for assignments with subdepartments.
  std::set<int64_t> ancestors;
  for (int64_t id : direct) {
    int64_t current = id;
    // The tree has no cycles (checked on update); the bound guards anyway.
    for (size_t depth = 0; current != 0 && depth <= data.departments.size();
         ++depth) {
      ancestors.insert(current);
      auto it = data.departments.find(current);
      if (it == data.departments.end()) break;
      current = it->second.parent_id();
    }
  }
  std::set<int64_t> roles;
  for (const auto& [id, assignment] : data.assignments) {
    switch (assignment.subject_case()) {
      case v1::RoleAssignment::kUserId:
        if (assignment.user_id() == user_id) roles.insert(assignment.role_id());
        break;
      case v1::RoleAssignment::kDepartmentId: {
        const auto& scope =
            assignment.include_subdepartments() ? ancestors : direct;
        if (scope.count(assignment.department_id()) > 0)
          roles.insert(assignment.role_id());
        break;
      }
      default:
        break;
    }
  }
  return roles;
}

bool HasConfigPermission(const ConfigData& data, int64_t user_id) {
  for (int64_t role_id : RolesOfUser(data, user_id)) {
    auto it = data.roles.find(role_id);
    if (it != data.roles.end() && it->second.config()) return true;
  }
  return false;
}

v1::EffectivePermissions ComputeEffectivePermissions(const ConfigData& data,
                                                     int64_t user_id,
                                                     bool is_admin) {
  v1::EffectivePermissions result;
  result.set_user_id(user_id);
  result.set_config_version(data.counters.version());
  if (is_admin) {
    result.set_is_admin(true);
    result.set_config(true);
    return result;
  }

  const std::set<int64_t> direct = DirectDepartments(data, user_id);
  const std::set<int64_t> closure = DepartmentClosure(data, direct);
  result.mutable_department_ids()->Add(direct.begin(), direct.end());
  result.mutable_subdepartment_ids()->Add(closure.begin(), closure.end());
  auto members_of = [&](const std::set<int64_t>& departments) {
    std::set<int64_t> users = {user_id};
    for (int64_t id : departments) {
      const auto& department = data.departments.at(id);
      if (department.head_user_id() > 0)
        users.insert(department.head_user_id());
      users.insert(department.member_user_ids().begin(),
                   department.member_user_ids().end());
    }
    return users;
  };
  const std::set<int64_t> department_users = members_of(direct);
  const std::set<int64_t> subdepartment_users = members_of(closure);
  result.mutable_department_user_ids()->Add(department_users.begin(),
                                            department_users.end());
  result.mutable_subdepartment_user_ids()->Add(subdepartment_users.begin(),
                                               subdepartment_users.end());

  std::vector<const v1::Role*> roles;
  for (int64_t role_id : RolesOfUser(data, user_id)) {
    auto it = data.roles.find(role_id);
    if (it == data.roles.end()) continue;
    roles.push_back(&it->second);
    if (it->second.config()) result.set_config(true);
  }

  for (const auto& [pipeline_id, entry] : data.pipelines) {
    std::vector<const v1::PipelinePermissions*> grants;
    for (const auto* role : roles) {
      for (const auto& permissions : role->pipelines()) {
        if (permissions.pipeline_id() == pipeline_id)
          grants.push_back(&permissions);
      }
    }
    if (grants.empty()) continue;
    auto* effective = result.add_pipelines();
    effective->set_pipeline_id(pipeline_id);
    bool hide_sum = true;
    bool any_grant = false;
    v1::AutomationAccess automation = v1::AUTOMATION_ACCESS_NONE;
    for (const auto& stage : entry.stages) {
      v1::ActionLevels levels = UniformLevels(v1::ACCESS_LEVEL_NONE);
      TransitionAccumulator transitions;
      for (const auto* grant : grants) {
        auto override_it = grant->stage_levels().find(stage.stage_id());
        const v1::ActionLevels& role_levels =
            override_it != grant->stage_levels().end() ? override_it->second
                                                       : grant->levels();
        MergeLevels(role_levels, &levels);
        // Only a role that lets the user change deals in this stage has a say
        // in where they may go; otherwise a role granting nothing here would
        // widen another role's LIST or BLOCKED rule to ANY.
        if (static_cast<int>(role_levels.write()) <=
            static_cast<int>(v1::ACCESS_LEVEL_NONE)) {
          continue;
        }
        auto transition_it = grant->transitions().find(stage.stage_id());
        if (transition_it != grant->transitions().end()) {
          transitions.Add(transition_it->second);
        } else {
          transitions.Add(v1::TransitionRule());
        }
      }
      (*effective->mutable_stage_levels())[stage.stage_id()] = levels;
      (*effective->mutable_transitions())[stage.stage_id()] =
          transitions.Result(entry.stages);
    }
    for (const auto* grant : grants) {
      bool grants_here = GrantsAnything(grant->levels());
      for (const auto& [stage_id, levels] : grant->stage_levels()) {
        grants_here = grants_here || GrantsAnything(levels);
      }
      if (grants_here) {
        any_grant = true;
        hide_sum = hide_sum && grant->hide_sum();
      }
      if (static_cast<int>(grant->automation()) >
          static_cast<int>(automation)) {
        automation = grant->automation();
      }
    }
    effective->set_hide_sum(any_grant && hide_sum);
    effective->set_automation(automation);
  }
  return result;
}

}  // namespace crm::pipeline_config
