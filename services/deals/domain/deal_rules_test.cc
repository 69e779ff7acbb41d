#include "services/deals/domain/deal_rules.h"

#include "gtest/gtest.h"

#include "common/pipelines_client/fake_pipeline_client.h"
#include "common/status/status_matchers.h"

namespace crm::deals {
namespace {

namespace pv1 = ::crm::pipelines::v1;
using ::crm::testing::IsOk;
using ::crm::testing::StatusIs;
using ::testing::HasSubstr;

constexpr absl::StatusCode kInvalid = absl::StatusCode::kInvalidArgument;

common::StageView Stage(int64_t pipeline, const std::string& id, int sort,
                        pv1::StageSemantics semantics, int probability) {
  common::StageView stage;
  stage.pipeline_id = pipeline;
  stage.stage_id = id;
  stage.name = id;
  stage.sort = sort;
  stage.semantics = semantics;
  stage.default_probability = probability;
  return stage;
}

common::ConfigView MakeConfig() {
  common::PipelineView zero;
  zero.id = 0;
  zero.is_default = true;
  zero.stages = {Stage(0, "NEW", 10, pv1::STAGE_SEMANTICS_PROCESS, 10),
                 Stage(0, "WORK", 20, pv1::STAGE_SEMANTICS_PROCESS, 50),
                 Stage(0, "WON", 30, pv1::STAGE_SEMANTICS_SUCCESS, 100),
                 Stage(0, "LOSE", 40, pv1::STAGE_SEMANTICS_FAILURE, 0)};
  common::PipelineView three;
  three.id = 3;
  three.stages = {Stage(3, "C3:NEW", 10, pv1::STAGE_SEMANTICS_PROCESS, 20),
                  Stage(3, "C3:WON", 20, pv1::STAGE_SEMANTICS_SUCCESS, 100),
                  Stage(3, "C3:LOSE", 30, pv1::STAGE_SEMANTICS_FAILURE, 0)};
  std::vector<pv1::FieldDefinition> fields;
  auto field = [&](const std::string& code, pv1::FieldType type,
                   bool multiple = false,
                   bool mandatory = false) -> pv1::FieldDefinition& {
    fields.push_back(
        common::FieldDefinitionProto(code, type, multiple, mandatory));
    return fields.back();
  };
  field("UF_CRM_TEXT", pv1::FIELD_TYPE_STRING);
  field("UF_CRM_COUNT", pv1::FIELD_TYPE_INTEGER);
  field("UF_CRM_RATIO", pv1::FIELD_TYPE_DOUBLE);
  field("UF_CRM_FLAG", pv1::FIELD_TYPE_BOOLEAN);
  field("UF_CRM_DAY", pv1::FIELD_TYPE_DATE);
  field("UF_CRM_AT", pv1::FIELD_TYPE_DATETIME);
  field("UF_CRM_PRICE", pv1::FIELD_TYPE_MONEY);
  field("UF_CRM_OWNER", pv1::FIELD_TYPE_EMPLOYEE);
  field("UF_CRM_SITE", pv1::FIELD_TYPE_URL);
  pv1::FieldDefinition& tags =
      field("UF_CRM_TAGS", pv1::FIELD_TYPE_ENUMERATION, true);
  tags.add_options()->set_id(11);
  tags.add_options()->set_id(12);
  return common::ConfigView(1, {zero, three}, fields);
}

class DealRulesTest : public ::testing::Test {
 protected:
  NewDealContext Context() {
    NewDealContext context;
    context.deal_id = 1024;
    context.creator_id = 7;
    context.now = absl::FromCivil(absl::CivilSecond(2026, 11, 27, 10, 0, 0),
                                  absl::UTCTimeZone());
    return context;
  }
  absl::StatusOr<v1::Deal> Create(const v1::Deal& deal) {
    return PrepareNewDeal(deal, config_, Context());
  }
  v1::Deal WithField(const std::string& code, std::vector<std::string> values) {
    v1::Deal deal;
    auto& field = (*deal.mutable_custom_fields())[code];
    for (auto& value : values) field.add_values(value);
    return deal;
  }

