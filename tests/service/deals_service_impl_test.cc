// DealsService over a real channel against an in-process pipeline-config:
// the deal lifecycle (create, get, update, delete, moves, product rows),
// history, events, idempotency, etags and bad input.
#include <chrono>
#include <set>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/time_util.h"
#include "gtest/gtest.h"

#include "common/status/status_matchers.h"
#include "tests/service/deals_service_test_fixture.h"

namespace crm::deals {
namespace {

using ::crm::testing::IsOk;
using ::crm::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::vector<v1::DealEventType> Types(const std::vector<v1::DealEvent>& events) {
  std::vector<v1::DealEventType> types;
  for (const auto& event : events) types.push_back(event.type());
  return types;
}

TEST_F(DealsServiceTest, CreateAppliesDefaults) {
  ASSERT_OK_AND_ASSIGN(v1::Deal deal, CreateDeal(MakeDeal("")));
  EXPECT_GT(deal.id(), 0);
  EXPECT_EQ(ShardOfDeal(deal.id()), 3);
  EXPECT_EQ(deal.title(), absl::StrCat("Deal #", deal.id()));
  EXPECT_EQ(deal.pipeline_id(), 0);
  EXPECT_EQ(deal.stage_id(), "NEW");
  EXPECT_EQ(deal.stage_semantics(), pv1::STAGE_SEMANTICS_PROCESS);
  EXPECT_EQ(deal.assignee_id(), kAdminUserId);
  EXPECT_EQ(deal.created_by(), kAdminUserId);
  EXPECT_TRUE(deal.has_opened() && deal.opened());
  EXPECT_TRUE(deal.has_probability());
  EXPECT_FALSE(deal.closed());
  EXPECT_EQ(deal.amount(), "0.00");
  EXPECT_EQ(deal.begin_date().size(), 10u);
  EXPECT_GT(deal.close_date(), deal.begin_date());
  EXPECT_FALSE(deal.etag().empty());

  ASSERT_OK_AND_ASSIGN(v1::Deal got, GetDeal(deal.id()));
  EXPECT_EQ(got.SerializeAsString(), deal.SerializeAsString());

  std::vector<v1::DealEvent> events = Events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].type(), v1::DEAL_EVENT_TYPE_CREATED);
  EXPECT_EQ(events[0].event_id(), "3-1");
  EXPECT_EQ(events[0].deal_id(), deal.id());
  EXPECT_EQ(events[0].actor_id(), kAdminUserId);
  EXPECT_EQ(events[0].channel(), v1::CHANNEL_API);
  EXPECT_EQ(events[0].deal().etag(), deal.etag());
}

TEST_F(DealsServiceTest, CreateIsIdempotentByRequestId) {
  v1::CreateDealRequest request;
  *request.mutable_deal() = MakeDeal("Acme", 0, "100", "USD");
  request.set_request_id("create-acme-1");
  ASSERT_OK_AND_ASSIGN(v1::Deal first, Call(&DealsStub::CreateDeal, request));
  ASSERT_OK_AND_ASSIGN(v1::Deal again, Call(&DealsStub::CreateDeal, request));
  EXPECT_EQ(again.id(), first.id());
  EXPECT_EQ(Events().size(), 1u);  // the retry wrote nothing

  request.mutable_deal()->set_title("Something else");
  EXPECT_THAT(
      Call(&DealsStub::CreateDeal, request),
      StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("request_id")));
  request.set_request_id("bad id with spaces");
  EXPECT_THAT(
      Call(&DealsStub::CreateDeal, request),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("request_id")));
}

