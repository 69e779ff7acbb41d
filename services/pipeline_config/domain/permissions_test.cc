#include "services/pipeline_config/domain/permissions.h"

#include <initializer_list>
#include <set>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"

#include "common/pipelines_client/permissions_test_util.h"
#include "services/pipeline_config/domain/validation.h"

namespace crm::pipeline_config {
namespace {

using ::crm::common::testing::Levels;
using ::crm::common::testing::Rule;
using ::crm::common::testing::Uniform;
using ::google::protobuf::util::MessageDifferencer;
using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::SizeIs;

constexpr v1::AccessLevel kUnspecified = v1::ACCESS_LEVEL_UNSPECIFIED;
constexpr v1::AccessLevel kNone = v1::ACCESS_LEVEL_NONE;
constexpr v1::AccessLevel kSelf = v1::ACCESS_LEVEL_SELF;
constexpr v1::AccessLevel kDepartment = v1::ACCESS_LEVEL_DEPARTMENT;
constexpr v1::AccessLevel kSubdepartments = v1::ACCESS_LEVEL_SUBDEPARTMENTS;
constexpr v1::AccessLevel kOpen = v1::ACCESS_LEVEL_OPEN;
constexpr v1::AccessLevel kAll = v1::ACCESS_LEVEL_ALL;

MATCHER_P(EqualsProto, expected, "equals " + expected.ShortDebugString()) {
  *result_listener << "is " << arg.ShortDebugString();
  return MessageDifferencer::Equals(arg, expected);
}

constexpr auto kAny = v1::TransitionRule::MODE_ANY;
constexpr auto kBlocked = v1::TransitionRule::MODE_BLOCKED;
constexpr auto kList = v1::TransitionRule::MODE_LIST;

// Users of the department tree below:
//
//   1 Sales (head 100, members 101)          4 Support (head 400, members 401,
//   500)
//   +- 2 Sales East (head 200, members 201, 202, 500)
//      +- 3 East Team A (no head, members 301)
constexpr int64_t kSalesHead = 100;
constexpr int64_t kSalesMember = 101;
constexpr int64_t kEastHead = 200;
constexpr int64_t kEastMember = 201;
constexpr int64_t kEastMember2 = 202;
constexpr int64_t kTeamMember = 301;
constexpr int64_t kSupportHead = 400;
constexpr int64_t kSupportMember = 401;
constexpr int64_t kTwoDepartments = 500;  // in Sales East and Support
constexpr int64_t kNobody = 999;

class PermissionsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    data_.counters.set_version(42);
    for (int64_t id : {0, 1, 2}) {
      PipelineEntry& entry = data_.pipelines[id];
      entry.pipeline.set_id(id);
      entry.pipeline.set_name("Pipeline " + std::to_string(id));
      entry.stages = DefaultStages(id);
    }
    AddDepartment(1, 0, kSalesHead, {kSalesMember});
    AddDepartment(2, 1, kEastHead,
                  {kEastMember, kEastMember2, kTwoDepartments});
    AddDepartment(3, 2, 0, {kTeamMember});
    AddDepartment(4, 0, kSupportHead, {kSupportMember, kTwoDepartments});
  }

  void AddDepartment(int64_t id, int64_t parent, int64_t head,
                     std::vector<int64_t> members) {
    v1::Department& department = data_.departments[id];
    department.set_id(id);
    department.set_name("Department " + std::to_string(id));
    department.set_parent_id(parent);
    department.set_head_user_id(head);
    for (int64_t member : members) department.add_member_user_ids(member);
  }

  // Adds a role and returns it for filling in.
  v1::Role* AddRole(int64_t id) {
    v1::Role& role = data_.roles[id];
    role.set_id(id);
    role.set_name("Role " + std::to_string(id));
    return &role;
  }

  static v1::PipelinePermissions* Grant(v1::Role* role, int64_t pipeline_id,
                                        const v1::ActionLevels& levels) {
    v1::PipelinePermissions* permissions = role->add_pipelines();
    permissions->set_pipeline_id(pipeline_id);
    *permissions->mutable_levels() = levels;
    return permissions;
  }

