// DealsService over a real channel against an in-process pipeline-config:
// the rules every write shares. A request id binds one payload (a retry
// gets the same answer and changes nothing, another payload is refused as
// CreateDeal refuses it); custom field values whose definition was deleted
// never block an edit; a stage id means the same in create, moves, batch
// moves and columns.
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "common/deal_filter/filter_builders.h"
#include "common/status/status_matchers.h"
#include "tests/service/deals_service_test_fixture.h"

namespace crm::deals {
namespace {

using ::crm::testing::StatusIs;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

class DealsRequestsTest : public DealsServiceTest {
 protected:
  // The answer CreateDeal gives a request id reused for another payload;
  // every other call must give exactly this one.
  absl::Status CreateReuseRefusal() {
    v1::CreateDealRequest request;
    *request.mutable_deal() = MakeDeal("first");
    request.set_request_id("create-reuse-probe");
    EXPECT_OK(Call(&DealsStub::CreateDeal, request).status());
    request.mutable_deal()->set_title("second");
    absl::Status refused = Call(&DealsStub::CreateDeal, request).status();
    EXPECT_TRUE(absl::IsAlreadyExists(refused)) << refused;
    EXPECT_THAT(refused.message(), HasSubstr("request_id"));
    return refused;
  }

  int64_t LastSequence() {
    std::vector<v1::DealEvent> events = Events();
    return events.empty() ? 0 : events.back().sequence();
  }

  // Deletes a field definition through pipeline-config and waits until
  // deals sees it gone.
  void DeleteField(const std::string& code) {
    pv1::DeleteFieldRequest request;
    request.set_code(code);
    ASSERT_OK(Call(&FieldsStub::DeleteField, request).status());
    WaitForConfigSync();
  }

