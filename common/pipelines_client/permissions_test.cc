// Unit tests of the generic permission half,
// common/pipelines_client/permissions.h: levels per action and stage
// (LevelFor), privileged callers (MakeCaller, IsPrivileged), hide_sum
// (HidesSums), read scopes (ReadScopeFor, ReadScope::Matches), the
// IndexedPermissions index and its cache, and action names. Checks against
// deal records (Allows, CheckRead, CheckAction, CheckAdd, CheckTransition,
// ScopeMatches) are tested in services/deals/domain/access_test.cc.
#include "common/pipelines_client/permissions.h"

#include <memory>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "common/pipelines_client/permissions_test_util.h"

namespace crm::common {
namespace {

namespace pv1 = crm::pipelines::v1;

using ::crm::common::testing::AddPipeline;
using ::crm::common::testing::BasePermissions;
using ::crm::common::testing::kAbsentPipeline;
using ::crm::common::testing::kColleague;
using ::crm::common::testing::kLose;
using ::crm::common::testing::kMe;
using ::crm::common::testing::kNestedSubMember;
using ::crm::common::testing::kNew;
using ::crm::common::testing::kOutsider;
using ::crm::common::testing::kPipeline;
using ::crm::common::testing::kPrep;
using ::crm::common::testing::kWon;
using ::crm::common::testing::Levels;
using ::crm::common::testing::OneStagePerLevel;
using ::crm::common::testing::Rule;
using ::crm::common::testing::Uniform;
using ::crm::common::testing::UserCaller;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

// ---------------------------------------------------------------------------
// Levels per action and stage

TEST(LevelForTest, EachActionReadsItsOwnLevel) {
  pv1::EffectivePermissions permissions = BasePermissions();
  auto* pipeline = AddPipeline(&permissions, kPipeline);
  (*pipeline->mutable_stage_levels())[kNew] =
      Levels(pv1::ACCESS_LEVEL_ALL, pv1::ACCESS_LEVEL_OPEN,
             pv1::ACCESS_LEVEL_SUBDEPARTMENTS, pv1::ACCESS_LEVEL_DEPARTMENT,
             pv1::ACCESS_LEVEL_SELF, pv1::ACCESS_LEVEL_NONE);
  const Caller caller = UserCaller(permissions);
  EXPECT_EQ(LevelFor(caller, Action::kRead, kPipeline, kNew),
            pv1::ACCESS_LEVEL_ALL);
  EXPECT_EQ(LevelFor(caller, Action::kAdd, kPipeline, kNew),
            pv1::ACCESS_LEVEL_OPEN);
  EXPECT_EQ(LevelFor(caller, Action::kWrite, kPipeline, kNew),
            pv1::ACCESS_LEVEL_SUBDEPARTMENTS);
  EXPECT_EQ(LevelFor(caller, Action::kDelete, kPipeline, kNew),
            pv1::ACCESS_LEVEL_DEPARTMENT);
  EXPECT_EQ(LevelFor(caller, Action::kExport, kPipeline, kNew),
            pv1::ACCESS_LEVEL_SELF);
  EXPECT_EQ(LevelFor(caller, Action::kImport, kPipeline, kNew),
            pv1::ACCESS_LEVEL_NONE);
}

// ---------------------------------------------------------------------------
// Privileged callers

TEST(PrivilegedTest, PlainUsersAreNotPrivileged) {
  crm::common::Principal user;
  user.user_id = kMe;
  const Caller caller =
      MakeCaller(user, IndexedPermissions::Build(BasePermissions()));
  EXPECT_FALSE(caller.privileged);
  EXPECT_FALSE(IsPrivileged(caller));
  EXPECT_EQ(caller.user_id, kMe);
}

// ---------------------------------------------------------------------------
// hide_sum

TEST(HidesSumsTest, FollowsThePipelineFlag) {
  pv1::EffectivePermissions permissions = BasePermissions();
  AddPipeline(&permissions, 0)->set_hide_sum(false);
  auto* hidden = AddPipeline(&permissions, kPipeline);
  hidden->set_hide_sum(true);
  (*hidden->mutable_stage_levels())[kNew] = Uniform(pv1::ACCESS_LEVEL_ALL);
  const Caller caller = UserCaller(permissions);
  EXPECT_FALSE(HidesSums(caller, 0));
  EXPECT_TRUE(HidesSums(caller, kPipeline));
  // No access at all: nothing to show.
  EXPECT_TRUE(HidesSums(caller, kAbsentPipeline));
  EXPECT_FALSE(HidesSums(Caller{kMe, true, caller.permissions}, kPipeline));
}

// ---------------------------------------------------------------------------
// ReadScope

class ReadScopeTest : public ::testing::Test {
 protected:
  ReadScopeTest() : caller_(UserCaller(OneStagePerLevel())) {}