  void AssignToUser(int64_t role_id, int64_t user_id) {
    v1::RoleAssignment& assignment = data_.assignments[next_assignment_];
    assignment.set_id(next_assignment_++);
    assignment.set_role_id(role_id);
    assignment.set_user_id(user_id);
  }

  void AssignToDepartment(int64_t role_id, int64_t department_id,
                          bool include_sub) {
    v1::RoleAssignment& assignment = data_.assignments[next_assignment_];
    assignment.set_id(next_assignment_++);
    assignment.set_role_id(role_id);
    assignment.set_department_id(department_id);
    assignment.set_include_subdepartments(include_sub);
  }

  v1::EffectivePermissions Effective(int64_t user_id) const {
    return ComputeEffectivePermissions(data_, user_id, /*is_admin=*/false);
  }

  // The effective permissions of one pipeline; fails the test if absent.
  static v1::EffectivePipelinePermissions In(
      const v1::EffectivePermissions& effective, int64_t pipeline_id) {
    for (const auto& pipeline : effective.pipelines()) {
      if (pipeline.pipeline_id() == pipeline_id) return pipeline;
    }
    ADD_FAILURE() << "pipeline " << pipeline_id << " missing";
    return v1::EffectivePipelinePermissions();
  }

  static std::vector<int64_t> PipelineIds(
      const v1::EffectivePermissions& effective) {
    std::vector<int64_t> ids;
    for (const auto& pipeline : effective.pipelines())
      ids.push_back(pipeline.pipeline_id());
    return ids;
  }

  ConfigData data_;
  int64_t next_assignment_ = 1;
};

// --- Department membership ---------------------------------------------------

TEST_F(PermissionsTest, DirectDepartments) {
  EXPECT_EQ(DirectDepartments(data_, kSalesMember), std::set<int64_t>({1}));
  EXPECT_EQ(DirectDepartments(data_, kSalesHead), std::set<int64_t>({1}));
  EXPECT_EQ(DirectDepartments(data_, kEastHead), std::set<int64_t>({2}));
  EXPECT_EQ(DirectDepartments(data_, kTeamMember), std::set<int64_t>({3}));
  EXPECT_EQ(DirectDepartments(data_, kTwoDepartments),
            std::set<int64_t>({2, 4}));
  EXPECT_THAT(DirectDepartments(data_, kNobody), IsEmpty());
}

// head_user_id 0 means "no head" (access.proto), so user id 0 (the id of
// service identities) heads nothing and gets no roles from departments.
TEST_F(PermissionsTest, HeadlessDepartmentDoesNotContainUserZero) {
  EXPECT_THAT(DirectDepartments(data_, 0), IsEmpty());
  v1::Role* role = AddRole(1);
  role->set_config(true);
  AssignToDepartment(1, 3, /*include_sub=*/false);
  EXPECT_THAT(RolesOfUser(data_, 0), IsEmpty());
  EXPECT_FALSE(HasConfigPermission(data_, 0));
}

TEST_F(PermissionsTest, DepartmentClosure) {
  EXPECT_EQ(DepartmentClosure(data_, {1}), std::set<int64_t>({1, 2, 3}));
  EXPECT_EQ(DepartmentClosure(data_, {2}), std::set<int64_t>({2, 3}));
  EXPECT_EQ(DepartmentClosure(data_, {3}), std::set<int64_t>({3}));
  EXPECT_EQ(DepartmentClosure(data_, {4}), std::set<int64_t>({4}));
  EXPECT_EQ(DepartmentClosure(data_, {2, 4}), std::set<int64_t>({2, 3, 4}));
  EXPECT_EQ(DepartmentClosure(data_, {1, 3}), std::set<int64_t>({1, 2, 3}));
  EXPECT_THAT(DepartmentClosure(data_, {}), IsEmpty());
}

// --- Roles of a user ---------------------------------------------------------