TEST_F(DealsServiceTest, ChangesAreIdempotentByRequestId) {
  ASSERT_OK_AND_ASSIGN(v1::Deal deal, CreateDeal(MakeDeal("Deal")));
  ASSERT_OK_AND_ASSIGN(v1::Deal other, CreateDeal(MakeDeal("Other")));
  v1::MoveDealStageRequest move;
  move.set_deal_id(deal.id());
  move.set_stage_id("PREPARATION");
  move.set_request_id("run-1");
  ASSERT_OK_AND_ASSIGN(v1::Deal moved, Call(&DealsStub::MoveDealStage, move));
  EXPECT_EQ(moved.stage_id(), "PREPARATION");
  // The deal moves on; a retry of the first move must not pull it back.
  ASSERT_OK(MoveStage(deal.id(), "EXECUTING").status());
  const size_t before = Events().size();
  ASSERT_OK_AND_ASSIGN(v1::Deal again, Call(&DealsStub::MoveDealStage, move));
  EXPECT_EQ(again.stage_id(), "EXECUTING");
  EXPECT_EQ(Events().size(), before);

  // An update with a used request id and another payload is refused, as
  // CreateDeal refuses it (deals_requests_test covers every call).
  v1::UpdateDealRequest update;
  update.mutable_deal()->set_id(deal.id());
  update.mutable_deal()->set_title("Renamed");
  update.mutable_update_mask()->add_paths("title");
  update.set_request_id("run-2");
  ASSERT_OK_AND_ASSIGN(v1::Deal renamed, Call(&DealsStub::UpdateDeal, update));
  EXPECT_EQ(renamed.title(), "Renamed");
  EXPECT_EQ(Events().back().request_id(), "run-2");
  update.mutable_deal()->set_title("Renamed twice");
  EXPECT_THAT(
      Call(&DealsStub::UpdateDeal, update),
      StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("request_id")));
  EXPECT_EQ(GetDeal(deal.id())->title(), "Renamed");

  // The same id for another deal is refused.
  move.set_deal_id(other.id());
  EXPECT_THAT(
      Call(&DealsStub::MoveDealStage, move),
      StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("request_id")));
  // Request ids are per caller: another caller's "run-1" is its own.
  ASSERT_OK_AND_ASSIGN(v1::Deal theirs,
                       CallAs(ServiceToken(), &DealsStub::MoveDealStage, move));
  EXPECT_EQ(theirs.stage_id(), "PREPARATION");
  EXPECT_EQ(theirs.id(), other.id());
  move.set_request_id("bad id");
  EXPECT_THAT(
      Call(&DealsStub::MoveDealStage, move),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("request_id")));
}

TEST_F(DealsServiceTest, CreateRefusesBadInput) {
  ASSERT_OK_AND_ASSIGN(pv1::Pipeline partners, CreatePipeline("Partners"));
  struct Case {
    const char* name;
    v1::Deal deal;
    const char* field;
  };
  std::vector<Case> cases;
  {
    v1::Deal d = MakeDeal("x");
    d.set_pipeline_id(999);
    cases.push_back({"unknown pipeline", d, "pipeline_id"});
  }
  {
    v1::Deal d = MakeDeal("x");
    d.set_stage_id("NO_SUCH_STAGE");
    cases.push_back({"unknown stage", d, "stage_id"});
  }
  {
    v1::Deal d = MakeDeal("x");
    d.set_stage_id(absl::StrCat("C", partners.id(), ":NEW"));
    cases.push_back({"stage of another pipeline", d, "stage_id"});
  }
  cases.push_back({"bad currency", MakeDeal("x", 0, "10", "XXY"), "currency"});
  cases.push_back(
      {"amount without currency", MakeDeal("x", 0, "10", ""), "currency"});
  cases.push_back({"negative amount", MakeDeal("x", 0, "-1", "USD"), "amount"});
  cases.push_back(
      {"too many decimals", MakeDeal("x", 0, "1.001", "USD"), "amount"});
  cases.push_back({"not a number", MakeDeal("x", 0, "abc", "USD"), "amount"});
  {
    v1::Deal d = MakeDeal("x");
    d.set_probability(101);
    cases.push_back({"probability", d, "probability"});
  }
  {
    v1::Deal d = MakeDeal("x");
    d.set_close_date("2026-02-30");
    cases.push_back({"impossible date", d, "close_date"});
  }
  {
    v1::Deal d = MakeDeal("x");
    (*d.mutable_custom_fields())["UF_CRM_NOPE"].add_values("1");
    cases.push_back({"unknown custom field", d, "UF_CRM_NOPE"});
  }
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_THAT(CreateDeal(c.deal), StatusIs(absl::StatusCode::kInvalidArgument,
                                             HasSubstr(c.field)));
  }
  EXPECT_TRUE(Events().empty());  // nothing half-written
}

