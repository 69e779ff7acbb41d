#include "common/deal_filter/deal_query.h"

#include <algorithm>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "common/deal_filter/filter_builders.h"
#include "common/deal_filter/text_fold.h"
#include "common/money/decimal.h"
#include "common/pipelines_client/fake_pipeline_client.h"
#include "common/status/status_matchers.h"

namespace crm::common {
namespace {

namespace v1 = ::crm::deals::v1;
namespace pv1 = ::crm::pipelines::v1;
using ::crm::testing::IsOk;
using ::crm::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Optional;
using ::testing::Pair;

constexpr absl::StatusCode kInvalid = absl::StatusCode::kInvalidArgument;
constexpr auto kEq = v1::Condition::OPERATOR_EQ;
constexpr auto kNe = v1::Condition::OPERATOR_NE;
constexpr auto kGt = v1::Condition::OPERATOR_GT;
constexpr auto kGe = v1::Condition::OPERATOR_GE;
constexpr auto kLt = v1::Condition::OPERATOR_LT;
constexpr auto kLe = v1::Condition::OPERATOR_LE;
constexpr auto kIn = v1::Condition::OPERATOR_IN;
constexpr auto kNotIn = v1::Condition::OPERATOR_NOT_IN;
constexpr auto kContains = v1::Condition::OPERATOR_CONTAINS;

common::ConfigView MakeConfig() {
  common::PipelineView zero;
  zero.id = 0;
  zero.is_default = true;
  std::vector<pv1::FieldDefinition> fields;
  auto field = [&](const std::string& code, pv1::FieldType type,
                   bool multiple = false) -> pv1::FieldDefinition& {
    fields.push_back(common::FieldDefinitionProto(code, type, multiple));
    return fields.back();
  };
  field("UF_CRM_TEXT", pv1::FIELD_TYPE_STRING);
  field("UF_CRM_SITE", pv1::FIELD_TYPE_URL);
  field("UF_CRM_COUNT", pv1::FIELD_TYPE_INTEGER);
  field("UF_CRM_RATIO", pv1::FIELD_TYPE_DOUBLE);
  field("UF_CRM_FLAG", pv1::FIELD_TYPE_BOOLEAN);
  field("UF_CRM_DAY", pv1::FIELD_TYPE_DATE);
  field("UF_CRM_AT", pv1::FIELD_TYPE_DATETIME);
  field("UF_CRM_PRICE", pv1::FIELD_TYPE_MONEY);
  field("UF_CRM_OWNER", pv1::FIELD_TYPE_EMPLOYEE);
  // Option 12 comes first in the definition although its id is larger.
  pv1::FieldDefinition& kind =
      field("UF_CRM_KIND", pv1::FIELD_TYPE_ENUMERATION);
  auto option = [](pv1::FieldDefinition* definition, int64_t id, int sort) {
    pv1::EnumOption* added = definition->add_options();
    added->set_id(id);
    added->set_sort(sort);
    added->set_value(absl::StrCat("option ", id));
  };
  option(&kind, 11, 20);
  option(&kind, 12, 10);
  option(&kind, 13, 30);
  pv1::FieldDefinition& tags =
      field("UF_CRM_TAGS", pv1::FIELD_TYPE_ENUMERATION, true);
  option(&tags, 21, 10);
  option(&tags, 22, 20);
  option(&tags, 23, 30);
  field("UF_CRM_NUMS", pv1::FIELD_TYPE_INTEGER, true);
  field("UF_CRM_NOTES", pv1::FIELD_TYPE_STRING, true);
  return common::ConfigView(1, {zero}, fields);
}

using filters::And;
using filters::Group;
using filters::Or;
using filters::Where;

void SetCustom(v1::Deal* deal, const std::string& code,
               const std::vector<std::string>& values) {
  v1::FieldValues& field = (*deal->mutable_custom_fields())[code];
  field.clear_values();
  for (const std::string& value : values) field.add_values(value);
}

int64_t UnixSeconds(int y, int m, int d, int hh = 0, int mm = 0) {
  return absl::ToUnixSeconds(absl::FromCivil(
      absl::CivilSecond(y, m, d, hh, mm, 0), absl::UTCTimeZone()));
}

v1::Deal SampleDeal() {
  v1::Deal deal;
  deal.set_id(1025);
  deal.set_title("Grande Negócio");
  deal.set_pipeline_id(0);
  deal.set_stage_id("NEW");
  deal.set_stage_semantics(pv1::STAGE_SEMANTICS_PROCESS);
  deal.set_amount("10.00");
  deal.set_currency("EUR");
  deal.set_probability(40);
  deal.set_assignee_id(7);
  deal.set_company_id(300);
  deal.add_contact_ids(41);
  deal.add_contact_ids(42);
  deal.set_source("Web form");
  deal.set_begin_date("2026-01-05");
  deal.set_close_date("2026-01-12");
  deal.set_comments("Called twice; wants a DISCOUNT");
  deal.set_lead_id(0);
  deal.set_created_by(7);
  deal.mutable_create_time()->set_seconds(UnixSeconds(2026, 1, 5, 9, 30));
  return deal;
}

class DealQueryTest : public ::testing::Test {
 protected:
  absl::StatusOr<CompiledFilter> Compile(const v1::Filter& filter) const {
    return CompiledFilter::Compile(filter, config_);
  }

  // Whether `filter`, which must compile, matches `deal`.
  bool Matches(const v1::Filter& filter, const v1::Deal& deal) const {
    absl::StatusOr<CompiledFilter> compiled = Compile(filter);
    EXPECT_THAT(compiled, IsOk());
    return compiled.ok() && compiled->Matches(deal);
  }

  bool Matches(const v1::Filter& filter) const {
    return Matches(filter, deal_);
  }