TEST_F(PermissionsTest, RolesFromUserAssignment) {
  AddRole(1);
  AddRole(2);
  AssignToUser(1, kNobody);
  AssignToUser(2, kSalesMember);
  EXPECT_EQ(RolesOfUser(data_, kNobody), std::set<int64_t>({1}));
  EXPECT_EQ(RolesOfUser(data_, kSalesMember), std::set<int64_t>({2}));
  EXPECT_THAT(RolesOfUser(data_, kEastMember), IsEmpty());
}

TEST_F(PermissionsTest, DepartmentAssignmentReachesDirectMembersOnly) {
  AddRole(1);
  AssignToDepartment(1, 2, /*include_sub=*/false);
  EXPECT_EQ(RolesOfUser(data_, kEastHead),
            std::set<int64_t>({1}));  // head counts
  EXPECT_EQ(RolesOfUser(data_, kEastMember), std::set<int64_t>({1}));
  EXPECT_EQ(RolesOfUser(data_, kTwoDepartments), std::set<int64_t>({1}));
  EXPECT_THAT(RolesOfUser(data_, kTeamMember), IsEmpty());   // below
  EXPECT_THAT(RolesOfUser(data_, kSalesMember), IsEmpty());  // above
  EXPECT_THAT(RolesOfUser(data_, kSalesHead), IsEmpty());
  EXPECT_THAT(RolesOfUser(data_, kSupportMember), IsEmpty());
}

TEST_F(PermissionsTest, IncludeSubdepartmentsReachesNestedDepartmentsOnly) {
  AddRole(1);
  AssignToDepartment(1, 2, /*include_sub=*/true);
  EXPECT_EQ(RolesOfUser(data_, kEastMember), std::set<int64_t>({1}));
  EXPECT_EQ(RolesOfUser(data_, kTeamMember), std::set<int64_t>({1}));
  EXPECT_THAT(RolesOfUser(data_, kSalesMember),
              IsEmpty());  // parent department
  EXPECT_THAT(RolesOfUser(data_, kSalesHead), IsEmpty());
  EXPECT_THAT(RolesOfUser(data_, kSupportHead), IsEmpty());

  // Two levels down from the root.
  AddRole(2);
  AssignToDepartment(2, 1, /*include_sub=*/true);
  EXPECT_EQ(RolesOfUser(data_, kTeamMember), std::set<int64_t>({1, 2}));
  EXPECT_EQ(RolesOfUser(data_, kSalesHead), std::set<int64_t>({2}));
  EXPECT_EQ(RolesOfUser(data_, kTwoDepartments), std::set<int64_t>({1, 2}));
  EXPECT_THAT(RolesOfUser(data_, kSupportMember), IsEmpty());
}

TEST_F(PermissionsTest, RolesFromSeveralRoutesAreCountedOnce) {
  AddRole(1);
  AddRole(2);
  AssignToUser(1, kTeamMember);
  AssignToDepartment(1, 3, false);
  AssignToDepartment(1, 1, true);
  AssignToDepartment(2, 4, false);
  EXPECT_EQ(RolesOfUser(data_, kTeamMember), std::set<int64_t>({1}));
  EXPECT_EQ(RolesOfUser(data_, kTwoDepartments), std::set<int64_t>({1, 2}));
}

TEST_F(PermissionsTest, HasConfigPermission) {
  AddRole(1)->set_config(true);
  AddRole(2);
  AssignToDepartment(1, 2, true);
  AssignToUser(2, kSalesMember);
  EXPECT_TRUE(HasConfigPermission(data_, kTeamMember));
  EXPECT_TRUE(HasConfigPermission(data_, kEastHead));
  EXPECT_FALSE(
      HasConfigPermission(data_, kSalesMember));  // has a role, not CONFIG
  EXPECT_FALSE(HasConfigPermission(data_, kNobody));
  EXPECT_TRUE(Effective(kTeamMember).config());
  EXPECT_FALSE(Effective(kSalesMember).config());
}

// --- Effective permissions ---------------------------------------------------