TEST_F(DealsServiceTest, CustomFieldsAreValidatedAgainstDefinitions) {
  ASSERT_OK(CreateField("UF_CRM_BUDGET", pv1::FIELD_TYPE_INTEGER).status());
  ASSERT_OK_AND_ASSIGN(
      pv1::FieldDefinition source,
      CreateField("UF_CRM_SOURCE", pv1::FIELD_TYPE_ENUMERATION,
                  /*multiple=*/false, /*mandatory=*/false, {"Web", "Fair"}));
  v1::Deal deal = MakeDeal("Typed");
  (*deal.mutable_custom_fields())["UF_CRM_BUDGET"].add_values("12x");
  EXPECT_THAT(CreateDeal(deal), StatusIs(absl::StatusCode::kInvalidArgument,
                                         HasSubstr("UF_CRM_BUDGET")));
  (*deal.mutable_custom_fields())["UF_CRM_BUDGET"].set_values(0, "12");
  (*deal.mutable_custom_fields())["UF_CRM_SOURCE"].add_values("424242");
  EXPECT_THAT(CreateDeal(deal), StatusIs(absl::StatusCode::kInvalidArgument,
                                         HasSubstr("UF_CRM_SOURCE")));
  (*deal.mutable_custom_fields())["UF_CRM_SOURCE"].set_values(
      0, absl::StrCat(source.options(1).id()));
  ASSERT_OK_AND_ASSIGN(v1::Deal created, CreateDeal(deal));
  EXPECT_EQ(created.custom_fields().at("UF_CRM_BUDGET").values(0), "12");

  // A mandatory field is required on create.
  ASSERT_OK(
      CreateField("UF_CRM_MUST", pv1::FIELD_TYPE_STRING, false, true).status());
  EXPECT_THAT(
      CreateDeal(MakeDeal("No mandatory")),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("UF_CRM_MUST")));
}

TEST_F(DealsServiceTest, GetUnknownOrBadIds) {
  EXPECT_THAT(GetDeal(424242 << 10),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("not found")));
  EXPECT_THAT(GetDeal(0), StatusIs(absl::StatusCode::kInvalidArgument,
                                   HasSubstr("deal_id")));
  EXPECT_THAT(GetDeal(-5), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(DealsServiceTest, UpdateWithMaskAndEtag) {
  ASSERT_OK_AND_ASSIGN(v1::Deal deal,
                       CreateDeal(MakeDeal("Old", 0, "5", "EUR")));
  v1::UpdateDealRequest request;
  request.mutable_deal()->set_id(deal.id());
  request.mutable_deal()->set_title("New");
  request.mutable_deal()->set_comments("ignored: not in the mask");
  request.mutable_update_mask()->add_paths("title");
  request.set_etag(deal.etag());
  ASSERT_OK_AND_ASSIGN(v1::Deal updated, Call(&DealsStub::UpdateDeal, request));
  EXPECT_EQ(updated.title(), "New");
  EXPECT_EQ(updated.comments(), "");
  EXPECT_EQ(updated.amount(), "5.00");
  EXPECT_NE(updated.etag(), deal.etag());

  // The old etag is stale now.
  request.mutable_deal()->set_title("Newer");
  EXPECT_THAT(Call(&DealsStub::UpdateDeal, request),
              StatusIs(absl::StatusCode::kAborted, HasSubstr("etag")));

  // A no-op writes and emits nothing.
  const size_t events = Events().size();
  request.set_etag(updated.etag());
  request.mutable_deal()->set_title("New");
  ASSERT_OK_AND_ASSIGN(v1::Deal same, Call(&DealsStub::UpdateDeal, request));
  EXPECT_EQ(same.etag(), updated.etag());
  EXPECT_EQ(Events().size(), events);

  // The event of the real update names the changed field.
  std::vector<v1::DealEvent> all = Events();
  EXPECT_EQ(all.back().type(), v1::DEAL_EVENT_TYPE_UPDATED);
  EXPECT_THAT(all.back().changed_fields(), ElementsAre("title"));
}

TEST_F(DealsServiceTest, UpdateRefusesBadMasksAndValues) {
  ASSERT_OK_AND_ASSIGN(v1::Deal deal, CreateDeal(MakeDeal("Deal")));
  v1::UpdateDealRequest request;
  request.mutable_deal()->set_id(deal.id());
  EXPECT_THAT(
      Call(&DealsStub::UpdateDeal, request),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("update_mask")));
  for (const char* path : {"stage_id", "pipeline_id", "product_rows", "id",
                           "created_by", "nonsense"}) {
    SCOPED_TRACE(path);
    request.mutable_update_mask()->clear_paths();
    request.mutable_update_mask()->add_paths(path);
    EXPECT_THAT(Call(&DealsStub::UpdateDeal, request),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr("update_mask.paths[0]")));
  }
  request.mutable_update_mask()->clear_paths();
  request.mutable_update_mask()->add_paths("currency");
  request.mutable_deal()->set_currency("EURO");
  EXPECT_THAT(
      Call(&DealsStub::UpdateDeal, request),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("currency")));
  request.mutable_deal()->set_id(0);
  EXPECT_THAT(
      Call(&DealsStub::UpdateDeal, request),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("deal.id")));
  EXPECT_EQ(Events().size(), 1u);
}