  Caller caller_;
};

TEST_F(ReadScopeTest, AssigneeSetsPerLevel) {
  const ReadScope none = ReadScopeFor(caller_, kPipeline, "NONE");
  EXPECT_TRUE(none.none());
  ASSERT_NE(none.assignee_ids, nullptr);
  EXPECT_THAT(*none.assignee_ids, IsEmpty());
  EXPECT_FALSE(none.Matches(kMe, true));

  const ReadScope self = ReadScopeFor(caller_, kPipeline, "SELF");
  EXPECT_EQ(self.level, pv1::ACCESS_LEVEL_SELF);
  EXPECT_THAT(*self.assignee_ids, ElementsAre(kMe));
  EXPECT_FALSE(self.include_opened);

  const ReadScope department = ReadScopeFor(caller_, kPipeline, "DEPARTMENT");
  EXPECT_EQ(department.level, pv1::ACCESS_LEVEL_DEPARTMENT);
  EXPECT_THAT(*department.assignee_ids, ElementsAre(kMe, kColleague));
  EXPECT_FALSE(department.include_opened);

  const ReadScope sub = ReadScopeFor(caller_, kPipeline, "SUBDEPARTMENTS");
  EXPECT_EQ(sub.level, pv1::ACCESS_LEVEL_SUBDEPARTMENTS);
  EXPECT_THAT(*sub.assignee_ids, ElementsAre(2, 3, 4, 5, 6, 7));
  EXPECT_FALSE(sub.include_opened);
  // No copy: the scope shares the indexed set.
  EXPECT_EQ(sub.assignee_ids.get(),
            caller_.permissions->subdepartment_user_ids().get());

  const ReadScope open = ReadScopeFor(caller_, kPipeline, "OPEN");
  EXPECT_EQ(open.level, pv1::ACCESS_LEVEL_OPEN);
  EXPECT_THAT(*open.assignee_ids, ElementsAre(2, 3, 4, 5, 6, 7));
  EXPECT_TRUE(open.include_opened);
  EXPECT_TRUE(open.Matches(kOutsider, true));
  EXPECT_FALSE(open.Matches(kOutsider, false));
  EXPECT_TRUE(open.Matches(kNestedSubMember, false));

  const ReadScope all = ReadScopeFor(caller_, kPipeline, "ALL");
  EXPECT_TRUE(all.all());
  EXPECT_THAT(*all.assignee_ids, IsEmpty());
  EXPECT_TRUE(all.Matches(kOutsider, false));
}

// ---------------------------------------------------------------------------
// IndexedPermissions

TEST(IndexedPermissionsTest, NormalisesClosures) {
  // Unsorted, duplicated, and missing the user and the department set.
  pv1::EffectivePermissions permissions;
  permissions.set_user_id(kMe);
  for (int64_t id : {3, 3, 0}) permissions.add_department_user_ids(id);
  for (int64_t id : {7, 4, 7}) permissions.add_subdepartment_user_ids(id);
  const auto indexed = IndexedPermissions::Build(permissions);
  EXPECT_THAT(*indexed->department_user_ids(), ElementsAre(2, 3));
  EXPECT_THAT(*indexed->subdepartment_user_ids(), ElementsAre(2, 3, 4, 7));
  EXPECT_TRUE(indexed->InDepartment(kMe));
  EXPECT_FALSE(indexed->InDepartment(0));
  EXPECT_TRUE(indexed->InSubdepartments(kColleague));
  EXPECT_FALSE(indexed->InSubdepartments(5));
  EXPECT_EQ(indexed->user_id(), kMe);
  EXPECT_EQ(indexed->proto().department_user_ids_size(), 3);
}

TEST(IndexedPermissionsTest, IndexesStagesAndRules) {
  pv1::EffectivePermissions permissions = BasePermissions();
  auto* pipeline = AddPipeline(&permissions, kPipeline);
  pipeline->set_hide_sum(true);
  pipeline->set_automation(pv1::AUTOMATION_ACCESS_EDIT);
  (*pipeline->mutable_stage_levels())[kNew] = Uniform(pv1::ACCESS_LEVEL_OPEN);
  (*pipeline->mutable_transitions())[kNew] =
      Rule(pv1::TransitionRule::MODE_LIST, {kWon, kLose});
  // A rule for a stage without levels: the stage exists at NONE.
  (*pipeline->mutable_transitions())[kPrep] =
      Rule(pv1::TransitionRule::MODE_UNSPECIFIED);
  const auto indexed = IndexedPermissions::Build(permissions);

  const IndexedPermissions::Pipeline* found = indexed->FindPipeline(kPipeline);
  ASSERT_NE(found, nullptr);
  EXPECT_TRUE(found->hide_sum);
  EXPECT_EQ(found->automation, pv1::AUTOMATION_ACCESS_EDIT);
  EXPECT_EQ(indexed->FindPipeline(kAbsentPipeline), nullptr);

  const IndexedPermissions::Stage* stage = indexed->FindStage(kPipeline, kNew);
  ASSERT_NE(stage, nullptr);
  EXPECT_EQ(stage->levels[static_cast<int>(Action::kImport)],
            pv1::ACCESS_LEVEL_OPEN);
  EXPECT_TRUE(stage->has_transition);
  EXPECT_EQ(stage->transition_mode, pv1::TransitionRule::MODE_LIST);
  EXPECT_TRUE(stage->transition_targets.contains(kLose));
  EXPECT_FALSE(stage->transition_targets.contains(kPrep));

  const IndexedPermissions::Stage* prep = indexed->FindStage(kPipeline, kPrep);
  ASSERT_NE(prep, nullptr);
  EXPECT_EQ(prep->transition_mode, pv1::TransitionRule::MODE_ANY);
  EXPECT_EQ(prep->levels[static_cast<int>(Action::kRead)],
            pv1::ACCESS_LEVEL_NONE);
  EXPECT_EQ(indexed->FindStage(kPipeline, "C1:GHOST"), nullptr);
  EXPECT_EQ(indexed->FindStage(kAbsentPipeline, kNew), nullptr);
}

TEST(IndexedPermissionsCacheTest, ReusesUntilTheProtoChanges) {
  IndexedPermissionsCache cache;
  auto first =
      std::make_shared<const pv1::EffectivePermissions>(BasePermissions());
  const auto a = cache.Get(first);
  const auto b = cache.Get(first);
  EXPECT_EQ(a.get(), b.get());
  EXPECT_EQ(&a->proto(), first.get());

  pv1::EffectivePermissions next = BasePermissions();
  next.set_config_version(8);
  AddPipeline(&next, kPipeline);
  auto second = std::make_shared<const pv1::EffectivePermissions>(next);
  const auto c = cache.Get(second);
  EXPECT_NE(c.get(), a.get());
  EXPECT_EQ(c->config_version(), 8);
  EXPECT_NE(c->FindPipeline(kPipeline), nullptr);
  EXPECT_EQ(cache.Get(second).get(), c.get());
}

TEST(IndexedPermissionsCacheTest, BoundedAndStillCorrect) {
  IndexedPermissionsCache cache(/*max_users=*/1);
  pv1::EffectivePermissions other = BasePermissions();
  other.set_user_id(kColleague);
  auto mine =
      std::make_shared<const pv1::EffectivePermissions>(BasePermissions());
  auto theirs = std::make_shared<const pv1::EffectivePermissions>(other);
  for (int round = 0; round < 3; ++round) {
    EXPECT_EQ(cache.Get(mine)->user_id(), kMe);
    EXPECT_EQ(cache.Get(theirs)->user_id(), kColleague);
  }
}

TEST(ActionNameTest, NamesEveryAction) {
  EXPECT_STREQ(ActionName(Action::kRead), "read");
  EXPECT_STREQ(ActionName(Action::kAdd), "add");
  EXPECT_STREQ(ActionName(Action::kWrite), "write");
  EXPECT_STREQ(ActionName(Action::kDelete), "delete");
  EXPECT_STREQ(ActionName(Action::kExport), "export");
  EXPECT_STREQ(ActionName(Action::kImport), "import");
}

}  // namespace
}  // namespace crm::common