TEST_F(PermissionsTest, HighestLevelPerActionAcrossRoles) {
  Grant(AddRole(1), 1,
        Levels(kAll, kUnspecified, kSelf, kNone, kDepartment, kNone));
  Grant(AddRole(2), 1,
        Levels(kDepartment, kNone, kOpen, kSelf, kSubdepartments, kNone));
  AssignToUser(1, kSalesMember);
  AssignToUser(2, kSalesMember);
  const v1::EffectivePermissions effective = Effective(kSalesMember);
  EXPECT_EQ(effective.user_id(), kSalesMember);
  EXPECT_FALSE(effective.is_admin());
  EXPECT_EQ(effective.config_version(), 42);
  const v1::EffectivePipelinePermissions p1 = In(effective, 1);
  ASSERT_EQ(p1.stage_levels().size(), 8u);
  for (const auto& stage : data_.pipelines.at(1).stages) {
    ASSERT_EQ(p1.stage_levels().count(stage.stage_id()), 1u)
        << stage.stage_id();
    EXPECT_THAT(
        p1.stage_levels().at(stage.stage_id()),
        EqualsProto(Levels(kAll, kNone, kOpen, kSelf, kSubdepartments, kNone)));
  }
}

TEST_F(PermissionsTest, UnspecifiedCountsAsNone) {
  Grant(AddRole(1), 1,
        Levels(kUnspecified, kUnspecified, kSelf, kUnspecified, kUnspecified,
               kUnspecified));
  AssignToUser(1, kSalesMember);
  const v1::EffectivePipelinePermissions p1 = In(Effective(kSalesMember), 1);
  EXPECT_THAT(p1.stage_levels().at("C1:NEW"),
              EqualsProto(Levels(kNone, kNone, kSelf, kNone, kNone, kNone)));
}

TEST_F(PermissionsTest, StageOverrideReplacesThatStageOnly) {
  v1::PipelinePermissions* grant = Grant(AddRole(1), 1, Uniform(kDepartment));
  // The override replaces: unset actions are NONE there, not DEPARTMENT.
  v1::ActionLevels won;
  won.set_write(kAll);
  (*grant->mutable_stage_levels())["C1:WON"] = won;
  AssignToUser(1, kSalesMember);

  const v1::EffectivePipelinePermissions p1 = In(Effective(kSalesMember), 1);
  EXPECT_THAT(p1.stage_levels().at("C1:WON"),
              EqualsProto(Levels(kNone, kNone, kAll, kNone, kNone, kNone)));
  for (const char* other : {"C1:NEW", "C1:EXECUTING", "C1:LOSE"}) {
    EXPECT_THAT(p1.stage_levels().at(other), EqualsProto(Uniform(kDepartment)))
        << other;
  }

  // Another role without an override still contributes its pipeline levels
  // to that stage.
  Grant(AddRole(2), 1, Uniform(kSelf));
  AssignToUser(2, kSalesMember);
  const v1::EffectivePipelinePermissions merged =
      In(Effective(kSalesMember), 1);
  EXPECT_THAT(merged.stage_levels().at("C1:WON"),
              EqualsProto(Levels(kSelf, kSelf, kAll, kSelf, kSelf, kSelf)));
  EXPECT_THAT(merged.stage_levels().at("C1:NEW"),
              EqualsProto(Uniform(kDepartment)));
}

TEST_F(PermissionsTest, PipelinesWithoutAGrantAreAbsent) {
  Grant(AddRole(1), 2, Uniform(kAll));
  AssignToUser(1, kSalesMember);
  const v1::EffectivePermissions effective = Effective(kSalesMember);
  EXPECT_THAT(PipelineIds(effective), ElementsAre(2));
  // A user without roles sees no pipeline at all.
  EXPECT_THAT(Effective(kNobody).pipelines(), IsEmpty());
  // Roles that exist but are not the user's do not count.
  Grant(AddRole(2), 0, Uniform(kAll));
  EXPECT_THAT(PipelineIds(Effective(kSalesMember)), ElementsAre(2));
  AssignToDepartment(2, 1, false);
  EXPECT_THAT(PipelineIds(Effective(kSalesMember)), ElementsAre(0, 2));
}

