// Unit tests of the deal-specific access checks,
// services/deals/domain/access.h: Allows, CheckRead, CheckAction, CheckAdd,
// CheckTransition and ScopeMatches against deal records, over the full matrix
// of level x action x assignee x opened, per-stage levels, privileged callers
// and callers without permissions, transition rules and read scopes. The
// generic half (IndexedPermissions and its cache, LevelFor, IsPrivileged,
// HidesSums, ReadScopeFor, ActionName) is tested in
// common/pipelines_client/permissions_test.cc; the shared builders are in
// common/pipelines_client/permissions_test_util.h.
#include "services/deals/domain/access.h"

#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "common/pipelines_client/permissions_test_util.h"
#include "common/status/status_matchers.h"

namespace crm::deals {
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
using ::crm::common::testing::kSubMember;
using ::crm::common::testing::kWon;
using ::crm::common::testing::Levels;
using ::crm::common::testing::OneStagePerLevel;
using ::crm::common::testing::Rule;
using ::crm::common::testing::Uniform;
using ::crm::common::testing::UserCaller;
using ::crm::testing::IsOk;
using ::crm::testing::StatusIs;
using ::testing::HasSubstr;

constexpr int64_t kDealId = 42;

// Every action ALL except `action`, which gets `level`.
pv1::ActionLevels OnlyActionAt(Action action, pv1::AccessLevel level) {
  pv1::ActionLevels levels = Uniform(pv1::ACCESS_LEVEL_ALL);
  switch (action) {
    case Action::kRead:
      levels.set_read(level);
      break;
    case Action::kAdd:
      levels.set_add(level);
      break;
    case Action::kWrite:
      levels.set_write(level);
      break;
    case Action::kDelete:
      levels.set_delete_(level);
      break;
    case Action::kExport:
      levels.set_export_(level);
      break;
    case Action::kImport:
      levels.set_import(level);
      break;
  }
  return levels;
}

crm::deals::v1::Deal MakeDeal(int64_t assignee, std::optional<bool> opened,
                              int64_t pipeline_id = kPipeline,
                              const std::string& stage_id = kNew) {
  crm::deals::v1::Deal deal;
  deal.set_id(kDealId);
  deal.set_pipeline_id(pipeline_id);
  deal.set_stage_id(stage_id);
  deal.set_assignee_id(assignee);
  if (opened.has_value()) deal.set_opened(*opened);
  return deal;
}

// ---------------------------------------------------------------------------
// The full matrix: level x action x assignee x opened.

enum class Who {
  kCaller,
  kDepartment,
  kSubdepartment,
  kNestedSubdepartment,
  kStranger
};

int64_t UserOf(Who who) {
  switch (who) {
    case Who::kCaller:
      return kMe;
    case Who::kDepartment:
      return kColleague;
    case Who::kSubdepartment:
      return kSubMember;
    case Who::kNestedSubdepartment:
      return kNestedSubMember;
    case Who::kStranger:
      return kOutsider;
  }
  return 0;
}

// The permission levels, spelled out per level.
bool Expected(pv1::AccessLevel level, Who who, std::optional<bool> opened) {
  const bool is_open = opened.value_or(true);  // Unset counts as true.
  switch (level) {
    case pv1::ACCESS_LEVEL_ALL:
      return true;
    case pv1::ACCESS_LEVEL_OPEN:
      return who != Who::kStranger || is_open;
    case pv1::ACCESS_LEVEL_SUBDEPARTMENTS:
      return who != Who::kStranger;
    case pv1::ACCESS_LEVEL_DEPARTMENT:
      return who == Who::kCaller || who == Who::kDepartment;
    case pv1::ACCESS_LEVEL_SELF:
      return who == Who::kCaller;
    default:  // NONE and UNSPECIFIED
      return false;
  }
}

class AccessMatrixTest
    : public ::testing::TestWithParam<std::tuple<Action, pv1::AccessLevel>> {};

TEST_P(AccessMatrixTest, LevelScopesEveryDeal) {
  const auto [action, level] = GetParam();
  pv1::EffectivePermissions permissions = BasePermissions();
  auto* pipeline = AddPipeline(&permissions, kPipeline);
  (*pipeline->mutable_stage_levels())[kNew] = OnlyActionAt(action, level);
  (*pipeline->mutable_transitions())[kNew] =
      Rule(pv1::TransitionRule::MODE_ANY);
  const Caller caller = UserCaller(permissions);
  ASSERT_FALSE(IsPrivileged(caller));

  const pv1::AccessLevel normalized =
      level == pv1::ACCESS_LEVEL_UNSPECIFIED ? pv1::ACCESS_LEVEL_NONE : level;
  EXPECT_EQ(LevelFor(caller, action, kPipeline, kNew), normalized);
  const ReadScope scope = ReadScopeFor(caller, kPipeline, kNew);

  int allowed_count = 0;
  for (Who who : {Who::kCaller, Who::kDepartment, Who::kSubdepartment,
                  Who::kNestedSubdepartment, Who::kStranger}) {
    for (std::optional<bool> opened :
         {std::optional<bool>(true), std::optional<bool>(false),
          std::optional<bool>()}) {
      const crm::deals::v1::Deal deal = MakeDeal(UserOf(who), opened);
      const bool expected = Expected(level, who, opened);
      allowed_count += expected ? 1 : 0;
      SCOPED_TRACE(
          ::testing::Message()
          << "action " << ActionName(action) << " level "
          << pv1::AccessLevel_Name(level) << " assignee " << UserOf(who)
          << " opened "
          << (opened.has_value() ? (*opened ? "true" : "false") : "unset"));
      EXPECT_EQ(Allows(caller, action, deal), expected);
      EXPECT_EQ(
          LevelCovers(caller, normalized, UserOf(who), opened.value_or(true)),
          expected);
      switch (action) {
        case Action::kRead:
          EXPECT_EQ(ScopeMatches(scope, deal), expected);
          if (expected) {
            EXPECT_THAT(CheckRead(caller, deal), IsOk());
            EXPECT_THAT(CheckAction(caller, Action::kRead, deal), IsOk());
          } else {
            EXPECT_THAT(
                CheckRead(caller, deal),
                StatusIs(absl::StatusCode::kNotFound, "deal 42 not found"));
            EXPECT_THAT(
                CheckAction(caller, Action::kRead, deal),
                StatusIs(absl::StatusCode::kNotFound, "deal 42 not found"));
            // Writing an unreadable deal does not reveal that it exists.
            EXPECT_THAT(CheckAction(caller, Action::kWrite, deal),
                        StatusIs(absl::StatusCode::kNotFound));
            EXPECT_THAT(CheckTransition(caller, deal, kWon),
                        StatusIs(absl::StatusCode::kNotFound));
          }
          break;
        case Action::kAdd:
          if (expected) {
            EXPECT_THAT(CheckAdd(caller, deal), IsOk());
          } else {
            EXPECT_THAT(
                CheckAdd(caller, deal),
                StatusIs(absl::StatusCode::kPermissionDenied,
                         absl::StrCat("not allowed to add deals to stage "
                                      "C1:NEW of pipeline 1 assigned to user ",
                                      UserOf(who))));
          }
          break;
        default:
          // READ is ALL, so a refusal is PERMISSION_DENIED naming the action.
          EXPECT_THAT(CheckRead(caller, deal), IsOk());
          if (expected) {
            EXPECT_THAT(CheckAction(caller, action, deal), IsOk());
          } else {
            EXPECT_THAT(CheckAction(caller, action, deal),
                        StatusIs(absl::StatusCode::kPermissionDenied,
                                 absl::StrCat("not allowed to ",
                                              ActionName(action), " deal 42")));
          }
          if (action == Action::kWrite) {
            EXPECT_EQ(CheckTransition(caller, deal, kWon).ok(), expected);
          }
          break;
      }
    }
  }
  // Guards the table itself: each level reaches strictly more deals than the
  // one below (15 deals: 5 assignees x 3 opened states).
  const int expected_counts[] = {0, 0, 3, 6, 12, 14, 15};
  EXPECT_EQ(allowed_count, expected_counts[static_cast<int>(level)]);
}

INSTANTIATE_TEST_SUITE_P(
    AllLevelsAndActions, AccessMatrixTest,
    ::testing::Combine(
        ::testing::Values(Action::kRead, Action::kAdd, Action::kWrite,
                          Action::kDelete, Action::kExport, Action::kImport),
        ::testing::Values(pv1::ACCESS_LEVEL_UNSPECIFIED, pv1::ACCESS_LEVEL_NONE,
                          pv1::ACCESS_LEVEL_SELF, pv1::ACCESS_LEVEL_DEPARTMENT,
                          pv1::ACCESS_LEVEL_SUBDEPARTMENTS,
                          pv1::ACCESS_LEVEL_OPEN, pv1::ACCESS_LEVEL_ALL)),
    [](const auto& param_info) {
      return std::string(ActionName(std::get<0>(param_info.param))) + "_" +
             pv1::AccessLevel_Name(std::get<1>(param_info.param));
    });

// ---------------------------------------------------------------------------
// Levels per action and stage

TEST(LevelForTest, StageOverrideDiffersFromPipelineDefault) {
  // A role with pipeline levels SELF and an override ALL for WON arrives
  // merged: every stage carries its own levels.
  pv1::EffectivePermissions permissions = BasePermissions();
  auto* pipeline = AddPipeline(&permissions, kPipeline);
  for (const char* stage : {kNew, kPrep, kLose}) {
    (*pipeline->mutable_stage_levels())[stage] =
        Uniform(pv1::ACCESS_LEVEL_SELF);
  }
  (*pipeline->mutable_stage_levels())[kWon] = Uniform(pv1::ACCESS_LEVEL_ALL);
  const Caller caller = UserCaller(permissions);

  const auto in_new = MakeDeal(kColleague, false, kPipeline, kNew);
  const auto in_won = MakeDeal(kColleague, false, kPipeline, kWon);
  EXPECT_EQ(LevelFor(caller, Action::kRead, kPipeline, kNew),
            pv1::ACCESS_LEVEL_SELF);
  EXPECT_EQ(LevelFor(caller, Action::kRead, kPipeline, kWon),
            pv1::ACCESS_LEVEL_ALL);
  EXPECT_FALSE(Allows(caller, Action::kRead, in_new));
  EXPECT_TRUE(Allows(caller, Action::kRead, in_won));
  EXPECT_THAT(CheckRead(caller, in_new), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(CheckAction(caller, Action::kDelete, in_won), IsOk());
  EXPECT_THAT(CheckAdd(caller, in_new),
              StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(CheckAdd(caller, in_won), IsOk());
  // The caller's own deal is fine in both.
  EXPECT_TRUE(Allows(caller, Action::kWrite, MakeDeal(kMe, false)));
}

TEST(LevelForTest, AbsentPipelineOrStageIsNone) {
  pv1::EffectivePermissions permissions = BasePermissions();
  auto* pipeline = AddPipeline(&permissions, kPipeline);
  (*pipeline->mutable_stage_levels())[kNew] = Uniform(pv1::ACCESS_LEVEL_ALL);
  const Caller caller = UserCaller(permissions);

  for (Action action : {Action::kRead, Action::kAdd, Action::kWrite,
                        Action::kDelete, Action::kExport, Action::kImport}) {
    EXPECT_EQ(LevelFor(caller, action, kAbsentPipeline, kNew),
              pv1::ACCESS_LEVEL_NONE);
    EXPECT_EQ(LevelFor(caller, action, kPipeline, "C1:GHOST"),
              pv1::ACCESS_LEVEL_NONE);
    EXPECT_EQ(LevelFor(caller, action, kPipeline, kNew), pv1::ACCESS_LEVEL_ALL);
  }
  const auto elsewhere = MakeDeal(kMe, true, kAbsentPipeline, kNew);
  EXPECT_FALSE(Allows(caller, Action::kRead, elsewhere));
  EXPECT_THAT(CheckRead(caller, elsewhere),
              StatusIs(absl::StatusCode::kNotFound, "deal 42 not found"));
  EXPECT_THAT(CheckAction(caller, Action::kDelete, elsewhere),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(
      CheckAdd(caller, elsewhere),
      StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("pipeline 5")));
  EXPECT_THAT(CheckTransition(caller, elsewhere, kWon),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_TRUE(ReadScopeFor(caller, kAbsentPipeline, kNew).none());
  EXPECT_TRUE(ReadScopeFor(caller, kPipeline, "C1:GHOST").none());
}

TEST(LevelForTest, PipelineZeroIsAnOrdinaryPipeline) {
  pv1::EffectivePermissions permissions = BasePermissions();
  auto* general = AddPipeline(&permissions, 0);
  (*general->mutable_stage_levels())["NEW"] = Uniform(pv1::ACCESS_LEVEL_SELF);
  const Caller caller = UserCaller(permissions);
  EXPECT_EQ(LevelFor(caller, Action::kRead, 0, "NEW"), pv1::ACCESS_LEVEL_SELF);
  EXPECT_TRUE(Allows(caller, Action::kRead, MakeDeal(kMe, false, 0, "NEW")));
  EXPECT_FALSE(
      Allows(caller, Action::kRead, MakeDeal(kColleague, true, 0, "NEW")));
}

TEST(LevelForTest, UnknownLevelValuesCountAsNone) {
  pv1::EffectivePermissions permissions = BasePermissions();
  auto* pipeline = AddPipeline(&permissions, kPipeline);
  (*pipeline->mutable_stage_levels())[kNew] =
      Uniform(static_cast<pv1::AccessLevel>(42));
  const Caller caller = UserCaller(permissions);
  EXPECT_EQ(LevelFor(caller, Action::kRead, kPipeline, kNew),
            pv1::ACCESS_LEVEL_NONE);
  EXPECT_FALSE(Allows(caller, Action::kRead, MakeDeal(kMe, true)));
}

TEST(AccessTest, NotFoundBeforePermissionDenied) {
  pv1::EffectivePermissions permissions = BasePermissions();
  auto* pipeline = AddPipeline(&permissions, kPipeline);
  // Read own deals only, but write/delete everything.
  (*pipeline->mutable_stage_levels())[kNew] = Levels(
      pv1::ACCESS_LEVEL_SELF, pv1::ACCESS_LEVEL_ALL, pv1::ACCESS_LEVEL_ALL,
      pv1::ACCESS_LEVEL_ALL, pv1::ACCESS_LEVEL_ALL, pv1::ACCESS_LEVEL_ALL);
  // Read everything, write nothing.
  (*pipeline->mutable_stage_levels())[kWon] = Levels(
      pv1::ACCESS_LEVEL_ALL, pv1::ACCESS_LEVEL_NONE, pv1::ACCESS_LEVEL_NONE,
      pv1::ACCESS_LEVEL_NONE, pv1::ACCESS_LEVEL_NONE, pv1::ACCESS_LEVEL_NONE);
  const Caller caller = UserCaller(permissions);

  const auto hidden = MakeDeal(kOutsider, false, kPipeline, kNew);
  for (Action action : {Action::kWrite, Action::kDelete, Action::kExport}) {
    const absl::Status status = CheckAction(caller, action, hidden);
    EXPECT_THAT(status,
                StatusIs(absl::StatusCode::kNotFound, "deal 42 not found"));
  }
  EXPECT_THAT(CheckTransition(caller, hidden, kWon),
              StatusIs(absl::StatusCode::kNotFound, "deal 42 not found"));

  const auto visible = MakeDeal(kOutsider, false, kPipeline, kWon);
  EXPECT_THAT(CheckRead(caller, visible), IsOk());
  EXPECT_THAT(CheckAction(caller, Action::kWrite, visible),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       "not allowed to write deal 42"));
  EXPECT_THAT(CheckAction(caller, Action::kDelete, visible),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       "not allowed to delete deal 42"));
  EXPECT_THAT(CheckAction(caller, Action::kAdd, visible),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       "not allowed to add deal 42"));

  // Own deal in NEW: readable and writable.
  EXPECT_THAT(CheckAction(caller, Action::kWrite, MakeDeal(kMe, false)),
              IsOk());
}

// ---------------------------------------------------------------------------
// Privileged callers and missing permissions

TEST(PrivilegedTest, AdminsAndServicesPassEverything) {
  crm::common::Principal admin;
  admin.user_id = 1;
  admin.is_admin = true;
  crm::common::Principal service;
  service.service = "automation";
  // pipeline-config reports the user as an administrator.
  pv1::EffectivePermissions admin_permissions;
  admin_permissions.set_user_id(8);
  admin_permissions.set_is_admin(true);
  crm::common::Principal user8;
  user8.user_id = 8;

  const std::vector<Caller> callers = {
      MakeCaller(admin, nullptr), MakeCaller(service, nullptr),
      MakeCaller(user8, IndexedPermissions::Build(admin_permissions)),
      Caller{kMe, /*privileged=*/true, nullptr},
      // Not flagged, but its permissions say admin.
      Caller{8, false, IndexedPermissions::Build(admin_permissions)}};
  for (size_t i = 0; i < callers.size(); ++i) {
    SCOPED_TRACE(i);
    const Caller& caller = callers[i];
    EXPECT_TRUE(IsPrivileged(caller));
    const auto deal = MakeDeal(kOutsider, false, kAbsentPipeline, "X");
    for (Action action : {Action::kRead, Action::kAdd, Action::kWrite,
                          Action::kDelete, Action::kExport, Action::kImport}) {
      EXPECT_EQ(LevelFor(caller, action, kAbsentPipeline, "X"),
                pv1::ACCESS_LEVEL_ALL);
      EXPECT_TRUE(Allows(caller, action, deal));
      EXPECT_THAT(CheckAction(caller, action, deal), IsOk());
    }
    EXPECT_THAT(CheckRead(caller, deal), IsOk());
    EXPECT_THAT(CheckAdd(caller, deal), IsOk());
    EXPECT_THAT(CheckTransition(caller, deal, "Y"), IsOk());
    EXPECT_FALSE(HidesSums(caller, kAbsentPipeline));
    const ReadScope scope = ReadScopeFor(caller, kAbsentPipeline, "X");
    EXPECT_TRUE(scope.all());
    EXPECT_TRUE(ScopeMatches(scope, deal));
  }
}

TEST(PrivilegedTest, UserWithoutPermissionsGetsNothing) {
  const Caller caller{kMe, false, nullptr};
  const auto own = MakeDeal(kMe, true);
  EXPECT_EQ(LevelFor(caller, Action::kRead, kPipeline, kNew),
            pv1::ACCESS_LEVEL_NONE);
  EXPECT_FALSE(Allows(caller, Action::kRead, own));
  EXPECT_THAT(CheckRead(caller, own), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(CheckAdd(caller, own),
              StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(CheckTransition(caller, own, kWon),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_TRUE(HidesSums(caller, kPipeline));
  EXPECT_TRUE(ReadScopeFor(caller, kPipeline, kNew).none());
}

// ---------------------------------------------------------------------------
// Transitions

class TransitionTest : public ::testing::Test {
 protected:
  TransitionTest() {
    pv1::EffectivePermissions permissions = BasePermissions();
    auto* pipeline = AddPipeline(&permissions, kPipeline);
    auto& levels = *pipeline->mutable_stage_levels();
    auto& rules = *pipeline->mutable_transitions();
    // Read everything, write own deals.
    const pv1::ActionLevels write_self = Levels(
        pv1::ACCESS_LEVEL_ALL, pv1::ACCESS_LEVEL_SELF, pv1::ACCESS_LEVEL_SELF,
        pv1::ACCESS_LEVEL_SELF, pv1::ACCESS_LEVEL_SELF, pv1::ACCESS_LEVEL_SELF);
    levels[kNew] = write_self;
    rules[kNew] = Rule(pv1::TransitionRule::MODE_LIST, {kPrep, kWon});
    levels[kPrep] = write_self;
    rules[kPrep] = Rule(pv1::TransitionRule::MODE_ANY);
    levels[kWon] = write_self;
    rules[kWon] = Rule(pv1::TransitionRule::MODE_BLOCKED);
    levels[kLose] = write_self;
    rules[kLose] = Rule(pv1::TransitionRule::MODE_UNSPECIFIED);  // = ANY
    // Readable but not writable, although the rule says ANY.
    levels["C1:READONLY"] = Levels(
        pv1::ACCESS_LEVEL_ALL, pv1::ACCESS_LEVEL_NONE, pv1::ACCESS_LEVEL_NONE,
        pv1::ACCESS_LEVEL_NONE, pv1::ACCESS_LEVEL_NONE, pv1::ACCESS_LEVEL_NONE);
    rules["C1:READONLY"] = Rule(pv1::TransitionRule::MODE_ANY);
    // Writable, but the effective permissions carry no rule for it.
    levels["C1:NORULE"] = write_self;
    // An empty LIST allows nothing.
    levels["C1:EMPTYLIST"] = write_self;
    rules["C1:EMPTYLIST"] = Rule(pv1::TransitionRule::MODE_LIST);
    caller_ = UserCaller(permissions);
  }

  Caller caller_;
};

TEST_F(TransitionTest, ListAllowsOnlyItsTargets) {
  const auto deal = MakeDeal(kMe, true, kPipeline, kNew);
  EXPECT_THAT(CheckTransition(caller_, deal, kPrep), IsOk());
  EXPECT_THAT(CheckTransition(caller_, deal, kWon), IsOk());
  EXPECT_THAT(CheckTransition(caller_, deal, kLose),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       "moving deals from C1:NEW to C1:LOSE is not allowed"));
  EXPECT_THAT(CheckTransition(caller_, deal, "C1:READONLY"),
              StatusIs(absl::StatusCode::kPermissionDenied));
}

TEST_F(TransitionTest, AnyAndUnspecifiedAllowEverything) {
  for (const char* from : {kPrep, kLose}) {
    const auto deal = MakeDeal(kMe, true, kPipeline, from);
    for (const char* to : {kNew, kWon, kLose, kPrep, "C1:READONLY"}) {
      EXPECT_THAT(CheckTransition(caller_, deal, to), IsOk())
          << from << " -> " << to;
    }
  }
}

TEST_F(TransitionTest, BlockedRefusesEveryMoveButStaying) {
  const auto deal = MakeDeal(kMe, true, kPipeline, kWon);
  for (const char* to : {kNew, kPrep, kLose}) {
    EXPECT_THAT(CheckTransition(caller_, deal, to),
                StatusIs(absl::StatusCode::kPermissionDenied,
                         absl::StrCat("moving deals from C1:WON to ", to,
                                      " is not allowed")));
  }
  EXPECT_THAT(CheckTransition(caller_, deal, kWon), IsOk());
}

TEST_F(TransitionTest, MissingRuleAndEmptyListRefuse) {
  EXPECT_THAT(CheckTransition(
                  caller_, MakeDeal(kMe, true, kPipeline, "C1:NORULE"), kNew),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       HasSubstr("moving deals from C1:NORULE")));
  EXPECT_THAT(
      CheckTransition(caller_, MakeDeal(kMe, true, kPipeline, "C1:EMPTYLIST"),
                      kNew),
      StatusIs(absl::StatusCode::kPermissionDenied,
               HasSubstr("moving deals from C1:EMPTYLIST")));
}

TEST_F(TransitionTest, NeedsWriteOnTheDeal) {
  // Someone else's deal: readable (ALL), not writable (SELF).
  const auto colleagues = MakeDeal(kColleague, true, kPipeline, kPrep);
  EXPECT_THAT(CheckRead(caller_, colleagues), IsOk());
  EXPECT_THAT(CheckTransition(caller_, colleagues, kWon),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       "not allowed to write deal 42"));
  // A stage without WRITE at all, though its rule says ANY.
  const auto readonly = MakeDeal(kMe, true, kPipeline, "C1:READONLY");
  EXPECT_THAT(CheckTransition(caller_, readonly, kNew),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       "not allowed to write deal 42"));
  EXPECT_THAT(CheckTransition(caller_, readonly, "C1:READONLY"),
              StatusIs(absl::StatusCode::kPermissionDenied));
}

