// DealsService over a real channel against an in-process pipeline-config:
// ListDeals (page sizes, cursors, orderings, filters, totals, bad input),
// kanban boards and column pages (counts, per-currency sums, card order and
// paging) and BatchUpdateDeals (per-item results, filters, limits, events).
// Expected answers are computed in the test from the deals it created.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/barrier.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "common/deal_filter/filter_builders.h"
#include "common/grpc/message_limits.h"
#include "common/status/status_matchers.h"
#include "tests/service/deals_service_test_fixture.h"

namespace crm::deals {
namespace {

using ::crm::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Pair;
using ::testing::UnorderedElementsAreArray;

using Condition = v1::Condition;
using Op = v1::Condition::Operator;

// 7 -> "007".
std::string Pad3(int n) {
  std::string digits = absl::StrCat(n);
  return std::string(digits.size() < 3 ? 3 - digits.size() : 0, '0') + digits;
}

// The stages of every new pipeline, in board order (pipeline 0 unprefixed).
const std::vector<std::string>& DefaultStageIds() {
  static const auto* ids = new std::vector<std::string>{
      "NEW",       "PREPARATION",   "PREPAYMENT_INVOICE",
      "EXECUTING", "FINAL_INVOICE", "WON",
      "LOSE",      "APOLOGY"};
  return *ids;
}

using common::filters::Group;
using common::filters::Where;
v1::Filter AllOf(const std::vector<v1::Filter>& all) {
  return Group(v1::FilterGroup::OP_AND, all);
}
v1::Filter AnyOf(const std::vector<v1::Filter>& all) {
  return Group(v1::FilterGroup::OP_OR, all);
}

// "12", "12.5", "12.50" -> 1250 (the amounts used here have <= 2 decimals).
int64_t Cents(const std::string& amount) {
  const size_t dot = amount.find('.');
  const std::string whole = amount.substr(0, dot);
  std::string fraction =
      dot == std::string::npos ? std::string() : amount.substr(dot + 1);
  fraction.resize(2, '0');
  return std::stoll(whole.empty() ? "0" : whole) * 100 + std::stoll(fraction);
}

std::vector<int64_t> Ids(const std::vector<v1::Deal>& deals) {
  std::vector<int64_t> ids;
  for (const v1::Deal& deal : deals) ids.push_back(deal.id());
  return ids;
}

std::vector<int64_t> Ids(
    const google::protobuf::RepeatedPtrField<v1::Deal>& deals) {
  std::vector<int64_t> ids;
  for (const v1::Deal& deal : deals) ids.push_back(deal.id());
  return ids;
}

// currency -> amount of a column.
std::map<std::string, std::string> Sums(const v1::KanbanColumn& column) {
  std::map<std::string, std::string> sums;
  for (const v1::CurrencySum& sum : column.sums())
    sums[sum.currency()] = sum.amount();
  return sums;
}

const v1::KanbanColumn* FindColumn(const v1::KanbanBoard& board,
                                   const std::string& stage_id) {
  for (const v1::KanbanColumn& column : board.columns()) {
    if (column.stage_id() == stage_id) return &column;
  }
  return nullptr;
}

const std::string* CustomValue(const v1::Deal& deal, const std::string& code) {
  auto it = deal.custom_fields().find(code);
  if (it == deal.custom_fields().end() || it->second.values_size() == 0)
    return nullptr;
  return &it->second.values(0);
}

class DealsListTest : public DealsServiceTest {
 protected:
  // Every page of `request` (its page size kept), in order.
  absl::StatusOr<std::vector<v1::Deal>> ListAll(v1::ListDealsRequest request,
                                                int* pages = nullptr) {
    std::vector<v1::Deal> deals;
    for (int page = 1; page <= 1000; ++page) {
      absl::StatusOr<v1::ListDealsResponse> response =
          Call(&DealsStub::ListDeals, request);
      if (!response.ok()) return response.status();
      deals.insert(deals.end(), response->deals().begin(),
                   response->deals().end());
      if (pages != nullptr) *pages = page;
      if (response->next_page_token().empty()) return deals;
      request.set_page_token(response->next_page_token());
    }
    return absl::InternalError("more than 1000 pages");
  }

  // Creates `count` deals titled "<prefix>NNN"; returns their ids in order.
  std::vector<int64_t> CreateMany(int count, const std::string& prefix) {
    std::vector<int64_t> ids;
    for (int i = 0; i < count; ++i) {
      absl::StatusOr<v1::Deal> deal =
          CreateDeal(MakeDeal(absl::StrCat(prefix, Pad3(i))));
      EXPECT_TRUE(deal.ok()) << deal.status();
      if (deal.ok()) ids.push_back(deal->id());
    }
    return ids;
  }

  absl::StatusOr<v1::KanbanBoard> Board(int64_t pipeline_id,
                                        int cards_per_column = 0,
                                        const v1::Filter* filter = nullptr,
                                        const std::string& token = "") {
    v1::GetKanbanBoardRequest request;
    request.set_pipeline_id(pipeline_id);
    request.set_cards_per_column(cards_per_column);
    if (filter != nullptr) *request.mutable_filter() = *filter;
    return CallAs(token.empty() ? AdminToken() : token,
                  &DealsStub::GetKanbanBoard, request);
  }

