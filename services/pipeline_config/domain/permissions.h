// Effective permissions: a user's roles come from direct
// assignments and from assignments to the departments the user belongs to
// (or, with include_subdepartments, to any department above them); for every
// action the highest level across roles wins.
#pragma once

#include <cstdint>
#include <set>

#include "crm/pipelines/v1/access.pb.h"

#include "services/pipeline_config/storage/config_store.h"

namespace crm::pipeline_config {

// Every action at `level`.
v1::ActionLevels UniformLevels(v1::AccessLevel level);

// The departments `user_id` belongs to directly (as member or head).
std::set<int64_t> DirectDepartments(const ConfigData& data, int64_t user_id);
// `roots` and every department below them.
std::set<int64_t> DepartmentClosure(const ConfigData& data,
                                    const std::set<int64_t>& roots);
// The ids of the roles that apply to `user_id`.
std::set<int64_t> RolesOfUser(const ConfigData& data, int64_t user_id);

// True when one of the user's roles has CONFIG.
bool HasConfigPermission(const ConfigData& data, int64_t user_id);

// Merges the user's roles. For an administrator only user_id, is_admin,
// config (true) and config_version are filled. Transition rules of a stage
// come only from roles that grant WRITE there; with none the stage is
// BLOCKED.
v1::EffectivePermissions ComputeEffectivePermissions(const ConfigData& data,
                                                     int64_t user_id,
                                                     bool is_admin);

}  // namespace crm::pipeline_config