TEST_F(PermissionsTest, TransitionsDefaultToAnyForEveryStage) {
  Grant(AddRole(1), 0, Uniform(kAll));
  AssignToUser(1, kSalesMember);
  const v1::EffectivePipelinePermissions p0 = In(Effective(kSalesMember), 0);
  ASSERT_EQ(p0.transitions().size(), 8u);
  for (const auto& stage : data_.pipelines.at(0).stages) {
    ASSERT_EQ(p0.transitions().count(stage.stage_id()), 1u) << stage.stage_id();
    EXPECT_THAT(p0.transitions().at(stage.stage_id()), EqualsProto(Rule(kAny)));
  }
}

TEST_F(PermissionsTest, OnlyRolesThatMayWriteDecideTransitions) {
  // Role 1 may write and allows NEW -> LOSE only; role 2 may only read, so its
  // (default ANY) rule must not widen role 1's list.
  v1::PipelinePermissions* writer = Grant(AddRole(1), 0, Uniform(kAll));
  (*writer->mutable_transitions())["NEW"] = Rule(kList, {"LOSE"});
  Grant(AddRole(2), 0, Levels(kAll, kNone, kNone, kNone, kNone, kNone));
  AssignToUser(1, kSalesMember);
  AssignToUser(2, kSalesMember);
  const auto p0 = In(Effective(kSalesMember), 0);
  EXPECT_THAT(p0.transitions().at("NEW"), EqualsProto(Rule(kList, {"LOSE"})));

  // A user who may not write anywhere may not move anything.
  Grant(AddRole(3), 0, Levels(kAll, kNone, kNone, kNone, kNone, kNone));
  AssignToUser(3, kSalesHead);
  const auto head = In(Effective(kSalesHead), 0);
  EXPECT_THAT(head.transitions().at("NEW"), EqualsProto(Rule(kBlocked)));
}

TEST_F(PermissionsTest, TransitionsMergeAcrossRoles) {
  v1::PipelinePermissions* a = Grant(AddRole(1), 0, Uniform(kAll));
  v1::PipelinePermissions* b = Grant(AddRole(2), 0, Uniform(kSelf));
  auto& ta = *a->mutable_transitions();
  auto& tb = *b->mutable_transitions();
  // Lists unite, in stage order.
  ta["NEW"] = Rule(kList, {"EXECUTING", "LOSE"});
  tb["NEW"] = Rule(kList, {"WON", "PREPARATION", "EXECUTING"});
  // BLOCKED and a list: the list.
  ta["PREPARATION"] = Rule(kBlocked);
  tb["PREPARATION"] = Rule(kList, {"NEW"});
  // BLOCKED only if every role blocks.
  ta["EXECUTING"] = Rule(kBlocked);
  tb["EXECUTING"] = Rule(kBlocked);
  // BLOCKED and no rule (ANY): ANY.
  ta["FINAL_INVOICE"] = Rule(kBlocked);
  // A list and ANY: ANY.
  ta["WON"] = Rule(kList, {"NEW"});
  tb["WON"] = Rule(kAny);
  // UNSPECIFIED counts as ANY.
  ta["LOSE"] = Rule(kBlocked);
  tb["LOSE"] = Rule(v1::TransitionRule::MODE_UNSPECIFIED);
  AssignToUser(1, kSalesMember);
  AssignToUser(2, kSalesMember);

  const v1::EffectivePipelinePermissions p0 = In(Effective(kSalesMember), 0);
  const auto& t = p0.transitions();
  EXPECT_THAT(
      t.at("NEW"),
      EqualsProto(Rule(kList, {"PREPARATION", "EXECUTING", "WON", "LOSE"})));
  EXPECT_THAT(t.at("PREPARATION"), EqualsProto(Rule(kList, {"NEW"})));
  EXPECT_THAT(t.at("EXECUTING"), EqualsProto(Rule(kBlocked)));
  EXPECT_THAT(t.at("FINAL_INVOICE"), EqualsProto(Rule(kAny)));
  EXPECT_THAT(t.at("WON"), EqualsProto(Rule(kAny)));
  EXPECT_THAT(t.at("LOSE"), EqualsProto(Rule(kAny)));
  EXPECT_THAT(t.at("APOLOGY"), EqualsProto(Rule(kAny)));
  EXPECT_EQ(t.size(), 8u);
}