  int64_t LastSequence() {
    std::vector<v1::DealEvent> events = Events();
    return events.empty() ? 0 : events.back().sequence();
  }
};

class DealsKanbanTest : public DealsListTest {};
class DealsBatchTest : public DealsListTest {};

// --- ListDeals ---------------------------------------------------------------

TEST_F(DealsListTest, PageSizeDefaultsTo50AndIsCappedAt500) {
  const std::vector<int64_t> ids = CreateMany(501, "deal ");
  ASSERT_EQ(ids.size(), 501u);

  v1::ListDealsRequest request;
  ASSERT_OK_AND_ASSIGN(v1::ListDealsResponse first,
                       Call(&DealsStub::ListDeals, request));
  EXPECT_EQ(first.deals_size(), 50);
  EXPECT_FALSE(first.next_page_token().empty());
  EXPECT_EQ(first.total(), 0);  // not asked for

  request.set_page_size(1000);
  ASSERT_OK_AND_ASSIGN(v1::ListDealsResponse capped,
                       Call(&DealsStub::ListDeals, request));
  EXPECT_EQ(capped.deals_size(), 500);
  ASSERT_FALSE(capped.next_page_token().empty());
  request.set_page_token(capped.next_page_token());
  ASSERT_OK_AND_ASSIGN(v1::ListDealsResponse rest,
                       Call(&DealsStub::ListDeals, request));
  ASSERT_EQ(rest.deals_size(), 1);
  EXPECT_EQ(rest.deals(0).id(), ids.back());
  EXPECT_TRUE(rest.next_page_token().empty());

  v1::ListDealsRequest exact;
  exact.set_page_size(500);
  ASSERT_OK_AND_ASSIGN(v1::ListDealsResponse five_hundred,
                       Call(&DealsStub::ListDeals, exact));
  EXPECT_EQ(five_hundred.deals_size(), 500);

  v1::ListDealsRequest negative;
  negative.set_page_size(-1);
  EXPECT_THAT(
      Call(&DealsStub::ListDeals, negative),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("page_size")));
}

TEST_F(DealsListTest, CursorPagingByIdVisitsEveryDealOnce) {
  const std::vector<int64_t> ids = CreateMany(120, "deal ");
  v1::ListDealsRequest request;
  request.set_page_size(50);
  std::vector<int> sizes;
  std::vector<int64_t> listed;
  for (int page = 0; page < 10; ++page) {
    ASSERT_OK_AND_ASSIGN(v1::ListDealsResponse response,
                         Call(&DealsStub::ListDeals, request));
    sizes.push_back(response.deals_size());
    for (const v1::Deal& deal : response.deals()) listed.push_back(deal.id());
    if (response.next_page_token().empty()) break;
    request.set_page_token(response.next_page_token());
  }
  EXPECT_THAT(sizes, ElementsAre(50, 50, 20));
  EXPECT_EQ(listed, ids);  // ascending ids, each once
  EXPECT_TRUE(std::is_sorted(listed.begin(), listed.end()));
}

TEST_F(DealsListTest, OrderByAmountAndTitleBreaksTiesById) {
  // Few distinct amounts and titles so that ties cross page boundaries;
  // amounts compare whatever the currency.
  const std::vector<std::string> amounts = {"100",  "25.5", "7",
                                            "1000", "0",    "100.00"};
  const std::vector<std::string> titles = {"beta", "alpha", "gamma", "Alpha"};
  std::vector<v1::Deal> created;
  for (int i = 0; i < 48; ++i) {
    ASSERT_OK_AND_ASSIGN(v1::Deal deal,
                         CreateDeal(MakeDeal(titles[i % titles.size()], 0,
                                             amounts[(i / 2) % amounts.size()],
                                             i % 3 == 0 ? "EUR" : "USD")));
    created.push_back(deal);
  }

  {
    SCOPED_TRACE("amount desc, title asc");
    std::vector<v1::Deal> expected = created;
    std::sort(expected.begin(), expected.end(),
              [](const v1::Deal& a, const v1::Deal& b) {
                const int64_t ca = Cents(a.amount()), cb = Cents(b.amount());
                if (ca != cb) return ca > cb;
                // Text compares case-insensitively ("Alpha" == "alpha").
                std::string ta = a.title(), tb = b.title();
                std::transform(ta.begin(), ta.end(), ta.begin(), ::tolower);
                std::transform(tb.begin(), tb.end(), tb.begin(), ::tolower);
                if (ta != tb) return ta < tb;
                return a.id() < b.id();
              });
    v1::ListDealsRequest request;
    request.set_page_size(7);
    v1::OrderBy* by_amount = request.add_order_by();
    by_amount->set_field("amount");
    by_amount->set_descending(true);
    request.add_order_by()->set_field("title");
    int pages = 0;
    ASSERT_OK_AND_ASSIGN(std::vector<v1::Deal> listed,
                         ListAll(request, &pages));
    EXPECT_EQ(pages, 7);
    EXPECT_EQ(Ids(listed), Ids(expected));
  }
  {
    SCOPED_TRACE("title asc");
    std::vector<v1::Deal> expected = created;
    std::stable_sort(
        expected.begin(), expected.end(),
        [](const v1::Deal& a, const v1::Deal& b) {
          std::string ta = a.title(), tb = b.title();
          std::transform(ta.begin(), ta.end(), ta.begin(), ::tolower);
          std::transform(tb.begin(), tb.end(), tb.begin(), ::tolower);
          return ta < tb;  // stable: ids stay ascending
        });
    v1::ListDealsRequest request;
    request.set_page_size(5);
    request.add_order_by()->set_field("title");
    ASSERT_OK_AND_ASSIGN(std::vector<v1::Deal> listed, ListAll(request));
    EXPECT_EQ(Ids(listed), Ids(expected));
  }
  {
    SCOPED_TRACE("id desc");
    v1::ListDealsRequest request;
    request.set_page_size(10);
    v1::OrderBy* by_id = request.add_order_by();
    by_id->set_field("id");
    by_id->set_descending(true);
    ASSERT_OK_AND_ASSIGN(std::vector<v1::Deal> listed, ListAll(request));
    std::vector<int64_t> expected = Ids(created);
    std::reverse(expected.begin(), expected.end());
    EXPECT_EQ(Ids(listed), expected);
  }
}

TEST_F(DealsListTest, FiltersMatchAReferenceEvaluation) {
  ASSERT_OK(CreateField("UF_CRM_REGION", pv1::FIELD_TYPE_STRING).status());
  ASSERT_OK(CreateField("UF_CRM_SCORE", pv1::FIELD_TYPE_INTEGER).status());
  const std::vector<std::string> amounts = {"50",  "100",   "100.01", "250",
                                            "500", "500.5", "0"};
  const std::vector<std::string> regions = {"North", "south", "NORTH-east"};
  for (int i = 0; i < 42; ++i) {
    v1::Deal deal = MakeDeal(absl::StrCat("deal ", i), 5 + i % 3,
                             amounts[i % amounts.size()], "USD");
    deal.set_close_date(absl::StrCat("2030-0", 1 + i % 6, "-15"));
    if (i % 4 == 0) deal.set_opened(false);
    if (i % 5 != 4) {
      (*deal.mutable_custom_fields())["UF_CRM_REGION"].add_values(
          regions[i % regions.size()]);
    }
    (*deal.mutable_custom_fields())["UF_CRM_SCORE"].add_values(absl::StrCat(i));
    ASSERT_OK_AND_ASSIGN(v1::Deal created, CreateDeal(deal));
    if (i % 5 == 0) {
      ASSERT_OK(MoveStage(created.id(), "WON").status());
    } else if (i % 7 == 0) {
      ASSERT_OK(MoveStage(created.id(), "LOSE").status());
    } else if (i % 3 == 0) {
      ASSERT_OK(MoveStage(created.id(), "PREPARATION").status());
    }
  }
  // The reference: every deal as stored now (closing sets close dates).
  v1::ListDealsRequest everything;
  everything.set_page_size(500);
  ASSERT_OK_AND_ASSIGN(std::vector<v1::Deal> all, ListAll(everything));
  ASSERT_EQ(all.size(), 42u);

  using Predicate = std::function<bool(const v1::Deal&)>;
  auto region_is = [](const v1::Deal& d, const std::string& folded) {
    const std::string* value = CustomValue(d, "UF_CRM_REGION");
    if (value == nullptr) return false;
    std::string lower = *value;
    std::transform(lower.begin(), lower.end(), lower.begin(), ::tolower);
    return lower == folded;
  };
  struct Case {
    const char* name;
    v1::Filter filter;
    Predicate matches;
  };
  const std::vector<Case> cases = {
      {"stage EQ", Where("stage_id", Condition::OPERATOR_EQ, {"WON"}),
       [](const v1::Deal& d) { return d.stage_id() == "WON"; }},
      {"stage IN", Where("stage_id", Condition::OPERATOR_IN, {"WON", "LOSE"}),
       [](const v1::Deal& d) {
         return d.stage_id() == "WON" || d.stage_id() == "LOSE";
       }},
      {"stage NOT_IN", Where("stage_id", Condition::OPERATOR_NOT_IN, {"NEW"}),
       [](const v1::Deal& d) { return d.stage_id() != "NEW"; }},
      {"assignee EQ", Where("assignee_id", Condition::OPERATOR_EQ, {"7"}),
       [](const v1::Deal& d) { return d.assignee_id() == 7; }},
      {"assignee IN", Where("assignee_id", Condition::OPERATOR_IN, {"5", "7"}),
       [](const v1::Deal& d) {
         return d.assignee_id() == 5 || d.assignee_id() == 7;
       }},
      {"amount GT and LE",
       AllOf({Where("amount", Condition::OPERATOR_GT, {"100"}),
              Where("amount", Condition::OPERATOR_LE, {"500.00"})}),
       [](const v1::Deal& d) {
         return Cents(d.amount()) > 10000 && Cents(d.amount()) <= 50000;
       }},
      {"close date range",
       AllOf({Where("close_date", Condition::OPERATOR_GE, {"2030-02-01"}),
              Where("close_date", Condition::OPERATOR_LE, {"2030-04-30"})}),
       [](const v1::Deal& d) {
         return d.close_date() >= "2030-02-01" &&
                d.close_date() <= "2030-04-30";
       }},
      {"opened false", Where("opened", Condition::OPERATOR_EQ, {"false"}),
       [](const v1::Deal& d) { return d.has_opened() && !d.opened(); }},
      {"opened true", Where("opened", Condition::OPERATOR_EQ, {"true"}),
       [](const v1::Deal& d) { return !d.has_opened() || d.opened(); }},
      {"custom integer GE",
       Where("UF_CRM_SCORE", Condition::OPERATOR_GE, {"20"}),
       [](const v1::Deal& d) {
         const std::string* score = CustomValue(d, "UF_CRM_SCORE");
         return score != nullptr && std::stoi(*score) >= 20;
       }},
      {"custom string EQ ignores case",
       Where("UF_CRM_REGION", Condition::OPERATOR_EQ, {"north"}),
       [&](const v1::Deal& d) { return region_is(d, "north"); }},
      {"custom string NE counts absent values",
       Where("UF_CRM_REGION", Condition::OPERATOR_NE, {"SOUTH"}),
       [&](const v1::Deal& d) { return !region_is(d, "south"); }},
      {"OR of stage and an AND group",
       AnyOf({Where("stage_id", Condition::OPERATOR_EQ, {"WON"}),
              AllOf({Where("assignee_id", Condition::OPERATOR_EQ, {"7"}),
                     Where("amount", Condition::OPERATOR_GT, {"100"})})}),
       [](const v1::Deal& d) {
         return d.stage_id() == "WON" ||
                (d.assignee_id() == 7 && Cents(d.amount()) > 10000);
       }},
      {"AND of stage IN and an OR group",
       AllOf({Where("stage_id", Condition::OPERATOR_IN, {"NEW", "PREPARATION"}),
              AnyOf({Where("opened", Condition::OPERATOR_EQ, {"false"}),
                     Where("UF_CRM_SCORE", Condition::OPERATOR_LT, {"10"})})}),
       [](const v1::Deal& d) {
         return (d.stage_id() == "NEW" || d.stage_id() == "PREPARATION") &&
                ((d.has_opened() && !d.opened()) ||
                 std::stoi(*CustomValue(d, "UF_CRM_SCORE")) < 10);
       }},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    std::vector<int64_t> expected;
    for (const v1::Deal& deal : all) {
      if (c.matches(deal)) expected.push_back(deal.id());
    }
    ASSERT_FALSE(expected.empty()) << "the case should match something";
    ASSERT_LT(expected.size(), all.size()) << "the case should filter";
    v1::ListDealsRequest request;
    *request.mutable_filter() = c.filter;
    request.set_page_size(4);
    request.set_include_total(true);
    ASSERT_OK_AND_ASSIGN(v1::ListDealsResponse first,
                         Call(&DealsStub::ListDeals, request));
    EXPECT_EQ(first.total(), static_cast<int64_t>(expected.size()));
    ASSERT_OK_AND_ASSIGN(std::vector<v1::Deal> listed, ListAll(request));
    EXPECT_EQ(Ids(listed), expected);
  }
}

TEST_F(DealsListTest, ContainsIgnoresCaseAndAccents) {
  std::map<std::string, int64_t> ids;
  for (const char* title :
       {"Negócio grande", "NEGÓCIOS do ano", "Negociar", "École primaire",
        "une école", "Eco loop", "Acme"}) {
    ASSERT_OK_AND_ASSIGN(v1::Deal deal, CreateDeal(MakeDeal(title)));
    ids[title] = deal.id();
  }
  struct Case {
    Op op;
    const char* value;
    std::vector<std::string> titles;
  };
  const std::vector<Case> cases = {
      {Condition::OPERATOR_CONTAINS,
       "negocio",
       {"Negócio grande", "NEGÓCIOS do ano"}},
      {Condition::OPERATOR_CONTAINS, "ECOLE", {"École primaire", "une école"}},
      {Condition::OPERATOR_CONTAINS, "écOle P", {"École primaire"}},
      {Condition::OPERATOR_EQ, "NEGOCIO GRANDE", {"Negócio grande"}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.value);
    v1::ListDealsRequest request;
    *request.mutable_filter() = Where("title", c.op, {c.value});
    ASSERT_OK_AND_ASSIGN(std::vector<v1::Deal> listed, ListAll(request));
    std::vector<int64_t> expected;
    for (const std::string& title : c.titles) expected.push_back(ids[title]);
    EXPECT_THAT(Ids(listed), UnorderedElementsAreArray(expected));
  }
}

TEST_F(DealsListTest, IncludeTotalCountsEveryMatch) {
  for (int i = 0; i < 50; ++i) {
    ASSERT_OK(
        CreateDeal(MakeDeal(absl::StrCat("d", i), i < 37 ? 5 : 6)).status());
  }
  v1::ListDealsRequest request;
  request.set_page_size(10);
  request.set_include_total(true);
  *request.mutable_filter() =
      Where("assignee_id", Condition::OPERATOR_EQ, {"5"});
  ASSERT_OK_AND_ASSIGN(v1::ListDealsResponse first,
                       Call(&DealsStub::ListDeals, request));
  EXPECT_EQ(first.deals_size(), 10);
  EXPECT_EQ(first.total(), 37);
  request.set_page_token(first.next_page_token());
  ASSERT_OK_AND_ASSIGN(v1::ListDealsResponse second,
                       Call(&DealsStub::ListDeals, request));
  EXPECT_EQ(second.total(), 37);  // every matching deal, not the rest

  // A filter the indexes cannot answer (title), and no filter at all.
  *request.mutable_filter() =
      Where("title", Condition::OPERATOR_CONTAINS, {"d1"});
  request.clear_page_token();
  ASSERT_OK_AND_ASSIGN(v1::ListDealsResponse titled,
                       Call(&DealsStub::ListDeals, request));
  EXPECT_EQ(titled.total(), 11);  // d1, d10..d19
  request.clear_filter();
  ASSERT_OK_AND_ASSIGN(v1::ListDealsResponse unfiltered,
                       Call(&DealsStub::ListDeals, request));
  EXPECT_EQ(unfiltered.total(), 50);
}

TEST_F(DealsListTest, RefusesBadInput) {
  for (int i = 0; i < 3; ++i)
    ASSERT_OK(CreateDeal(MakeDeal(absl::StrCat("d", i))).status());

  struct Case {
    const char* name;
    v1::ListDealsRequest request;
    const char* where;
  };
  std::vector<Case> cases;
  {
    v1::ListDealsRequest r;
    *r.mutable_filter() = Where("nonsense", Condition::OPERATOR_EQ, {"1"});
    cases.push_back({"unknown field", r, "filter.condition.field"});
  }
  {
    v1::ListDealsRequest r;
    *r.mutable_filter() =
        AllOf({Where("title", Condition::OPERATOR_EQ, {"x"}),
               Where("UF_CRM_NOPE", Condition::OPERATOR_EQ, {"1"})});
    cases.push_back(
        {"unknown custom field", r, "filter.group.filters[1].condition.field"});
  }
  {
    v1::ListDealsRequest r;
    *r.mutable_filter() = Where("amount", Condition::OPERATOR_GT, {"abc"});
    cases.push_back({"not a number", r, "filter.condition.values[0]"});
  }
  {
    v1::ListDealsRequest r;
    *r.mutable_filter() = Where("amount", Condition::OPERATOR_CONTAINS, {"1"});
    cases.push_back({"CONTAINS on amount", r, "CONTAINS"});
  }
  {
    v1::ListDealsRequest r;
    *r.mutable_filter() =
        Where("close_date", Condition::OPERATOR_EQ, {"2030-02-30x"});
    cases.push_back({"not a date", r, "filter.condition.values[0]"});
  }
  {
    v1::ListDealsRequest r;
    *r.mutable_filter() = Where("opened", Condition::OPERATOR_GT, {"true"});
    cases.push_back({"GT on a boolean", r, "filter.condition.op"});
  }
  {
    v1::ListDealsRequest r;
    *r.mutable_filter() = Where("title", Condition::OPERATOR_EQ, {"a", "b"});
    cases.push_back({"two values for EQ", r, "filter.condition.values"});
  }
  {
    v1::ListDealsRequest r;
    r.add_order_by()->set_field("nonsense");
    cases.push_back({"unknown order field", r, "order_by[0].field"});
  }
  {
    v1::ListDealsRequest r;
    r.set_page_token("not-a-token!");
    cases.push_back({"garbage token", r, "page_token"});
  }
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_THAT(
        Call(&DealsStub::ListDeals, c.request),
        StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.where)));
  }

  // A token belongs to its filter and order.
  v1::ListDealsRequest a;
  a.set_page_size(1);
  *a.mutable_filter() = Where("stage_id", Condition::OPERATOR_EQ, {"NEW"});
  ASSERT_OK_AND_ASSIGN(v1::ListDealsResponse page,
                       Call(&DealsStub::ListDeals, a));
  const std::string& token = page.next_page_token();
  ASSERT_FALSE(token.empty());
  {
    v1::ListDealsRequest again = a;
    again.set_page_token(token);
    EXPECT_OK(Call(&DealsStub::ListDeals, again).status());
  }
  {
    v1::ListDealsRequest b = a;
    *b.mutable_filter() = Where("stage_id", Condition::OPERATOR_EQ, {"WON"});
    b.set_page_token(token);
    EXPECT_THAT(
        Call(&DealsStub::ListDeals, b),
        StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("page_token")));
  }
  {
    v1::ListDealsRequest b = a;
    b.add_order_by()->set_field("title");
    b.set_page_token(token);
    EXPECT_THAT(
        Call(&DealsStub::ListDeals, b),
        StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("page_token")));
  }
  {
    v1::ListDealsRequest b = a;
    b.clear_filter();
    b.set_page_token(token);
    EXPECT_THAT(
        Call(&DealsStub::ListDeals, b),
        StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("page_token")));
  }
  // Any changed character is detected.
  for (size_t i = 0; i < token.size(); i += 5) {
    std::string tampered = token;
    tampered[i] = tampered[i] == 'A' ? 'B' : 'A';
    v1::ListDealsRequest b = a;
    b.set_page_token(tampered);
    EXPECT_THAT(
        Call(&DealsStub::ListDeals, b),
        StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("page_token")))
        << "position " << i;
  }
}

