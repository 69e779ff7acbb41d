// Deal permissions end to end: roles, departments and assignments made
// through pipeline-config's API, enforced by the deals service over a real
// channel. Covers every scope level for read, add, write and delete with
// users in nested departments, lists and boards holding only readable deals,
// per-stage overrides, transition rules, hidden sums, permission changes,
// users without roles and service identities.
//
// The company used throughout:
//   department A (root):     users 10 and 13
//   department B (under A):  user 11
//   department C (root):     user 12
//   user 14 belongs to no department.
#include <algorithm>
#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "common/status/status_matchers.h"
#include "tests/service/deals_service_test_fixture.h"

namespace crm::deals {
namespace {

using ::crm::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAreArray;

using Level = pv1::AccessLevel;
constexpr Level kNone = pv1::ACCESS_LEVEL_NONE;
constexpr Level kSelf = pv1::ACCESS_LEVEL_SELF;
constexpr Level kDepartment = pv1::ACCESS_LEVEL_DEPARTMENT;
constexpr Level kSubdepartments = pv1::ACCESS_LEVEL_SUBDEPARTMENTS;
constexpr Level kOpen = pv1::ACCESS_LEVEL_OPEN;
constexpr Level kAll = pv1::ACCESS_LEVEL_ALL;

constexpr int64_t kUserA = 10;      // in A
constexpr int64_t kUserB = 11;      // in B, below A
constexpr int64_t kUserC = 12;      // in C, elsewhere
constexpr int64_t kColleague = 13;  // in A with 10
constexpr int64_t kNobody = 14;     // no department, no role

constexpr int kOk = 0;
constexpr int kNotFound = static_cast<int>(absl::StatusCode::kNotFound);
constexpr int kDenied = static_cast<int>(absl::StatusCode::kPermissionDenied);

pv1::ActionLevels Levels(Level read, Level add, Level write, Level del) {
  pv1::ActionLevels levels;
  levels.set_read(read);
  levels.set_add(add);
  levels.set_write(write);
  levels.set_delete_(del);
  levels.set_export_(read);
  levels.set_import(add);
  return levels;
}

pv1::ActionLevels Uniform(Level level) {
  return Levels(level, level, level, level);
}

// A role with `levels` in pipeline 0 (and nothing elsewhere).
pv1::Role RoleFor(const std::string& name, const pv1::ActionLevels& levels) {
  pv1::Role role;
  role.set_name(name);
  pv1::PipelinePermissions* pipeline = role.add_pipelines();
  pipeline->set_pipeline_id(0);
  *pipeline->mutable_levels() = levels;
  return role;
}

std::vector<int64_t> Ids(
    const google::protobuf::RepeatedPtrField<v1::Deal>& deals) {
  std::vector<int64_t> ids;
  for (const v1::Deal& deal : deals) ids.push_back(deal.id());
  std::sort(ids.begin(), ids.end());
  return ids;
}

const v1::KanbanColumn& Column(const v1::KanbanBoard& board,
                               const std::string& stage_id) {
  for (const v1::KanbanColumn& column : board.columns()) {
    if (column.stage_id() == stage_id) return column;
  }
  ADD_FAILURE() << "no column " << stage_id;
  static const v1::KanbanColumn* empty = new v1::KanbanColumn();
  return *empty;
}

v1::Filter Where(const std::string& field, v1::Condition::Operator op,
                 const std::vector<std::string>& values) {
  v1::Filter filter;
  filter.mutable_condition()->set_field(field);
  filter.mutable_condition()->set_op(op);
  for (const std::string& value : values)
    filter.mutable_condition()->add_values(value);
  return filter;
}

class DealsAccessTest : public DealsServiceTest {
 protected:
  // Departments A > B and C as in the file comment.
  void CreateCompany() {
    ASSERT_OK_AND_ASSIGN(pv1::Department a,
                         CreateDepartment("A", 0, {kUserA, kColleague}));
    ASSERT_OK_AND_ASSIGN(pv1::Department b,
                         CreateDepartment("B", a.id(), {kUserB}));
    ASSERT_OK_AND_ASSIGN(pv1::Department c, CreateDepartment("C", 0, {kUserC}));
    department_a_ = a;
    department_b_ = b;
    department_c_ = c;
  }

  absl::StatusOr<pv1::Role> Grant(int64_t user_id, const pv1::Role& role) {
    absl::StatusOr<pv1::Role> created = CreateRole(role);
    if (!created.ok()) return created.status();
    absl::Status assigned = AssignToUser(created->id(), user_id);
    if (!assigned.ok()) return assigned;
    return created;
  }

  // A deal created by the administrator.
  absl::StatusOr<v1::Deal> Seed(int64_t assignee_id, bool opened = true,
                                const std::string& stage_id = "",
                                const std::string& amount = "1") {
    v1::Deal deal = MakeDeal(absl::StrCat("deal of ", assignee_id), assignee_id,
                             amount, "USD");
    deal.set_opened(opened);
    if (!stage_id.empty()) deal.set_stage_id(stage_id);
    return CreateDeal(deal);
  }

  absl::Status Update(int64_t deal_id, const std::string& token,
                      const std::string& title = "renamed") {
    v1::UpdateDealRequest request;
    request.mutable_deal()->set_id(deal_id);
    request.mutable_deal()->set_title(title);
    request.mutable_update_mask()->add_paths("title");
    return CallAs(token, &DealsStub::UpdateDeal, request).status();
  }