TEST_F(PermissionsTest, SingleRoleTransitionsPassThrough) {
  v1::PipelinePermissions* a = Grant(AddRole(1), 1, Uniform(kAll));
  (*a->mutable_transitions())["C1:NEW"] = Rule(kBlocked);
  (*a->mutable_transitions())["C1:WON"] = Rule(kList, {"C1:APOLOGY", "C1:NEW"});
  AssignToUser(1, kSalesMember);
  const v1::EffectivePipelinePermissions p1 = In(Effective(kSalesMember), 1);
  const auto& t = p1.transitions();
  EXPECT_THAT(t.at("C1:NEW"), EqualsProto(Rule(kBlocked)));
  EXPECT_THAT(t.at("C1:WON"),
              EqualsProto(Rule(kList, {"C1:NEW", "C1:APOLOGY"})));
  EXPECT_THAT(t.at("C1:LOSE"), EqualsProto(Rule(kAny)));
}

TEST_F(PermissionsTest, HideSumOnlyWhenEveryGrantingRoleHides) {
  Grant(AddRole(1), 0, Uniform(kAll))->set_hide_sum(true);
  AssignToUser(1, kSalesMember);
  EXPECT_TRUE(In(Effective(kSalesMember), 0).hide_sum());

  // A second granting role that shows sums wins.
  Grant(AddRole(2), 0, Levels(kSelf, kNone, kNone, kNone, kNone, kNone));
  AssignToUser(2, kSalesMember);
  EXPECT_FALSE(In(Effective(kSalesMember), 0).hide_sum());

  // When it hides too, sums stay hidden.
  data_.roles.at(2).mutable_pipelines(0)->set_hide_sum(true);
  EXPECT_TRUE(In(Effective(kSalesMember), 0).hide_sum());

  // A role that grants nothing in the pipeline has no say.
  Grant(AddRole(3), 0, Uniform(kNone));
  AssignToUser(3, kSalesMember);
  EXPECT_TRUE(In(Effective(kSalesMember), 0).hide_sum());

  // A role granting only through a stage override does have a say.
  v1::PipelinePermissions* stage_only = Grant(AddRole(4), 0, Uniform(kNone));
  (*stage_only->mutable_stage_levels())["WON"] = Uniform(kSelf);
  AssignToUser(4, kSalesMember);
  EXPECT_FALSE(In(Effective(kSalesMember), 0).hide_sum());
}

TEST_F(PermissionsTest, HideSumNeedsAGrantingRole) {
  Grant(AddRole(1), 0, Uniform(kNone))->set_hide_sum(true);
  AssignToUser(1, kSalesMember);
  EXPECT_FALSE(In(Effective(kSalesMember), 0).hide_sum());
}

TEST_F(PermissionsTest, AutomationIsTheMaximum) {
  Grant(AddRole(1), 0, Uniform(kAll))
      ->set_automation(v1::AUTOMATION_ACCESS_READ);
  Grant(AddRole(2), 0, Uniform(kSelf))
      ->set_automation(v1::AUTOMATION_ACCESS_EDIT);
  v1::Role* third = AddRole(3);
  Grant(third, 0, Uniform(kSelf));  // automation UNSPECIFIED
  Grant(third, 1, Uniform(kSelf));
  AssignToUser(1, kSalesMember);
  AssignToUser(2, kSalesMember);
  AssignToUser(3, kEastMember);
  EXPECT_EQ(In(Effective(kSalesMember), 0).automation(),
            v1::AUTOMATION_ACCESS_EDIT);
  // Unspecified only: NONE.
  EXPECT_EQ(In(Effective(kEastMember), 0).automation(),
            v1::AUTOMATION_ACCESS_NONE);
  EXPECT_EQ(In(Effective(kEastMember), 1).automation(),
            v1::AUTOMATION_ACCESS_NONE);
  AssignToUser(1, kEastMember);
  EXPECT_EQ(In(Effective(kEastMember), 0).automation(),
            v1::AUTOMATION_ACCESS_READ);
}

