#include "services/deals/domain/access.h"

#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "common/status/status_matchers.h"

namespace crm::deals {
namespace {

namespace pv1 = crm::pipelines::v1;

using ::crm::testing::IsOk;
using ::crm::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// The company tree of the tests:
//   Sales (10): head 2 (the caller), member 3
//     Sales East (11): head 4, member 5
//       Sales East North (12): head 6, member 7   <- two levels below
//   Marketing (20): member 99 (an outsider)
constexpr int64_t kMe = 2;
constexpr int64_t kColleague = 3;
constexpr int64_t kSubMember = 4;        // One level below.
constexpr int64_t kNestedSubMember = 7;  // Two levels below.
constexpr int64_t kOutsider = 99;

constexpr int64_t kPipeline = 1;
constexpr int64_t kAbsentPipeline = 5;
constexpr char kNew[] = "C1:NEW";
constexpr char kPrep[] = "C1:PREPARATION";
constexpr char kWon[] = "C1:WON";
constexpr char kLose[] = "C1:LOSE";
constexpr int64_t kDealId = 42;

pv1::ActionLevels Levels(pv1::AccessLevel read, pv1::AccessLevel add,
                         pv1::AccessLevel write, pv1::AccessLevel del,
                         pv1::AccessLevel exp, pv1::AccessLevel imp) {
  pv1::ActionLevels levels;
  levels.set_read(read);
  levels.set_add(add);
  levels.set_write(write);
  levels.set_delete_(del);
  levels.set_export_(exp);
  levels.set_import(imp);
  return levels;
}

pv1::ActionLevels Uniform(pv1::AccessLevel level) {
  return Levels(level, level, level, level, level, level);
}

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

pv1::TransitionRule Rule(pv1::TransitionRule::Mode mode,
                         std::vector<std::string> targets = {}) {
  pv1::TransitionRule rule;
  rule.set_mode(mode);
  for (auto& target : targets) rule.add_to_stage_ids(target);
  return rule;
}

// The caller's permissions without any pipeline: department closures only,
// as pipeline-config computes them for the tree above.
pv1::EffectivePermissions BasePermissions() {
  pv1::EffectivePermissions permissions;
  permissions.set_user_id(kMe);
  permissions.set_config_version(7);
  permissions.add_department_ids(10);
  for (int64_t id : {10, 11, 12}) permissions.add_subdepartment_ids(id);
  for (int64_t id : {kMe, kColleague}) permissions.add_department_user_ids(id);
  for (int64_t id : {2, 3, 4, 5, 6, 7})
    permissions.add_subdepartment_user_ids(id);
  return permissions;
}

pv1::EffectivePipelinePermissions* AddPipeline(
    pv1::EffectivePermissions* permissions, int64_t pipeline_id) {
  pv1::EffectivePipelinePermissions* pipeline = permissions->add_pipelines();
  pipeline->set_pipeline_id(pipeline_id);
  return pipeline;
}

Caller UserCaller(const pv1::EffectivePermissions& permissions) {
  crm::common::Principal principal;
  principal.user_id = permissions.user_id();
  return MakeCaller(principal, IndexedPermissions::Build(permissions));
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

TEST(PrivilegedTest, PlainUsersAreNotPrivileged) {
  crm::common::Principal user;
  user.user_id = kMe;
  const Caller caller =
      MakeCaller(user, IndexedPermissions::Build(BasePermissions()));
  EXPECT_FALSE(caller.privileged);
  EXPECT_FALSE(IsPrivileged(caller));
  EXPECT_EQ(caller.user_id, kMe);
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
  ReadScopeTest() {
    pv1::EffectivePermissions permissions = BasePermissions();
    auto* pipeline = AddPipeline(&permissions, kPipeline);
    auto& levels = *pipeline->mutable_stage_levels();
    levels["NONE"] = Uniform(pv1::ACCESS_LEVEL_NONE);
    levels["SELF"] = Uniform(pv1::ACCESS_LEVEL_SELF);
    levels["DEPARTMENT"] = Uniform(pv1::ACCESS_LEVEL_DEPARTMENT);
    levels["SUBDEPARTMENTS"] = Uniform(pv1::ACCESS_LEVEL_SUBDEPARTMENTS);
    levels["OPEN"] = Uniform(pv1::ACCESS_LEVEL_OPEN);
    levels["ALL"] = Uniform(pv1::ACCESS_LEVEL_ALL);
    caller_ = UserCaller(permissions);
  }

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
}  // namespace crm::deals