  absl::Status Delete(int64_t deal_id, const std::string& token) {
    v1::DeleteDealRequest request;
    request.set_deal_id(deal_id);
    return CallAs(token, &DealsStub::DeleteDeal, request).status();
  }

  // Every deal the token can list (one page of up to 500), ids sorted, and
  // the total.
  std::pair<std::vector<int64_t>, int64_t> List(
      const std::string& token, const v1::Filter* filter = nullptr) {
    v1::ListDealsRequest request;
    request.set_page_size(500);
    request.set_include_total(true);
    if (filter != nullptr) *request.mutable_filter() = *filter;
    absl::StatusOr<v1::ListDealsResponse> response =
        CallAs(token, &DealsStub::ListDeals, request);
    EXPECT_TRUE(response.ok()) << response.status();
    if (!response.ok()) return {};
    EXPECT_TRUE(response->next_page_token().empty());
    return {Ids(response->deals()), response->total()};
  }

  absl::StatusOr<v1::KanbanBoard> Board(const std::string& token,
                                        int64_t pipeline_id = 0) {
    v1::GetKanbanBoardRequest request;
    request.set_pipeline_id(pipeline_id);
    request.set_cards_per_column(100);
    return CallAs(token, &DealsStub::GetKanbanBoard, request);
  }

  absl::StatusOr<v1::BatchUpdateDealsResponse> BatchReassign(
      const std::string& token, const std::vector<int64_t>& ids,
      int64_t assignee_id) {
    v1::BatchUpdateDealsRequest request;
    for (int64_t id : ids) request.mutable_deal_ids()->add_ids(id);
    request.set_set_assignee_id(assignee_id);
    return CallAs(token, &DealsStub::BatchUpdateDeals, request);
  }

  // Deletes every deal as the administrator.
  void DeleteEverything() {
    auto [ids, total] = List(AdminToken());
    for (int64_t id : ids) ASSERT_OK(Delete(id, AdminToken()));
  }

