// crm-automation as a process among crm-pipeline-config and crm-deals (whose
// relay delivers deal events to it): rules that send email (to a real SMTP
// server), SMS and webhooks (to an HTTP server in the test), create tasks and
// move deals; a delayed rule under the test clock; an incoming-webhook
// trigger; and exactly-once internal effects across a SIGKILL of automation
// in the middle of a burst of stage moves.
#include <atomic>
#include <cstdlib>
#include <iostream>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/time_util.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

#include "services/automation/outbound/signing.h"
#include "tests/e2e/automation_fixture.h"

namespace crm::testing {
namespace {

using ::google::protobuf::util::TimeUtil;
using ::testing::HasSubstr;
using ::testing::StartsWith;
// Not `Run`: inside a TEST_F that names testing::Test::Run.
using RuleRun = automation_v1::Run;
using Task = automation_v1::Task;

constexpr int64_t kPipeline = 0;

automation_v1::Rule NewRule(const std::string& stage_id,
                            const std::string& name, int sort) {
  automation_v1::Rule rule;
  rule.set_pipeline_id(kPipeline);
  rule.set_stage_id(stage_id);
  rule.set_name(name);
  rule.set_sort(sort);
  rule.mutable_timing()->set_kind(automation_v1::Timing::KIND_IMMEDIATE);
  return rule;
}

automation_v1::Rule TaskRule(const std::string& stage_id,
                             const std::string& title, int sort) {
  automation_v1::Rule rule = NewRule(stage_id, "Task: " + title, sort);
  rule.mutable_action()->mutable_create_task()->set_title(title);
  return rule;
}

bool Finished(const RuleRun& run) {
  switch (run.outcome()) {
    case RuleRun::OUTCOME_SUCCEEDED:
    case RuleRun::OUTCOME_SKIPPED:
    case RuleRun::OUTCOME_CANCELLED:
    case RuleRun::OUTCOME_FAILED:
    case RuleRun::OUTCOME_LOOP_STOPPED:
      return true;
    default:
      return false;
  }
}

std::string Describe(const RuleRun& run) {
  return absl::StrCat(
      run.run_id(), " (rule ", run.rule_id(), ", stage ", run.stage_id(),
      "): ", RuleRun::Outcome_Name(run.outcome()), " after ", run.attempts(),
      " attempts", run.error().empty() ? "" : ": " + run.error());
}

// The runs of `rule_id` in a run log.
std::vector<RuleRun> RunsOf(const std::vector<RuleRun>& runs, int64_t rule_id) {
  std::vector<RuleRun> out;
  for (const RuleRun& run : runs) {
    if (run.rule_id() == rule_id) out.push_back(run);
  }
  return out;
}

// "<deal>/<entry sequence>/<rule>" of the run's documented shape.
::testing::AssertionResult IsRunIdOf(const std::string& run_id, int64_t deal_id,
                                     int64_t rule_id) {
  const std::vector<std::string> parts = absl::StrSplit(run_id, '/');
  int64_t sequence = 0;
  if (parts.size() != 3 || parts[0] != absl::StrCat(deal_id) ||
      !absl::SimpleAtoi(parts[1], &sequence) || sequence <= 0 ||
      parts[2] != absl::StrCat(rule_id)) {
    return ::testing::AssertionFailure()
           << "run id \"" << run_id << "\" is not \"" << deal_id
           << "/<entry sequence>/" << rule_id << "\"";
  }
  return ::testing::AssertionSuccess();
}

// The entry sequence inside a run id ("" if it has no such part).
std::string EntryOf(const std::string& run_id) {
  const std::vector<std::string> parts = absl::StrSplit(run_id, '/');
  return parts.size() == 3 ? parts[1] : "";
}

// POST /hooks/<token> with a JSON body on automation's HTTP port.
absl::StatusOr<HttpResponse> PostHook(int port, const std::string& token,
                                      const std::string& body) {
  return HttpPost(port, "/hooks/" + token, body);
}

// A deal entering a stage with four rules gets each rule's effect once:
// an email through SMTP rendered from the deal, an SMS through the gateway
// (retried after a 503 with the same idempotency key), a signed webhook and
// a task; the run log shows four successful runs. Entering the stage again
// runs them again, under new run ids.
TEST_F(AutomationE2eTest, StageEntryRunsEmailSmsWebhookAndTaskRules) {
  ASSERT_NO_FATAL_FAILURE(StartStack());
  AutomationClient automation(automation_->NewChannel());
  DealsClient deals(deals_->NewChannel());
  const std::string kSecret = "whsec-e2e-0123456789abcdef";

  automation_v1::Rule email = NewRule("PREPARATION", "Email the buyer", 10);
  automation_v1::SendEmail* send_email =
      email.mutable_action()->mutable_send_email();
  send_email->set_to("anna@example.com");
  send_email->set_subject("Deal {{title}} is in preparation");
  send_email->set_body(
      "Hello Anna,\nthe deal {{title}} ({{amount}} {{currency}}) is being "
      "prepared.\nDeal #{{id}}");
  automation_v1::Rule sms = NewRule("PREPARATION", "Text the buyer", 20);
  sms.mutable_action()->mutable_send_sms()->set_to("+15550100");
  sms.mutable_action()->mutable_send_sms()->set_text(
      "{{title}}: {{amount}} {{currency}}");
  automation_v1::Rule webhook = NewRule("PREPARATION", "Tell the ERP", 30);
  webhook.mutable_action()->mutable_call_webhook()->set_url(
      receiver_.Url("/webhook"));
  webhook.mutable_action()->mutable_call_webhook()->set_secret(kSecret);
  automation_v1::Rule task = TaskRule("PREPARATION", "Call {{title}} back", 40);
  for (automation_v1::Rule* rule : {&email, &sms, &webhook, &task}) {
    automation_v1::Rule created;
    ASSERT_TRUE(IsOk(automation.CreateRule(*rule, &created))) << rule->name();
    ASSERT_GT(created.id(), 0);
    EXPECT_TRUE(created.enabled());
    *rule = created;
  }
  EXPECT_EQ(webhook.action().call_webhook().secret(), "")
      << "the webhook secret is write-only";
  // The gateway fails once; the run retries.
  receiver_.AnswerNext("/sms", {503});

  deals_v1::Deal input;
  input.set_title("Fish & Chips");
  input.set_amount("1200.50");
  input.set_currency("USD");
  deals_v1::Deal deal;
  ASSERT_TRUE(IsOk(deals.Create(input, &deal)));
  deals_v1::Deal moved;
  ASSERT_TRUE(IsOk(deals.Move(deal.id(), "PREPARATION", &moved)));

  std::vector<RuleRun> runs;
  auto finished = [&](size_t count) {
    return [&, count] {
      if (!automation.ListRuns(deal.id(), &runs).ok()) return false;
      size_t done = 0;
      for (const RuleRun& run : runs) done += Finished(run) ? 1 : 0;
      return done >= count;
    };
  };
  ASSERT_TRUE(WaitUntil(finished(4)))
      << runs.size() << " runs, not all finished";
  ASSERT_EQ(runs.size(), 4u);
  std::map<int64_t, RuleRun> by_rule;
  std::string entry_sequence;
  for (const RuleRun& run : runs) {
    SCOPED_TRACE(Describe(run));
    EXPECT_EQ(run.outcome(), RuleRun::OUTCOME_SUCCEEDED);
    EXPECT_EQ(run.deal_id(), deal.id());
    EXPECT_EQ(run.pipeline_id(), kPipeline);
    EXPECT_EQ(run.stage_id(), "PREPARATION");
    EXPECT_FALSE(run.cause_event_id().empty());
    EXPECT_TRUE(run.has_scheduled_time());
    EXPECT_TRUE(run.has_finish_time());
    EXPECT_TRUE(IsRunIdOf(run.run_id(), deal.id(), run.rule_id()));
    // One entry: the runs share its sequence.
    if (entry_sequence.empty()) entry_sequence = EntryOf(run.run_id());
    EXPECT_EQ(EntryOf(run.run_id()), entry_sequence);
    by_rule[run.rule_id()] = run;
  }
  ASSERT_EQ(by_rule.size(), 4u) << "one run per rule";
  const RuleRun& email_run = by_rule[email.id()];
  const RuleRun& sms_run = by_rule[sms.id()];
  const RuleRun& webhook_run = by_rule[webhook.id()];
  const RuleRun& task_run = by_rule[task.id()];
  EXPECT_EQ(email_run.attempts(), 1);
  EXPECT_EQ(sms_run.attempts(), 2) << "one 503, then success";
  EXPECT_EQ(webhook_run.attempts(), 1);
  EXPECT_EQ(task_run.attempts(), 1);

  // The email, as the SMTP server got it.
  std::vector<ReceivedMail> mails = smtp_->Mails();
  ASSERT_EQ(mails.size(), 1u);
  EXPECT_EQ(mails[0].envelope, absl::StrCat(kMailFrom, "\nanna@example.com"));
  EXPECT_EQ(mails[0].Header("Subject"), "Deal Fish & Chips is in preparation");
  EXPECT_EQ(mails[0].Header("To"), "<anna@example.com>");
  EXPECT_THAT(mails[0].Header("From"), HasSubstr(kMailFrom));
  const std::string message_id = absl::StrCat(
      "<", absl::StrReplaceAll(email_run.run_id(), {{"/", "-"}}), "@crm.test>");
  EXPECT_EQ(mails[0].Header("Message-ID"), message_id)
      << "the Message-ID derives from the run id";
  EXPECT_THAT(mails[0].Body(),
              HasSubstr(absl::StrCat(
                  "Hello Anna,\r\nthe deal Fish & Chips (", deal.amount(),
                  " USD) is being prepared.\r\nDeal #", deal.id())));

  // The SMS: the failed attempt and the retry carry the same keys.
  std::vector<ReceivedRequest> texts = receiver_.Received("/sms");
  ASSERT_EQ(texts.size(), 2u);
  EXPECT_EQ(texts[0].answered, 503);
  EXPECT_EQ(texts[1].answered, 200);
  for (const ReceivedRequest& text : texts) {
    EXPECT_THAT(text.Header("Content-Type"),
                StartsWith("application/x-www-form-urlencoded"));
    EXPECT_EQ(text.Header("Idempotency-Key"), sms_run.run_id());
    const std::map<std::string, std::string> form = ParseForm(text.body);
    EXPECT_EQ(form.count("to") ? form.at("to") : "<none>", "+15550100");
    EXPECT_EQ(form.count("text") ? form.at("text") : "<none>",
              absl::StrCat("Fish & Chips: ", deal.amount(), " USD"));
    EXPECT_EQ(form.count("message_id") ? form.at("message_id") : "<none>",
              sms_run.run_id());
  }

  // The webhook: JSON, signed with the rule's secret over
  // "<timestamp>.<body>".
  std::vector<ReceivedRequest> hooks = receiver_.Received("/webhook");
  ASSERT_EQ(hooks.size(), 1u);
  const ReceivedRequest& hook = hooks[0];
  EXPECT_THAT(hook.Header("Content-Type"), StartsWith("application/json"));
  EXPECT_EQ(hook.Header(automation::kIdempotencyKeyHeader),
            webhook_run.run_id());
  const std::string timestamp = hook.Header(automation::kTimestampHeader);
  const std::string signature = hook.Header(automation::kSignatureHeader);
  int64_t unix_seconds = 0;
  ASSERT_TRUE(absl::SimpleAtoi(timestamp, &unix_seconds)) << timestamp;
  EXPECT_LE(std::abs(unix_seconds - absl::ToUnixSeconds(absl::Now())), 300)
      << "the timestamp is real time";
  EXPECT_TRUE(automation::VerifyWebhookSignature(kSecret, timestamp, hook.body,
                                                 signature))
      << "signature " << signature << " over " << timestamp << "." << hook.body;
  EXPECT_FALSE(automation::VerifyWebhookSignature("another secret", timestamp,
                                                  hook.body, signature));
  EXPECT_FALSE(automation::VerifyWebhookSignature(kSecret, timestamp,
                                                  hook.body + " ", signature));
  const nlohmann::json body = nlohmann::json::parse(hook.body, nullptr, false);
  ASSERT_TRUE(body.is_object()) << hook.body;
  EXPECT_EQ(body.value("event", ""), "automation.rule_run");
  EXPECT_EQ(body.value("run_id", ""), webhook_run.run_id());
  EXPECT_EQ(body.value("rule_id", int64_t{0}), webhook.id());
  EXPECT_EQ(body.value("deal_id", int64_t{0}), deal.id());
  EXPECT_EQ(body.value("stage_id", ""), "PREPARATION");
  EXPECT_EQ(body.value("cause_event_id", ""), webhook_run.cause_event_id());
  ASSERT_TRUE(body.contains("deal") && body["deal"].is_object()) << hook.body;
  EXPECT_EQ(body["deal"].value("title", ""), "Fish & Chips");
  EXPECT_EQ(body["deal"].value("stage_id", ""), "PREPARATION");

  // The task.
  std::vector<Task> tasks;
  ASSERT_TRUE(IsOk(automation.ListTasks(deal.id(), &tasks)));
  ASSERT_EQ(tasks.size(), 1u);
  EXPECT_EQ(tasks[0].title(), "Call Fish & Chips back");
  EXPECT_EQ(tasks[0].deal_id(), deal.id());
  EXPECT_EQ(tasks[0].rule_id(), task.id());
  EXPECT_EQ(tasks[0].pipeline_id(), kPipeline);
  EXPECT_EQ(tasks[0].stage_id(), "PREPARATION");
  EXPECT_EQ(tasks[0].status(), Task::STATUS_OPEN);
  EXPECT_EQ(tasks[0].responsible_id(), deal.assignee_id());

  // Nothing more arrives later: each effect happened once.
  absl::SleepFor(absl::Milliseconds(500));
  EXPECT_EQ(smtp_->Mails().size(), 1u);
  EXPECT_EQ(receiver_.Received("/sms").size(), 2u);
  EXPECT_EQ(receiver_.Received("/webhook").size(), 1u);
  ASSERT_TRUE(IsOk(automation.ListTasks(deal.id(), &tasks)));
  EXPECT_EQ(tasks.size(), 1u);

  // Re-entering the stage runs every rule again, under new run ids.
  ASSERT_TRUE(IsOk(deals.Move(deal.id(), "NEW", &moved)));
  ASSERT_TRUE(IsOk(deals.Move(deal.id(), "PREPARATION", &moved)));
  ASSERT_TRUE(WaitUntil(finished(8)))
      << runs.size() << " runs, not all finished";
  ASSERT_EQ(runs.size(), 8u);
  for (size_t i = 0; i < runs.size(); ++i) {
    EXPECT_EQ(runs[i].outcome(), RuleRun::OUTCOME_SUCCEEDED)
        << Describe(runs[i]);
    // Newest first: the second entry's four runs, then the first's.
    if (i < 4) {
      EXPECT_NE(EntryOf(runs[i].run_id()), entry_sequence) << Describe(runs[i]);
    } else {
      EXPECT_EQ(EntryOf(runs[i].run_id()), entry_sequence) << Describe(runs[i]);
    }
  }
  ASSERT_TRUE(WaitUntil([&] { return smtp_->Mails().size() >= 2; }));
  mails = smtp_->Mails();
  ASSERT_EQ(mails.size(), 2u);
  EXPECT_NE(mails[1].Header("Message-ID"), message_id);
  EXPECT_EQ(receiver_.Received("/sms").size(), 3u);
  EXPECT_EQ(receiver_.Received("/webhook").size(), 2u);
  ASSERT_TRUE(IsOk(automation.ListTasks(deal.id(), &tasks)));
  EXPECT_EQ(tasks.size(), 2u);
}

// A rule delayed by an hour does nothing until automation's test clock has
// moved an hour on, then runs. A deal that left the stage before gets its run
// cancelled and no task.
TEST_F(AutomationE2eTest, DelayedRuleWaitsForTheClockAndCancelsWhenDealLeaves) {
  ASSERT_NO_FATAL_FAILURE(StartStack());
  AutomationClient automation(automation_->NewChannel());
  DealsClient deals(deals_->NewChannel());

  automation_v1::Rule rule =
      TaskRule("EXECUTING", "Follow up on {{title}}", 10);
  rule.mutable_timing()->set_kind(automation_v1::Timing::KIND_DELAY);
  rule.mutable_timing()->mutable_delay()->set_seconds(3600);
  ASSERT_TRUE(IsOk(automation.CreateRule(rule, &rule)));

  deals_v1::Deal input;
  input.set_title("Stays");
  deals_v1::Deal staying;
  ASSERT_TRUE(IsOk(deals.Create(input, &staying)));
  input.set_title("Leaves");
  deals_v1::Deal leaving;
  ASSERT_TRUE(IsOk(deals.Create(input, &leaving)));
  const absl::Time before = absl::Now();
  deals_v1::Deal moved;
  ASSERT_TRUE(IsOk(deals.Move(staying.id(), "EXECUTING", &moved)));
  ASSERT_TRUE(IsOk(deals.Move(leaving.id(), "EXECUTING", &moved)));
  ASSERT_TRUE(IsOk(deals.Move(leaving.id(), "FINAL_INVOICE", &moved)));

  // The run of the deal that stays is scheduled an hour after its entry;
  // the other's is cancelled when its next move arrives.
  std::vector<RuleRun> staying_runs;
  std::vector<RuleRun> leaving_runs;
  ASSERT_TRUE(WaitUntil([&] {
    if (!automation.ListRuns(staying.id(), &staying_runs).ok() ||
        !automation.ListRuns(leaving.id(), &leaving_runs).ok()) {
      return false;
    }
    return staying_runs.size() == 1 && leaving_runs.size() == 1 &&
           leaving_runs[0].outcome() == RuleRun::OUTCOME_CANCELLED;
  })) << staying_runs.size()
      << " runs of the deal that stays, " << leaving_runs.size()
      << " of the one that leaves"
      << (leaving_runs.empty() ? "" : ": " + Describe(leaving_runs[0]));
  const absl::Time after = absl::Now();
  const RuleRun& scheduled = staying_runs[0];
  EXPECT_EQ(scheduled.outcome(), RuleRun::OUTCOME_SCHEDULED)
      << Describe(scheduled);
  EXPECT_EQ(scheduled.rule_id(), rule.id());
  const absl::Time due = absl::FromUnixMicros(
      TimeUtil::TimestampToMicroseconds(scheduled.scheduled_time()));
  EXPECT_GE(due, before + absl::Hours(1) - absl::Seconds(1));
  EXPECT_LE(due, after + absl::Hours(1) + absl::Seconds(1));
  EXPECT_THAT(leaving_runs[0].error(), HasSubstr("left stage"));
  EXPECT_EQ(leaving_runs[0].rule_id(), rule.id());

  // The scheduler looks at least once a second: nothing runs early.
  auto no_tasks_yet = [&](const std::string& when) {
    std::vector<Task> tasks;
    for (int64_t id : {staying.id(), leaving.id()}) {
      ASSERT_TRUE(IsOk(automation.ListTasks(id, &tasks)));
      EXPECT_TRUE(tasks.empty()) << "deal " << id << " " << when;
    }
    ASSERT_TRUE(IsOk(automation.ListRuns(staying.id(), &staying_runs)));
    ASSERT_EQ(staying_runs.size(), 1u);
    EXPECT_EQ(staying_runs[0].outcome(), RuleRun::OUTCOME_SCHEDULED)
        << Describe(staying_runs[0]) << " " << when;
  };
  absl::SleepFor(absl::Milliseconds(1200));
  ASSERT_NO_FATAL_FAILURE(no_tasks_yet("before the clock moved"));
  ASSERT_NO_FATAL_FAILURE(AdvanceClock(1800));
  absl::SleepFor(absl::Milliseconds(1200));
  ASSERT_NO_FATAL_FAILURE(no_tasks_yet("half an hour later"));

  ASSERT_NO_FATAL_FAILURE(AdvanceClock(1800));
  std::vector<Task> tasks;
  ASSERT_TRUE(WaitUntil([&] {
    return automation.ListTasks(staying.id(), &tasks).ok() && !tasks.empty();
  })) << "the delayed rule did not run after the clock moved an hour";
  ASSERT_TRUE(WaitUntil([&] {
    return automation.ListRuns(staying.id(), &staying_runs).ok() &&
           staying_runs.size() == 1 && Finished(staying_runs[0]);
  }));
  EXPECT_EQ(staying_runs[0].outcome(), RuleRun::OUTCOME_SUCCEEDED)
      << Describe(staying_runs[0]);
  ASSERT_EQ(tasks.size(), 1u);
  EXPECT_EQ(tasks[0].title(), "Follow up on Stays");
  EXPECT_EQ(tasks[0].stage_id(), "EXECUTING");
  EXPECT_EQ(tasks[0].rule_id(), rule.id());

  absl::SleepFor(absl::Milliseconds(500));
  ASSERT_TRUE(IsOk(automation.ListTasks(leaving.id(), &tasks)));
  EXPECT_TRUE(tasks.empty()) << "the cancelled run made a task";
  ASSERT_TRUE(IsOk(automation.ListRuns(leaving.id(), &leaving_runs)));
  ASSERT_EQ(leaving_runs.size(), 1u);
  EXPECT_EQ(leaving_runs[0].outcome(), RuleRun::OUTCOME_CANCELLED)
      << Describe(leaving_runs[0]);
  ASSERT_TRUE(IsOk(automation.ListTasks(staying.id(), &tasks)));
  EXPECT_EQ(tasks.size(), 1u);
}

// POST /hooks/<token> moves a deal forward to the trigger's stage, which
// runs that stage's rules; a deal already past the stage stays where it is.
TEST_F(AutomationE2eTest, IncomingWebhookTriggerMovesDealsForwardOnly) {
  ASSERT_NO_FATAL_FAILURE(StartStack());
  AutomationClient automation(automation_->NewChannel());
  DealsClient deals(deals_->NewChannel());

  automation_v1::Trigger trigger;
  trigger.set_pipeline_id(kPipeline);
  trigger.set_stage_id("FINAL_INVOICE");
  trigger.set_name("Payment page visited");
  trigger.set_type(automation_v1::TRIGGER_TYPE_INCOMING_WEBHOOK);
  ASSERT_TRUE(IsOk(automation.CreateTrigger(trigger, &trigger)));
  ASSERT_GT(trigger.id(), 0);
  const std::string token = trigger.webhook_token();
  ASSERT_GE(token.size(), 32u) << "a secret token of enough entropy";
  automation_v1::Rule rule =
      TaskRule("FINAL_INVOICE", "Send the final invoice for {{title}}", 10);
  ASSERT_TRUE(IsOk(automation.CreateRule(rule, &rule)));

  deals_v1::Deal input;
  input.set_title("Forward");
  deals_v1::Deal forward;
  ASSERT_TRUE(IsOk(deals.Create(input, &forward)));
  input.set_title("Already won");
  deals_v1::Deal won;
  ASSERT_TRUE(IsOk(deals.Create(input, &won)));
  deals_v1::Deal moved;
  ASSERT_TRUE(IsOk(deals.Move(forward.id(), "PREPARATION", &moved)));
  ASSERT_TRUE(IsOk(deals.Move(won.id(), "WON", &moved)));

  const int http_port = automation_->http_port();
  absl::StatusOr<HttpResponse> response = PostHook(
      http_port, token, absl::StrCat(R"({"deal_id": )", forward.id(), "}"));
  ASSERT_TRUE(response.ok()) << response.status();
  ASSERT_EQ(response->status, 200) << response->body;
  nlohmann::json answer = nlohmann::json::parse(response->body, nullptr, false);
  ASSERT_TRUE(answer.is_object()) << response->body;
  EXPECT_EQ(answer.value("moved", false), true) << response->body;
  EXPECT_EQ(answer.value("to_stage_id", ""), "FINAL_INVOICE");
  EXPECT_EQ(answer.value("trigger_id", int64_t{0}), trigger.id());

  deals_v1::Deal got;
  ASSERT_TRUE(IsOk(deals.Get(forward.id(), &got)));
  EXPECT_EQ(got.stage_id(), "FINAL_INVOICE");
  std::vector<deals_v1::StageHistoryEntry> history;
  ASSERT_TRUE(IsOk(ListAllStageHistory(deals, forward.id(), &history)));
  ASSERT_FALSE(history.empty());
  const deals_v1::StageHistoryEntry* last = &history.back();
  for (const deals_v1::StageHistoryEntry& entry : history) {
    if (entry.time() > last->time()) last = &entry;
  }
  EXPECT_EQ(last->to_stage_id(), "FINAL_INVOICE");
  EXPECT_EQ(last->from_stage_id(), "PREPARATION");
  EXPECT_EQ(last->channel(), deals_v1::CHANNEL_TRIGGER);

  // The entry runs the stage's rule.
  std::vector<Task> tasks;
  ASSERT_TRUE(WaitUntil([&] {
    return automation.ListTasks(forward.id(), &tasks).ok() && !tasks.empty();
  })) << "the trigger's move did not run the stage's rule";
  ASSERT_EQ(tasks.size(), 1u);
  EXPECT_EQ(tasks[0].title(), "Send the final invoice for Forward");
  EXPECT_EQ(tasks[0].stage_id(), "FINAL_INVOICE");
  std::vector<RuleRun> runs;
  ASSERT_TRUE(IsOk(automation.ListRuns(forward.id(), &runs)));
  ASSERT_EQ(RunsOf(runs, rule.id()).size(), 1u);
  EXPECT_EQ(RunsOf(runs, rule.id())[0].outcome(), RuleRun::OUTCOME_SUCCEEDED)
      << Describe(RunsOf(runs, rule.id())[0]);

  // A deal past the stage: no move back.
  response = PostHook(http_port, token,
                      absl::StrCat(R"({"deal_id": )", won.id(), "}"));
  ASSERT_TRUE(response.ok()) << response.status();
  ASSERT_EQ(response->status, 200) << response->body;
  answer = nlohmann::json::parse(response->body, nullptr, false);
  EXPECT_EQ(answer.value("moved", true), false) << response->body;
  ASSERT_TRUE(IsOk(deals.Get(won.id(), &got)));
  EXPECT_EQ(got.stage_id(), "WON");
  // Nor for the deal already in the stage.
  response = PostHook(http_port, token,
                      absl::StrCat(R"({"deal_id": )", forward.id(), "}"));
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->status, 200) << response->body;
  answer = nlohmann::json::parse(response->body, nullptr, false);
  EXPECT_EQ(answer.value("moved", true), false) << response->body;

