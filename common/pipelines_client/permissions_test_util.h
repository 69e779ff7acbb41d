// Test-only builders of EffectivePermissions and Callers, shared by the tests
// of common/pipelines_client/permissions.h and of the deals access checks: a
// fixed company tree (the k* user ids), pipeline and stage ids, ActionLevels
// and TransitionRule builders, the caller's base permissions for that tree,
// and a pipeline with one stage per access level.
//
//   pv1::EffectivePermissions permissions = BasePermissions();
//   auto* pipeline = AddPipeline(&permissions, kPipeline);
//   (*pipeline->mutable_stage_levels())[kNew] = Uniform(ACCESS_LEVEL_SELF);
//   Caller caller = UserCaller(permissions);
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "crm/pipelines/v1/access.pb.h"

#include "common/auth/auth.h"
#include "common/pipelines_client/permissions.h"

namespace crm::common::testing {

// The company tree of the tests:
//   Sales (10): head 2 (the caller), member 3
//     Sales East (11): head 4, member 5
//       Sales East North (12): head 6, member 7   <- two levels below
//   Marketing (20): member 99 (an outsider)
inline constexpr int64_t kMe = 2;
inline constexpr int64_t kColleague = 3;
inline constexpr int64_t kSubMember = 4;        // One level below.
inline constexpr int64_t kNestedSubMember = 7;  // Two levels below.
inline constexpr int64_t kOutsider = 99;

inline constexpr int64_t kPipeline = 1;
inline constexpr int64_t kAbsentPipeline = 5;
inline constexpr char kNew[] = "C1:NEW";
inline constexpr char kPrep[] = "C1:PREPARATION";
inline constexpr char kWon[] = "C1:WON";
inline constexpr char kLose[] = "C1:LOSE";

inline crm::pipelines::v1::ActionLevels Levels(
    crm::pipelines::v1::AccessLevel read, crm::pipelines::v1::AccessLevel add,
    crm::pipelines::v1::AccessLevel write, crm::pipelines::v1::AccessLevel del,
    crm::pipelines::v1::AccessLevel exp, crm::pipelines::v1::AccessLevel imp) {
  crm::pipelines::v1::ActionLevels levels;
  levels.set_read(read);
  levels.set_add(add);
  levels.set_write(write);
  levels.set_delete_(del);
  levels.set_export_(exp);
  levels.set_import(imp);
  return levels;
}

inline crm::pipelines::v1::ActionLevels Uniform(
    crm::pipelines::v1::AccessLevel level) {
  return Levels(level, level, level, level, level, level);
}

inline crm::pipelines::v1::TransitionRule Rule(
    crm::pipelines::v1::TransitionRule::Mode mode,
    std::vector<std::string> targets = {}) {
  crm::pipelines::v1::TransitionRule rule;
  rule.set_mode(mode);
  for (const auto& target : targets) rule.add_to_stage_ids(target);
  return rule;
}

// The caller's permissions without any pipeline: department closures only,
// as pipeline-config computes them for the tree above.
inline crm::pipelines::v1::EffectivePermissions BasePermissions() {
  crm::pipelines::v1::EffectivePermissions permissions;
  permissions.set_user_id(kMe);
  permissions.set_config_version(7);
  permissions.add_department_ids(10);
  for (int64_t id : {10, 11, 12}) permissions.add_subdepartment_ids(id);
  for (int64_t id : {kMe, kColleague}) permissions.add_department_user_ids(id);
  for (int64_t id : {2, 3, 4, 5, 6, 7})
    permissions.add_subdepartment_user_ids(id);
  return permissions;
}

inline crm::pipelines::v1::EffectivePipelinePermissions* AddPipeline(
    crm::pipelines::v1::EffectivePermissions* permissions,
    int64_t pipeline_id) {
  crm::pipelines::v1::EffectivePipelinePermissions* pipeline =
      permissions->add_pipelines();
  pipeline->set_pipeline_id(pipeline_id);
  return pipeline;
}

// BasePermissions plus pipeline kPipeline with one stage per level, each
// named after its level ("NONE", "SELF", "DEPARTMENT", "SUBDEPARTMENTS",
// "OPEN", "ALL") and carrying it for every action.
inline crm::pipelines::v1::EffectivePermissions OneStagePerLevel() {
  namespace pv1 = crm::pipelines::v1;
  pv1::EffectivePermissions permissions = BasePermissions();
  auto* pipeline = AddPipeline(&permissions, kPipeline);
  auto& levels = *pipeline->mutable_stage_levels();
  levels["NONE"] = Uniform(pv1::ACCESS_LEVEL_NONE);
  levels["SELF"] = Uniform(pv1::ACCESS_LEVEL_SELF);
  levels["DEPARTMENT"] = Uniform(pv1::ACCESS_LEVEL_DEPARTMENT);
  levels["SUBDEPARTMENTS"] = Uniform(pv1::ACCESS_LEVEL_SUBDEPARTMENTS);
  levels["OPEN"] = Uniform(pv1::ACCESS_LEVEL_OPEN);
  levels["ALL"] = Uniform(pv1::ACCESS_LEVEL_ALL);
  return permissions;
}

// A plain (non-privileged) user caller for the user of `permissions`.
inline Caller UserCaller(
    const crm::pipelines::v1::EffectivePermissions& permissions) {
  Principal principal;
  principal.user_id = permissions.user_id();
  return MakeCaller(principal, IndexedPermissions::Build(permissions));
}

}  // namespace crm::common::testing