TEST_F(PermissionsTest, AdministratorShortCut) {
  Grant(AddRole(1), 0, Uniform(kAll));
  AssignToUser(1, kEastMember);
  const v1::EffectivePermissions admin =
      ComputeEffectivePermissions(data_, kEastMember, /*is_admin=*/true);
  EXPECT_TRUE(admin.is_admin());
  EXPECT_EQ(admin.user_id(), kEastMember);
  EXPECT_EQ(admin.config_version(), 42);
  EXPECT_THAT(admin.pipelines(), IsEmpty());
  EXPECT_THAT(admin.department_ids(), IsEmpty());
  EXPECT_THAT(admin.subdepartment_ids(), IsEmpty());
  EXPECT_THAT(admin.department_user_ids(), IsEmpty());
  EXPECT_THAT(admin.subdepartment_user_ids(), IsEmpty());
}

TEST_F(PermissionsTest, DepartmentScopes) {
  const v1::EffectivePermissions east = Effective(kEastMember);
  EXPECT_THAT(east.department_ids(), ElementsAre(2));
  EXPECT_THAT(east.subdepartment_ids(), ElementsAre(2, 3));
  EXPECT_THAT(
      east.department_user_ids(),
      ElementsAre(kEastHead, kEastMember, kEastMember2, kTwoDepartments));
  EXPECT_THAT(east.subdepartment_user_ids(),
              ElementsAre(kEastHead, kEastMember, kEastMember2, kTeamMember,
                          kTwoDepartments));

  const v1::EffectivePermissions head = Effective(kSalesHead);
  EXPECT_THAT(head.department_ids(), ElementsAre(1));
  EXPECT_THAT(head.subdepartment_ids(), ElementsAre(1, 2, 3));
  EXPECT_THAT(head.department_user_ids(),
              ElementsAre(kSalesHead, kSalesMember));
  EXPECT_THAT(head.subdepartment_user_ids(),
              ElementsAre(kSalesHead, kSalesMember, kEastHead, kEastMember,
                          kEastMember2, kTeamMember, kTwoDepartments));

  // A department without a head adds no user 0.
  const v1::EffectivePermissions team = Effective(kTeamMember);
  EXPECT_THAT(team.department_ids(), ElementsAre(3));
  EXPECT_THAT(team.department_user_ids(), ElementsAre(kTeamMember));
  EXPECT_THAT(team.subdepartment_user_ids(), ElementsAre(kTeamMember));

  const v1::EffectivePermissions two = Effective(kTwoDepartments);
  EXPECT_THAT(two.department_ids(), ElementsAre(2, 4));
  EXPECT_THAT(two.subdepartment_ids(), ElementsAre(2, 3, 4));
  EXPECT_THAT(two.department_user_ids(),
              ElementsAre(kEastHead, kEastMember, kEastMember2, kSupportHead,
                          kSupportMember, kTwoDepartments));

  // Outside every department: just the user.
  const v1::EffectivePermissions nobody = Effective(kNobody);
  EXPECT_THAT(nobody.department_ids(), IsEmpty());
  EXPECT_THAT(nobody.subdepartment_ids(), IsEmpty());
  EXPECT_THAT(nobody.department_user_ids(), ElementsAre(kNobody));
  EXPECT_THAT(nobody.subdepartment_user_ids(), ElementsAre(kNobody));
}

TEST_F(PermissionsTest, DanglingRoleIdsAreIgnored) {
  AssignToUser(77, kSalesMember);  // role 77 does not exist
  Grant(AddRole(1), 0, Uniform(kSelf));
  AssignToUser(1, kSalesMember);
  const v1::EffectivePermissions effective = Effective(kSalesMember);
  EXPECT_THAT(PipelineIds(effective), ElementsAre(0));
  EXPECT_FALSE(effective.config());
}

}  // namespace
}  // namespace crm::pipeline_config