// ---------------------------------------------------------------------------
// ReadScope

class ReadScopeTest : public ::testing::Test {
 protected:
  ReadScopeTest() : caller_(UserCaller(OneStagePerLevel())) {}

  Caller caller_;
};

TEST_F(ReadScopeTest, MatchesAgreesWithAllowsForEveryStage) {
  for (const char* stage :
       {"NONE", "SELF", "DEPARTMENT", "SUBDEPARTMENTS", "OPEN", "ALL"}) {
    const ReadScope scope = ReadScopeFor(caller_, kPipeline, stage);
    for (int64_t assignee : {0, 1, 2, 3, 4, 5, 6, 7, 8, 99}) {
      for (std::optional<bool> opened :
           {std::optional<bool>(true), std::optional<bool>(false),
            std::optional<bool>()}) {
        const auto deal = MakeDeal(assignee, opened, kPipeline, stage);
        EXPECT_EQ(ScopeMatches(scope, deal),
                  Allows(caller_, Action::kRead, deal))
            << stage << " assignee " << assignee;
      }
    }
  }
}

TEST(ReadScopeSelfTest, DealsWithoutAssigneeAreNobodysOwn) {
  pv1::EffectivePermissions permissions = BasePermissions();
  (*AddPipeline(&permissions, kPipeline)->mutable_stage_levels())[kNew] =
      Uniform(pv1::ACCESS_LEVEL_SUBDEPARTMENTS);
  const Caller caller = UserCaller(permissions);
  EXPECT_FALSE(Allows(caller, Action::kRead, MakeDeal(0, false)));
  // A service-like caller with user id 0 that is (wrongly) not privileged
  // does not own unassigned deals either.
  const Caller nobody{0, false, caller.permissions};
  EXPECT_FALSE(LevelCovers(nobody, pv1::ACCESS_LEVEL_SELF, 0, false));
}

}  // namespace
}  // namespace crm::deals