// --- Kanban ------------------------------------------------------------------

TEST_F(DealsKanbanTest, ColumnsCountAndSumPerCurrency) {
  // NEW: 3 USD + 2 EUR; PREPARATION: 1 USD; WON: 1 JPY (no minor units).
  std::vector<v1::Deal> usd, eur;
  for (const char* amount : {"10.50", "20", "30.25"}) {
    ASSERT_OK_AND_ASSIGN(v1::Deal d,
                         CreateDeal(MakeDeal("usd", 0, amount, "USD")));
    usd.push_back(d);
  }
  for (const char* amount : {"5", "7.5"}) {
    ASSERT_OK_AND_ASSIGN(v1::Deal d,
                         CreateDeal(MakeDeal("eur", 0, amount, "EUR")));
    eur.push_back(d);
  }
  v1::Deal prep = MakeDeal("prep", 0, "100", "USD");
  prep.set_stage_id("PREPARATION");
  ASSERT_OK(CreateDeal(prep).status());
  v1::Deal won = MakeDeal("yen", 0, "1000", "JPY");
  won.set_stage_id("WON");
  ASSERT_OK(CreateDeal(won).status());
  ASSERT_OK(CreateDeal(MakeDeal("free")).status());  // no amount: no sum

  // The counters (admin, no filter) and a scan (a filter matching every
  // deal) must agree.
  const v1::Filter everything = Where("amount", Condition::OPERATOR_GE, {"0"});
  auto expect_board =
      [&](const std::map<std::string, int64_t>& counts,
          const std::map<std::string, std::map<std::string, std::string>>&
              sums) {
        for (const v1::Filter* filter :
             {static_cast<const v1::Filter*>(nullptr), &everything}) {
          SCOPED_TRACE(filter == nullptr ? "counters" : "scan");
          ASSERT_OK_AND_ASSIGN(v1::KanbanBoard board, Board(0, 0, filter));
          EXPECT_EQ(board.pipeline_id(), 0);
          std::vector<std::string> stages;
          for (const v1::KanbanColumn& column : board.columns()) {
            stages.push_back(column.stage_id());
            SCOPED_TRACE(column.stage_id());
            auto count = counts.find(column.stage_id());
            EXPECT_EQ(column.count(),
                      count == counts.end() ? 0 : count->second);
            EXPECT_EQ(column.cards_size(), column.count());
            using CurrencySums = std::map<std::string, std::string>;
            auto sum = sums.find(column.stage_id());
            const CurrencySums expected_sums =
                sum == sums.end() ? CurrencySums() : sum->second;
            EXPECT_EQ(Sums(column), expected_sums);
            EXPECT_FALSE(column.sums_hidden());
          }
          EXPECT_EQ(stages, DefaultStageIds());
          EXPECT_EQ(board.columns(0).stage_name(), "New");
        }
      };
  {
    SCOPED_TRACE("created");
    expect_board({{"NEW", 6}, {"PREPARATION", 1}, {"WON", 1}},
                 {{"NEW", {{"USD", "60.75"}, {"EUR", "12.50"}}},
                  {"PREPARATION", {{"USD", "100.00"}}},
                  {"WON", {{"JPY", "1000"}}}});
  }
  ASSERT_OK(MoveStage(usd[0].id(), "PREPARATION").status());
  {
    SCOPED_TRACE("after a move");
    expect_board({{"NEW", 5}, {"PREPARATION", 2}, {"WON", 1}},
                 {{"NEW", {{"USD", "50.25"}, {"EUR", "12.50"}}},
                  {"PREPARATION", {{"USD", "110.50"}}},
                  {"WON", {{"JPY", "1000"}}}});
  }
  v1::DeleteDealRequest del;
  del.set_deal_id(eur[0].id());
  ASSERT_OK(Call(&DealsStub::DeleteDeal, del).status());
  v1::UpdateDealRequest update;
  update.mutable_deal()->set_id(usd[1].id());
  update.mutable_deal()->set_amount("0.01");
  update.mutable_update_mask()->add_paths("amount");
  ASSERT_OK(Call(&DealsStub::UpdateDeal, update).status());
  {
    SCOPED_TRACE("after a delete and an amount change");
    expect_board({{"NEW", 4}, {"PREPARATION", 2}, {"WON", 1}},
                 {{"NEW", {{"USD", "30.26"}, {"EUR", "7.50"}}},
                  {"PREPARATION", {{"USD", "110.50"}}},
                  {"WON", {{"JPY", "1000"}}}});
  }
  del.set_deal_id(eur[1].id());
  ASSERT_OK(Call(&DealsStub::DeleteDeal, del).status());
  {
    SCOPED_TRACE("the last EUR deal gone");
    expect_board({{"NEW", 3}, {"PREPARATION", 2}, {"WON", 1}},
                 {{"NEW", {{"USD", "30.26"}}},
                  {"PREPARATION", {{"USD", "110.50"}}},
                  {"WON", {{"JPY", "1000"}}}});
  }

  // A filter narrows counts and sums to the matching deals.
  const v1::Filter usd_only =
      Where("currency", Condition::OPERATOR_EQ, {"usd"});
  ASSERT_OK_AND_ASSIGN(v1::KanbanBoard filtered, Board(0, 0, &usd_only));
  EXPECT_EQ(FindColumn(filtered, "NEW")->count(), 2);
  EXPECT_THAT(Sums(*FindColumn(filtered, "NEW")),
              ElementsAre(Pair("USD", "30.26")));
  EXPECT_EQ(FindColumn(filtered, "WON")->count(), 0);
  EXPECT_THAT(Sums(*FindColumn(filtered, "WON")), IsEmpty());
}