  common::ConfigView config_ = MakeConfig();
  v1::Deal deal_ = SampleDeal();
};

// ---- Empty filters ----

TEST_F(DealQueryTest, DefaultFilterIsEmptyAndMatchesEverything) {
  CompiledFilter filter;
  EXPECT_TRUE(filter.empty());
  EXPECT_TRUE(filter.Matches(deal_));
  EXPECT_TRUE(filter.Matches(v1::Deal()));
  EXPECT_EQ(filter.fingerprint(), "");
  EXPECT_EQ(filter.pipeline_id(), std::nullopt);
  EXPECT_EQ(filter.stage_ids(), std::nullopt);
  EXPECT_EQ(filter.assignee_ids(), std::nullopt);
  EXPECT_EQ(filter.close_date_range(), std::nullopt);
}

TEST_F(DealQueryTest, UnsetTopLevelFilterCompilesToTheEmptyFilter) {
  ASSERT_OK_AND_ASSIGN(CompiledFilter filter, Compile(v1::Filter()));
  EXPECT_TRUE(filter.empty());
  EXPECT_TRUE(filter.Matches(deal_));
}

TEST_F(DealQueryTest, EmptyGroupsFollowLogic) {
  ASSERT_OK_AND_ASSIGN(CompiledFilter all, Compile(And({})));
  EXPECT_FALSE(all.empty());
  EXPECT_TRUE(all.Matches(deal_));
  ASSERT_OK_AND_ASSIGN(CompiledFilter none, Compile(Or({})));
  EXPECT_FALSE(none.Matches(deal_));
}

// ---- Operators per type family ----

TEST_F(DealQueryTest, IntegerOperators) {
  EXPECT_TRUE(Matches(Where("assignee_id", kEq, {"7"})));
  EXPECT_FALSE(Matches(Where("assignee_id", kEq, {"8"})));
  EXPECT_TRUE(Matches(Where("assignee_id", kNe, {"8"})));
  EXPECT_FALSE(Matches(Where("assignee_id", kNe, {"7"})));
  EXPECT_TRUE(Matches(Where("company_id", kGt, {"299"})));
  EXPECT_FALSE(Matches(Where("company_id", kGt, {"300"})));
  EXPECT_TRUE(Matches(Where("company_id", kGe, {"300"})));
  EXPECT_TRUE(Matches(Where("company_id", kLt, {"301"})));
  EXPECT_FALSE(Matches(Where("company_id", kLt, {"300"})));
  EXPECT_TRUE(Matches(Where("company_id", kLe, {"300"})));
  EXPECT_TRUE(Matches(Where("assignee_id", kIn, {"3", "7", "9"})));
  EXPECT_FALSE(Matches(Where("assignee_id", kIn, {"3", "9"})));
  EXPECT_TRUE(Matches(Where("assignee_id", kNotIn, {"3", "9"})));
  EXPECT_FALSE(Matches(Where("assignee_id", kNotIn, {"7"})));
  // Negative numbers order below positive ones.
  EXPECT_TRUE(Matches(Where("lead_id", kGt, {"-5"})));
  EXPECT_TRUE(Matches(Where("id", kEq, {"1025"})));
  EXPECT_TRUE(Matches(Where("created_by", kEq, {"7"})));
  EXPECT_TRUE(Matches(Where("updated_by", kEq, {"0"})));
  EXPECT_TRUE(Matches(Where("moved_by", kLt, {"1"})));
  EXPECT_TRUE(Matches(Where("pipeline_id", kEq, {"0"})));
}

TEST_F(DealQueryTest, ProbabilityUnsetIsNoValue) {
  EXPECT_TRUE(Matches(Where("probability", kEq, {"40"})));
  EXPECT_TRUE(Matches(Where("probability", kGt, {"39"})));
  deal_.clear_probability();
  EXPECT_FALSE(Matches(Where("probability", kEq, {"0"})));
  EXPECT_FALSE(Matches(Where("probability", kLt, {"100"})));
  EXPECT_FALSE(Matches(Where("probability", kGe, {"0"})));
  EXPECT_FALSE(Matches(Where("probability", kIn, {"0", "40"})));
  EXPECT_TRUE(Matches(Where("probability", kNe, {"0"})));
  EXPECT_TRUE(Matches(Where("probability", kNotIn, {"0", "40"})));
  // An explicit 0 is a value.
  deal_.set_probability(0);
  EXPECT_TRUE(Matches(Where("probability", kEq, {"0"})));
  EXPECT_FALSE(Matches(Where("probability", kNe, {"0"})));
}

TEST_F(DealQueryTest, DecimalsCompareExactlyAndNumerically) {
  deal_.set_amount("9.5");
  EXPECT_TRUE(Matches(Where("amount", kLt, {"10"})));
  EXPECT_FALSE(Matches(Where("amount", kGt, {"10"})));
  EXPECT_TRUE(Matches(Where("amount", kEq, {"9.50"})));
  EXPECT_TRUE(Matches(Where("amount", kEq, {"009.500000"})));
  EXPECT_TRUE(Matches(Where("amount", kGt, {"9.499999"})));
  EXPECT_FALSE(Matches(Where("amount", kGt, {"9.5"})));
  EXPECT_TRUE(Matches(Where("amount", kGe, {"9.5"})));
  EXPECT_TRUE(Matches(Where("amount", kLe, {"9.5"})));
  EXPECT_TRUE(Matches(Where("amount", kNe, {"9.51"})));
  EXPECT_TRUE(Matches(Where("amount", kIn, {"1", "9.5"})));
  EXPECT_FALSE(Matches(Where("amount", kNotIn, {"1", "9.5"})));
  EXPECT_TRUE(Matches(Where("amount", kGt, {"-1"})));
  // Past the precision of a double, still exact.
  deal_.set_amount("1234567890123.000001");
  EXPECT_TRUE(Matches(Where("amount", kGt, {"1234567890123"})));
  EXPECT_FALSE(Matches(Where("amount", kEq, {"1234567890123"})));
  // The currency does not take part.
  deal_.set_currency("JPY");
  EXPECT_TRUE(Matches(Where("amount", kGe, {"1234567890123.000001"})));
  // tax_amount is empty until computed: zero.
  EXPECT_TRUE(Matches(Where("tax_amount", kEq, {"0"})));
  deal_.set_tax_amount("2.10");
  EXPECT_TRUE(Matches(Where("tax_amount", kEq, {"2.1"})));
}

TEST_F(DealQueryTest, TextEqualityAndContainsIgnoreCaseAndAccents) {
  EXPECT_TRUE(Matches(Where("title", kEq, {"grande negocio"})));
  EXPECT_TRUE(Matches(Where("title", kEq, {"GRANDE NEGÓCIO"})));
  EXPECT_FALSE(Matches(Where("title", kEq, {"grande"})));
  EXPECT_TRUE(Matches(Where("title", kNe, {"grande"})));
  EXPECT_TRUE(Matches(Where("title", kContains, {"negocio"})));
  EXPECT_TRUE(Matches(Where("title", kContains, {"NEGÓ"})));
  EXPECT_FALSE(Matches(Where("title", kContains, {"negocios"})));
  EXPECT_TRUE(Matches(Where("comments", kContains, {"discount"})));
  EXPECT_TRUE(Matches(Where("source", kContains, {"FORM"})));
  EXPECT_TRUE(Matches(Where("currency", kEq, {"eur"})));
  EXPECT_TRUE(Matches(Where("currency", kContains, {"U"})));
  EXPECT_TRUE(Matches(Where("currency", kIn, {"usd", "Eur"})));
  EXPECT_TRUE(Matches(Where("currency", kNotIn, {"usd"})));
  // Order is the folded order: "grande negocio" < "h".
  EXPECT_TRUE(Matches(Where("title", kLt, {"H"})));
  EXPECT_TRUE(Matches(Where("title", kGt, {"GRANDE"})));
  EXPECT_TRUE(Matches(Where("title", kGe, {"Grande Negocio"})));
  EXPECT_TRUE(Matches(Where("title", kLe, {"grande negócio"})));
}

TEST_F(DealQueryTest, StageIdIsExact) {
  EXPECT_TRUE(Matches(Where("stage_id", kEq, {"NEW"})));
  EXPECT_FALSE(Matches(Where("stage_id", kEq, {"new"})));
  EXPECT_TRUE(Matches(Where("stage_id", kIn, {"WON", "NEW"})));
  EXPECT_TRUE(Matches(Where("stage_id", kNotIn, {"WON"})));
  EXPECT_TRUE(Matches(Where("stage_id", kNe, {"WON"})));
}

TEST_F(DealQueryTest, StageSemanticsByEitherName) {
  EXPECT_TRUE(Matches(Where("stage_semantics", kEq, {"PROCESS"})));
  EXPECT_TRUE(
      Matches(Where("stage_semantics", kEq, {"STAGE_SEMANTICS_PROCESS"})));
  EXPECT_FALSE(Matches(Where("stage_semantics", kEq, {"SUCCESS"})));
  EXPECT_TRUE(Matches(Where("stage_semantics", kIn, {"SUCCESS", "PROCESS"})));
  EXPECT_TRUE(
      Matches(Where("stage_semantics", kNotIn, {"SUCCESS", "FAILURE"})));
  EXPECT_TRUE(Matches(Where("stage_semantics", kLt, {"SUCCESS"})));
  EXPECT_THAT(
      Compile(Where("stage_semantics", kEq, {"WON"})),
      StatusIs(kInvalid, HasSubstr("filter.condition.values[0]: "
                                   "\"WON\" is not a stage semantics")));
  EXPECT_THAT(Compile(Where("stage_semantics", kEq, {"UNSPECIFIED"})),
              StatusIs(kInvalid));
}

TEST_F(DealQueryTest, Booleans) {
  EXPECT_TRUE(Matches(Where("closed", kEq, {"false"})));
  EXPECT_TRUE(Matches(Where("closed", kNe, {"true"})));
  EXPECT_TRUE(Matches(Where("manual_amount", kEq, {"false"})));
  // opened is unset in the sample: it counts as true.
  ASSERT_FALSE(deal_.has_opened());
  EXPECT_TRUE(Matches(Where("opened", kEq, {"true"})));
  EXPECT_FALSE(Matches(Where("opened", kNe, {"true"})));
  deal_.set_opened(false);
  EXPECT_TRUE(Matches(Where("opened", kEq, {"false"})));
  EXPECT_THAT(Compile(Where("closed", kEq, {"yes"})),
              StatusIs(kInvalid, HasSubstr("\"yes\" is not true or false")));
}

TEST_F(DealQueryTest, RepeatedIdsMatchAnyOrNone) {
  EXPECT_TRUE(Matches(Where("contact_ids", kEq, {"42"})));
  EXPECT_FALSE(Matches(Where("contact_ids", kEq, {"43"})));
  EXPECT_TRUE(Matches(Where("contact_ids", kIn, {"1", "41"})));
  EXPECT_FALSE(Matches(Where("contact_ids", kIn, {"1", "2"})));
  EXPECT_FALSE(Matches(Where("contact_ids", kNe, {"41"})));
  EXPECT_TRUE(Matches(Where("contact_ids", kNe, {"43"})));
  EXPECT_FALSE(Matches(Where("contact_ids", kNotIn, {"1", "42"})));
  EXPECT_TRUE(Matches(Where("contact_ids", kNotIn, {"1", "2"})));
  // No observers: nothing equals, everything differs.
  EXPECT_FALSE(Matches(Where("observer_ids", kEq, {"7"})));
  EXPECT_TRUE(Matches(Where("observer_ids", kNe, {"7"})));
  EXPECT_TRUE(Matches(Where("observer_ids", kNotIn, {"7"})));
  deal_.add_observer_ids(7);
  EXPECT_TRUE(Matches(Where("observer_ids", kIn, {"7"})));
}

TEST_F(DealQueryTest, Dates) {
  EXPECT_TRUE(Matches(Where("close_date", kEq, {"2026-01-12"})));
  EXPECT_TRUE(Matches(Where("close_date", kGt, {"2026-01-11"})));
  EXPECT_FALSE(Matches(Where("close_date", kGt, {"2026-01-12"})));
  EXPECT_TRUE(Matches(Where("close_date", kGe, {"2026-01-12"})));
  EXPECT_TRUE(Matches(Where("close_date", kLt, {"2026-02-01"})));
  EXPECT_TRUE(Matches(Where("close_date", kLe, {"2026-01-12"})));
  EXPECT_TRUE(Matches(Where("begin_date", kLt, {"2026-01-06"})));
  EXPECT_TRUE(Matches(Where("begin_date", kIn, {"2026-01-05", "2026-01-06"})));
  EXPECT_TRUE(Matches(Where("begin_date", kNotIn, {"2026-01-06"})));
  deal_.clear_close_date();
  EXPECT_FALSE(Matches(Where("close_date", kLt, {"2099-01-01"})));
  EXPECT_TRUE(Matches(Where("close_date", kNe, {"2026-01-12"})));
}

TEST_F(DealQueryTest, Times) {
  // Created 2026-01-05 09:30 UTC.
  EXPECT_TRUE(Matches(Where("create_time", kGe, {"2026-01-05"})));
  EXPECT_FALSE(Matches(Where("create_time", kGe, {"2026-01-06"})));
  EXPECT_TRUE(Matches(Where("create_time", kLt, {"2026-01-06"})));
  EXPECT_TRUE(Matches(Where("create_time", kEq, {"2026-01-05T09:30:00Z"})));
  EXPECT_TRUE(
      Matches(Where("create_time", kEq, {"2026-01-05T11:30:00+02:00"})));
  EXPECT_TRUE(Matches(Where("create_time", kGt, {"2026-01-05T09:29:59Z"})));
  EXPECT_FALSE(
      Matches(Where("create_time", kGt, {"2026-01-05T09:30:00.000001Z"})));
  EXPECT_TRUE(Matches(Where("create_time", kLe, {"2026-01-05T09:30:00Z"})));
  // Nanoseconds take part.
  deal_.mutable_create_time()->set_nanos(500);
  EXPECT_TRUE(Matches(Where("create_time", kGt, {"2026-01-05T09:30:00Z"})));
  // Unset times have no value.
  EXPECT_FALSE(Matches(Where("move_time", kLt, {"2999-01-01"})));
  EXPECT_TRUE(Matches(Where("update_time", kNe, {"2026-01-05"})));
  EXPECT_THAT(Compile(Where("create_time", kGe, {"yesterday"})),
              StatusIs(kInvalid, HasSubstr("\"yesterday\" is not a time")));
}

TEST_F(DealQueryTest, CustomScalarFields) {
  SetCustom(&deal_, "UF_CRM_COUNT", {"5"});
  SetCustom(&deal_, "UF_CRM_RATIO", {"1.5"});
  SetCustom(&deal_, "UF_CRM_FLAG", {"true"});
  SetCustom(&deal_, "UF_CRM_DAY", {"2026-03-01"});
  SetCustom(&deal_, "UF_CRM_AT", {"2026-03-01T13:00:00+02:00"});
  SetCustom(&deal_, "UF_CRM_PRICE", {"12.50|EUR"});
  SetCustom(&deal_, "UF_CRM_OWNER", {"9"});
  SetCustom(&deal_, "UF_CRM_KIND", {"12"});
  SetCustom(&deal_, "UF_CRM_TEXT", {"Preço Especial"});
  SetCustom(&deal_, "UF_CRM_SITE", {"https://Example.com/Offer"});

  EXPECT_TRUE(Matches(Where("UF_CRM_COUNT", kEq, {"5"})));
  EXPECT_TRUE(Matches(Where("UF_CRM_COUNT", kLt, {"10"})));
  EXPECT_TRUE(Matches(Where("UF_CRM_COUNT", kNotIn, {"4", "6"})));
  EXPECT_TRUE(Matches(Where("UF_CRM_RATIO", kLt, {"10"})));
  EXPECT_TRUE(Matches(Where("UF_CRM_RATIO", kGt, {"-2.5"})));
  EXPECT_TRUE(Matches(Where("UF_CRM_RATIO", kEq, {"1.50"})));
  EXPECT_TRUE(Matches(Where("UF_CRM_FLAG", kEq, {"true"})));
  EXPECT_TRUE(Matches(Where("UF_CRM_FLAG", kNe, {"false"})));
  EXPECT_TRUE(Matches(Where("UF_CRM_DAY", kGe, {"2026-03-01"})));
  EXPECT_FALSE(Matches(Where("UF_CRM_DAY", kGt, {"2026-03-01"})));
  // 13:00+02:00 is 11:00 UTC.
  EXPECT_TRUE(Matches(Where("UF_CRM_AT", kEq, {"2026-03-01T11:00:00Z"})));
  EXPECT_TRUE(Matches(Where("UF_CRM_AT", kGt, {"2026-03-01"})));
  EXPECT_FALSE(Matches(Where("UF_CRM_AT", kGt, {"2026-03-01T11:30:00Z"})));
  // Money compares by amount; "9.5" < "12.5" < "100".
  EXPECT_TRUE(Matches(Where("UF_CRM_PRICE", kGt, {"9.5"})));
  EXPECT_TRUE(Matches(Where("UF_CRM_PRICE", kLt, {"100"})));
  EXPECT_TRUE(Matches(Where("UF_CRM_PRICE", kEq, {"12.5"})));
  EXPECT_TRUE(Matches(Where("UF_CRM_PRICE", kEq, {"12.5|USD"})));
  EXPECT_TRUE(Matches(Where("UF_CRM_OWNER", kIn, {"8", "9"})));
  EXPECT_TRUE(Matches(Where("UF_CRM_OWNER", kGt, {"8"})));
  EXPECT_TRUE(Matches(Where("UF_CRM_KIND", kEq, {"12"})));
  EXPECT_TRUE(Matches(Where("UF_CRM_KIND", kNotIn, {"11", "13"})));
  EXPECT_TRUE(Matches(Where("UF_CRM_TEXT", kContains, {"preco"})));
  EXPECT_TRUE(Matches(Where("UF_CRM_TEXT", kEq, {"PREÇO ESPECIAL"})));
  EXPECT_TRUE(Matches(Where("UF_CRM_SITE", kContains, {"example.com"})));
  // An absent custom field has no value.
  deal_.mutable_custom_fields()->erase("UF_CRM_COUNT");
  EXPECT_FALSE(Matches(Where("UF_CRM_COUNT", kGe, {"-1000"})));
  EXPECT_TRUE(Matches(Where("UF_CRM_COUNT", kNe, {"5"})));
}

TEST_F(DealQueryTest, MultipleCustomFieldsMatchAnyValue) {
  SetCustom(&deal_, "UF_CRM_TAGS", {"21", "23"});
  SetCustom(&deal_, "UF_CRM_NUMS", {"3", "30"});
  SetCustom(&deal_, "UF_CRM_NOTES", {"Alpha", "Bêta"});
  EXPECT_TRUE(Matches(Where("UF_CRM_TAGS", kEq, {"23"})));
  EXPECT_FALSE(Matches(Where("UF_CRM_TAGS", kEq, {"22"})));
  EXPECT_TRUE(Matches(Where("UF_CRM_TAGS", kIn, {"22", "21"})));
  EXPECT_FALSE(Matches(Where("UF_CRM_TAGS", kNe, {"21"})));
  EXPECT_TRUE(Matches(Where("UF_CRM_TAGS", kNe, {"22"})));
  EXPECT_FALSE(Matches(Where("UF_CRM_TAGS", kNotIn, {"22", "23"})));
  EXPECT_TRUE(Matches(Where("UF_CRM_NUMS", kGt, {"20"})));
  EXPECT_TRUE(Matches(Where("UF_CRM_NUMS", kLt, {"4"})));
  EXPECT_FALSE(Matches(Where("UF_CRM_NUMS", kGt, {"30"})));
  EXPECT_TRUE(Matches(Where("UF_CRM_NOTES", kContains, {"beta"})));
  EXPECT_TRUE(Matches(Where("UF_CRM_NOTES", kEq, {"ALPHA"})));
}

// ---- Groups ----

TEST_F(DealQueryTest, AndOrGroupsNest) {
  const v1::Filter yes = Where("assignee_id", kEq, {"7"});
  const v1::Filter no = Where("assignee_id", kEq, {"8"});
  EXPECT_TRUE(Matches(And({yes, yes})));
  EXPECT_FALSE(Matches(And({yes, no})));
  EXPECT_TRUE(Matches(Or({no, yes})));
  EXPECT_FALSE(Matches(Or({no, no})));
  // Unspecified group op is AND.
  EXPECT_FALSE(Matches(Group(v1::FilterGroup::OP_UNSPECIFIED, {yes, no})));
  // (amount > 5 AND (stage WON OR title contains "negocio")) OR closed
  const v1::Filter nested =
      Or({And({Where("amount", kGt, {"5"}),
               Or({Where("stage_id", kEq, {"WON"}),
                   Where("title", kContains, {"negocio"})})}),
          Where("closed", kEq, {"true"})});
  EXPECT_TRUE(Matches(nested));
  deal_.set_title("Other");
  EXPECT_FALSE(Matches(nested));
  deal_.set_closed(true);
  EXPECT_TRUE(Matches(nested));
}

// ---- Errors name the place ----

TEST_F(DealQueryTest, UnknownField) {
  EXPECT_THAT(
      Compile(Where("foo", kEq, {"1"})),
      StatusIs(kInvalid, "filter.condition.field: unknown field \"foo\""));
  EXPECT_THAT(Compile(And({Where("title", kEq, {"x"}),
                           Where("UF_CRM_NOPE", kEq, {"1"})})),
              StatusIs(kInvalid, HasSubstr("filter.group.filters[1].condition."
                                           "field: unknown field "
                                           "\"UF_CRM_NOPE\"")));
  // Not filterable Deal fields are unknown too.
  EXPECT_THAT(Compile(Where("etag", kEq, {"1"})),
              StatusIs(kInvalid, HasSubstr("unknown field \"etag\"")));
}

TEST_F(DealQueryTest, BadValuesNameTheirIndex) {
  EXPECT_THAT(
      Compile(And({Where("title", kEq, {"x"}), Where("title", kEq, {"y"}),
                   Where("amount", kEq, {"abc"})})),
      StatusIs(kInvalid,
               HasSubstr("filter.group.filters[2].condition.values[0]: "
                         "\"abc\" is not a number")));
  EXPECT_THAT(Compile(Where("assignee_id", kIn, {"1", "2", "x"})),
              StatusIs(kInvalid, HasSubstr("filter.condition.values[2]: \"x\" "
                                           "is not a number")));
  EXPECT_THAT(Compile(Where("amount", kEq, {"1.0000001"})),
              StatusIs(kInvalid, HasSubstr("values[0]")));
  EXPECT_THAT(Compile(Where("UF_CRM_RATIO", kEq, {"nan"})),
              StatusIs(kInvalid, HasSubstr("is not a number")));
  EXPECT_THAT(Compile(Where("close_date", kEq, {"2026-02-30"})),
              StatusIs(kInvalid, HasSubstr("filter.condition.values[0]: "
                                           "\"2026-02-30\" is not a date")));
  EXPECT_THAT(Compile(Where("UF_CRM_DAY", kEq, {"26-01-01"})),
              StatusIs(kInvalid, HasSubstr("is not a date")));
  EXPECT_THAT(Compile(Where("UF_CRM_KIND", kEq, {"99"})),
              StatusIs(kInvalid, HasSubstr("filter.condition.values[0]: 99 is "
                                           "not an option of UF_CRM_KIND")));
  EXPECT_THAT(Compile(Where("UF_CRM_PRICE", kEq, {"1|usd"})),
              StatusIs(kInvalid, HasSubstr("filter.condition.values[0]")));
}

TEST_F(DealQueryTest, OperatorsNotAllowedForTheType) {
  EXPECT_THAT(Compile(Where("amount", kContains, {"1"})),
              StatusIs(kInvalid, HasSubstr("filter.condition.op: "
                                           "OPERATOR_CONTAINS is not allowed "
                                           "on amount")));
  EXPECT_THAT(
      Compile(Or({Where("title", kEq, {"x"}), Where("closed", kGt, {"true"})})),
      StatusIs(kInvalid, HasSubstr("filter.group.filters[1].condition."
                                   "op: OPERATOR_GT is not allowed on "
                                   "closed")));
  EXPECT_THAT(Compile(Where("opened", kIn, {"true"})), StatusIs(kInvalid));
  EXPECT_THAT(Compile(Where("contact_ids", kGt, {"1"})),
              StatusIs(kInvalid, HasSubstr("not allowed on contact_ids")));
  EXPECT_THAT(Compile(Where("UF_CRM_KIND", kLt, {"11"})),
              StatusIs(kInvalid, HasSubstr("not allowed on UF_CRM_KIND")));
  EXPECT_THAT(Compile(Where("stage_id", kContains, {"NEW"})),
              StatusIs(kInvalid));
  EXPECT_THAT(Compile(Where("close_date", kContains, {"2026"})),
              StatusIs(kInvalid));
  EXPECT_THAT(Compile(Where("UF_CRM_COUNT", kContains, {"1"})),
              StatusIs(kInvalid));
  EXPECT_THAT(
      Compile(Where("title", v1::Condition::OPERATOR_UNSPECIFIED, {"x"})),
      StatusIs(kInvalid, "filter.condition.op: an operator is required"));
  EXPECT_THAT(
      Compile(Where("title", static_cast<v1::Condition::Operator>(77), {"x"})),
      StatusIs(kInvalid, HasSubstr("filter.condition.op: unknown operator")));
}

TEST_F(DealQueryTest, ValueCounts) {
  EXPECT_THAT(Compile(Where("title", kEq, {})),
              StatusIs(kInvalid, HasSubstr("filter.condition.values: "
                                           "OPERATOR_EQ takes exactly one "
                                           "value, got 0")));
  EXPECT_THAT(Compile(Where("amount", kGt, {"1", "2"})),
              StatusIs(kInvalid, HasSubstr("exactly one value, got 2")));
  EXPECT_THAT(Compile(Where("stage_id", kIn, {})),
              StatusIs(kInvalid, HasSubstr("filter.condition.values: "
                                           "OPERATOR_IN takes at least one")));
  EXPECT_THAT(Compile(Where("stage_id", kNotIn, {})), StatusIs(kInvalid));
  std::vector<std::string> many;
  for (int i = 0; i < kMaxConditionValues; ++i) many.push_back(absl::StrCat(i));
  EXPECT_THAT(Compile(Where("assignee_id", kIn, many)), IsOk());
  many.push_back("1000");
  EXPECT_THAT(Compile(Where("assignee_id", kIn, many)),
              StatusIs(kInvalid, HasSubstr("filter.condition.values: at most "
                                           "1000 values")));
}

TEST_F(DealQueryTest, NestingDepthIsLimited) {
  auto nest = [](int groups) {
    v1::Filter filter = Where("assignee_id", kEq, {"7"});
    for (int i = 0; i < groups; ++i) filter = And({filter});
    return filter;
  };
  EXPECT_TRUE(Matches(nest(kMaxFilterDepth)));
  std::string path = "filter";
  for (int i = 0; i < kMaxFilterDepth; ++i) path += ".group.filters[0]";
  EXPECT_THAT(Compile(nest(kMaxFilterDepth + 1)),
              StatusIs(kInvalid, absl::StrCat(path,
                                              ".group: groups nest at most 8 "
                                              "deep")));
}

TEST_F(DealQueryTest, ConditionCountIsLimited) {
  std::vector<v1::Filter> conditions(kMaxFilterConditions,
                                     Where("assignee_id", kNe, {"1"}));
  // 200 conditions spread over two nested groups are fine.
  std::vector<v1::Filter> half(conditions.begin(), conditions.begin() + 100);
  EXPECT_TRUE(Matches(And({And(half), Or(half)})));
  EXPECT_TRUE(Matches(And(conditions)));
  conditions.push_back(Where("assignee_id", kNe, {"1"}));
  EXPECT_THAT(Compile(And(conditions)),
              StatusIs(kInvalid, HasSubstr("filter.group.filters[200]."
                                           "condition: a filter holds at "
                                           "most 200 conditions")));
}

TEST_F(DealQueryTest, NestedFilterNeedsConditionOrGroup) {
  EXPECT_THAT(Compile(And({Where("title", kEq, {"x"}), v1::Filter()})),
              StatusIs(kInvalid,
                       "filter.group.filters[1]: a filter needs a "
                       "condition or a group"));
}

// ---- Index hints ----

TEST_F(DealQueryTest, HintsFromTopLevelAnd) {
  ASSERT_OK_AND_ASSIGN(
      CompiledFilter filter,
      Compile(And({Where("pipeline_id", kEq, {"3"}),
                   Where("stage_id", kIn, {"C3:WON", "C3:NEW", "C3:WON"}),
                   Where("assignee_id", kIn, {"9", "7", "9"}),
                   Where("close_date", kGe, {"2026-01-01"}),
                   Where("close_date", kLt, {"2026-02-01"}),
                   Where("title", kContains, {"x"})})));
  EXPECT_THAT(filter.pipeline_id(), Optional(3));
  EXPECT_THAT(filter.stage_ids(), Optional(ElementsAre("C3:NEW", "C3:WON")));
  EXPECT_THAT(filter.assignee_ids(), Optional(ElementsAre(7, 9)));
  EXPECT_THAT(filter.close_date_range(),
              Optional(Pair("2026-01-01", "2026-01-31")));
}

TEST_F(DealQueryTest, HintsFromALoneCondition) {
  ASSERT_OK_AND_ASSIGN(CompiledFilter stage,
                       Compile(Where("stage_id", kEq, {"NEW"})));
  EXPECT_THAT(stage.stage_ids(), Optional(ElementsAre("NEW")));
  EXPECT_EQ(stage.pipeline_id(), std::nullopt);
  ASSERT_OK_AND_ASSIGN(CompiledFilter day,
                       Compile(Where("close_date", kEq, {"2026-01-12"})));
  EXPECT_THAT(day.close_date_range(),
              Optional(Pair("2026-01-12", "2026-01-12")));
  ASSERT_OK_AND_ASSIGN(CompiledFilter after,
                       Compile(Where("close_date", kGt, {"2026-12-31"})));
  EXPECT_THAT(after.close_date_range(), Optional(Pair("2027-01-01", "")));
  ASSERT_OK_AND_ASSIGN(CompiledFilter until,
                       Compile(Where("close_date", kLe, {"2026-03-01"})));
  EXPECT_THAT(until.close_date_range(), Optional(Pair("", "2026-03-01")));
}

TEST_F(DealQueryTest, HintsIntersectAndIgnoreWhatCannotNarrow) {
  ASSERT_OK_AND_ASSIGN(
      CompiledFilter filter,
      Compile(And({Where("stage_id", kIn, {"NEW", "WORK", "WON"}),
                   And({Where("stage_id", kIn, {"WORK", "WON", "LOSE"}),
                        Where("close_date", kGt, {"2026-01-10"})}),
                   Where("close_date", kLe, {"2026-01-20"}),
                   Where("close_date", kGe, {"2026-01-05"}),
                   Where("assignee_id", kNe, {"7"}),
                   Where("pipeline_id", kGt, {"0"}),
                   Where("close_date", kNe, {"2026-01-15"})})));
  EXPECT_THAT(filter.stage_ids(), Optional(ElementsAre("WON", "WORK")));
  EXPECT_EQ(filter.assignee_ids(), std::nullopt);
  EXPECT_EQ(filter.pipeline_id(), std::nullopt);
  EXPECT_THAT(filter.close_date_range(),
              Optional(Pair("2026-01-11", "2026-01-20")));

  ASSERT_OK_AND_ASSIGN(CompiledFilter disjoint,
                       Compile(And({Where("assignee_id", kEq, {"7"}),
                                    Where("assignee_id", kEq, {"8"})})));
  EXPECT_THAT(disjoint.assignee_ids(), Optional(ElementsAre()));
}

TEST_F(DealQueryTest, OrGivesNoHints) {
  ASSERT_OK_AND_ASSIGN(CompiledFilter filter,
                       Compile(Or({Where("pipeline_id", kEq, {"3"}),
                                   Where("stage_id", kEq, {"NEW"}),
                                   Where("assignee_id", kEq, {"7"}),
                                   Where("close_date", kEq, {"2026-01-12"})})));
  EXPECT_EQ(filter.pipeline_id(), std::nullopt);
  EXPECT_EQ(filter.stage_ids(), std::nullopt);
  EXPECT_EQ(filter.assignee_ids(), std::nullopt);
  EXPECT_EQ(filter.close_date_range(), std::nullopt);
  // An OR inside an AND does not narrow either, but its siblings do.
  ASSERT_OK_AND_ASSIGN(CompiledFilter mixed,
                       Compile(And({Where("pipeline_id", kEq, {"3"}),
                                    Or({Where("stage_id", kEq, {"NEW"}),
                                        Where("stage_id", kEq, {"WON"})})})));
  EXPECT_THAT(mixed.pipeline_id(), Optional(3));
  EXPECT_EQ(mixed.stage_ids(), std::nullopt);
}

// ---- Fingerprints ----

TEST_F(DealQueryTest, FingerprintIsCanonical) {
  auto fingerprint = [&](const v1::Filter& filter) {
    absl::StatusOr<CompiledFilter> compiled = Compile(filter);
    EXPECT_THAT(compiled, IsOk());
    return compiled.ok() ? compiled->fingerprint() : "";
  };
  EXPECT_EQ(fingerprint(Where("amount", kGe, {"10"})),
            fingerprint(Where("amount", kGe, {"10.00"})));
  EXPECT_EQ(fingerprint(Where("stage_id", kIn, {"A", "B"})),
            fingerprint(Where("stage_id", kIn, {"B", "A", "B"})));
  EXPECT_EQ(fingerprint(Where("title", kContains, {"Negócio"})),
            fingerprint(Where("title", kContains, {"NEGOCIO"})));
  EXPECT_NE(fingerprint(Where("amount", kGe, {"10"})),
            fingerprint(Where("amount", kGt, {"10"})));
  EXPECT_NE(fingerprint(Where("amount", kGe, {"10"})),
            fingerprint(Where("tax_amount", kGe, {"10"})));
  EXPECT_NE(fingerprint(And(
                {Where("amount", kGe, {"1"}), Where("amount", kLe, {"2"})})),
            fingerprint(Or(
                {Where("amount", kGe, {"1"}), Where("amount", kLe, {"2"})})));
  EXPECT_NE(fingerprint(Where("amount", kGe, {"10"})), "");
}

// ---- Orderings ----

v1::OrderBy By(const std::string& field, bool descending = false) {
  v1::OrderBy order;
  order.set_field(field);
  order.set_descending(descending);
  return order;
}

google::protobuf::RepeatedPtrField<v1::OrderBy> OrderList(
    const std::vector<v1::OrderBy>& entries) {
  google::protobuf::RepeatedPtrField<v1::OrderBy> list;
  for (const v1::OrderBy& entry : entries) *list.Add() = entry;
  return list;
}

class DealOrderingTest : public DealQueryTest {
 protected:
  absl::StatusOr<DealOrdering> Order(const std::vector<v1::OrderBy>& entries) {
    return DealOrdering::Compile(OrderList(entries), config_);
  }