  common::ConfigView config_ = MakeConfig();
};

TEST_F(DealRulesTest, DefaultsOfAnEmptyDeal) {
  ASSERT_OK_AND_ASSIGN(v1::Deal deal, Create(v1::Deal()));
  EXPECT_EQ(deal.id(), 1024);
  EXPECT_EQ(deal.title(), "Deal #1024");
  EXPECT_EQ(deal.pipeline_id(), 0);
  EXPECT_EQ(deal.stage_id(), "NEW");
  EXPECT_EQ(deal.stage_semantics(), pv1::STAGE_SEMANTICS_PROCESS);
  EXPECT_FALSE(deal.closed());
  EXPECT_EQ(deal.probability(), 10);
  EXPECT_EQ(deal.assignee_id(), 7);
  EXPECT_EQ(deal.begin_date(), "2026-11-27");
  EXPECT_EQ(deal.close_date(), "2026-12-04");
  EXPECT_TRUE(deal.opened());
  EXPECT_EQ(deal.amount(), "0.00");
  EXPECT_EQ(deal.created_by(), 7);
  EXPECT_EQ(deal.create_time().seconds(), absl::ToUnixSeconds(Context().now));
}

TEST_F(DealRulesTest, GivenValuesWinAndOutputOnlyFieldsAreIgnored) {
  v1::Deal input;
  input.set_id(5);
  input.set_closed(true);
  input.set_title("Big one");
  input.set_pipeline_id(3);
  input.set_stage_id("C3:NEW");
  input.set_probability(0);
  input.set_opened(false);
  input.set_amount("1500.5");
  input.set_currency("EUR");
  ASSERT_OK_AND_ASSIGN(v1::Deal deal, Create(input));
  EXPECT_EQ(deal.id(), 1024);
  EXPECT_FALSE(deal.closed());
  EXPECT_EQ(deal.title(), "Big one");
  EXPECT_EQ(deal.probability(), 0);  // an explicit 0 is kept
  EXPECT_FALSE(deal.opened());
  EXPECT_EQ(deal.amount(), "1500.50");
}

TEST_F(DealRulesTest, CreatedIntoAClosedStageIsClosedToday) {
  v1::Deal input;
  input.set_stage_id("WON");
  ASSERT_OK_AND_ASSIGN(v1::Deal deal, Create(input));
  EXPECT_TRUE(deal.closed());
  EXPECT_EQ(deal.close_date(), "2026-11-27");
  EXPECT_EQ(deal.probability(), 100);
}

TEST_F(DealRulesTest, StageMustBelongToThePipeline) {
  v1::Deal input;
  input.set_pipeline_id(3);
  // The bare id is resolved in the deal's pipeline, as MoveDealStage does.
  input.set_stage_id("WON");
  ASSERT_OK_AND_ASSIGN(v1::Deal won, Create(input));
  EXPECT_EQ(won.stage_id(), "C3:WON");
  EXPECT_TRUE(won.closed());
  for (const char* other : {"WORK", "C4:NEW", "C3:WORK"}) {
    SCOPED_TRACE(other);
    input.set_stage_id(other);
    EXPECT_THAT(Create(input), StatusIs(kInvalid, HasSubstr("deal.stage_id")));
  }
  input.set_pipeline_id(0);
  input.set_stage_id("C3:NEW");
  EXPECT_THAT(Create(input), StatusIs(kInvalid, HasSubstr("deal.stage_id")));
  input.set_stage_id("NEW");
  input.set_pipeline_id(9);
  EXPECT_THAT(Create(input), StatusIs(kInvalid, HasSubstr("deal.pipeline_id")));
}

// pipeline-config marks what it is deleting; no deal may enter it.
TEST_F(DealRulesTest, NoDealEntersWhatIsBeingDeleted) {
  common::ConfigView base = MakeConfig();
  std::vector<common::PipelineView> pipelines = base.pipelines();
  pipelines[0].stages[1].deleting = true;  // WORK
  pipelines[1].deleting = true;            // pipeline 3
  const common::ConfigView config(2, pipelines, base.fields());
  v1::Deal input;
  input.set_stage_id("WORK");
  EXPECT_THAT(
      PrepareNewDeal(input, config, Context()),
      StatusIs(absl::StatusCode::kFailedPrecondition,
               HasSubstr("deal.stage_id: stage WORK is being deleted")));
  input.set_stage_id("NEW");
  EXPECT_THAT(PrepareNewDeal(input, config, Context()), IsOk());
  input.set_pipeline_id(3);
  input.clear_stage_id();
  EXPECT_THAT(
      PrepareNewDeal(input, config, Context()),
      StatusIs(absl::StatusCode::kFailedPrecondition,
               HasSubstr("deal.pipeline_id: pipeline 3 is being deleted")));

  const common::StageView* work = config.FindStage(0, "WORK");
  const common::StageView* three_won = config.FindStage(3, "C3:WON");
  ASSERT_NE(work, nullptr);
  ASSERT_NE(three_won, nullptr);
  EXPECT_THAT(CheckMayEnter(config, *work, false, "stage_id"),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("stage_id: stage WORK")));
  // Within a pipeline being deleted a deal may still move (its deals keep
  // the delete from succeeding anyway); it may not arrive from elsewhere.
  EXPECT_THAT(CheckMayEnter(config, *three_won, false, "stage_id"), IsOk());
  EXPECT_THAT(CheckMayEnter(config, *three_won, true, "pipeline_id"),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("pipeline_id: pipeline 3")));
  EXPECT_THAT(CheckMayEnter(config, *config.FindStage(0, "NEW"), true, "x"),
              IsOk());
}