// Two deals of 5,000,000,000,000.00 USD plus one of 0.01 summed to
// -8446744073709.541616 when sums were 64-bit: from the counters and in the
// filtered scan alike.
TEST_F(DealsKanbanTest, ColumnSumsAreExactBeyondTheInt64Range) {
  for (const char* amount : {"5000000000000.00", "5000000000000.00", "0.01"}) {
    v1::Deal deal = MakeDeal("big");
    deal.set_amount(amount);
    deal.set_currency("USD");
    ASSERT_OK(CreateDeal(deal).status());
  }
  ASSERT_OK_AND_ASSIGN(v1::KanbanBoard board, Board(0, 0));
  EXPECT_THAT(Sums(*FindColumn(board, "NEW")),
              ElementsAre(Pair("USD", "10000000000000.01")));
  const v1::Filter usd_only =
      Where("currency", Condition::OPERATOR_EQ, {"usd"});
  ASSERT_OK_AND_ASSIGN(v1::KanbanBoard filtered, Board(0, 0, &usd_only));
  EXPECT_THAT(Sums(*FindColumn(filtered, "NEW")),
              ElementsAre(Pair("USD", "10000000000000.01")));
}

TEST_F(DealsKanbanTest, CardsAreNewestFirstAndColumnsPageThroughTheRest) {
  std::vector<int64_t> ids = CreateMany(25, "card ");
  ASSERT_OK_AND_ASSIGN(pv1::Pipeline other, CreatePipeline("Other"));
  v1::Deal elsewhere = MakeDeal("elsewhere");
  elsewhere.set_pipeline_id(other.id());
  ASSERT_OK(CreateDeal(elsewhere).status());
  std::vector<int64_t> newest_first(ids.rbegin(), ids.rend());

  ASSERT_OK_AND_ASSIGN(v1::KanbanBoard board, Board(0, 10));
  const v1::KanbanColumn* column = FindColumn(board, "NEW");
  ASSERT_NE(column, nullptr);
  EXPECT_EQ(column->count(), 25);
  EXPECT_EQ(
      Ids(column->cards()),
      std::vector<int64_t>(newest_first.begin(), newest_first.begin() + 10));
  ASSERT_FALSE(column->next_page_token().empty());
  for (const v1::KanbanColumn& c : board.columns()) {
    if (c.stage_id() != "NEW") {
      EXPECT_EQ(c.count(), 0) << c.stage_id();
      EXPECT_TRUE(c.next_page_token().empty()) << c.stage_id();
    }
  }

  std::vector<int64_t> seen = Ids(column->cards());
  v1::ListKanbanColumnRequest request;
  request.set_pipeline_id(0);
  request.set_stage_id("NEW");
  request.set_page_size(10);
  request.set_page_token(column->next_page_token());
  std::vector<int> sizes;
  for (int page = 0; page < 10 && !request.page_token().empty(); ++page) {
    ASSERT_OK_AND_ASSIGN(v1::KanbanColumnPage next,
                         Call(&DealsStub::ListKanbanColumn, request));
    sizes.push_back(next.cards_size());
    for (const v1::Deal& card : next.cards()) seen.push_back(card.id());
    request.set_page_token(next.next_page_token());
  }
  EXPECT_THAT(sizes, ElementsAre(10, 5));
  EXPECT_EQ(seen, newest_first);  // every card once, newest first

  // The column from its start, and the default of 20 cards per column.
  request.clear_page_token();
  request.set_page_size(0);
  ASSERT_OK_AND_ASSIGN(v1::KanbanColumnPage start,
                       Call(&DealsStub::ListKanbanColumn, request));
  EXPECT_EQ(
      Ids(start.cards()),
      std::vector<int64_t>(newest_first.begin(), newest_first.begin() + 20));
  ASSERT_OK_AND_ASSIGN(v1::KanbanBoard defaults, Board(0));
  EXPECT_EQ(FindColumn(defaults, "NEW")->cards_size(), 20);

  // With a filter, the board and the column pages keep to it.
  const v1::Filter odd = Where("title", Condition::OPERATOR_CONTAINS, {"1"});
  std::vector<int64_t> matching;
  for (int i = 24; i >= 0; --i) {
    if (Pad3(i).find('1') != std::string::npos) matching.push_back(ids[i]);
  }
  ASSERT_OK_AND_ASSIGN(v1::KanbanBoard narrowed, Board(0, 3, &odd));
  const v1::KanbanColumn* narrowed_new = FindColumn(narrowed, "NEW");
  EXPECT_EQ(narrowed_new->count(), static_cast<int64_t>(matching.size()));
  std::vector<int64_t> filtered_seen = Ids(narrowed_new->cards());
  request.set_page_size(3);
  *request.mutable_filter() = odd;
  request.set_page_token(narrowed_new->next_page_token());
  for (int page = 0; page < 10 && !request.page_token().empty(); ++page) {
    ASSERT_OK_AND_ASSIGN(v1::KanbanColumnPage next,
                         Call(&DealsStub::ListKanbanColumn, request));
    for (const v1::Deal& card : next.cards())
      filtered_seen.push_back(card.id());
    request.set_page_token(next.next_page_token());
  }
  EXPECT_EQ(filtered_seen, matching);

  // A column token is bound to its stage and filter.
  v1::ListKanbanColumnRequest wrong = request;
  wrong.set_page_token(column->next_page_token());  // unfiltered NEW
  EXPECT_THAT(
      Call(&DealsStub::ListKanbanColumn, wrong),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("page_token")));
  wrong.clear_filter();
  wrong.set_stage_id("WON");
  EXPECT_THAT(
      Call(&DealsStub::ListKanbanColumn, wrong),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("page_token")));
}