  absl::StatusOr<v1::Deal> Update(const v1::Deal& change,
                                  const std::vector<std::string>& paths) {
    v1::UpdateDealRequest request;
    *request.mutable_deal() = change;
    for (const std::string& path : paths)
      request.mutable_update_mask()->add_paths(path);
    return Call(&DealsStub::UpdateDeal, request);
  }
};

// Each change that takes a request id: the same request again answers as
// the first time and writes nothing, even after the deal changed; the id
// with another payload is refused like CreateDeal refuses it.
TEST_F(DealsRequestsTest, EveryChangeBindsItsRequestIdToOnePayload) {
  const absl::Status refusal = CreateReuseRefusal();
  ASSERT_OK_AND_ASSIGN(pv1::Pipeline partners, CreatePipeline("Partners"));

  struct Call {
    const char* name;
    // Sends the request, `variant` 0 the first payload, 1 another one.
    std::function<absl::StatusOr<v1::Deal>(int64_t deal_id, int variant)> send;
  };
  const std::vector<Call> calls = {
      {"UpdateDeal",
       [&](int64_t id, int variant) {
         v1::UpdateDealRequest request;
         request.mutable_deal()->set_id(id);
         request.mutable_deal()->set_title(variant == 0 ? "Renamed" : "Other");
         request.mutable_update_mask()->add_paths("title");
         request.set_request_id("req-update");
         return this->Call(&DealsStub::UpdateDeal, request);
       }},
      {"MoveDealStage",
       [&](int64_t id, int variant) {
         v1::MoveDealStageRequest request;
         request.set_deal_id(id);
         request.set_stage_id(variant == 0 ? "PREPARATION" : "EXECUTING");
         request.set_request_id("req-move");
         return this->Call(&DealsStub::MoveDealStage, request);
       }},
      {"MoveDealToPipeline",
       [&](int64_t id, int variant) {
         v1::MoveDealToPipelineRequest request;
         request.set_deal_id(id);
         request.set_pipeline_id(partners.id());
         if (variant == 1) request.set_stage_id("EXECUTING");
         request.set_request_id("req-pipeline");
         return this->Call(&DealsStub::MoveDealToPipeline, request);
       }},
      {"SetProductRows",
       [&](int64_t id, int variant) {
         v1::SetProductRowsRequest request;
         request.set_deal_id(id);
         v1::ProductRow* row = request.add_rows();
         row->set_product_name("Widget");
         row->set_price(variant == 0 ? "10" : "11");
         row->set_quantity("2");
         request.set_request_id("req-rows");
         return this->Call(&DealsStub::SetProductRows, request);
       }},
  };
  for (const Call& call : calls) {
    SCOPED_TRACE(call.name);
    ASSERT_OK_AND_ASSIGN(v1::Deal deal,
                         CreateDeal(MakeDeal(call.name, 0, "0", "EUR")));
    ASSERT_OK_AND_ASSIGN(v1::Deal first, call.send(deal.id(), 0));
    EXPECT_NE(first.etag(), deal.etag());
    const int64_t seq = LastSequence();

    // A retry: the same answer, nothing written.
    ASSERT_OK_AND_ASSIGN(v1::Deal again, call.send(deal.id(), 0));
    EXPECT_EQ(again.SerializeAsString(), first.SerializeAsString());
    EXPECT_EQ(LastSequence(), seq);

    // Another payload under the id: CreateDeal's refusal, nothing written.
    absl::Status reused = call.send(deal.id(), 1).status();
    EXPECT_EQ(reused.code(), refusal.code()) << reused;
    EXPECT_EQ(reused.message(), refusal.message());
    EXPECT_EQ(LastSequence(), seq);
    ASSERT_OK_AND_ASSIGN(v1::Deal stored, GetDeal(deal.id()));
    EXPECT_EQ(stored.etag(), first.etag());

    // After the deal changed, a retry still changes nothing.
    v1::Deal change;
    change.set_id(deal.id());
    change.set_comments("changed since");
    ASSERT_OK_AND_ASSIGN(v1::Deal changed, Update(change, {"comments"}));
    const int64_t after_change = LastSequence();
    ASSERT_OK_AND_ASSIGN(v1::Deal later, call.send(deal.id(), 0));
    EXPECT_EQ(later.etag(), changed.etag());
    EXPECT_EQ(LastSequence(), after_change);
  }
}

// A request that turned out to change nothing binds its id too: a retry
// after the deal changed must not apply it then, and the id cannot be
// reused for something else.
TEST_F(DealsRequestsTest, ANoOpRequestBindsItsIdToo) {
  ASSERT_OK_AND_ASSIGN(v1::Deal deal, CreateDeal(MakeDeal("Same", 5)));
  v1::UpdateDealRequest assign;
  assign.mutable_deal()->set_id(deal.id());
  assign.mutable_deal()->set_assignee_id(5);
  assign.mutable_update_mask()->add_paths("assignee_id");
  assign.set_request_id("run-noop");
  ASSERT_OK_AND_ASSIGN(v1::Deal same, Call(&DealsStub::UpdateDeal, assign));
  EXPECT_EQ(same.etag(), deal.etag());  // nothing written

  v1::Deal reassign;
  reassign.set_id(deal.id());
  reassign.set_assignee_id(7);
  ASSERT_OK(Update(reassign, {"assignee_id"}).status());
  const int64_t seq = LastSequence();
  ASSERT_OK_AND_ASSIGN(v1::Deal retried, Call(&DealsStub::UpdateDeal, assign));
  EXPECT_EQ(retried.assignee_id(), 7);  // the retry did not set 5 again
  EXPECT_EQ(LastSequence(), seq);

  assign.mutable_deal()->set_assignee_id(9);
  EXPECT_THAT(Call(&DealsStub::UpdateDeal, assign),
              StatusIs(absl::StatusCode::kAlreadyExists,
                       "request_id: used already for a different request"));
  EXPECT_EQ(GetDeal(deal.id())->assignee_id(), 7);
}

// A batch's request id binds the whole request: a retry answers for the
// deals the first call targeted (its filter is not evaluated again over the
// deals it changed) and changes nothing; another payload is refused as a
// whole. Deleting items again answers OK, as the first time.
TEST_F(DealsRequestsTest, BatchRequestIdBindsTheWholeRequest) {
  const absl::Status refusal = CreateReuseRefusal();
  std::vector<int64_t> ids;
  for (int i = 0; i < 3; ++i) {
    ASSERT_OK_AND_ASSIGN(v1::Deal deal, CreateDeal(MakeDeal("open")));
    ids.push_back(deal.id());
  }
  v1::BatchUpdateDealsRequest close;
  *close.mutable_filter() =
      common::filters::Where("title", v1::Condition::OPERATOR_EQ, {"open"});
  close.set_move_to_stage_id("LOSE");
  close.set_request_id("close-open-deals");
  ASSERT_OK_AND_ASSIGN(v1::BatchUpdateDealsResponse first,
                       Call(&DealsStub::BatchUpdateDeals, close));
  EXPECT_EQ(first.succeeded(), 3);
  const int64_t seq = LastSequence();

  // A new deal matches the filter now; the retry still answers for the
  // first three and writes nothing.
  ASSERT_OK_AND_ASSIGN(v1::Deal newcomer, CreateDeal(MakeDeal("open")));
  const int64_t after_newcomer = LastSequence();
  ASSERT_GT(after_newcomer, seq);
  ASSERT_OK_AND_ASSIGN(v1::BatchUpdateDealsResponse again,
                       Call(&DealsStub::BatchUpdateDeals, close));
  EXPECT_EQ(again.SerializeAsString(), first.SerializeAsString());
  EXPECT_EQ(LastSequence(), after_newcomer);
  EXPECT_EQ(GetDeal(newcomer.id())->stage_id(), "NEW");

  v1::BatchUpdateDealsRequest other = close;
  other.set_move_to_stage_id("WON");
  absl::Status reused = Call(&DealsStub::BatchUpdateDeals, other).status();
  EXPECT_EQ(reused.code(), refusal.code()) << reused;
  EXPECT_EQ(reused.message(), refusal.message());
  EXPECT_EQ(LastSequence(), after_newcomer);
  EXPECT_EQ(GetDeal(ids[0])->stage_id(), "LOSE");

  // Deletes: the retry answers OK for deals the first call deleted.
  v1::BatchUpdateDealsRequest remove;
  remove.mutable_deal_ids()->add_ids(ids[0]);
  remove.mutable_deal_ids()->add_ids(ids[1]);
  remove.set_delete_(true);
  remove.set_request_id("remove-two");
  ASSERT_OK_AND_ASSIGN(v1::BatchUpdateDealsResponse removed,
                       Call(&DealsStub::BatchUpdateDeals, remove));
  EXPECT_EQ(removed.succeeded(), 2);
  const int64_t after_remove = LastSequence();
  ASSERT_OK_AND_ASSIGN(v1::BatchUpdateDealsResponse removed_again,
                       Call(&DealsStub::BatchUpdateDeals, remove));
  EXPECT_EQ(removed_again.SerializeAsString(), removed.SerializeAsString());
  EXPECT_EQ(LastSequence(), after_remove);
  remove.mutable_deal_ids()->add_ids(ids[2]);
  EXPECT_THAT(Call(&DealsStub::BatchUpdateDeals, remove),
              StatusIs(absl::StatusCode::kAlreadyExists,
                       "request_id: used already for a different request"));
  EXPECT_OK(GetDeal(ids[2]).status());
}

// A deleted field's values never block an edit of anything else; they go
// with the deal's next write. Setting one explicitly is still refused.
TEST_F(DealsRequestsTest, DeletedCustomFieldNeverBlocksEdits) {
  ASSERT_OK(CreateField("UF_CRM_GONE", pv1::FIELD_TYPE_INTEGER).status());
  ASSERT_OK(CreateField("UF_CRM_KEEP", pv1::FIELD_TYPE_STRING).status());
  ASSERT_OK_AND_ASSIGN(pv1::Pipeline partners, CreatePipeline("Partners"));
  auto make = [&](const std::string& title) -> absl::StatusOr<v1::Deal> {
    v1::Deal deal = MakeDeal(title, 0, "0", "EUR");
    (*deal.mutable_custom_fields())["UF_CRM_GONE"].add_values("12");
    (*deal.mutable_custom_fields())["UF_CRM_KEEP"].add_values("kept");
    return CreateDeal(deal);
  };
  std::vector<v1::Deal> deals;
  for (int i = 0; i < 8; ++i) {
    ASSERT_OK_AND_ASSIGN(v1::Deal deal, make(absl::StrCat("deal ", i)));
    deals.push_back(deal);
  }
  DeleteField("UF_CRM_GONE");
  auto expect_dropped = [&](const v1::Deal& deal) {
    EXPECT_EQ(deal.custom_fields().count("UF_CRM_GONE"), 0u);
    ASSERT_EQ(deal.custom_fields().count("UF_CRM_KEEP"), 1u);
    EXPECT_THAT(deal.custom_fields().at("UF_CRM_KEEP").values(),
                ElementsAre("kept"));
    ASSERT_OK_AND_ASSIGN(v1::Deal stored, GetDeal(deal.id()));
    EXPECT_EQ(stored.SerializeAsString(), deal.SerializeAsString());
  };

  {
    SCOPED_TRACE("UpdateDeal [title]");
    v1::Deal change;
    change.set_id(deals[0].id());
    change.set_title("Renamed");
    ASSERT_OK_AND_ASSIGN(v1::Deal updated, Update(change, {"title"}));
    EXPECT_EQ(updated.title(), "Renamed");
    expect_dropped(updated);
    EXPECT_THAT(Events().back().changed_fields(),
                ElementsAre("title", "custom_fields"));
  }
  {
    SCOPED_TRACE("MoveDealStage");
    ASSERT_OK_AND_ASSIGN(v1::Deal moved,
                         MoveStage(deals[1].id(), "PREPARATION"));
    EXPECT_EQ(moved.stage_id(), "PREPARATION");
    expect_dropped(moved);
    EXPECT_THAT(Events().back().changed_fields(), Contains("custom_fields"));
  }
  {
    SCOPED_TRACE("MoveDealToPipeline");
    v1::MoveDealToPipelineRequest request;
    request.set_deal_id(deals[2].id());
    request.set_pipeline_id(partners.id());
    ASSERT_OK_AND_ASSIGN(v1::Deal moved,
                         Call(&DealsStub::MoveDealToPipeline, request));
    EXPECT_EQ(moved.pipeline_id(), partners.id());
    expect_dropped(moved);
  }
  {
    SCOPED_TRACE("SetProductRows");
    v1::SetProductRowsRequest request;
    request.set_deal_id(deals[3].id());
    v1::ProductRow* row = request.add_rows();
    row->set_product_name("Widget");
    row->set_price("10");
    ASSERT_OK_AND_ASSIGN(v1::Deal priced,
                         Call(&DealsStub::SetProductRows, request));
    EXPECT_EQ(priced.amount(), "10.00");
    expect_dropped(priced);
    // Clearing the rows validates the deal again: still fine.
    request.clear_rows();
    ASSERT_OK(Call(&DealsStub::SetProductRows, request).status());
  }
  {
    SCOPED_TRACE("BatchUpdateDeals");
    v1::BatchUpdateDealsRequest request;
    request.mutable_deal_ids()->add_ids(deals[4].id());
    request.mutable_deal_ids()->add_ids(deals[5].id());
    request.set_set_assignee_id(8);
    ASSERT_OK_AND_ASSIGN(v1::BatchUpdateDealsResponse response,
                         Call(&DealsStub::BatchUpdateDeals, request));
    for (const v1::BatchItemResult& result : response.results())
      EXPECT_EQ(result.code(), 0) << result.message();
    for (int i : {4, 5}) {
      ASSERT_OK_AND_ASSIGN(v1::Deal stored, GetDeal(deals[i].id()));
      EXPECT_EQ(stored.assignee_id(), 8);
      expect_dropped(stored);
    }
  }
  {
    SCOPED_TRACE("explicit values of the deleted field");
    v1::Deal change;
    change.set_id(deals[6].id());
    (*change.mutable_custom_fields())["UF_CRM_GONE"].add_values("13");
    EXPECT_THAT(Update(change, {"custom_fields.UF_CRM_GONE"}),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr("custom_fields[UF_CRM_GONE]")));
    // The same value as stored is still a value the request sets.
    (*change.mutable_custom_fields())["UF_CRM_GONE"].set_values(0, "12");
    EXPECT_THAT(Update(change, {"custom_fields.UF_CRM_GONE"}),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr("custom_fields[UF_CRM_GONE]")));
    // A whole map with a new value for it, too.
    (*change.mutable_custom_fields())["UF_CRM_GONE"].set_values(0, "14");
    EXPECT_THAT(Update(change, {"custom_fields"}),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr("custom_fields[UF_CRM_GONE]")));
    ASSERT_OK_AND_ASSIGN(v1::Deal stored, GetDeal(deals[6].id()));
    EXPECT_EQ(stored.etag(), deals[6].etag());