TEST_F(DealRulesTest, MoneyRules) {
  v1::Deal input;
  input.set_amount("10");
  EXPECT_THAT(Create(input),
              StatusIs(kInvalid, HasSubstr("deal.currency: required")));
  input.set_currency("usd");
  EXPECT_THAT(Create(input), StatusIs(kInvalid, HasSubstr("deal.currency")));
  input.set_currency("JPY");
  input.set_amount("10.5");
  EXPECT_THAT(Create(input), StatusIs(kInvalid, HasSubstr("0 decimal places")));
  input.set_amount("-1");
  EXPECT_THAT(Create(input),
              StatusIs(kInvalid, HasSubstr("deal.amount: must be >= 0")));
  input.set_amount("1e3");
  EXPECT_THAT(Create(input), StatusIs(kInvalid, HasSubstr("deal.amount")));
  input.set_amount("1000");
  ASSERT_OK_AND_ASSIGN(v1::Deal deal, Create(input));
  EXPECT_EQ(deal.amount(), "1000");
}

TEST_F(DealRulesTest, FieldChecks) {
  v1::Deal input;
  input.set_title(std::string(256, 'x'));
  EXPECT_THAT(Create(input), StatusIs(kInvalid, HasSubstr("deal.title")));
  input.set_title("ok");
  input.set_probability(101);
  EXPECT_THAT(Create(input), StatusIs(kInvalid, HasSubstr("deal.probability")));
  input.clear_probability();
  input.set_close_date("2026-02-30");
  EXPECT_THAT(Create(input), StatusIs(kInvalid, HasSubstr("deal.close_date")));
  input.set_close_date("27.11.2026");
  EXPECT_THAT(Create(input), StatusIs(kInvalid, HasSubstr("deal.close_date")));
  input.set_close_date("2028-02-29");
  input.add_contact_ids(4);
  input.add_contact_ids(4);
  EXPECT_THAT(Create(input), StatusIs(kInvalid, HasSubstr("deal.contact_ids")));
  input.clear_contact_ids();
  input.add_observer_ids(-1);
  EXPECT_THAT(Create(input),
              StatusIs(kInvalid, HasSubstr("deal.observer_ids")));
  input.clear_observer_ids();
  EXPECT_THAT(Create(input), IsOk());
}