TEST_F(DealsKanbanTest, RefusesBadInput) {
  ASSERT_OK_AND_ASSIGN(pv1::Pipeline other, CreatePipeline("Other"));
  EXPECT_THAT(Board(999), StatusIs(absl::StatusCode::kInvalidArgument,
                                   HasSubstr("pipeline_id")));
  EXPECT_THAT(Board(0, 101), StatusIs(absl::StatusCode::kInvalidArgument,
                                      HasSubstr("cards_per_column")));
  EXPECT_THAT(Board(0, -1), StatusIs(absl::StatusCode::kInvalidArgument,
                                     HasSubstr("cards_per_column")));
  EXPECT_OK(Board(0, 100).status());
  EXPECT_OK(Board(other.id(), 1).status());
  const v1::Filter bad = Where("amount", Condition::OPERATOR_GT, {"abc"});
  EXPECT_THAT(Board(0, 0, &bad), StatusIs(absl::StatusCode::kInvalidArgument,
                                          HasSubstr("filter")));

  struct Case {
    const char* name;
    int64_t pipeline_id;
    std::string stage_id;
    const char* where;
  };
  const std::vector<Case> cases = {
      {"unknown pipeline", 999, "NEW", "pipeline_id"},
      {"stage of another pipeline", 0, absl::StrCat("C", other.id(), ":NEW"),
       "stage_id"},
      {"bare id the pipeline does not have", other.id(), "NOPE", "stage_id"},
      {"unknown stage", 0, "NOPE", "stage_id"},
      {"no stage", 0, "", "stage_id"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    v1::ListKanbanColumnRequest request;
    request.set_pipeline_id(c.pipeline_id);
    request.set_stage_id(c.stage_id);
    EXPECT_THAT(
        Call(&DealsStub::ListKanbanColumn, request),
        StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.where)));
  }
  v1::ListKanbanColumnRequest negative;
  negative.set_stage_id("NEW");
  negative.set_page_size(-1);
  EXPECT_THAT(
      Call(&DealsStub::ListKanbanColumn, negative),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("page_size")));
  negative.set_page_size(1);
  negative.set_page_token("garbage");
  EXPECT_THAT(
      Call(&DealsStub::ListKanbanColumn, negative),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("page_token")));
}

// --- BatchUpdateDeals
// ---------------------------------------------------------