  // Bad calls.
  response = PostHook(http_port, "not-a-token",
                      absl::StrCat(R"({"deal_id": )", forward.id(), "}"));
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->status, 404) << response->body;
  response = PostHook(http_port, token, R"({"deal": 1})");
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->status, 400) << response->body;

  absl::SleepFor(absl::Milliseconds(500));
  ASSERT_TRUE(IsOk(deals.Get(won.id(), &got)));
  EXPECT_EQ(got.stage_id(), "WON");
  ASSERT_TRUE(IsOk(automation.ListTasks(won.id(), &tasks)));
  EXPECT_TRUE(tasks.empty());
  ASSERT_TRUE(IsOk(automation.ListTasks(forward.id(), &tasks)));
  EXPECT_EQ(tasks.size(), 1u) << "the stage was entered once";
  ASSERT_TRUE(IsOk(deals.Get(forward.id(), &got)));
  EXPECT_EQ(got.stage_id(), "FINAL_INVOICE");
}

// SIGKILL of automation in the middle of a burst of stage moves, restarted
// on the same port (deals' relay redelivers what it had not acknowledged):
// every stage entry still gets its task exactly once, and every deal is
// moved by its change-stage rule exactly once.
//
// PREPARATION: create a task, then (after it) move the deal to EXECUTING;
// EXECUTING: create a task. So each deal ends in EXECUTING with two tasks
// and one automated stage change.
TEST_F(AutomationE2eTest, SigkillDuringABurstLosesAndDuplicatesNothing) {
  constexpr int kDeals = 60;
  constexpr int kMovers = 4;
  ASSERT_NO_FATAL_FAILURE(StartStack());
  DealsClient deals(deals_->NewChannel());
  automation_v1::Rule prepare =
      TaskRule("PREPARATION", "Prepare {{title}}", 10);
  automation_v1::Rule advance = NewRule("PREPARATION", "On to execution", 20);
  advance.set_execution(automation_v1::EXECUTION_AFTER_PREVIOUS);
  advance.mutable_action()->mutable_change_stage()->set_stage_id("EXECUTING");
  automation_v1::Rule execute = TaskRule("EXECUTING", "Execute {{title}}", 10);
  {
    AutomationClient automation(automation_->NewChannel());
    for (automation_v1::Rule* rule : {&prepare, &advance, &execute}) {
      ASSERT_TRUE(IsOk(automation.CreateRule(*rule, rule))) << rule->name();
    }
  }

  std::vector<int64_t> ids;
  for (int i = 0; i < kDeals; ++i) {
    deals_v1::Deal input;
    input.set_title(absl::StrCat("Burst #", i));
    deals_v1::Deal deal;
    ASSERT_TRUE(IsOk(deals.Create(input, &deal))) << i;
    ids.push_back(deal.id());
  }

  std::atomic<int> moved{0};
  std::vector<std::vector<std::string>> errors(kMovers);
  {
    std::vector<std::thread> movers;
    for (int t = 0; t < kMovers; ++t) {
      movers.emplace_back([&, t, channel = deals_->NewChannel()] {
        const DealsClient client(channel);
        for (int i = t; i < kDeals; i += kMovers) {
          deals_v1::Deal out;
          const grpc::Status status = client.Move(ids[i], "PREPARATION", &out);
          if (!status.ok()) {
            errors[t].push_back(
                absl::StrCat("deal ", ids[i], ": ", status.error_message()));
          }
          moved.fetch_add(1);
          // Paced just enough that the kill lands while automation is still
          // well behind the burst (tens of deals with work pending).
          absl::SleepFor(absl::Milliseconds(1));
        }
      });
    }
    EXPECT_TRUE(WaitUntil([&] { return moved.load() >= kDeals / 3; },
                          absl::Seconds(20)));
    absl::StatusOr<ExitInfo> killed = automation_->process().Kill();
    const int moved_at_kill = moved.load();
    for (std::thread& mover : movers) mover.join();
    ASSERT_TRUE(killed.ok()) << killed.status();
    ASSERT_TRUE(killed->signaled)
        << "automation ended before the kill: " << killed->ToString();
    std::cerr << "automation killed after " << moved_at_kill << " of " << kDeals
              << " moves\n";
  }
  for (const auto& thread_errors : errors) {
    for (const std::string& error : thread_errors)
      ADD_FAILURE() << "move to PREPARATION failed: " << error;
  }
  // What automation finished before it died (it cannot move deals now).
  int executing_at_kill = 0;
  for (int64_t id : ids) {
    deals_v1::Deal got;
    ASSERT_TRUE(IsOk(deals.Get(id, &got)));
    executing_at_kill += got.stage_id() == "EXECUTING" ? 1 : 0;
  }
  std::cerr << executing_at_kill << " of " << kDeals
            << " deals were in EXECUTING when automation was killed\n";

  automation_ = StartAutomation();
  ASSERT_NE(automation_, nullptr);
  ASSERT_EQ(automation_->grpc_port(), automation_port_);
  AutomationClient automation(automation_->NewChannel());

  // Wait until every deal has its two tasks (deals already seen complete
  // are not asked again).
  std::set<int64_t> complete;
  const bool all_complete = WaitUntil([&] {
    for (int64_t id : ids) {
      if (complete.count(id) != 0) continue;
      std::vector<Task> tasks;
      if (!automation.ListTasks(id, &tasks).ok() || tasks.size() < 2)
        return false;
      complete.insert(id);
    }
    return true;
  });
  EXPECT_TRUE(all_complete)
      << complete.size() << " of " << kDeals << " deals got both tasks";
  // Let anything that would duplicate an effect happen, then check each
  // deal in full.
  absl::SleepFor(absl::Seconds(1));
  for (int64_t id : ids) {
    SCOPED_TRACE(absl::StrCat("deal ", id));
    deals_v1::Deal got;
    ASSERT_TRUE(IsOk(deals.Get(id, &got)));
    EXPECT_EQ(got.stage_id(), "EXECUTING");

    std::vector<Task> tasks;
    ASSERT_TRUE(IsOk(automation.ListTasks(id, &tasks)));
    std::map<std::string, int> tasks_by_stage;
    for (const Task& task : tasks) ++tasks_by_stage[task.stage_id()];
    EXPECT_EQ(tasks.size(), 2u);
    EXPECT_EQ(tasks_by_stage["PREPARATION"], 1);
    EXPECT_EQ(tasks_by_stage["EXECUTING"], 1);

    std::vector<deals_v1::StageHistoryEntry> history;
    ASSERT_TRUE(IsOk(ListAllStageHistory(deals, id, &history)));
    int automated = 0;
    int by_api = 0;
    for (const deals_v1::StageHistoryEntry& entry : history) {
      if (entry.channel() == deals_v1::CHANNEL_AUTOMATION) {
        ++automated;
        EXPECT_EQ(entry.from_stage_id(), "PREPARATION");
        EXPECT_EQ(entry.to_stage_id(), "EXECUTING");
      } else if (entry.kind() != deals_v1::StageHistoryEntry::KIND_CREATED) {
        ++by_api;
        EXPECT_EQ(entry.to_stage_id(), "PREPARATION");
      }
    }
    EXPECT_EQ(automated, 1) << "automated stage changes";
    EXPECT_EQ(by_api, 1) << "the test's own move";

    std::vector<RuleRun> runs;
    ASSERT_TRUE(IsOk(automation.ListRuns(id, &runs)));
    EXPECT_EQ(runs.size(), 3u) << "one run per rule and entry";
    for (const RuleRun& run : runs) {
      EXPECT_TRUE(Finished(run)) << Describe(run);
    }
    for (const automation_v1::Rule* rule : {&prepare, &execute}) {
      const std::vector<RuleRun> of_rule = RunsOf(runs, rule->id());
      ASSERT_EQ(of_rule.size(), 1u) << rule->name();
      EXPECT_EQ(of_rule[0].outcome(), RuleRun::OUTCOME_SUCCEEDED)
          << Describe(of_rule[0]);
    }
    const std::vector<RuleRun> changes = RunsOf(runs, advance.id());
    ASSERT_EQ(changes.size(), 1u);
    // A run due at the entry that the kill cut after deals applied its move
    // succeeds too: either it runs again (deals recognises the run id) or
    // its own move's event, carrying the run id, reaches the restarted
    // service first and records it as done.
    EXPECT_EQ(changes[0].outcome(), RuleRun::OUTCOME_SUCCEEDED)
        << Describe(changes[0]);
  }
}

}  // namespace
}  // namespace crm::testing