TEST_F(DealRulesTest, CustomFieldValuesAreTyped) {
  struct Case {
    const char* code;
    const char* good;
    const char* bad;
  };
  for (const Case& c :
       {Case{"UF_CRM_COUNT", "42", "4.2"}, Case{"UF_CRM_RATIO", "1.5", "abc"},
        Case{"UF_CRM_FLAG", "true", "yes"},
        Case{"UF_CRM_DAY", "2026-11-27", "2026-13-01"},
        Case{"UF_CRM_AT", "2026-11-27T10:00:00Z", "2026-11-27 10:00"},
        Case{"UF_CRM_PRICE", "12.50|EUR", "12.50"},
        Case{"UF_CRM_OWNER", "7", "0"},
        Case{"UF_CRM_SITE", "https://example.org/a", "ftp://x"},
        Case{"UF_CRM_TAGS", "12", "13"}}) {
    SCOPED_TRACE(c.code);
    EXPECT_THAT(Create(WithField(c.code, {c.good})), IsOk());
    EXPECT_THAT(Create(WithField(c.code, {c.bad})),
                StatusIs(kInvalid, HasSubstr(absl::StrCat("deal.custom_fields[",
                                                          c.code, "]"))));
  }
}

TEST_F(DealRulesTest, CustomFieldMultiplicityUnknownCodesAndMandatory) {
  EXPECT_THAT(Create(WithField("UF_CRM_TAGS", {"11", "12"})), IsOk());
  EXPECT_THAT(Create(WithField("UF_CRM_COUNT", {"1", "2"})),
              StatusIs(kInvalid, HasSubstr("single value")));
  EXPECT_THAT(Create(WithField("UF_CRM_NOPE", {"1"})),
              StatusIs(kInvalid, HasSubstr("no such custom field")));

  std::vector<pv1::FieldDefinition> fields = config_.fields();
  pv1::FieldDefinition must;
  must.set_code("UF_CRM_MUST");
  must.set_type(pv1::FIELD_TYPE_STRING);
  must.set_mandatory(true);
  fields.push_back(must);
  config_ = common::ConfigView(2, config_.pipelines(), fields);
  EXPECT_THAT(Create(v1::Deal()),
              StatusIs(kInvalid, HasSubstr("UF_CRM_MUST]: required")));
  EXPECT_THAT(Create(WithField("UF_CRM_MUST", {})),
              StatusIs(kInvalid, HasSubstr("required")));
  EXPECT_THAT(Create(WithField("UF_CRM_MUST", {"here"})), IsOk());
}

TEST_F(DealRulesTest, ApplyStageClosesAndReopensKeepingTheCloseDate) {
  ASSERT_OK_AND_ASSIGN(v1::Deal deal, Create(v1::Deal()));
  const absl::Time later = absl::FromCivil(
      absl::CivilSecond(2026, 12, 1, 9, 0, 0), absl::UTCTimeZone());
  ApplyStage(&deal, *config_.FindStage(0, "LOSE"), later, absl::UTCTimeZone());
  EXPECT_TRUE(deal.closed());
  EXPECT_EQ(deal.stage_semantics(), pv1::STAGE_SEMANTICS_FAILURE);
  EXPECT_EQ(deal.close_date(), "2026-12-01");
  // Closed to closed keeps the first close date.
  ApplyStage(&deal, *config_.FindStage(0, "WON"), later + absl::Hours(48),
             absl::UTCTimeZone());
  EXPECT_EQ(deal.close_date(), "2026-12-01");
  // Reopening keeps it too.
  ApplyStage(&deal, *config_.FindStage(0, "WORK"), later + absl::Hours(72),
             absl::UTCTimeZone());
  EXPECT_FALSE(deal.closed());
  EXPECT_EQ(deal.stage_id(), "WORK");
  EXPECT_EQ(deal.close_date(), "2026-12-01");
}

TEST_F(DealRulesTest, DaysFollowTheZone) {
  const absl::Time late = absl::FromCivil(
      absl::CivilSecond(2026, 11, 27, 23, 30, 0), absl::UTCTimeZone());
  EXPECT_EQ(DayOf(late, absl::UTCTimeZone()), "2026-11-27");
  EXPECT_EQ(DayOf(late, absl::FixedTimeZone(3600)), "2026-11-28");
  EXPECT_EQ(DayOf(late, absl::UTCTimeZone(), 7), "2026-12-04");
}

}  // namespace
}  // namespace crm::deals