TEST_F(DealsBatchTest, ActionsOverIdsReportEveryItem) {
  ASSERT_OK_AND_ASSIGN(pv1::Pipeline other, CreatePipeline("Partners"));
  const std::string other_new = absl::StrCat("C", other.id(), ":NEW");
  const std::string other_prep = absl::StrCat("C", other.id(), ":PREPARATION");
  std::vector<int64_t> deals;
  for (int i = 0; i < 3; ++i) {
    ASSERT_OK_AND_ASSIGN(v1::Deal d,
                         CreateDeal(MakeDeal(absl::StrCat("d", i), 5)));
    deals.push_back(d.id());
  }
  v1::Deal in_other = MakeDeal("partner deal", 5);
  in_other.set_pipeline_id(other.id());
  ASSERT_OK_AND_ASSIGN(v1::Deal partner, CreateDeal(in_other));
  const int64_t a = deals[0], b = deals[1], c = deals[2], p = partner.id();
  const int64_t missing = (int64_t{999999} << 10) | 3;

  // Each batch is its own request: a reused request id would make it a
  // retry of the first, which changes nothing.
  int batch_number = 6;
  auto batch =
      [&](std::vector<int64_t> ids,
          const std::function<void(v1::BatchUpdateDealsRequest*)>& action)
      -> absl::StatusOr<v1::BatchUpdateDealsResponse> {
    v1::BatchUpdateDealsRequest request;
    for (int64_t id : ids) request.mutable_deal_ids()->add_ids(id);
    action(&request);
    request.set_request_id(absl::StrCat("batch-", ++batch_number));
    return Call(&DealsStub::BatchUpdateDeals, request);
  };
  auto codes = [](const v1::BatchUpdateDealsResponse& response) {
    std::vector<std::pair<int64_t, int>> out;
    for (const v1::BatchItemResult& r : response.results())
      out.emplace_back(r.deal_id(), r.code());
    return out;
  };
  constexpr int kOk = 0;
  constexpr int kInvalid = static_cast<int>(absl::StatusCode::kInvalidArgument);
  constexpr int kNotFound = static_cast<int>(absl::StatusCode::kNotFound);

  int64_t seq = LastSequence();
  {
    SCOPED_TRACE("set_assignee_id");
    ASSERT_OK_AND_ASSIGN(
        v1::BatchUpdateDealsResponse response,
        batch({b, missing, a}, [](v1::BatchUpdateDealsRequest* r) {
          r->set_set_assignee_id(7);
        }));
    EXPECT_THAT(
        codes(response),
        ElementsAre(Pair(b, kOk), Pair(missing, kNotFound), Pair(a, kOk)));
    EXPECT_THAT(response.results(1).message(), HasSubstr("not found"));
    EXPECT_TRUE(response.results(0).message().empty());
    EXPECT_EQ(response.succeeded(), 2);
    EXPECT_EQ(response.failed(), 1);
    EXPECT_EQ(GetDeal(a)->assignee_id(), 7);
    EXPECT_EQ(GetDeal(b)->assignee_id(), 7);
    EXPECT_EQ(GetDeal(c)->assignee_id(), 5);
    std::vector<v1::DealEvent> events = Events(seq + 1);
    ASSERT_EQ(events.size(), 2u);
    EXPECT_EQ(events[0].deal_id(), b);
    EXPECT_EQ(events[0].type(), v1::DEAL_EVENT_TYPE_ASSIGNEE_CHANGED);
    EXPECT_EQ(events[0].request_id(), absl::StrCat("batch-7/", b));
    EXPECT_EQ(events[1].deal_id(), a);
    for (const v1::DealEvent& event : events) {
      EXPECT_EQ(event.channel(), v1::CHANNEL_BATCH);
      EXPECT_EQ(event.actor_id(), kAdminUserId);
    }
    seq = LastSequence();
  }
  {
    SCOPED_TRACE("move_to_stage_id");
    ASSERT_OK_AND_ASSIGN(
        v1::BatchUpdateDealsResponse response,
        batch({p, a, missing}, [&](v1::BatchUpdateDealsRequest* r) {
          r->set_move_to_stage_id(other_prep);
        }));
    EXPECT_THAT(codes(response), ElementsAre(Pair(p, kOk), Pair(a, kInvalid),
                                             Pair(missing, kNotFound)));
    EXPECT_THAT(response.results(1).message(), HasSubstr("stage_id"));
    EXPECT_EQ(response.succeeded(), 1);
    EXPECT_EQ(response.failed(), 2);
    EXPECT_EQ(GetDeal(p)->stage_id(), other_prep);
    EXPECT_EQ(GetDeal(a)->stage_id(), "NEW");
    std::vector<v1::DealEvent> events = Events(seq + 1);
    ASSERT_EQ(events.size(), 1u);
    EXPECT_EQ(events[0].type(), v1::DEAL_EVENT_TYPE_STAGE_CHANGED);
    EXPECT_EQ(events[0].channel(), v1::CHANNEL_BATCH);
    EXPECT_EQ(events[0].to_stage_id(), other_prep);
    seq = LastSequence();
  }
  {
    SCOPED_TRACE("set_opened");
    ASSERT_OK_AND_ASSIGN(v1::BatchUpdateDealsResponse response,
                         batch({a, b, c}, [](v1::BatchUpdateDealsRequest* r) {
                           r->set_set_opened(false);
                         }));
    EXPECT_EQ(response.succeeded(), 3);
    EXPECT_EQ(response.failed(), 0);
    for (int64_t id : {a, b, c}) {
      ASSERT_OK_AND_ASSIGN(v1::Deal deal, GetDeal(id));
      EXPECT_TRUE(deal.has_opened() && !deal.opened()) << id;
    }
    std::vector<v1::DealEvent> events = Events(seq + 1);
    ASSERT_EQ(events.size(), 3u);
    for (const v1::DealEvent& event : events) {
      EXPECT_EQ(event.channel(), v1::CHANNEL_BATCH);
      EXPECT_THAT(event.changed_fields(), ElementsAre("opened"));
    }
    seq = LastSequence();
  }
  {
    SCOPED_TRACE("move_to_pipeline_id");
    ASSERT_OK_AND_ASSIGN(v1::BatchUpdateDealsResponse response,
                         batch({c}, [&](v1::BatchUpdateDealsRequest* r) {
                           r->set_move_to_pipeline_id(other.id());
                         }));
    EXPECT_THAT(codes(response), ElementsAre(Pair(c, kOk)));
    ASSERT_OK_AND_ASSIGN(v1::Deal moved, GetDeal(c));
    EXPECT_EQ(moved.pipeline_id(), other.id());
    EXPECT_EQ(moved.stage_id(), other_new);
    std::vector<v1::DealEvent> events = Events(seq + 1);
    ASSERT_EQ(events.size(), 1u);
    EXPECT_EQ(events[0].type(), v1::DEAL_EVENT_TYPE_PIPELINE_CHANGED);
    EXPECT_EQ(events[0].channel(), v1::CHANNEL_BATCH);
    seq = LastSequence();
  }
  {
    SCOPED_TRACE("delete");
    ASSERT_OK_AND_ASSIGN(
        v1::BatchUpdateDealsResponse response,
        batch({a, missing, b},
              [](v1::BatchUpdateDealsRequest* r) { r->set_delete_(true); }));
    EXPECT_THAT(
        codes(response),
        ElementsAre(Pair(a, kOk), Pair(missing, kNotFound), Pair(b, kOk)));
    EXPECT_EQ(response.succeeded(), 2);
    EXPECT_EQ(response.failed(), 1);
    EXPECT_THAT(GetDeal(a), StatusIs(absl::StatusCode::kNotFound));
    EXPECT_THAT(GetDeal(b), StatusIs(absl::StatusCode::kNotFound));
    std::vector<v1::DealEvent> events = Events(seq + 1);
    ASSERT_EQ(events.size(), 2u);
    for (const v1::DealEvent& event : events) {
      EXPECT_EQ(event.type(), v1::DEAL_EVENT_TYPE_DELETED);
      EXPECT_EQ(event.channel(), v1::CHANNEL_BATCH);
    }
    // Deleting again fails per item.
    ASSERT_OK_AND_ASSIGN(v1::BatchUpdateDealsResponse again,
                         batch({a}, [](v1::BatchUpdateDealsRequest* r) {
                           r->set_delete_(true);
                         }));
    EXPECT_THAT(codes(again), ElementsAre(Pair(a, kNotFound)));
  }
}