TEST_F(DealsServiceTest, AssigneeChangeHasItsOwnEvent) {
  ASSERT_OK_AND_ASSIGN(v1::Deal deal, CreateDeal(MakeDeal("Deal", 5)));
  v1::UpdateDealRequest request;
  request.mutable_deal()->set_id(deal.id());
  request.mutable_deal()->set_assignee_id(6);
  request.mutable_update_mask()->add_paths("assignee_id");
  ASSERT_OK(Call(&DealsStub::UpdateDeal, request).status());
  const v1::DealEvent event = Events().back();
  EXPECT_EQ(event.type(), v1::DEAL_EVENT_TYPE_ASSIGNEE_CHANGED);
  EXPECT_EQ(event.from_assignee_id(), 5);
  EXPECT_EQ(event.to_assignee_id(), 6);
}

TEST_F(DealsServiceTest, MovesCloseAndReopen) {
  ASSERT_OK_AND_ASSIGN(v1::Deal deal, CreateDeal(MakeDeal("Deal")));
  ASSERT_OK_AND_ASSIGN(v1::Deal moved, MoveStage(deal.id(), "PREPARATION"));
  EXPECT_EQ(moved.stage_id(), "PREPARATION");
  EXPECT_FALSE(moved.closed());
  EXPECT_EQ(moved.moved_by(), kAdminUserId);

  ASSERT_OK_AND_ASSIGN(v1::Deal won, MoveStage(deal.id(), "WON"));
  EXPECT_TRUE(won.closed());
  EXPECT_EQ(won.stage_semantics(), pv1::STAGE_SEMANTICS_SUCCESS);
  EXPECT_EQ(won.close_date(), won.begin_date());  // closed today

  ASSERT_OK_AND_ASSIGN(v1::Deal reopened, MoveStage(deal.id(), "NEW"));
  EXPECT_FALSE(reopened.closed());
  EXPECT_EQ(reopened.close_date(), won.close_date());  // kept on reopen

  // Same stage: nothing happens.
  const size_t before = Events().size();
  ASSERT_OK(MoveStage(deal.id(), "NEW").status());
  EXPECT_EQ(Events().size(), before);

  EXPECT_THAT(
      MoveStage(deal.id(), "NO_SUCH"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("stage_id")));
  EXPECT_THAT(MoveStage(deal.id(), ""),
              StatusIs(absl::StatusCode::kInvalidArgument));

  std::vector<v1::DealEvent> events = Events();
  EXPECT_THAT(Types(events), ElementsAre(v1::DEAL_EVENT_TYPE_CREATED,
                                         v1::DEAL_EVENT_TYPE_STAGE_CHANGED,
                                         v1::DEAL_EVENT_TYPE_STAGE_CHANGED,
                                         v1::DEAL_EVENT_TYPE_STAGE_CHANGED));
  EXPECT_EQ(events[2].from_stage_id(), "PREPARATION");
  EXPECT_EQ(events[2].to_stage_id(), "WON");
  EXPECT_EQ(events[2].to_semantics(), pv1::STAGE_SEMANTICS_SUCCESS);
  for (size_t i = 0; i < events.size(); ++i)
    EXPECT_EQ(events[i].sequence(), static_cast<int64_t>(i + 1));

  v1::ListStageHistoryRequest history;
  history.set_deal_id(deal.id());
  history.set_page_size(2);
  ASSERT_OK_AND_ASSIGN(v1::ListStageHistoryResponse page1,
                       Call(&DealsStub::ListStageHistory, history));
  ASSERT_EQ(page1.entries_size(), 2);
  EXPECT_EQ(page1.entries(0).kind(), v1::StageHistoryEntry::KIND_CREATED);
  EXPECT_EQ(page1.entries(1).kind(), v1::StageHistoryEntry::KIND_MOVED);
  history.set_page_token(page1.next_page_token());
  ASSERT_OK_AND_ASSIGN(v1::ListStageHistoryResponse page2,
                       Call(&DealsStub::ListStageHistory, history));
  ASSERT_EQ(page2.entries_size(), 2);
  EXPECT_EQ(page2.entries(0).kind(), v1::StageHistoryEntry::KIND_CLOSED);
  EXPECT_EQ(page2.entries(1).kind(), v1::StageHistoryEntry::KIND_REOPENED);
  EXPECT_EQ(page2.entries(1).from_stage_id(), "WON");
  EXPECT_TRUE(page2.next_page_token().empty());

  v1::GetTimeInStageRequest time;
  time.set_deal_id(deal.id());
  ASSERT_OK_AND_ASSIGN(v1::GetTimeInStageResponse stages,
                       Call(&DealsStub::GetTimeInStage, time));
  ASSERT_EQ(stages.stages_size(), 3);
  EXPECT_EQ(stages.stages(0).stage_id(), "NEW");
  EXPECT_EQ(stages.stages(0).entries(), 2);
  EXPECT_TRUE(stages.stages(0).current());
  EXPECT_FALSE(stages.stages(1).current());
  EXPECT_TRUE(stages.stages(1).has_last_exited());
}