namespace crm::testing {
namespace {

// Deals down while a run is due: the run retries (RETRYING, deals'
// unavailability does not count against the attempt limit) and applies
// once deals is back on the same port and data.
TEST_F(AutomationE2eTest, RunsWaitWhileDealsIsDownAndNothingIsLost) {
  ASSERT_NO_FATAL_FAILURE(StartStack());
  AutomationClient automation(automation_->NewChannel());
  automation_v1::Rule advance = NewRule("PREPARATION", "Advance", 10);
  advance.mutable_timing()->set_kind(automation_v1::Timing::KIND_DELAY);
  advance.mutable_timing()->mutable_delay()->set_seconds(600);
  advance.mutable_action()->mutable_change_stage()->set_stage_id("EXECUTING");
  ASSERT_TRUE(IsOk(automation.CreateRule(advance, &advance)));
  automation_v1::Rule task = TaskRule("EXECUTING", "Execute {{title}}", 10);
  ASSERT_TRUE(IsOk(automation.CreateRule(task, &task)));

  int64_t deal_id = 0;
  {
    DealsClient deals(deals_->NewChannel());
    deals_v1::Deal input;
    input.set_title("Patient");
    deals_v1::Deal created;
    ASSERT_TRUE(IsOk(deals.Create(input, &created)));
    deal_id = created.id();
    deals_v1::Deal moved;
    ASSERT_TRUE(IsOk(deals.Move(deal_id, "PREPARATION", &moved)));
  }
  std::vector<RuleRun> runs;
  ASSERT_TRUE(WaitUntil([&] {
    return automation.ListRuns(deal_id, &runs).ok() && runs.size() == 1;
  }));
  EXPECT_EQ(runs[0].outcome(), RuleRun::OUTCOME_SCHEDULED);

  const int deals_port = deals_->grpc_port();
  absl::StatusOr<ExitInfo> killed = deals_->process().Kill();
  ASSERT_TRUE(killed.ok()) << killed.status();
  deals_.reset();
  AdvanceClock(601);
  ASSERT_TRUE(WaitUntil([&] {
    return automation.ListRuns(deal_id, &runs).ok() && runs.size() == 1 &&
           runs[0].outcome() == RuleRun::OUTCOME_RETRYING &&
           runs[0].attempts() >= 2;
  })) << (runs.empty() ? "no runs" : Describe(runs[0]));

  DealsOptions options;
  options.port = deals_port;
  options.pipeline_config_addr = config_->grpc_address();
  options.subscribers = absl::StrCat("automation=127.0.0.1:", automation_port_);
  deals_ = StartDeals(options);
  ASSERT_NE(deals_, nullptr);
  DealsClient deals(deals_->NewChannel());
  std::vector<Task> tasks;
  ASSERT_TRUE(WaitUntil([&] {
    return automation.ListTasks(deal_id, &tasks).ok() && tasks.size() == 1;
  })) << tasks.size()
      << " tasks";
  EXPECT_EQ(tasks[0].title(), "Execute Patient");
  deals_v1::Deal now;
  ASSERT_TRUE(IsOk(deals.Get(deal_id, &now)));
  EXPECT_EQ(now.stage_id(), "EXECUTING");
  ASSERT_TRUE(IsOk(automation.ListRuns(deal_id, &runs)));
  ASSERT_EQ(runs.size(), 2u);
  for (const RuleRun& run : runs)
    EXPECT_EQ(run.outcome(), RuleRun::OUTCOME_SUCCEEDED) << Describe(run);
  std::vector<deals_v1::StageHistoryEntry> history;
  ASSERT_TRUE(IsOk(ListAllStageHistory(deals, deal_id, &history)));
  int automated = 0;
  for (const auto& entry : history)
    automated += entry.channel() == deals_v1::CHANNEL_AUTOMATION ? 1 : 0;
  EXPECT_EQ(automated, 1);
}

}  // namespace
}  // namespace crm::testing