// The target stage of move_to_stage_id is one stage of one pipeline ("every
// deal must be in its pipeline"): a pipeline-0 stage id such as "WON" does
// not name the WON stage of another pipeline.
TEST_F(DealsBatchTest, MoveToStageRefusesDealsOfOtherPipelines) {
  ASSERT_OK_AND_ASSIGN(pv1::Pipeline other, CreatePipeline("Partners"));
  v1::Deal in_other = MakeDeal("partner deal");
  in_other.set_pipeline_id(other.id());
  ASSERT_OK_AND_ASSIGN(v1::Deal partner, CreateDeal(in_other));
  ASSERT_OK_AND_ASSIGN(v1::Deal local, CreateDeal(MakeDeal("local deal")));
  const int64_t seq = Events().back().sequence();

  v1::BatchUpdateDealsRequest request;
  request.mutable_deal_ids()->add_ids(partner.id());
  request.mutable_deal_ids()->add_ids(local.id());
  request.set_move_to_stage_id("WON");
  ASSERT_OK_AND_ASSIGN(v1::BatchUpdateDealsResponse response,
                       Call(&DealsStub::BatchUpdateDeals, request));
  ASSERT_EQ(response.results_size(), 2);
  EXPECT_EQ(response.results(0).deal_id(), partner.id());
  EXPECT_EQ(response.results(0).code(),
            static_cast<int>(absl::StatusCode::kInvalidArgument))
      << response.results(0).message();
  EXPECT_EQ(response.results(1).code(), 0) << response.results(1).message();
  EXPECT_EQ(response.succeeded(), 1);
  EXPECT_EQ(response.failed(), 1);
  ASSERT_OK_AND_ASSIGN(v1::Deal after, GetDeal(partner.id()));
  EXPECT_EQ(after.stage_id(), partner.stage_id());
  EXPECT_EQ(Events(seq + 1).size(), 1u);  // only the local deal moved
}

TEST_F(DealsBatchTest, FilterTargetsEveryMatchingDeal) {
  std::vector<int64_t> fives;
  for (int i = 0; i < 10; ++i) {
    ASSERT_OK_AND_ASSIGN(
        v1::Deal deal,
        CreateDeal(MakeDeal(absl::StrCat("d", i), i % 3 == 0 ? 6 : 5)));
    if (i % 3 != 0) fives.push_back(deal.id());
  }
  const int64_t seq = LastSequence();
  v1::BatchUpdateDealsRequest request;
  *request.mutable_filter() =
      Where("assignee_id", Condition::OPERATOR_EQ, {"5"});
  request.set_set_assignee_id(8);
  ASSERT_OK_AND_ASSIGN(v1::BatchUpdateDealsResponse response,
                       Call(&DealsStub::BatchUpdateDeals, request));
  std::vector<int64_t> targeted;
  for (const v1::BatchItemResult& result : response.results()) {
    targeted.push_back(result.deal_id());
    EXPECT_EQ(result.code(), 0) << result.message();
  }
  EXPECT_EQ(targeted, fives);
  EXPECT_EQ(response.succeeded(), static_cast<int>(fives.size()));
  EXPECT_EQ(response.failed(), 0);
  std::vector<v1::DealEvent> events = Events(seq + 1);
  EXPECT_EQ(events.size(), fives.size());
  for (const v1::DealEvent& event : events) {
    EXPECT_EQ(event.channel(), v1::CHANNEL_BATCH);
    EXPECT_EQ(event.to_assignee_id(), 8);
  }

  // Nothing matches any more: an empty, successful batch.
  ASSERT_OK_AND_ASSIGN(v1::BatchUpdateDealsResponse empty,
                       Call(&DealsStub::BatchUpdateDeals, request));
  EXPECT_EQ(empty.results_size(), 0);
  EXPECT_EQ(empty.succeeded(), 0);
  EXPECT_EQ(empty.failed(), 0);

  // A filter with a group, over stages.
  ASSERT_OK(MoveStage(fives[0], "WON").status());
  request.clear_set_assignee_id();
  request.set_delete_(true);
  *request.mutable_filter() =
      AllOf({Where("stage_id", Condition::OPERATOR_IN, {"WON", "LOSE"}),
             Where("assignee_id", Condition::OPERATOR_EQ, {"8"})});
  ASSERT_OK_AND_ASSIGN(v1::BatchUpdateDealsResponse deleted,
                       Call(&DealsStub::BatchUpdateDeals, request));
  ASSERT_EQ(deleted.results_size(), 1);
  EXPECT_EQ(deleted.results(0).deal_id(), fives[0]);
  EXPECT_THAT(GetDeal(fives[0]), StatusIs(absl::StatusCode::kNotFound));

  *request.mutable_filter() = Where("nonsense", Condition::OPERATOR_EQ, {"1"});
  EXPECT_THAT(Call(&DealsStub::BatchUpdateDeals, request),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("filter.condition.field")));
}

TEST_F(DealsBatchTest, RefusesBadRequestsBeforeAnyItem) {
  ASSERT_OK_AND_ASSIGN(v1::Deal deal, CreateDeal(MakeDeal("only")));
  const size_t events = Events().size();
  auto ids_request = [&](std::vector<int64_t> ids) {
    v1::BatchUpdateDealsRequest request;
    request.mutable_deal_ids();  // set even when empty
    for (int64_t id : ids) request.mutable_deal_ids()->add_ids(id);
    request.set_delete_(true);
    return request;
  };
  struct Case {
    const char* name;
    v1::BatchUpdateDealsRequest request;
    const char* where;
  };
  std::vector<Case> cases;
  {
    std::vector<int64_t> many;
    many.push_back(deal.id());
    for (int i = 1; i <= 5000; ++i) many.push_back((int64_t{i} << 10) | 3);
    cases.push_back({"5001 ids", ids_request(many), "deal_ids"});
  }
  cases.push_back({"duplicate ids",
                   ids_request({deal.id(), (int64_t{77} << 10) | 3, deal.id()}),
                   "deal_ids.ids[2]"});
  cases.push_back(
      {"non-positive id", ids_request({deal.id(), 0}), "deal_ids.ids[1]"});
  cases.push_back({"no ids", ids_request({}), "deal_ids"});
  {
    // Items get "<request_id>/<deal id>" (up to 19 digits), which must fit
    // in 128 characters: at most 108.
    v1::BatchUpdateDealsRequest r = ids_request({deal.id()});
    r.set_request_id(std::string(109, 'b'));
    cases.push_back({"request id too long for items", r, "request_id"});
  }
  {
    v1::BatchUpdateDealsRequest r = ids_request({deal.id()});
    r.clear_delete_();
    cases.push_back({"no action", r, "action"});
  }
  {
    v1::BatchUpdateDealsRequest r;
    r.set_delete_(true);
    cases.push_back({"no target", r, "target"});
  }
  {
    v1::BatchUpdateDealsRequest r = ids_request({deal.id()});
    r.set_delete_(false);
    cases.push_back({"delete false", r, "delete"});
  }
  {
    v1::BatchUpdateDealsRequest r = ids_request({deal.id()});
    r.set_move_to_stage_id("NO_SUCH_STAGE");
    cases.push_back({"unknown stage", r, "move_to_stage_id"});
  }
  {
    v1::BatchUpdateDealsRequest r = ids_request({deal.id()});
    r.set_move_to_pipeline_id(4242);
    cases.push_back({"unknown pipeline", r, "move_to_pipeline_id"});
  }
  {
    v1::BatchUpdateDealsRequest r = ids_request({deal.id()});
    r.set_set_assignee_id(0);
    cases.push_back({"no assignee", r, "set_assignee_id"});
  }
  {
    v1::BatchUpdateDealsRequest r = ids_request({deal.id()});
    r.set_request_id("has spaces");
    cases.push_back({"bad request id", r, "request_id"});
  }
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_THAT(
        Call(&DealsStub::BatchUpdateDeals, c.request),
        StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.where)));
  }
  EXPECT_EQ(Events().size(), events);  // nothing applied
  EXPECT_OK(GetDeal(deal.id()).status());

  // Exactly 5000 is fine: every item is tried.
  std::vector<int64_t> limit;
  for (int i = 1; i <= 5000; ++i)
    limit.push_back((int64_t{100000 + i} << 10) | 3);  // none exists
  v1::BatchUpdateDealsRequest full = ids_request(limit);
  full.clear_delete_();
  full.set_set_opened(false);
  ASSERT_OK_AND_ASSIGN(v1::BatchUpdateDealsResponse response,
                       Call(&DealsStub::BatchUpdateDeals, full));
  EXPECT_EQ(response.results_size(), 5000);
  EXPECT_EQ(response.succeeded(), 0);
  EXPECT_EQ(response.failed(), 5000);
  EXPECT_EQ(response.results(4999).code(),
            static_cast<int>(absl::StatusCode::kNotFound));
}