    // The whole map as read back, with another field changed: the stale
    // value is only echoed, so the edit goes through and drops it.
    v1::Deal echo = stored;
    (*echo.mutable_custom_fields())["UF_CRM_KEEP"].set_values(0, "edited");
    ASSERT_OK(Update(echo, {"custom_fields", "title"}).status());
    ASSERT_OK_AND_ASSIGN(stored, GetDeal(deals[6].id()));
    EXPECT_EQ(stored.custom_fields().count("UF_CRM_GONE"), 0u);
    EXPECT_THAT(stored.custom_fields().at("UF_CRM_KEEP").values(),
                ElementsAre("edited"));
    // An edit that changes nothing writes nothing, stale value or not.
    const v1::Deal untouched = deals[7];
    v1::Deal same_title;
    same_title.set_id(untouched.id());
    same_title.set_title(untouched.title());
    ASSERT_OK_AND_ASSIGN(v1::Deal unchanged, Update(same_title, {"title"}));
    EXPECT_EQ(unchanged.etag(), untouched.etag());
  }
  {
    SCOPED_TRACE("removing the deleted field's value");
    v1::Deal change;
    change.set_id(deals[7].id());
    ASSERT_OK_AND_ASSIGN(v1::Deal removed,
                         Update(change, {"custom_fields.UF_CRM_GONE"}));
    expect_dropped(removed);
  }
}