  pv1::Department department_a_, department_b_, department_c_;
};

// --- The permission matrix -------------------------------------------------

// What one user reaches at one level: deals assigned to `assignees`, plus
// every opened deal when `opened_deals`.
struct Reach {
  Level level;
  int64_t user;
  std::set<int64_t> assignees;
  bool opened_deals;
};

const std::vector<Reach>& ReachTable() {
  static const auto* table = new std::vector<Reach>{
      {kNone, kUserA, {}, false},
      {kNone, kUserB, {}, false},
      {kNone, kUserC, {}, false},
      {kSelf, kUserA, {kUserA}, false},
      {kSelf, kUserB, {kUserB}, false},
      {kSelf, kUserC, {kUserC}, false},
      // A holds 10 and 13; B only 11; C only 12.
      {kDepartment, kUserA, {kUserA, kColleague}, false},
      {kDepartment, kUserB, {kUserB}, false},
      {kDepartment, kUserC, {kUserC}, false},
      // Below A is B: 10 also reaches 11. Nothing is below B or C.
      {kSubdepartments, kUserA, {kUserA, kColleague, kUserB}, false},
      {kSubdepartments, kUserB, {kUserB}, false},
      {kSubdepartments, kUserC, {kUserC}, false},
      {kOpen, kUserA, {kUserA, kColleague, kUserB}, true},
      {kOpen, kUserB, {kUserB}, true},
      {kOpen, kUserC, {kUserC}, true},
      {kAll, kUserA, {kUserA, kColleague, kUserB, kUserC}, true},
      {kAll, kUserB, {kUserA, kColleague, kUserB, kUserC}, true},
      {kAll, kUserC, {kUserA, kColleague, kUserB, kUserC}, true},
  };
  return *table;
}

bool Reaches(const Reach& reach, int64_t assignee, bool opened) {
  return reach.assignees.count(assignee) > 0 || (reach.opened_deals && opened);
}

class DealsAccessMatrixTest : public DealsAccessTest,
                              public ::testing::WithParamInterface<Level> {};

// Every action at the level under test, for everybody in A, B and C.
TEST_P(DealsAccessMatrixTest, EachUserReachesExactlyItsScope) {
  const Level level = GetParam();
  CreateCompany();
  ASSERT_OK_AND_ASSIGN(pv1::Role role,
                       CreateRole(RoleFor("sales", Uniform(level))));
  ASSERT_OK(AssignToDepartment(role.id(), department_a_.id(),
                               /*include_subdepartments=*/true));
  ASSERT_OK(AssignToDepartment(role.id(), department_c_.id(), false));

  const std::vector<int64_t> assignees = {kUserA, kColleague, kUserB, kUserC};
  for (const Reach& reach : ReachTable()) {
    if (reach.level != level) continue;
    SCOPED_TRACE(absl::StrCat("user ", reach.user));
    const std::string token = UserToken(reach.user);

    // One deal per assignee and opened flag, made by the administrator.
    struct Seeded {
      v1::Deal deal;
      bool reachable;
    };
    std::vector<Seeded> seeded;
    std::vector<int64_t> reachable;
    for (int64_t assignee : assignees) {
      for (bool opened : {false, true}) {
        ASSERT_OK_AND_ASSIGN(v1::Deal deal, Seed(assignee, opened));
        const bool ok = Reaches(reach, assignee, opened);
        seeded.push_back({deal, ok});
        if (ok) reachable.push_back(deal.id());
      }
    }

    // Read: GetDeal, and every list path (scope, stage, pipeline, assignee
    // and close-date indexes) holds exactly the readable deals.
    for (const Seeded& s : seeded) {
      SCOPED_TRACE(absl::StrCat("deal of ", s.deal.assignee_id(),
                                " opened=", s.deal.opened()));
      if (s.reachable) {
        ASSERT_OK_AND_ASSIGN(v1::Deal got, GetDeal(s.deal.id(), token));
        EXPECT_EQ(got.id(), s.deal.id());
      } else {
        EXPECT_THAT(
            GetDeal(s.deal.id(), token),
            StatusIs(absl::StatusCode::kNotFound, HasSubstr("not found")));
      }
    }
    const v1::Filter by_stage =
        Where("stage_id", v1::Condition::OPERATOR_EQ, {"NEW"});
    const v1::Filter by_pipeline =
        Where("pipeline_id", v1::Condition::OPERATOR_EQ, {"0"});
    const v1::Filter by_assignee = Where(
        "assignee_id", v1::Condition::OPERATOR_IN, {"10", "11", "12", "13"});
    const v1::Filter by_close_date =
        Where("close_date", v1::Condition::OPERATOR_GE, {"2000-01-01"});
    const v1::Filter by_title =
        Where("title", v1::Condition::OPERATOR_CONTAINS, {"deal"});
    for (const v1::Filter* filter :
         {static_cast<const v1::Filter*>(nullptr), &by_stage, &by_pipeline,
          &by_assignee, &by_close_date, &by_title}) {
      SCOPED_TRACE(filter == nullptr ? "no filter" : filter->DebugString());
      auto [ids, total] = List(token, filter);
      EXPECT_EQ(ids, reachable);
      EXPECT_EQ(total, static_cast<int64_t>(reachable.size()));
    }
    ASSERT_OK_AND_ASSIGN(v1::KanbanBoard board, Board(token));
    int64_t count = 0;
    for (const v1::KanbanColumn& column : board.columns())
      count += column.count();
    EXPECT_EQ(count, static_cast<int64_t>(reachable.size()));
    EXPECT_EQ(Ids(Column(board, "NEW").cards()), reachable);
    if (reachable.empty()) {
      EXPECT_THAT(Column(board, "NEW").sums(), IsEmpty());
    } else {
      ASSERT_EQ(Column(board, "NEW").sums_size(), 1);
      EXPECT_EQ(Column(board, "NEW").sums(0).amount(),
                absl::StrCat(reachable.size(), ".00"));  // 1 USD each
    }

    // Write: allowed on exactly the readable deals; the others do not exist
    // for this user.
    for (const Seeded& s : seeded) {
      SCOPED_TRACE(absl::StrCat("update deal of ", s.deal.assignee_id(),
                                " opened=", s.deal.opened()));
      if (s.reachable) {
        EXPECT_OK(Update(s.deal.id(), token));
      } else {
        EXPECT_THAT(Update(s.deal.id(), token),
                    StatusIs(absl::StatusCode::kNotFound));
      }
    }

    // Add: a new deal for each assignee and opened flag; what the user may
    // add it may then delete.
    for (int64_t assignee : assignees) {
      for (bool opened : {false, true}) {
        SCOPED_TRACE(absl::StrCat("add for ", assignee, " opened=", opened));
        v1::Deal deal = MakeDeal("added", assignee);
        deal.set_opened(opened);
        absl::StatusOr<v1::Deal> added = CreateDeal(deal, token);
        if (Reaches(reach, assignee, opened)) {
          ASSERT_OK(added.status());
          EXPECT_EQ(added->created_by(), reach.user);
          EXPECT_OK(Delete(added->id(), token));
        } else {
          EXPECT_THAT(added, StatusIs(absl::StatusCode::kPermissionDenied,
                                      HasSubstr("not allowed to add")));
        }
      }
    }

    // Delete.
    for (const Seeded& s : seeded) {
      SCOPED_TRACE(absl::StrCat("delete deal of ", s.deal.assignee_id(),
                                " opened=", s.deal.opened()));
      if (s.reachable) {
        EXPECT_OK(Delete(s.deal.id(), token));
        EXPECT_THAT(GetDeal(s.deal.id()),
                    StatusIs(absl::StatusCode::kNotFound));
      } else {
        EXPECT_THAT(Delete(s.deal.id(), token),
                    StatusIs(absl::StatusCode::kNotFound));
        EXPECT_OK(GetDeal(s.deal.id()).status());  // still there
      }
    }
    DeleteEverything();
  }
}

INSTANTIATE_TEST_SUITE_P(
    Levels, DealsAccessMatrixTest,
    ::testing::Values(kNone, kSelf, kDepartment, kSubdepartments, kOpen, kAll),
    [](const ::testing::TestParamInfo<Level>& level_info) {
      std::string name = pv1::AccessLevel_Name(level_info.param);
      return name.substr(std::string("ACCESS_LEVEL_").size());
    });

// --- Mixed levels -----------------------------------------------------------

TEST_F(DealsAccessTest, ReadableButNotAllowedIsPermissionDenied) {
  CreateCompany();
  // 10 reads everything, adds for itself, writes in its department and
  // deletes its own deals.
  ASSERT_OK(
      Grant(kUserA, RoleFor("reader", Levels(kAll, kSelf, kDepartment, kSelf)))
          .status());
  const std::string token = UserToken(kUserA);
  ASSERT_OK_AND_ASSIGN(v1::Deal own, Seed(kUserA));
  ASSERT_OK_AND_ASSIGN(v1::Deal colleague, Seed(kColleague));
  ASSERT_OK_AND_ASSIGN(v1::Deal stranger, Seed(kUserC));

  for (const v1::Deal* deal : {&own, &colleague, &stranger})
    EXPECT_OK(GetDeal(deal->id(), token).status());

  EXPECT_OK(Update(own.id(), token));
  EXPECT_OK(Update(colleague.id(), token));
  EXPECT_THAT(Update(stranger.id(), token),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       HasSubstr(absl::StrCat("not allowed to write deal ",
                                              stranger.id()))));
  EXPECT_THAT(MoveStage(stranger.id(), "PREPARATION", token),
              StatusIs(absl::StatusCode::kPermissionDenied));
  v1::SetProductRowsRequest rows;
  rows.set_deal_id(stranger.id());
  EXPECT_THAT(CallAs(token, &DealsStub::SetProductRows, rows),
              StatusIs(absl::StatusCode::kPermissionDenied));
  v1::MoveDealToPipelineRequest to_pipeline;
  to_pipeline.set_deal_id(stranger.id());
  EXPECT_THAT(CallAs(token, &DealsStub::MoveDealToPipeline, to_pipeline),
              StatusIs(absl::StatusCode::kPermissionDenied));

