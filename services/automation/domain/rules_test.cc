#include "services/automation/domain/rules.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "common/deal_filter/filter_builders.h"
#include "common/pipelines_client/fake_pipeline_client.h"
#include "common/status/status_matchers.h"

namespace crm::automation {
namespace {

namespace pv1 = ::crm::pipelines::v1;
namespace dv1 = ::crm::deals::v1;
using ::crm::testing::StatusIs;
using ::testing::HasSubstr;

crm::common::ConfigView Config() {
  std::vector<pv1::FieldDefinition> fields(3);
  fields[0].set_code("UF_CRM_DUE");
  fields[0].set_type(pv1::FIELD_TYPE_DATE);
  fields[1].set_code("UF_CRM_CALL_AT");
  fields[1].set_type(pv1::FIELD_TYPE_DATETIME);
  fields[2].set_code("UF_CRM_NOTE");
  fields[2].set_type(pv1::FIELD_TYPE_STRING);
  return crm::common::ConfigView::FromProtos(
      3,
      {crm::common::DefaultPipelineProto(0),
       crm::common::DefaultPipelineProto(4, "Partners")},
      fields);
}

v1::Rule TaskRule() {
  v1::Rule rule;
  rule.set_pipeline_id(0);
  rule.set_stage_id("PREPARATION");
  rule.set_name("Call the client");
  rule.mutable_action()->mutable_create_task()->set_title("Call {{title}}");
  return rule;
}

google::protobuf::Duration Seconds(int64_t seconds) {
  google::protobuf::Duration d;
  d.set_seconds(seconds);
  return d;
}

TEST(ValidateRuleTest, AcceptsAWellFormedRuleOfEachAction) {
  const auto config = Config();
  EXPECT_OK(ValidateRule(TaskRule(), config));
  std::vector<v1::Action> actions(11);
  actions[0].mutable_send_email()->set_to("client@example.com");
  actions[0].mutable_send_email()->set_subject("Hello");
  actions[0].mutable_send_email()->set_body("About {{title}}");
  actions[1].mutable_send_sms()->set_to("+15550100");
  actions[1].mutable_send_sms()->set_text("Hi");
  actions[2].mutable_create_task()->set_title("Task");
  actions[3].mutable_complete_stage_tasks();
  actions[4].mutable_change_stage()->set_stage_id("WON");
  actions[5].mutable_move_to_pipeline()->set_pipeline_id(4);
  actions[6].mutable_change_assignee()->add_user_ids(5);
  (*actions[7].mutable_set_fields()->mutable_values())["UF_CRM_NOTE"]
      .add_values("x");
  actions[8].mutable_add_comment()->set_text("Moved by a rule");
  actions[9].mutable_notify_employee()->set_text("Look at {{title}}");
  actions[10].mutable_call_webhook()->set_url("https://hooks.example.com/a");
  for (size_t i = 0; i < actions.size(); ++i) {
    SCOPED_TRACE(i);
    v1::Rule rule = TaskRule();
    *rule.mutable_action() = actions[i];
    EXPECT_OK(ValidateRule(rule, config));
  }
}

TEST(ValidateRuleTest, RefusesBadInputNamingTheField) {
  const auto config = Config();
  struct Case {
    const char* name;
    std::function<void(v1::Rule*)> change;
    const char* field;
  };
  const std::vector<Case> cases = {
      {"unknown pipeline", [](v1::Rule* r) { r->set_pipeline_id(9); },
       "rule.pipeline_id"},
      {"unknown stage", [](v1::Rule* r) { r->set_stage_id("NOPE"); },
       "rule.stage_id"},
      {"stage of another pipeline",
       [](v1::Rule* r) { r->set_stage_id("C4:NEW"); }, "rule.stage_id"},
      {"empty name", [](v1::Rule* r) { r->set_name(""); }, "rule.name"},
      {"zero delay",
       [](v1::Rule* r) {
         r->mutable_timing()->set_kind(v1::Timing::KIND_DELAY);
       },
       "rule.timing.delay"},
      {"negative delay",
       [](v1::Rule* r) {
         r->mutable_timing()->set_kind(v1::Timing::KIND_DELAY);
         *r->mutable_timing()->mutable_delay() = Seconds(-5);
       },
       "rule.timing.delay"},
      {"delay over a year",
       [](v1::Rule* r) {
         r->mutable_timing()->set_kind(v1::Timing::KIND_DELAY);
         *r->mutable_timing()->mutable_delay() = Seconds(400 * 86400);
       },
       "rule.timing.delay"},
      {"date field of a string",
       [](v1::Rule* r) {
         r->mutable_timing()->set_kind(v1::Timing::KIND_RELATIVE_TO_DATE);
         r->mutable_timing()->set_date_field("UF_CRM_NOTE");
       },
       "rule.timing.date_field"},
      {"no time",
       [](v1::Rule* r) {
         r->mutable_timing()->set_kind(v1::Timing::KIND_AT_TIME);
       },
       "rule.timing.at"},
      {"bad condition field",
       [](v1::Rule* r) {
         *r->mutable_condition() = crm::common::filters::Where(
             "nonsense", dv1::Condition::OPERATOR_EQ, {"1"});
       },
       "rule.condition"},
      {"bad condition value",
       [](v1::Rule* r) {
         *r->mutable_condition() = crm::common::filters::Where(
             "amount", dv1::Condition::OPERATOR_GT, {"lots"});
       },
       "rule.condition"},
      {"no action", [](v1::Rule* r) { r->clear_action(); }, "rule.action"},
      {"bad email",
       [](v1::Rule* r) {
         auto* email = r->mutable_action()->mutable_send_email();
         email->set_to("not an address");
         email->set_subject("s");
         email->set_body("b");
       },
       "rule.action.send_email.to"},
      {"empty subject",
       [](v1::Rule* r) {
         r->mutable_action()->mutable_send_email()->set_body("b");
       },
       "rule.action.send_email.subject"},
      {"bad phone",
       [](v1::Rule* r) {
         r->mutable_action()->mutable_send_sms()->set_to("call me");
       },
       "rule.action.send_sms.to"},
      {"stage outside the pipeline",
       [](v1::Rule* r) {
         r->mutable_action()->mutable_change_stage()->set_stage_id("C4:WON");
       },
       "rule.action.change_stage.stage_id"},
      {"own stage",
       [](v1::Rule* r) {
         r->mutable_action()->mutable_change_stage()->set_stage_id(
             "PREPARATION");
       },
       "rule.action.change_stage.stage_id"},
      {"unknown pipeline to move to",
       [](v1::Rule* r) {
         r->mutable_action()->mutable_move_to_pipeline()->set_pipeline_id(77);
       },
       "rule.action.move_to_pipeline.pipeline_id"},
      {"no assignees",
       [](v1::Rule* r) { r->mutable_action()->mutable_change_assignee(); },
       "rule.action.change_assignee.user_ids"},
      {"unknown field to set",
       [](v1::Rule* r) {
         (*r->mutable_action()->mutable_set_fields()->mutable_values())["id"]
             .add_values("1");
       },
       "rule.action.set_fields.values"},
      {"ftp webhook",
       [](v1::Rule* r) {
         r->mutable_action()->mutable_call_webhook()->set_url(
             "ftp://example.com");
       },
       "rule.action.call_webhook.url"},
      {"webhook without host",
       [](v1::Rule* r) {
         r->mutable_action()->mutable_call_webhook()->set_url("http:///x");
       },
       "rule.action.call_webhook.url"},
      {"webhook with a space",
       [](v1::Rule* r) {
         r->mutable_action()->mutable_call_webhook()->set_url(
             "http://a b.example.com");
       },
       "rule.action.call_webhook.url"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    v1::Rule rule = TaskRule();
    c.change(&rule);
    EXPECT_THAT(
        ValidateRule(rule, config),
        StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.field)));
  }
}

TEST(DueTimeTest, FollowsEachTimingKind) {
  const absl::TimeZone utc = absl::UTCTimeZone();
  const absl::Time entered = absl::FromUnixSeconds(1'800'000'000);
  dv1::Deal deal;
  deal.set_close_date("2027-03-10");
  (*deal.mutable_custom_fields())["UF_CRM_CALL_AT"].add_values(
      "2027-01-01T09:30:00Z");

  v1::Timing timing;
  ASSERT_OK_AND_ASSIGN(absl::Time now, DueTime(timing, deal, entered, utc));
  EXPECT_EQ(now, entered);

  timing.set_kind(v1::Timing::KIND_DELAY);
  *timing.mutable_delay() = Seconds(3600);
  ASSERT_OK_AND_ASSIGN(absl::Time later, DueTime(timing, deal, entered, utc));
  EXPECT_EQ(later, entered + absl::Hours(1));

  timing.set_kind(v1::Timing::KIND_RELATIVE_TO_DATE);
  timing.set_date_field("close_date");
  *timing.mutable_offset() = Seconds(-86400);  // a day before
  ASSERT_OK_AND_ASSIGN(absl::Time before, DueTime(timing, deal, entered, utc));
  EXPECT_EQ(before, absl::FromCivil(absl::CivilDay(2027, 3, 9), utc));
  // Midnight in the configured zone, not in UTC.
  const absl::TimeZone plus3 = absl::FixedTimeZone(3 * 3600);
  ASSERT_OK_AND_ASSIGN(absl::Time zoned, DueTime(timing, deal, entered, plus3));
  EXPECT_EQ(zoned, before - absl::Hours(3));

  timing.set_date_field("UF_CRM_CALL_AT");
  *timing.mutable_offset() = Seconds(-1800);
  ASSERT_OK_AND_ASSIGN(absl::Time call, DueTime(timing, deal, entered, utc));
  EXPECT_EQ(call, absl::FromCivil(absl::CivilSecond(2027, 1, 1, 9, 0, 0), utc));

  timing.set_date_field("begin_date");
  EXPECT_THAT(
      DueTime(timing, deal, entered, utc),
      StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("begin_date")));

  timing.Clear();
  timing.set_kind(v1::Timing::KIND_AT_TIME);
  timing.mutable_at()->set_seconds(1'700'000'000);  // in the past: returned
  ASSERT_OK_AND_ASSIGN(absl::Time at, DueTime(timing, deal, entered, utc));
  EXPECT_EQ(at, absl::FromUnixSeconds(1'700'000'000));
}

}  // namespace
}  // namespace crm::automation