// An enumeration option removed from a field leaves stored values that no
// longer validate; they must not block other edits either.
TEST_F(DealsRequestsTest, RemovedOptionNeverBlocksEdits) {
  ASSERT_OK_AND_ASSIGN(pv1::FieldDefinition source,
                       CreateField("UF_CRM_SOURCE", pv1::FIELD_TYPE_ENUMERATION,
                                   false, false, {"Web", "Fair"}));
  v1::Deal input = MakeDeal("Typed");
  (*input.mutable_custom_fields())["UF_CRM_SOURCE"].add_values(
      absl::StrCat(source.options(1).id()));
  ASSERT_OK_AND_ASSIGN(v1::Deal deal, CreateDeal(input));

  pv1::UpdateFieldRequest drop_option;
  drop_option.mutable_field()->set_code("UF_CRM_SOURCE");
  *drop_option.mutable_field()->add_options() = source.options(0);
  drop_option.mutable_update_mask()->add_paths("options");
  ASSERT_OK(Call(&FieldsStub::UpdateField, drop_option).status());
  WaitForConfigSync();

  v1::Deal change;
  change.set_id(deal.id());
  change.set_title("Renamed");
  ASSERT_OK_AND_ASSIGN(v1::Deal updated, Update(change, {"title"}));
  EXPECT_EQ(updated.title(), "Renamed");
  // Setting the removed option is refused.
  (*change.mutable_custom_fields())["UF_CRM_SOURCE"].add_values(
      absl::StrCat(source.options(1).id()));
  EXPECT_THAT(
      Update(change, {"custom_fields.UF_CRM_SOURCE"}),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("UF_CRM_SOURCE")));
}