TEST_F(DealsServiceTest, MoveToPipelineKeepsSemantics) {
  ASSERT_OK_AND_ASSIGN(pv1::Pipeline partners, CreatePipeline("Partners"));
  ASSERT_OK_AND_ASSIGN(v1::Deal deal, CreateDeal(MakeDeal("Deal")));
  ASSERT_OK(MoveStage(deal.id(), "WON").status());
  v1::MoveDealToPipelineRequest request;
  request.set_deal_id(deal.id());
  request.set_pipeline_id(partners.id());
  ASSERT_OK_AND_ASSIGN(v1::Deal moved,
                       Call(&DealsStub::MoveDealToPipeline, request));
  EXPECT_EQ(moved.pipeline_id(), partners.id());
  EXPECT_EQ(moved.stage_id(), absl::StrCat("C", partners.id(), ":WON"));
  EXPECT_TRUE(moved.closed());
  const v1::DealEvent event = Events().back();
  EXPECT_EQ(event.type(), v1::DEAL_EVENT_TYPE_PIPELINE_CHANGED);
  EXPECT_EQ(event.from_pipeline_id(), 0);
  EXPECT_EQ(event.to_pipeline_id(), partners.id());

  // An explicit stage must be one of the target pipeline's.
  request.set_pipeline_id(0);
  request.set_stage_id(absl::StrCat("C", partners.id(), ":NEW"));
  EXPECT_THAT(
      Call(&DealsStub::MoveDealToPipeline, request),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("stage_id")));
  request.set_pipeline_id(777);
  EXPECT_THAT(
      Call(&DealsStub::MoveDealToPipeline, request),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("pipeline_id")));
}

TEST_F(DealsServiceTest, ProductRowsPriceTheDeal) {
  ASSERT_OK_AND_ASSIGN(v1::Deal deal,
                       CreateDeal(MakeDeal("Rows", 0, "", "EUR")));
  v1::SetProductRowsRequest request;
  request.set_deal_id(deal.id());
  v1::ProductRow* row = request.add_rows();
  row->set_product_name("Licence");
  row->set_price("100");
  row->set_quantity("3");
  row->set_discount_type(v1::ProductRow::DISCOUNT_TYPE_PERCENT);
  row->set_discount("10");
  row->set_tax_rate("20");
  v1::ProductRow* second = request.add_rows();
  second->set_product_name("Support");
  second->set_price("50");
  second->set_quantity("1");
  ASSERT_OK_AND_ASSIGN(v1::Deal priced,
                       Call(&DealsStub::SetProductRows, request));
  ASSERT_EQ(priced.product_rows_size(), 2);
  EXPECT_EQ(priced.product_rows(0).net_total(), "270.00");
  EXPECT_EQ(priced.product_rows(0).tax_total(), "54.00");
  EXPECT_EQ(priced.amount(), "374.00");  // 324 + 50
  EXPECT_EQ(priced.tax_amount(), "54.00");

  // The amount follows the rows unless manual.
  v1::UpdateDealRequest update;
  update.mutable_deal()->set_id(deal.id());
  update.mutable_deal()->set_amount("1.00");
  update.mutable_update_mask()->add_paths("amount");
  EXPECT_THAT(
      Call(&DealsStub::UpdateDeal, update),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("manual_amount")));
  update.mutable_deal()->set_manual_amount(true);
  update.mutable_update_mask()->add_paths("manual_amount");
  ASSERT_OK_AND_ASSIGN(v1::Deal manual, Call(&DealsStub::UpdateDeal, update));
  EXPECT_EQ(manual.amount(), "1.00");

  request.mutable_rows(0)->set_quantity("0");
  EXPECT_THAT(Call(&DealsStub::SetProductRows, request),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("rows[0].quantity")));
}