  EXPECT_THAT(Delete(colleague.id(), token),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       HasSubstr("not allowed to delete")));
  EXPECT_THAT(Delete(stranger.id(), token),
              StatusIs(absl::StatusCode::kPermissionDenied));

  EXPECT_THAT(CreateDeal(MakeDeal("for 12", kUserC), token),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       HasSubstr("not allowed to add")));
  ASSERT_OK_AND_ASSIGN(v1::Deal mine, CreateDeal(MakeDeal("mine"), token));
  EXPECT_EQ(mine.assignee_id(), kUserA);  // the creator by default

  // Batch items are checked like the single calls.
  ASSERT_OK_AND_ASSIGN(
      v1::BatchUpdateDealsResponse batch,
      BatchReassign(token, {own.id(), stranger.id(), colleague.id()}, kUserA));
  ASSERT_EQ(batch.results_size(), 3);
  EXPECT_EQ(batch.results(0).code(), kOk);
  EXPECT_EQ(batch.results(1).code(), kDenied);
  EXPECT_EQ(batch.results(2).code(), kOk);
  EXPECT_EQ(batch.succeeded(), 2);
  EXPECT_EQ(batch.failed(), 1);

  EXPECT_OK(Delete(own.id(), token));

  // 11 may write and delete anything but read only its own deals: what it
  // cannot read does not exist for it, whatever the other levels say.
  ASSERT_OK(Grant(kUserB, RoleFor("writer", Levels(kSelf, kAll, kAll, kAll)))
                .status());
  const std::string writer = UserToken(kUserB);
  ASSERT_OK_AND_ASSIGN(v1::Deal writers_own, Seed(kUserB));
  EXPECT_THAT(GetDeal(stranger.id(), writer),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(Update(stranger.id(), writer),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(MoveStage(stranger.id(), "PREPARATION", writer),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(Delete(stranger.id(), writer),
              StatusIs(absl::StatusCode::kNotFound));
  v1::ListStageHistoryRequest history;
  history.set_deal_id(stranger.id());
  EXPECT_THAT(CallAs(writer, &DealsStub::ListStageHistory, history),
              StatusIs(absl::StatusCode::kNotFound));
  v1::GetTimeInStageRequest time;
  time.set_deal_id(stranger.id());
  EXPECT_THAT(CallAs(writer, &DealsStub::GetTimeInStage, time),
              StatusIs(absl::StatusCode::kNotFound));
  ASSERT_OK_AND_ASSIGN(
      v1::BatchUpdateDealsResponse hidden,
      BatchReassign(writer, {writers_own.id(), stranger.id()}, kUserB));
  ASSERT_EQ(hidden.results_size(), 2);
  EXPECT_EQ(hidden.results(0).code(), kOk);
  EXPECT_EQ(hidden.results(1).code(), kNotFound);
  // It may add deals for anybody, even ones it will not see afterwards.
  EXPECT_OK(CreateDeal(MakeDeal("for 12", kUserC), writer).status());
  // The stranger's deal is untouched.
  ASSERT_OK_AND_ASSIGN(v1::Deal untouched, GetDeal(stranger.id()));
  EXPECT_EQ(untouched.title(), stranger.title());
  EXPECT_EQ(untouched.assignee_id(), kUserC);
}

// --- Per-stage overrides ----------------------------------------------------

TEST_F(DealsAccessTest, StageOverridesChangeWhatIsVisibleInThatStage) {
  CreateCompany();
  pv1::Role role = RoleFor("stages", Uniform(kAll));
  auto& overrides = *role.mutable_pipelines(0)->mutable_stage_levels();
  overrides["WON"] = Uniform(kNone);
  overrides["LOSE"] = Uniform(kSelf);
  overrides["PREPARATION"] = Levels(kAll, kAll, kNone, kNone);
  ASSERT_OK(Grant(kUserA, role).status());
  const std::string token = UserToken(kUserA);

  ASSERT_OK_AND_ASSIGN(v1::Deal fresh, Seed(kUserC, true, "NEW", "10"));
  ASSERT_OK_AND_ASSIGN(v1::Deal won, Seed(kUserC, true, "WON", "20"));
  ASSERT_OK_AND_ASSIGN(v1::Deal prep, Seed(kUserC, true, "PREPARATION", "30"));
  ASSERT_OK_AND_ASSIGN(v1::Deal lost_other, Seed(kUserC, true, "LOSE", "40"));
  ASSERT_OK_AND_ASSIGN(v1::Deal lost_own, Seed(kUserA, true, "LOSE", "50"));

  EXPECT_OK(GetDeal(fresh.id(), token).status());
  EXPECT_THAT(GetDeal(won.id(), token), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_OK(GetDeal(prep.id(), token).status());
  EXPECT_THAT(GetDeal(lost_other.id(), token),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_OK(GetDeal(lost_own.id(), token).status());

  // Readable in PREPARATION, but not writable there.
  EXPECT_THAT(Update(prep.id(), token),
              StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(Delete(prep.id(), token),
              StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_OK(Update(fresh.id(), token));

  // Adding follows the target stage's levels.
  v1::Deal into_won = MakeDeal("won directly", kUserA);
  into_won.set_stage_id("WON");
  EXPECT_THAT(CreateDeal(into_won, token),
              StatusIs(absl::StatusCode::kPermissionDenied));
  v1::Deal into_lose = MakeDeal("lost for 12", kUserC);
  into_lose.set_stage_id("LOSE");
  EXPECT_THAT(CreateDeal(into_lose, token),
              StatusIs(absl::StatusCode::kPermissionDenied));
  into_lose.set_assignee_id(kUserA);
  ASSERT_OK_AND_ASSIGN(v1::Deal lost_added, CreateDeal(into_lose, token));

  const std::vector<int64_t> visible = {fresh.id(), prep.id(), lost_own.id(),
                                        lost_added.id()};
  auto [ids, total] = List(token);
  EXPECT_THAT(ids, UnorderedElementsAreArray(visible));
  EXPECT_EQ(total, 4);
  const v1::Filter in_won =
      Where("stage_id", v1::Condition::OPERATOR_EQ, {"WON"});
  EXPECT_THAT(List(token, &in_won).first, IsEmpty());
  EXPECT_THAT(List(AdminToken(), &in_won).first, ElementsAre(won.id()));
  const v1::Filter closed =
      Where("stage_id", v1::Condition::OPERATOR_IN, {"WON", "LOSE"});
  EXPECT_THAT(List(token, &closed).first,
              UnorderedElementsAreArray({lost_own.id(), lost_added.id()}));

  ASSERT_OK_AND_ASSIGN(v1::KanbanBoard board, Board(token));
  EXPECT_EQ(Column(board, "NEW").count(), 1);
  EXPECT_EQ(Column(board, "PREPARATION").count(), 1);
  EXPECT_EQ(Column(board, "WON").count(), 0);
  EXPECT_THAT(Column(board, "WON").cards(), IsEmpty());
  EXPECT_THAT(Column(board, "WON").sums(), IsEmpty());
  EXPECT_EQ(Column(board, "LOSE").count(), 2);
  ASSERT_EQ(Column(board, "LOSE").sums_size(), 1);
  EXPECT_EQ(Column(board, "LOSE").sums(0).amount(), "50.00");  // 50 + 0
  ASSERT_OK_AND_ASSIGN(v1::KanbanBoard admin_board, Board(AdminToken()));
  EXPECT_EQ(Column(admin_board, "WON").count(), 1);
  EXPECT_EQ(Column(admin_board, "LOSE").count(), 3);
  EXPECT_EQ(Column(admin_board, "LOSE").sums(0).amount(), "90.00");

  v1::ListKanbanColumnRequest column;
  column.set_stage_id("WON");
  ASSERT_OK_AND_ASSIGN(v1::KanbanColumnPage won_page,
                       CallAs(token, &DealsStub::ListKanbanColumn, column));
  EXPECT_THAT(won_page.cards(), IsEmpty());
  column.set_stage_id("LOSE");
  ASSERT_OK_AND_ASSIGN(v1::KanbanColumnPage lose_page,
                       CallAs(token, &DealsStub::ListKanbanColumn, column));
  EXPECT_THAT(Ids(lose_page.cards()),
              UnorderedElementsAreArray({lost_own.id(), lost_added.id()}));

  // Moving a deal into WON hides it from this user.
  ASSERT_OK(MoveStage(fresh.id(), "WON"));
  EXPECT_THAT(GetDeal(fresh.id(), token),
              StatusIs(absl::StatusCode::kNotFound));
}

// --- Transitions
// --------------------------------------------------------------

TEST_F(DealsAccessTest, TransitionRulesLimitStageMoves) {
  CreateCompany();
  pv1::Role role = RoleFor("movers", Uniform(kAll));
  auto& transitions = *role.mutable_pipelines(0)->mutable_transitions();
  transitions["NEW"].set_mode(pv1::TransitionRule::MODE_LIST);
  transitions["NEW"].add_to_stage_ids("PREPARATION");
  transitions["NEW"].add_to_stage_ids("LOSE");
  transitions["PREPARATION"].set_mode(pv1::TransitionRule::MODE_BLOCKED);
  ASSERT_OK(Grant(kUserA, role).status());
  const std::string token = UserToken(kUserA);
  ASSERT_OK_AND_ASSIGN(v1::Deal deal, Seed(kUserA));

  for (const char* target : {"EXECUTING", "WON", "APOLOGY"}) {
    SCOPED_TRACE(target);
    EXPECT_THAT(MoveStage(deal.id(), target, token),
                StatusIs(absl::StatusCode::kPermissionDenied,
                         HasSubstr(absl::StrCat("moving deals from NEW to ",
                                                target, " is not allowed"))));
  }
  ASSERT_OK_AND_ASSIGN(v1::Deal same, MoveStage(deal.id(), "NEW", token));
  EXPECT_EQ(same.etag(), deal.etag());  // staying is not a move
  ASSERT_OK_AND_ASSIGN(v1::Deal moved,
                       MoveStage(deal.id(), "PREPARATION", token));
  EXPECT_EQ(moved.stage_id(), "PREPARATION");
  // PREPARATION is BLOCKED, even back to NEW.
  for (const char* target : {"NEW", "EXECUTING", "LOSE"}) {
    SCOPED_TRACE(target);
    EXPECT_THAT(MoveStage(deal.id(), target, token),
                StatusIs(absl::StatusCode::kPermissionDenied));
  }
  // Stages without a rule allow any move; administrators are not bound.
  ASSERT_OK(MoveStage(deal.id(), "EXECUTING"));
  ASSERT_OK_AND_ASSIGN(v1::Deal won, MoveStage(deal.id(), "WON", token));
  EXPECT_EQ(won.stage_id(), "WON");
  // The other operations are no way around the rule.
  ASSERT_OK_AND_ASSIGN(v1::Deal second, Seed(kUserA));
  ASSERT_OK_AND_ASSIGN(v1::Deal third, Seed(kUserA, true, "FINAL_INVOICE"));
  v1::BatchUpdateDealsRequest batch;
  batch.mutable_deal_ids()->add_ids(second.id());
  batch.mutable_deal_ids()->add_ids(third.id());
  batch.set_move_to_stage_id("EXECUTING");
  ASSERT_OK_AND_ASSIGN(v1::BatchUpdateDealsResponse response,
                       CallAs(token, &DealsStub::BatchUpdateDeals, batch));
  ASSERT_EQ(response.results_size(), 2);
  EXPECT_EQ(response.results(0).code(), kDenied);
  EXPECT_THAT(response.results(0).message(), HasSubstr("moving deals"));
  EXPECT_EQ(response.results(1).code(), kOk);
  EXPECT_EQ(GetDeal(second.id())->stage_id(), "NEW");
  EXPECT_EQ(GetDeal(third.id())->stage_id(), "EXECUTING");
  ASSERT_OK_AND_ASSIGN(v1::Deal admin_moved,
                       MoveStage(second.id(), "EXECUTING"));
  EXPECT_EQ(admin_moved.stage_id(), "EXECUTING");
}

// --- Hidden sums -------------------------------------------------------------

TEST_F(DealsAccessTest, HideSumHidesBoardSumsForThatUserOnly) {
  CreateCompany();
  pv1::Role hiding = RoleFor("no sums", Uniform(kAll));
  hiding.mutable_pipelines(0)->set_hide_sum(true);
  ASSERT_OK_AND_ASSIGN(pv1::Role hiding_role, Grant(kUserA, hiding));
  ASSERT_OK(Grant(kUserB, RoleFor("sums", Uniform(kAll))).status());
  // 12 has the hiding role and one that shows sums: sums are shown unless
  // every role hides them.
  ASSERT_OK(AssignToUser(hiding_role.id(), kUserC));
  ASSERT_OK(Grant(kUserC, RoleFor("own sums", Uniform(kSelf))).status());

  ASSERT_OK(Seed(kUserA, true, "NEW", "100").status());
  ASSERT_OK(Seed(kUserB, true, "NEW", "23.45").status());

  struct Case {
    const char* who;
    std::string token;
    bool hidden;
  };
  const std::vector<Case> cases = {
      {"hiding user", UserToken(kUserA), true},
      {"user without hide_sum", UserToken(kUserB), false},
      {"user with a hiding and a showing role", UserToken(kUserC), false},
      {"administrator", AdminToken(), false},
      {"service", ServiceToken(), false},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.who);
    ASSERT_OK_AND_ASSIGN(v1::KanbanBoard board, Board(c.token));
    for (const v1::KanbanColumn& column : board.columns())
      EXPECT_EQ(column.sums_hidden(), c.hidden) << column.stage_id();
    const v1::KanbanColumn& fresh = Column(board, "NEW");
    EXPECT_EQ(fresh.count(), 2);  // counts and cards stay
    EXPECT_EQ(fresh.cards_size(), 2);
    if (c.hidden) {
      EXPECT_THAT(fresh.sums(), IsEmpty());
    } else {
      ASSERT_EQ(fresh.sums_size(), 1);
      EXPECT_EQ(fresh.sums(0).currency(), "USD");
      EXPECT_EQ(fresh.sums(0).amount(), "123.45");
    }
  }
}

// --- Changes in pipeline-config
// -----------------------------------------------

TEST_F(DealsAccessTest, PermissionChangesApplyWithinASecond) {
  CreateCompany();
  ASSERT_OK_AND_ASSIGN(pv1::Role role,
                       Grant(kUserA, RoleFor("growing", Uniform(kSelf))));
  const std::string token = UserToken(kUserA);
  ASSERT_OK_AND_ASSIGN(v1::Deal stranger, Seed(kUserC));
  ASSERT_OK_AND_ASSIGN(v1::Deal newcomer, Seed(kNobody));
  EXPECT_THAT(GetDeal(stranger.id(), token),
              StatusIs(absl::StatusCode::kNotFound));  // also caches

  // Waits (at most 1 s from `since`) until `check` holds.
  auto within_a_second = [](absl::Time since,
                            const std::function<bool()>& check) {
    while (!check()) {
      if (absl::Now() - since > absl::Seconds(1)) return false;
      absl::SleepFor(absl::Milliseconds(2));
    }
    return true;
  };

  // The role grows from SELF to ALL.
  pv1::UpdateRoleRequest update;
  *update.mutable_role() = RoleFor("growing", Uniform(kAll));
  update.mutable_role()->set_id(role.id());
  update.mutable_update_mask()->add_paths("pipelines");
  absl::Time changed = absl::Now();
  ASSERT_OK(Call(&AccessStub::UpdateRole, update).status());
  EXPECT_TRUE(within_a_second(
      changed, [&] { return GetDeal(stranger.id(), token).ok(); }));
  WaitForConfigSync();
  EXPECT_OK(GetDeal(stranger.id(), token).status());
  EXPECT_OK(Update(stranger.id(), token));
  EXPECT_EQ(List(token).second, 2);

  // The role goes back to SELF, then 14 joins department A, which 10 can
  // then see at DEPARTMENT.
  *update.mutable_role() = RoleFor("growing", Uniform(kDepartment));
  update.mutable_role()->set_id(role.id());
  changed = absl::Now();
  ASSERT_OK(Call(&AccessStub::UpdateRole, update).status());
  EXPECT_TRUE(within_a_second(changed, [&] {
    return absl::IsNotFound(GetDeal(stranger.id(), token).status());
  }));
  WaitForConfigSync();
  EXPECT_THAT(GetDeal(newcomer.id(), token),
              StatusIs(absl::StatusCode::kNotFound));
  pv1::UpdateDepartmentRequest join;
  join.mutable_department()->set_id(department_a_.id());
  join.mutable_department()->add_member_user_ids(kUserA);
  join.mutable_department()->add_member_user_ids(kColleague);
  join.mutable_department()->add_member_user_ids(kNobody);
  join.mutable_update_mask()->add_paths("member_user_ids");
  changed = absl::Now();
  ASSERT_OK(Call(&AccessStub::UpdateDepartment, join).status());
  EXPECT_TRUE(within_a_second(
      changed, [&] { return GetDeal(newcomer.id(), token).ok(); }));
  WaitForConfigSync();
  EXPECT_OK(GetDeal(newcomer.id(), token).status());

  // Taking the role away leaves nothing.
  pv1::ListRoleAssignmentsRequest assignments;
  assignments.set_user_id(kUserA);
  ASSERT_OK_AND_ASSIGN(pv1::ListRoleAssignmentsResponse listed,
                       Call(&AccessStub::ListRoleAssignments, assignments));
  ASSERT_EQ(listed.assignments_size(), 1);
  pv1::DeleteRoleAssignmentRequest unassign;
  unassign.set_assignment_id(listed.assignments(0).id());
  changed = absl::Now();
  ASSERT_OK(Call(&AccessStub::DeleteRoleAssignment, unassign).status());
  EXPECT_TRUE(within_a_second(changed, [&] {
    return absl::IsNotFound(GetDeal(newcomer.id(), token).status());
  }));
  WaitForConfigSync();
  EXPECT_THAT(List(token).first, IsEmpty());
}

// --- Users without roles, administrators and services
// --------------------------

TEST_F(DealsAccessTest, UserWithoutRolesSeesNothing) {
  CreateCompany();
  ASSERT_OK_AND_ASSIGN(pv1::Pipeline other, CreatePipeline("Other"));
  // 10 has a role, but only in pipeline 0.
  ASSERT_OK(Grant(kUserA, RoleFor("pipeline 0", Uniform(kAll))).status());
  ASSERT_OK_AND_ASSIGN(v1::Deal own, Seed(kNobody));
  ASSERT_OK_AND_ASSIGN(v1::Deal any, Seed(kUserA));
  v1::Deal elsewhere = MakeDeal("elsewhere", kUserA, "5", "USD");
  elsewhere.set_pipeline_id(other.id());
  ASSERT_OK_AND_ASSIGN(v1::Deal other_deal, CreateDeal(elsewhere));

  const std::string nobody = UserToken(kNobody);
  for (const v1::Deal* deal : {&own, &any, &other_deal}) {
    SCOPED_TRACE(deal->title());
    EXPECT_THAT(GetDeal(deal->id(), nobody),
                StatusIs(absl::StatusCode::kNotFound));
    EXPECT_THAT(Update(deal->id(), nobody),
                StatusIs(absl::StatusCode::kNotFound));
    EXPECT_THAT(Delete(deal->id(), nobody),
                StatusIs(absl::StatusCode::kNotFound));
  }
  auto [ids, total] = List(nobody);
  EXPECT_THAT(ids, IsEmpty());
  EXPECT_EQ(total, 0);
  for (int64_t pipeline : {int64_t{0}, other.id()}) {
    SCOPED_TRACE(pipeline);
    ASSERT_OK_AND_ASSIGN(v1::KanbanBoard board, Board(nobody, pipeline));
    EXPECT_EQ(board.columns_size(), 8);
    for (const v1::KanbanColumn& column : board.columns()) {
      EXPECT_EQ(column.count(), 0);
      EXPECT_THAT(column.cards(), IsEmpty());
      EXPECT_THAT(column.sums(), IsEmpty());
    }
  }
  EXPECT_THAT(CreateDeal(MakeDeal("mine"), nobody),
              StatusIs(absl::StatusCode::kPermissionDenied));
  ASSERT_OK_AND_ASSIGN(v1::BatchUpdateDealsResponse batch,
                       BatchReassign(nobody, {own.id(), any.id()}, kNobody));
  EXPECT_EQ(batch.failed(), 2);
  for (const v1::BatchItemResult& result : batch.results())
    EXPECT_EQ(result.code(), kNotFound);
  v1::BatchUpdateDealsRequest by_filter;
  *by_filter.mutable_filter() =
      Where("title", v1::Condition::OPERATOR_CONTAINS, {"deal"});
  by_filter.set_delete_(true);
  ASSERT_OK_AND_ASSIGN(v1::BatchUpdateDealsResponse none,
                       CallAs(nobody, &DealsStub::BatchUpdateDeals, by_filter));
  EXPECT_EQ(none.results_size(), 0);

  // A role for pipeline 0 grants nothing in another pipeline.
  const std::string user = UserToken(kUserA);
  EXPECT_THAT(GetDeal(other_deal.id(), user),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(List(user).first,
              UnorderedElementsAreArray({own.id(), any.id()}));
  ASSERT_OK_AND_ASSIGN(v1::KanbanBoard other_board, Board(user, other.id()));
  EXPECT_EQ(Column(other_board, absl::StrCat("C", other.id(), ":NEW")).count(),
            0);
  v1::Deal add_there = MakeDeal("there");
  add_there.set_pipeline_id(other.id());
  EXPECT_THAT(CreateDeal(add_there, user),
              StatusIs(absl::StatusCode::kPermissionDenied));
  v1::MoveDealToPipelineRequest move;
  move.set_deal_id(any.id());
  move.set_pipeline_id(other.id());
  EXPECT_THAT(CallAs(user, &DealsStub::MoveDealToPipeline, move),
              StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_EQ(GetDeal(any.id())->pipeline_id(), 0);
}

TEST_F(DealsAccessTest, ServicesAndAdministratorsActWithSystemRights) {
  CreateCompany();
  // A user with a restrictive role, to show the others are not bound by it.
  pv1::Role strict = RoleFor("strict", Uniform(kSelf));
  (*strict.mutable_pipelines(0)->mutable_transitions())["NEW"].set_mode(
      pv1::TransitionRule::MODE_BLOCKED);
  strict.mutable_pipelines(0)->set_hide_sum(true);
  ASSERT_OK(Grant(kUserA, strict).status());
  std::vector<int64_t> ids;
  for (int64_t assignee : {kUserA, kUserB, kUserC}) {
    ASSERT_OK_AND_ASSIGN(v1::Deal deal, Seed(assignee, false));
    ids.push_back(deal.id());
  }

  struct Case {
    const char* who;
    std::string token;
  };
  const std::vector<Case> cases = {
      {"service", ServiceToken("automation")},
      {"admin in the token", UserToken(99, /*admin=*/true)},
      {"admin by configuration", AdminToken()},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.who);
    for (int64_t id : ids) EXPECT_OK(GetDeal(id, c.token).status());
    auto [listed, total] = List(c.token);
    EXPECT_EQ(listed, ids);
    EXPECT_EQ(total, 3);
    ASSERT_OK_AND_ASSIGN(v1::KanbanBoard board, Board(c.token));
    EXPECT_EQ(Column(board, "NEW").count(), 3);
    EXPECT_FALSE(Column(board, "NEW").sums_hidden());
    EXPECT_EQ(Column(board, "NEW").sums_size(), 1);
    EXPECT_OK(Update(ids[2], c.token, absl::StrCat("renamed by ", c.who)));
    ASSERT_OK(MoveStage(ids[1], "PREPARATION", c.token));
    ASSERT_OK(MoveStage(ids[1], "NEW", c.token));
    ASSERT_OK_AND_ASSIGN(v1::Deal created,
                         CreateDeal(MakeDeal("made", kUserC), c.token));
    EXPECT_OK(Delete(created.id(), c.token));
  }

  // The restricted user, for contrast.
  const std::string user = UserToken(kUserA);
  EXPECT_EQ(List(user).first, std::vector<int64_t>{ids[0]});
  EXPECT_THAT(MoveStage(ids[0], "PREPARATION", user),
              StatusIs(absl::StatusCode::kPermissionDenied));
  ASSERT_OK_AND_ASSIGN(v1::KanbanBoard board, Board(user));
  EXPECT_TRUE(Column(board, "NEW").sums_hidden());
  EXPECT_EQ(Column(board, "NEW").count(), 1);

  // Service identities also get the service-only calls; users do not.
  v1::CountDealsRequest count;
  ASSERT_OK_AND_ASSIGN(
      v1::CountDealsResponse counted,
      CallAs(ServiceToken("pipeline-config"), &DealsStub::CountDeals, count));
  EXPECT_EQ(counted.count(), 3);
  EXPECT_THAT(CallAs(user, &DealsStub::CountDeals, count),
              StatusIs(absl::StatusCode::kPermissionDenied));
}

}  // namespace
}  // namespace crm::deals