// Pipeline 1's stages are "C1:NEW", "C1:PREPARATION", ...: every call that
// names a stage of a known pipeline takes the bare id as MoveDealStage does.
TEST_F(DealsRequestsTest, BareStageIdsMeanTheSameEverywhere) {
  ASSERT_OK_AND_ASSIGN(pv1::Pipeline partners, CreatePipeline("Partners"));
  ASSERT_EQ(partners.id(), 1);

  // CreateDeal.
  v1::Deal input = MakeDeal("Partner deal");
  input.set_pipeline_id(1);
  input.set_stage_id("PREPARATION");
  ASSERT_OK_AND_ASSIGN(v1::Deal created, CreateDeal(input));
  EXPECT_EQ(created.stage_id(), "C1:PREPARATION");
  input.set_stage_id("C1:EXECUTING");
  ASSERT_OK_AND_ASSIGN(v1::Deal full, CreateDeal(input));
  EXPECT_EQ(full.stage_id(), "C1:EXECUTING");
  input.set_stage_id("C2:NEW");
  EXPECT_THAT(CreateDeal(input), StatusIs(absl::StatusCode::kInvalidArgument,
                                          HasSubstr("stage_id")));

  // MoveDealStage (as before) and MoveDealToPipeline.
  ASSERT_OK_AND_ASSIGN(v1::Deal moved, MoveStage(created.id(), "EXECUTING"));
  EXPECT_EQ(moved.stage_id(), "C1:EXECUTING");
  ASSERT_OK_AND_ASSIGN(v1::Deal local, CreateDeal(MakeDeal("Local deal")));
  v1::MoveDealToPipelineRequest to_partners;
  to_partners.set_deal_id(local.id());
  to_partners.set_pipeline_id(1);
  to_partners.set_stage_id("FINAL_INVOICE");
  ASSERT_OK_AND_ASSIGN(v1::Deal arrived,
                       Call(&DealsStub::MoveDealToPipeline, to_partners));
  EXPECT_EQ(arrived.stage_id(), "C1:FINAL_INVOICE");

  // ListKanbanColumn: the bare id pages the same column as the full one.
  v1::ListKanbanColumnRequest column;
  column.set_pipeline_id(1);
  column.set_stage_id("EXECUTING");
  ASSERT_OK_AND_ASSIGN(v1::KanbanColumnPage bare,
                       Call(&DealsStub::ListKanbanColumn, column));
  column.set_stage_id("C1:EXECUTING");
  ASSERT_OK_AND_ASSIGN(v1::KanbanColumnPage prefixed,
                       Call(&DealsStub::ListKanbanColumn, column));
  ASSERT_EQ(bare.cards_size(), 2);
  EXPECT_EQ(bare.SerializeAsString(), prefixed.SerializeAsString());

  // BatchUpdateDeals: a stage only pipeline 1 has is found by its bare id;
  // one several pipelines have by that bare id must be named in full (and a
  // pipeline 0 id stays pipeline 0's, see list_kanban_batch_test).
  pv1::CreateStageRequest review;
  review.set_pipeline_id(1);
  review.mutable_stage()->set_stage_id("REVIEW");
  review.mutable_stage()->set_name("Review");
  review.mutable_stage()->set_sort(15);
  review.mutable_stage()->set_semantics(pv1::STAGE_SEMANTICS_PROCESS);
  ASSERT_OK(Call(&PipelinesStub::CreateStage, review).status());
  WaitForConfigSync();
  v1::BatchUpdateDealsRequest batch;
  batch.mutable_deal_ids()->add_ids(created.id());
  batch.mutable_deal_ids()->add_ids(full.id());
  batch.set_move_to_stage_id("REVIEW");
  ASSERT_OK_AND_ASSIGN(v1::BatchUpdateDealsResponse response,
                       Call(&DealsStub::BatchUpdateDeals, batch));
  for (const v1::BatchItemResult& result : response.results())
    EXPECT_EQ(result.code(), 0) << result.message();
  EXPECT_EQ(GetDeal(created.id())->stage_id(), "C1:REVIEW");
  EXPECT_EQ(GetDeal(full.id())->stage_id(), "C1:REVIEW");

  ASSERT_OK_AND_ASSIGN(pv1::Pipeline third, CreatePipeline("Third"));
  review.set_pipeline_id(third.id());
  ASSERT_OK(Call(&PipelinesStub::CreateStage, review).status());
  WaitForConfigSync();
  EXPECT_THAT(Call(&DealsStub::BatchUpdateDeals, batch),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("move_to_stage_id")));
  batch.set_move_to_stage_id("C1:NEW");
  ASSERT_OK_AND_ASSIGN(response, Call(&DealsStub::BatchUpdateDeals, batch));
  EXPECT_EQ(response.succeeded(), 2);
  EXPECT_EQ(GetDeal(full.id())->stage_id(), "C1:NEW");
}

}  // namespace
}  // namespace crm::deals