TEST_F(DealsServiceTest, DeleteEmitsAndForgets) {
  ASSERT_OK_AND_ASSIGN(v1::Deal deal, CreateDeal(MakeDeal("Bye")));
  v1::DeleteDealRequest request;
  request.set_deal_id(deal.id());
  request.set_etag("\"99\"");
  EXPECT_THAT(Call(&DealsStub::DeleteDeal, request),
              StatusIs(absl::StatusCode::kAborted));
  request.set_etag(deal.etag());
  ASSERT_OK(Call(&DealsStub::DeleteDeal, request).status());
  EXPECT_THAT(GetDeal(deal.id()), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(Call(&DealsStub::DeleteDeal, request),
              StatusIs(absl::StatusCode::kNotFound));
  const v1::DealEvent event = Events().back();
  EXPECT_EQ(event.type(), v1::DEAL_EVENT_TYPE_DELETED);
  EXPECT_EQ(event.deal().title(), "Bye");
  v1::CountDealsRequest count;
  ASSERT_OK_AND_ASSIGN(
      v1::CountDealsResponse counted,
      CallAs(ServiceToken("pipeline-config"), &DealsStub::CountDeals, count));
  EXPECT_EQ(counted.count(), 0);
}

TEST_F(DealsServiceTest, CountDealsIsForServices) {
  ASSERT_OK(CreateDeal(MakeDeal("a")).status());
  ASSERT_OK_AND_ASSIGN(v1::Deal b, CreateDeal(MakeDeal("b")));
  ASSERT_OK(MoveStage(b.id(), "WON").status());
  v1::CountDealsRequest request;
  ASSERT_OK_AND_ASSIGN(v1::CountDealsResponse all,
                       CallAs(ServiceToken(), &DealsStub::CountDeals, request));
  EXPECT_EQ(all.count(), 2);
  request.set_stage_id("WON");
  ASSERT_OK_AND_ASSIGN(v1::CountDealsResponse won,
                       CallAs(ServiceToken(), &DealsStub::CountDeals, request));
  EXPECT_EQ(won.count(), 1);
  EXPECT_THAT(CallAs(UserToken(7), &DealsStub::CountDeals, request),
              StatusIs(absl::StatusCode::kPermissionDenied));
}

// pipeline-config counts "as of" the version that marked a stage deleting.
TEST_F(DealsServiceTest, CountDealsWaitsForAConfigVersion) {
  ASSERT_OK(CreateDeal(MakeDeal("a")).status());
  const int64_t version = pipeline_client().GetConfig()->version();
  v1::CountDealsRequest request;
  request.set_min_config_version(version);
  ASSERT_OK_AND_ASSIGN(v1::CountDealsResponse now,
                       CallAs(ServiceToken(), &DealsStub::CountDeals, request));
  EXPECT_EQ(now.count(), 1);
  // A version deals has not seen: UNAVAILABLE within the call's deadline.
  request.set_min_config_version(version + 1000);
  auto context = MakeContext(ServiceToken());
  context->set_deadline(std::chrono::system_clock::now() +
                        std::chrono::milliseconds(300));
  v1::CountDealsResponse response;
  const grpc::Status late =
      deals().CountDeals(context.get(), request, &response);
  EXPECT_EQ(late.error_code(), grpc::StatusCode::UNAVAILABLE)
      << late.error_message();
  EXPECT_THAT(late.error_message(), HasSubstr("not yet version"));
  request.set_min_config_version(-1);
  EXPECT_THAT(CallAs(ServiceToken(), &DealsStub::CountDeals, request),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("min_config_version")));
}