// --- replies bounded by bytes
// --------------------------------------------------

// 80 deals of ~60 KB each (20,000 three-byte characters in the comments):
// one page of them would be 4.8 MB, past gRPC's default 4 MB a client
// accepts. Pages stop at the reply budget and hand out a token instead.
class DealsReplyBudgetTest : public DealsListTest {
 protected:
  std::vector<int64_t> CreateLarge(int count) {
    std::string comments;
    for (int i = 0; i < 20000; ++i) comments += "\u20ac";
    std::vector<int64_t> ids;
    for (int i = 0; i < count; ++i) {
      v1::Deal deal = MakeDeal(absl::StrCat("large ", Pad3(i)));
      deal.set_comments(comments);
      absl::StatusOr<v1::Deal> created = CreateDeal(deal);
      EXPECT_TRUE(created.ok()) << created.status();
      if (created.ok()) ids.push_back(created->id());
    }
    return ids;
  }
};

TEST_F(DealsReplyBudgetTest, ListPagesStopAtTheBudgetAndLoseNothing) {
  const std::vector<int64_t> ids = CreateLarge(80);
  ASSERT_EQ(ids.size(), 80u);
  for (const bool by_title : {false, true}) {
    SCOPED_TRACE(by_title ? "by title, descending" : "by id");
    v1::ListDealsRequest request;
    request.set_page_size(500);
    if (by_title) {
      v1::OrderBy* order = request.add_order_by();
      order->set_field("title");
      order->set_descending(true);
    }
    ASSERT_OK_AND_ASSIGN(v1::ListDealsResponse first,
                         Call(&DealsStub::ListDeals, request));
    EXPECT_GT(first.deals_size(), 0);
    EXPECT_LT(first.deals_size(), 80);
    EXPECT_LE(first.ByteSizeLong(),
              common::kReplyBudgetBytes + common::kMaxDealBytes);
    EXPECT_FALSE(first.next_page_token().empty());
    int pages = 0;
    ASSERT_OK_AND_ASSIGN(std::vector<v1::Deal> all, ListAll(request, &pages));
    EXPECT_GE(pages, 3);
    std::vector<int64_t> seen = Ids(all);
    if (!by_title) {
      EXPECT_EQ(seen, ids);
    } else {
      EXPECT_EQ(seen, std::vector<int64_t>(ids.rbegin(), ids.rend()));
    }
  }
}

TEST_F(DealsReplyBudgetTest, BoardsAndColumnsStopAtTheBudget) {
  const std::vector<int64_t> ids = CreateLarge(80);
  ASSERT_EQ(ids.size(), 80u);
  // Half of them one stage on, so two columns compete for the budget.
  for (size_t i = 0; i < ids.size(); i += 2) {
    v1::MoveDealStageRequest move;
    move.set_deal_id(ids[i]);
    move.set_stage_id("PREPARATION");
    ASSERT_OK(Call(&DealsStub::MoveDealStage, move).status());
  }
  ASSERT_OK_AND_ASSIGN(v1::KanbanBoard board, Board(0, 100));
  EXPECT_LE(board.ByteSizeLong(),
            common::kReplyBudgetBytes + common::kMaxDealBytes);
  std::set<int64_t> seen;
  for (const char* stage : {"NEW", "PREPARATION"}) {
    SCOPED_TRACE(stage);
    const v1::KanbanColumn* column = FindColumn(board, stage);
    ASSERT_NE(column, nullptr);
    EXPECT_EQ(column->count(), 40);
    EXPECT_LT(column->cards_size(), 40);
    ASSERT_FALSE(column->next_page_token().empty());
    for (const v1::Deal& card : column->cards()) seen.insert(card.id());
    v1::ListKanbanColumnRequest request;
    request.set_pipeline_id(0);
    request.set_stage_id(stage);
    request.set_page_size(100);
    request.set_page_token(column->next_page_token());
    for (int page = 0; page < 20 && !request.page_token().empty(); ++page) {
      ASSERT_OK_AND_ASSIGN(v1::KanbanColumnPage next,
                           Call(&DealsStub::ListKanbanColumn, request));
      EXPECT_GT(next.cards_size(), 0);
      EXPECT_LE(next.ByteSizeLong(),
                common::kReplyBudgetBytes + common::kMaxDealBytes);
      for (const v1::Deal& card : next.cards()) {
        EXPECT_TRUE(seen.insert(card.id()).second) << card.id();
      }
      request.set_page_token(next.next_page_token());
    }
    EXPECT_TRUE(request.page_token().empty());
  }
  EXPECT_EQ(seen, std::set<int64_t>(ids.begin(), ids.end()));
}

// Work that waited in the pool until its caller's deadline passed is not
// started: the batch that timed out in the queue changes no deal.
TEST_F(DealsBatchTest, QueuedWorkWhoseCallerGaveUpIsNotStarted) {
  ASSERT_OK_AND_ASSIGN(v1::Deal deal, CreateDeal(MakeDeal("queued", 5)));
  constexpr int kThreads = 4;  // the fixture's pool
  absl::Notification release;
  for (int i = 0; i < kThreads; ++i) {
    ASSERT_TRUE(
        workers().TrySubmit([&release] { release.WaitForNotification(); }));
  }
  v1::BatchUpdateDealsRequest request;
  request.mutable_deal_ids()->add_ids(deal.id());
  request.set_set_assignee_id(9);
  request.set_request_id("queued-batch");
  auto context = MakeContext(AdminToken());
  context->set_deadline(std::chrono::system_clock::now() +
                        std::chrono::milliseconds(300));
  v1::BatchUpdateDealsResponse response;
  const grpc::Status status =
      deals().BatchUpdateDeals(context.get(), request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  // The server's deadline counts from when the call reached it, and the
  // cancellation travels too: give both time before the queued work is let
  // go, so a loaded machine does not see the caller as still waiting.
  absl::SleepFor(absl::Milliseconds(500));
  release.Notify();
  // Once every thread is in one of these at the same time, the queued batch
  // (submitted before them) has finished.
  absl::Barrier* drained = new absl::Barrier(kThreads + 1);
  for (int i = 0; i < kThreads; ++i) {
    ASSERT_TRUE(workers().TrySubmit([drained] {
      if (drained->Block()) delete drained;
    }));
  }
  if (drained->Block()) delete drained;
  ASSERT_OK_AND_ASSIGN(v1::Deal after, GetDeal(deal.id()));
  EXPECT_EQ(after.assignee_id(), 5);
  EXPECT_EQ(after.etag(), deal.etag());
}

}  // namespace
}  // namespace crm::deals