  // The ids of `deals` sorted by their SortKeys.
  static std::vector<int64_t> SortedIds(const DealOrdering& ordering,
                                        std::vector<v1::Deal> deals) {
    std::vector<std::pair<std::string, int64_t>> keyed;
    for (const v1::Deal& deal : deals) {
      keyed.emplace_back(ordering.SortKey(deal), deal.id());
    }
    std::sort(keyed.begin(), keyed.end());
    std::vector<int64_t> ids;
    for (const auto& [key, id] : keyed) ids.push_back(id);
    return ids;
  }
};

v1::Deal WithAmount(int64_t id, const std::string& amount,
                    const std::string& currency = "EUR") {
  v1::Deal deal;
  deal.set_id(id);
  deal.set_amount(amount);
  deal.set_currency(currency);
  return deal;
}

TEST_F(DealOrderingTest, DefaultIsById) {
  DealOrdering ordering;
  EXPECT_TRUE(ordering.by_id());
  EXPECT_THAT(SortedIds(ordering, {WithAmount(30, "1"), WithAmount(-4, "1"),
                                   WithAmount(7, "1")}),
              ElementsAre(-4, 7, 30));
  ASSERT_OK_AND_ASSIGN(DealOrdering empty, Order({}));
  EXPECT_TRUE(empty.by_id());
  ASSERT_OK_AND_ASSIGN(DealOrdering id_asc, Order({By("id")}));
  EXPECT_TRUE(id_asc.by_id());
  EXPECT_EQ(id_asc.fingerprint(), ordering.fingerprint());
  ASSERT_OK_AND_ASSIGN(DealOrdering id_desc, Order({By("id", true)}));
  EXPECT_FALSE(id_desc.by_id());
  EXPECT_NE(id_desc.fingerprint(), ordering.fingerprint());
  ASSERT_OK_AND_ASSIGN(DealOrdering amount, Order({By("amount")}));
  EXPECT_FALSE(amount.by_id());
}

TEST_F(DealOrderingTest, Errors) {
  EXPECT_THAT(Order({By("title"), By("x")}),
              StatusIs(kInvalid, "order_by[1].field: unknown field \"x\""));
  EXPECT_THAT(Order({By("contact_ids")}),
              StatusIs(kInvalid, HasSubstr("order_by[0].field: cannot order "
                                           "by contact_ids")));
  EXPECT_THAT(Order({By("amount"), By("observer_ids")}),
              StatusIs(kInvalid, HasSubstr("order_by[1].field: cannot order "
                                           "by observer_ids")));
  EXPECT_THAT(Order({By("UF_CRM_TAGS")}),
              StatusIs(kInvalid, HasSubstr("order_by[0].field: cannot order "
                                           "by UF_CRM_TAGS")));
  EXPECT_THAT(Order({By("title"), By("amount"), By("close_date"),
                     By("probability"), By("source")}),
              IsOk());
  EXPECT_THAT(Order({By("title"), By("amount"), By("close_date"),
                     By("probability"), By("source"), By("comments")}),
              StatusIs(kInvalid, HasSubstr("order_by: at most 5 entries")));
  // Entries after id are still checked.
  EXPECT_THAT(Order({By("id"), By("nope")}),
              StatusIs(kInvalid, HasSubstr("order_by[1].field")));
}

TEST_F(DealOrderingTest, AmountsCompareAsDecimals) {
  const std::vector<v1::Deal> deals = {
      WithAmount(1, "10"),   WithAmount(2, "9.5", "USD"), WithAmount(3, "100"),
      WithAmount(4, "9.50"), WithAmount(5, "0"),          WithAmount(6, "")};
  ASSERT_OK_AND_ASSIGN(DealOrdering asc, Order({By("amount")}));
  // "" is zero; equal amounts fall back to id ascending.
  EXPECT_THAT(SortedIds(asc, deals), ElementsAre(5, 6, 2, 4, 1, 3));
  ASSERT_OK_AND_ASSIGN(DealOrdering desc, Order({By("amount", true)}));
  EXPECT_THAT(SortedIds(desc, deals), ElementsAre(3, 1, 2, 4, 5, 6));
  EXPECT_EQ(desc.fingerprint(), "amount desc,id asc");
}

TEST_F(DealOrderingTest, TextComparesFolded) {
  std::vector<v1::Deal> deals;
  const std::vector<std::string> titles = {"beta", "Álpha", "ALPHA", "alphabet",
                                           "",     "Bêta",  "a"};
  for (size_t i = 0; i < titles.size(); ++i) {
    deals.emplace_back();
    deals.back().set_id(static_cast<int64_t>(i + 1));
    deals.back().set_title(titles[i]);
  }
  ASSERT_OK_AND_ASSIGN(DealOrdering asc, Order({By("title")}));
  // "" < "a" < "alpha" (ids 2, 3) < "alphabet" < "beta" (ids 1, 6).
  EXPECT_THAT(SortedIds(asc, deals), ElementsAre(5, 7, 2, 3, 4, 1, 6));
  ASSERT_OK_AND_ASSIGN(DealOrdering desc, Order({By("title", true)}));
  // A prefix sorts after the longer text when descending; ties stay by id.
  EXPECT_THAT(SortedIds(desc, deals), ElementsAre(1, 6, 4, 2, 3, 7, 5));
}

TEST_F(DealOrderingTest, DatesAndMissingValues) {
  std::vector<v1::Deal> deals;
  const std::vector<std::string> days = {"2026-03-01", "", "2025-12-31",
                                         "2026-03-01"};
  for (size_t i = 0; i < days.size(); ++i) {
    deals.emplace_back();
    deals.back().set_id(static_cast<int64_t>(i + 1));
    deals.back().set_close_date(days[i]);
  }
  ASSERT_OK_AND_ASSIGN(DealOrdering asc, Order({By("close_date")}));
  EXPECT_THAT(SortedIds(asc, deals), ElementsAre(2, 3, 1, 4));
  ASSERT_OK_AND_ASSIGN(DealOrdering desc, Order({By("close_date", true)}));
  EXPECT_THAT(SortedIds(desc, deals), ElementsAre(1, 4, 3, 2));
}

TEST_F(DealOrderingTest, UnsetProbabilitySortsFirstAscending) {
  std::vector<v1::Deal> deals(4);
  for (int i = 0; i < 4; ++i) deals[i].set_id(i + 1);
  deals[0].set_probability(50);
  deals[2].set_probability(0);
  deals[3].set_probability(100);
  ASSERT_OK_AND_ASSIGN(DealOrdering asc, Order({By("probability")}));
  EXPECT_THAT(SortedIds(asc, deals), ElementsAre(2, 3, 1, 4));
  ASSERT_OK_AND_ASSIGN(DealOrdering desc, Order({By("probability", true)}));
  EXPECT_THAT(SortedIds(desc, deals), ElementsAre(4, 1, 3, 2));
}

TEST_F(DealOrderingTest, SeveralKeysThenId) {
  std::vector<v1::Deal> deals;
  auto add = [&](int64_t id, const std::string& stage,
                 const std::string& amount) {
    deals.push_back(WithAmount(id, amount));
    deals.back().set_stage_id(stage);
  };
  add(10, "NEW", "5");
  add(11, "WON", "5");
  add(12, "NEW", "7");
  add(13, "NEW", "5");
  add(9, "WON", "1");
  ASSERT_OK_AND_ASSIGN(DealOrdering ordering,
                       Order({By("stage_id"), By("amount", true)}));
  EXPECT_THAT(SortedIds(ordering, deals), ElementsAre(12, 10, 13, 11, 9));
  EXPECT_EQ(ordering.fingerprint(), "stage_id asc,amount desc,id asc");
  // id descending as the last key reverses the tie-break.
  ASSERT_OK_AND_ASSIGN(
      DealOrdering id_desc,
      Order({By("stage_id"), By("amount", true), By("id", true), By("title")}));
  EXPECT_THAT(SortedIds(id_desc, deals), ElementsAre(12, 13, 10, 11, 9));
  EXPECT_EQ(id_desc.fingerprint(), "stage_id asc,amount desc,id desc");
}

TEST_F(DealOrderingTest, EnumerationsByOptionPlace) {
  std::vector<v1::Deal> deals(4);
  for (int i = 0; i < 4; ++i) deals[i].set_id(i + 1);
  SetCustom(&deals[0], "UF_CRM_KIND", {"11"});
  SetCustom(&deals[1], "UF_CRM_KIND", {"12"});
  SetCustom(&deals[2], "UF_CRM_KIND", {"13"});
  ASSERT_OK_AND_ASSIGN(DealOrdering asc, Order({By("UF_CRM_KIND")}));
  // Option 12 has the lowest sort; deal 4 has no value.
  EXPECT_THAT(SortedIds(asc, deals), ElementsAre(4, 2, 1, 3));
}

// ---- SortKey against a reference comparator ----

// A typed value: compared by (a, b, s); `present` false sorts first.
struct RefValue {
  bool present = false;
  int64_t a = 0;
  int64_t b = 0;
  std::string s;
};

RefValue Present(int64_t a, int64_t b = 0, std::string s = "") {
  return RefValue{true, a, b, std::move(s)};
}

RefValue RefDecimal(const std::string& text) {
  if (text.empty()) return Present(0);
  absl::StatusOr<common::Decimal> value = common::Decimal::Parse(text, "t");
  return value.ok() ? Present(value->micro_units()) : RefValue();
}

RefValue RefCustom(const v1::Deal& deal, const std::string& code) {
  auto it = deal.custom_fields().find(code);
  if (it == deal.custom_fields().end() || it->second.values().empty()) {
    return RefValue();
  }
  return Present(0, 0, it->second.values(0));
}

RefValue RefOf(const v1::Deal& deal, const std::string& field) {
  if (field == "amount") return RefDecimal(deal.amount());
  if (field == "title") return Present(0, 0, FoldForSearch(deal.title()));
  if (field == "close_date") {
    return deal.close_date().empty() ? RefValue()
                                     : Present(0, 0, deal.close_date());
  }
  if (field == "probability") {
    return deal.has_probability() ? Present(deal.probability()) : RefValue();
  }
  if (field == "stage_semantics") return Present(deal.stage_semantics());
  if (field == "opened") return Present(!deal.has_opened() || deal.opened());
  if (field == "create_time") {
    return deal.has_create_time() ? Present(deal.create_time().seconds(),
                                            deal.create_time().nanos())
                                  : RefValue();
  }
  if (field == "assignee_id") return Present(deal.assignee_id());
  if (field == "UF_CRM_COUNT") {
    RefValue value = RefCustom(deal, field);
    if (value.present) value = Present(std::stoll(value.s));
    return value;
  }
  if (field == "UF_CRM_PRICE") {
    RefValue value = RefCustom(deal, field);
    if (value.present) value = RefDecimal(value.s.substr(0, value.s.find('|')));
    return value;
  }
  if (field == "UF_CRM_TEXT") {
    RefValue value = RefCustom(deal, field);
    if (value.present) value.s = FoldForSearch(value.s);
    return value;
  }
  ADD_FAILURE() << "no reference for " << field;
  return RefValue();
}

// -1, 0 or 1 as a compares to b ascending.
int CompareRef(const RefValue& a, const RefValue& b) {
  if (a.present != b.present) return a.present ? 1 : -1;
  const auto ta = std::tie(a.a, a.b, a.s);
  const auto tb = std::tie(b.a, b.b, b.s);
  if (ta < tb) return -1;
  if (tb < ta) return 1;
  return 0;
}

TEST_F(DealOrderingTest, SortKeyOrderEqualsReferenceOrder) {
  std::mt19937 random(20261127);
  auto pick = [&](const std::vector<std::string>& choices) {
    return choices[random() % choices.size()];
  };
  const std::vector<std::string> amounts = {
      "",      "0",   "9.5",      "9.50",       "10",
      "10.01", "100", "0.000001", "1234567.89", "2"};
  const std::vector<std::string> titles = {
      "",       "a",       "A",       "ab",      "a b",
      "Álpha",  "alpha",   "Negócio", "NEGOCIO", "negocios",
      "Straße", "strasse", "Ёлка",    "zeta",    "ß"};
  const std::vector<std::string> days = {"", "2025-12-31", "2026-01-01",
                                         "2026-01-02", "2026-11-27"};
  const std::vector<std::string> prices = {"", "9.5|EUR", "10|USD", "10.00|EUR",
                                           "0.5|JPY"};
  std::vector<v1::Deal> deals;
  std::vector<int64_t> used_ids;
  for (int i = 0; i < 400; ++i) {
    v1::Deal deal;
    int64_t id = 0;
    do {
      id = static_cast<int64_t>(random() % 100000) - 5000;
    } while (std::find(used_ids.begin(), used_ids.end(), id) != used_ids.end());
    used_ids.push_back(id);
    deal.set_id(id);
    deal.set_amount(pick(amounts));
    deal.set_title(pick(titles));
    deal.set_close_date(pick(days));
    if (random() % 4 != 0) deal.set_probability(random() % 5 * 25);
    deal.set_stage_semantics(
        static_cast<pv1::StageSemantics>(1 + random() % 3));
    if (random() % 3 != 0) deal.set_opened(random() % 2 == 0);
    if (random() % 5 != 0) {
      deal.mutable_create_time()->set_seconds(1767225600 + random() % 4 * 60);
      deal.mutable_create_time()->set_nanos(random() % 3 * 1000);
    }
    deal.set_assignee_id(random() % 4 - 1);
    if (random() % 3 != 0) {
      SetCustom(&deal, "UF_CRM_COUNT",
                {absl::StrCat(static_cast<int>(random() % 7) - 3)});
    }
    const std::string price = pick(prices);
    if (!price.empty()) SetCustom(&deal, "UF_CRM_PRICE", {price});
    if (random() % 2 == 0) SetCustom(&deal, "UF_CRM_TEXT", {pick(titles)});
    deals.push_back(std::move(deal));
  }

  const std::vector<std::vector<v1::OrderBy>> orderings = {
      {By("amount")},
      {By("amount", true)},
      {By("title")},
      {By("title", true), By("amount")},
      {By("close_date"), By("probability", true)},
      {By("probability"), By("title", true), By("close_date", true)},
      {By("stage_semantics"), By("create_time", true), By("opened")},
      {By("opened", true), By("assignee_id", true), By("amount", true)},
      {By("UF_CRM_COUNT"), By("UF_CRM_PRICE", true), By("UF_CRM_TEXT")},
      {By("UF_CRM_TEXT", true), By("create_time"), By("UF_CRM_COUNT", true),
       By("title"), By("probability")},
  };
  for (const std::vector<v1::OrderBy>& entries : orderings) {
    ASSERT_OK_AND_ASSIGN(DealOrdering ordering, Order(entries));
    std::vector<v1::Deal> expected = deals;
    std::sort(expected.begin(), expected.end(),
              [&](const v1::Deal& a, const v1::Deal& b) {
                for (const v1::OrderBy& entry : entries) {
                  int c = CompareRef(RefOf(a, entry.field()),
                                     RefOf(b, entry.field()));
                  if (entry.descending()) c = -c;
                  if (c != 0) return c < 0;
                }
                return a.id() < b.id();
              });
    std::vector<int64_t> expected_ids;
    for (const v1::Deal& deal : expected) expected_ids.push_back(deal.id());
    EXPECT_EQ(SortedIds(ordering, deals), expected_ids)
        << ordering.fingerprint();
  }
}

}  // namespace
}  // namespace crm::common