TEST_F(DealsServiceTest, ReplayStreamsRetainedEvents) {
  for (int i = 0; i < 5; ++i)
    ASSERT_OK(CreateDeal(MakeDeal(absl::StrCat("d", i))).status());
  v1::ReplayEventsRequest request;
  request.set_from_sequence(2);
  request.set_to_sequence(4);
  auto context = MakeContext(ServiceToken("reporting"));
  auto reader = deals().ReplayEvents(context.get(), request);
  std::vector<int64_t> sequences;
  v1::DealEvent event;
  while (reader->Read(&event)) sequences.push_back(event.sequence());
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_THAT(sequences, ElementsAre(2, 3, 4));

  auto user = MakeContext(UserToken(7));
  auto refused = deals().ReplayEvents(user.get(), request);
  while (refused->Read(&event)) {
  }
  EXPECT_EQ(refused->Finish().error_code(), grpc::PERMISSION_DENIED);

  request.set_to_sequence(1);
  auto bad = MakeContext(ServiceToken());
  auto bad_reader = deals().ReplayEvents(bad.get(), request);
  while (bad_reader->Read(&event)) {
  }
  EXPECT_EQ(bad_reader->Finish().error_code(), grpc::INVALID_ARGUMENT);
}

TEST_F(DealsServiceTest, ServiceChannelsAreForServices) {
  v1::CreateDealRequest request;
  *request.mutable_deal() = MakeDeal("Auto", 4);
  request.set_channel(v1::CHANNEL_AUTOMATION);
  EXPECT_THAT(
      Call(&DealsStub::CreateDeal, request),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("channel")));
  ASSERT_OK_AND_ASSIGN(v1::Deal deal,
                       CallAs(ServiceToken(), &DealsStub::CreateDeal, request));
  EXPECT_EQ(deal.created_by(), 0);
  const v1::DealEvent event = Events().back();
  EXPECT_EQ(event.channel(), v1::CHANNEL_AUTOMATION);
  EXPECT_EQ(event.actor_service(), "automation");
  // A service must name the assignee (there is no creator to default to).
  *request.mutable_deal() = MakeDeal("No assignee");
  EXPECT_THAT(
      CallAs(ServiceToken(), &DealsStub::CreateDeal, request),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("assignee_id")));
}

TEST_F(DealsServiceTest, DataSurvivesRestart) {
  ASSERT_OK_AND_ASSIGN(v1::Deal deal, CreateDeal(MakeDeal("Durable")));
  ASSERT_OK(MoveStage(deal.id(), "EXECUTING").status());
  RestartDeals();
  ASSERT_OK_AND_ASSIGN(v1::Deal again, GetDeal(deal.id()));
  EXPECT_EQ(again.stage_id(), "EXECUTING");
  ASSERT_OK_AND_ASSIGN(v1::Deal next, CreateDeal(MakeDeal("Next")));
  EXPECT_GT(next.id(), deal.id());  // ids are never reused
  EXPECT_EQ(Events().back().sequence(), 3);
}

// Boards of callers who read everything are cached; every write to the
// pipeline and every configuration change must show at once.
TEST_F(DealsServiceTest, BoardsFollowEveryWriteAndConfigChange) {
  v1::GetKanbanBoardRequest request;
  request.set_cards_per_column(5);
  auto column = [](const v1::KanbanBoard& board, const std::string& stage) {
    for (const auto& c : board.columns()) {
      if (c.stage_id() == stage) return c;
    }
    return v1::KanbanColumn();
  };
  ASSERT_OK_AND_ASSIGN(v1::KanbanBoard empty,
                       Call(&DealsStub::GetKanbanBoard, request));
  EXPECT_EQ(column(empty, "NEW").count(), 0);
  ASSERT_OK_AND_ASSIGN(v1::Deal deal,
                       CreateDeal(MakeDeal("Cached", 0, "10.50", "USD")));
  ASSERT_OK_AND_ASSIGN(v1::KanbanBoard one,
                       Call(&DealsStub::GetKanbanBoard, request));
  ASSERT_EQ(column(one, "NEW").count(), 1);
  ASSERT_EQ(column(one, "NEW").cards_size(), 1);
  EXPECT_EQ(column(one, "NEW").sums(0).amount(), "10.50");
  // The same board again (from the cache) is identical.
  ASSERT_OK_AND_ASSIGN(v1::KanbanBoard again,
                       Call(&DealsStub::GetKanbanBoard, request));
  EXPECT_EQ(again.SerializeAsString(), one.SerializeAsString());

  ASSERT_OK(MoveStage(deal.id(), "WON").status());
  ASSERT_OK_AND_ASSIGN(v1::KanbanBoard moved,
                       Call(&DealsStub::GetKanbanBoard, request));
  EXPECT_EQ(column(moved, "NEW").count(), 0);
  EXPECT_EQ(column(moved, "WON").count(), 1);
  EXPECT_EQ(column(moved, "WON").cards(0).stage_id(), "WON");

  v1::UpdateDealRequest update;
  update.mutable_deal()->set_id(deal.id());
  update.mutable_deal()->set_title("Renamed");
  update.mutable_update_mask()->add_paths("title");
  ASSERT_OK(Call(&DealsStub::UpdateDeal, update).status());
  ASSERT_OK_AND_ASSIGN(v1::KanbanBoard renamed,
                       Call(&DealsStub::GetKanbanBoard, request));
  EXPECT_EQ(column(renamed, "WON").cards(0).title(), "Renamed");

  pv1::UpdateStageRequest stage;
  stage.mutable_stage()->set_pipeline_id(0);
  stage.mutable_stage()->set_stage_id("WON");
  stage.mutable_stage()->set_name("Closed won");
  stage.mutable_update_mask()->add_paths("name");
  ASSERT_OK(Call(&PipelinesStub::UpdateStage, stage).status());
  WaitForConfigSync();
  ASSERT_OK_AND_ASSIGN(v1::KanbanBoard config,
                       Call(&DealsStub::GetKanbanBoard, request));
  EXPECT_EQ(column(config, "WON").stage_name(), "Closed won");
}

TEST_F(DealsServiceTest, EveryRpcRefusesBadTokens) {
  using Rpc = std::function<absl::Status(const std::string&)>;
  std::vector<std::pair<std::string, Rpc>> rpcs = {
      {"CreateDeal",
       [&](const std::string& t) {
         return CallAs(t, &DealsStub::CreateDeal, v1::CreateDealRequest())
             .status();
       }},
      {"GetDeal",
       [&](const std::string& t) {
         return CallAs(t, &DealsStub::GetDeal, v1::GetDealRequest()).status();
       }},
      {"UpdateDeal",
       [&](const std::string& t) {
         return CallAs(t, &DealsStub::UpdateDeal, v1::UpdateDealRequest())
             .status();
       }},
      {"DeleteDeal",
       [&](const std::string& t) {
         return CallAs(t, &DealsStub::DeleteDeal, v1::DeleteDealRequest())
             .status();
       }},
      {"MoveDealStage",
       [&](const std::string& t) {
         return CallAs(t, &DealsStub::MoveDealStage, v1::MoveDealStageRequest())
             .status();
       }},
      {"MoveDealToPipeline",
       [&](const std::string& t) {
         return CallAs(t, &DealsStub::MoveDealToPipeline,
                       v1::MoveDealToPipelineRequest())
             .status();
       }},
      {"SetProductRows",
       [&](const std::string& t) {
         return CallAs(t, &DealsStub::SetProductRows,
                       v1::SetProductRowsRequest())
             .status();
       }},
      {"ListDeals",
       [&](const std::string& t) {
         return CallAs(t, &DealsStub::ListDeals, v1::ListDealsRequest())
             .status();
       }},
      {"GetKanbanBoard",
       [&](const std::string& t) {
         return CallAs(t, &DealsStub::GetKanbanBoard,
                       v1::GetKanbanBoardRequest())
             .status();
       }},
      {"ListKanbanColumn",
       [&](const std::string& t) {
         return CallAs(t, &DealsStub::ListKanbanColumn,
                       v1::ListKanbanColumnRequest())
             .status();
       }},
      {"BatchUpdateDeals",
       [&](const std::string& t) {
         return CallAs(t, &DealsStub::BatchUpdateDeals,
                       v1::BatchUpdateDealsRequest())
             .status();
       }},
      {"ListStageHistory",
       [&](const std::string& t) {
         return CallAs(t, &DealsStub::ListStageHistory,
                       v1::ListStageHistoryRequest())
             .status();
       }},
      {"GetTimeInStage",
       [&](const std::string& t) {
         return CallAs(t, &DealsStub::GetTimeInStage,
                       v1::GetTimeInStageRequest())
             .status();
       }},
      {"CountDeals",
       [&](const std::string& t) {
         return CallAs(t, &DealsStub::CountDeals, v1::CountDealsRequest())
             .status();
       }},
      {"ReplayEvents",
       [&](const std::string& t) {
         auto context = MakeContext(t);
         auto reader =
             deals().ReplayEvents(context.get(), v1::ReplayEventsRequest());
         v1::DealEvent event;
         while (reader->Read(&event)) {
         }
         return common::FromGrpcStatus(reader->Finish(), "");
       }},
  };
  ExpectBadTokensRefused(rpcs);
}

}  // namespace
}  // namespace crm::deals
