// The action runners on their own: the fake deals client, a fake pipeline
// configuration and the recording mail and HTTP senders. Each test builds
// the run record the executor would hand over and checks what the attempt
// did outside and what it reports back.
#include "services/automation/engine/actions.h"

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "common/pipelines_client/fake_pipeline_client.h"
#include "services/automation/clients/fake_deals_client.h"
#include "services/automation/outbound/fake_senders.h"
#include "services/automation/outbound/signing.h"

namespace crm::automation {
namespace {

namespace dv1 = ::crm::deals::v1;
using ::testing::HasSubstr;
using ::testing::Pair;
using ::testing::UnorderedElementsAre;

constexpr char kRunId[] = "7/3/2";

class ActionRunnerTest : public ::testing::Test {
 protected:
  ActionRunnerTest() {
    deal_.set_id(7);
    deal_.set_title("Negócio grande");
    deal_.set_pipeline_id(0);
    deal_.set_stage_id("NEW");
    deal_.set_assignee_id(5);
    deal_.set_currency("EUR");
    deals_.Put(deal_);
    deal_ = *deals_.Find(7);
    record_.set_entry_seq(3);
    v1::Run& run = *record_.mutable_run();
    run.set_run_id(kRunId);
    run.set_deal_id(7);
    run.set_rule_id(2);
    run.set_pipeline_id(0);
    run.set_stage_id("NEW");
    rule_.set_id(2);
    rule_.set_pipeline_id(0);
    rule_.set_stage_id("NEW");
    options_.mail_from = "crm@example.com";
    options_.sms_gateway_url = "http://127.0.0.1:9/sms";
  }

  RunResult Attempt(std::optional<dv1::Deal> snapshot = std::nullopt) {
    ActionRunner runner(deals_, pipelines_, mail_, http_, options_);
    if (!snapshot.has_value()) snapshot = deal_;
    return runner.Attempt(record_, &rule_, std::move(snapshot), now_);
  }

  FakeDealsClient deals_;
  common::FakePipelineClient pipelines_;
  FakeMailSender mail_;
  FakeHttpSender http_;
  ActionOptions options_;
  dv1::Deal deal_;
  storage::RunRecord record_;
  v1::Rule rule_;
  const absl::Time now_ = absl::FromUnixSeconds(1'800'000'000);
};

TEST_F(ActionRunnerTest, EmailIsRenderedAndKeyedByTheRunId) {
  auto* email = rule_.mutable_action()->mutable_send_email();
  email->set_to("client@example.org");
  email->set_subject("About {{title}}");
  email->set_body("Hello");
  const RunResult result = Attempt();
  EXPECT_EQ(result.outcome, v1::Run::OUTCOME_SUCCEEDED) << result.error;
  const std::vector<SmtpMail> sent = mail_.sent();
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].from, "crm@example.com");
  EXPECT_EQ(sent[0].to, "client@example.org");
  EXPECT_EQ(sent[0].subject, "About Negócio grande");
  // The same run always gives the same Message-ID (receivers dedupe).
  EXPECT_EQ(sent[0].message_id, MakeMessageId(kRunId, "example.com"));
}

TEST_F(ActionRunnerTest, MailRefusalsRetryOrFailByKind) {
  rule_.mutable_action()->mutable_send_email()->set_to("client@example.org");
  mail_.AnswerNext(absl::UnavailableError("452 try later"));
  RunResult result = Attempt();
  EXPECT_EQ(result.outcome, v1::Run::OUTCOME_RETRYING);
  EXPECT_TRUE(result.retry);
  EXPECT_TRUE(result.counts);  // towards max_attempts
  mail_.AnswerNext(absl::FailedPreconditionError("550 no such user"));
  result = Attempt();
  EXPECT_EQ(result.outcome, v1::Run::OUTCOME_FAILED);
  EXPECT_FALSE(result.retry);
  EXPECT_THAT(result.error, HasSubstr("550"));
}

TEST_F(ActionRunnerTest, EmailWithoutARecipientFailsWithTheReason) {
  rule_.mutable_action()->mutable_send_email()->set_subject("x");
  const RunResult result = Attempt();
  EXPECT_EQ(result.outcome, v1::Run::OUTCOME_FAILED);
  EXPECT_THAT(result.error, HasSubstr("send_email.to"));
  EXPECT_TRUE(mail_.sent().empty());
}

TEST_F(ActionRunnerTest, SmsGoesToTheGatewayAsAFormWithTheIdempotencyKey) {
  auto* sms = rule_.mutable_action()->mutable_send_sms();
  sms->set_to("+351 900 000 000");
  sms->set_text("{{title}}");
  ASSERT_EQ(Attempt().outcome, v1::Run::OUTCOME_SUCCEEDED);
  const std::vector<HttpPost> posts = http_.posts();
  ASSERT_EQ(posts.size(), 1u);
  EXPECT_EQ(posts[0].url, options_.sms_gateway_url);
  EXPECT_EQ(posts[0].content_type, kFormContentType);
  EXPECT_THAT(posts[0].body, HasSubstr("message_id=7%2F3%2F2"));
  EXPECT_THAT(posts[0].headers,
              UnorderedElementsAre(Pair(kIdempotencyKeyHeader, kRunId)));
  // The gateway set by the operator may be on a private address.
  EXPECT_FALSE(posts[0].public_addresses_only);
}

TEST_F(ActionRunnerTest, GatewayAnswersDecideBetweenRetryAndFailure) {
  rule_.mutable_action()->mutable_send_sms()->set_to("+351900000000");
  http_.AnswerNext(HttpResult{429, ""});
  EXPECT_EQ(Attempt().outcome, v1::Run::OUTCOME_RETRYING);
  http_.AnswerNext(HttpResult{400, "bad number"});
  RunResult result = Attempt();
  EXPECT_EQ(result.outcome, v1::Run::OUTCOME_FAILED);
  EXPECT_THAT(result.error, HasSubstr("SMS gateway answered HTTP 400"));
  options_.sms_gateway_url.clear();
  result = Attempt();
  EXPECT_EQ(result.outcome, v1::Run::OUTCOME_FAILED);
  EXPECT_THAT(result.error, HasSubstr("--sms_gateway_url"));
}

TEST_F(ActionRunnerTest, WebhookIsSignedAndKeptOffPrivateAddresses) {
  auto* hook = rule_.mutable_action()->mutable_call_webhook();
  hook->set_url("https://hooks.example.com/crm");
  hook->set_secret("s3cret");
  ASSERT_EQ(Attempt().outcome, v1::Run::OUTCOME_SUCCEEDED);
  const std::vector<HttpPost> posts = http_.posts();
  ASSERT_EQ(posts.size(), 1u);
  EXPECT_TRUE(posts[0].public_addresses_only);
  EXPECT_THAT(posts[0].body, HasSubstr("\"run_id\":\"7/3/2\""));
  std::string timestamp, signature;
  for (const auto& [name, value] : posts[0].headers) {
    if (name == kTimestampHeader) timestamp = value;
    if (name == kSignatureHeader) signature = value;
  }
  EXPECT_TRUE(
      VerifyWebhookSignature("s3cret", timestamp, posts[0].body, signature));
  http_.AnswerNext(absl::UnavailableError("connection refused"));
  EXPECT_EQ(Attempt().outcome, v1::Run::OUTCOME_RETRYING);
}

TEST_F(ActionRunnerTest, ATaskGoesToTheAssigneeUnlessTheRuleNamesSomeone) {
  auto* task = rule_.mutable_action()->mutable_create_task();
  task->set_title("Call about {{title}}");
  task->mutable_deadline_after()->set_seconds(3600);
  RunResult result = Attempt();
  ASSERT_EQ(result.outcome, v1::Run::OUTCOME_SUCCEEDED) << result.error;
  ASSERT_TRUE(result.task.has_value());
  EXPECT_EQ(result.task->responsible_id(), 5);
  EXPECT_EQ(result.task->title(), "Call about Negócio grande");
  EXPECT_EQ(result.task->deadline().seconds(),
            absl::ToUnixSeconds(now_ + absl::Hours(1)));
  EXPECT_EQ(result.task->stage_id(), "NEW");
  task->set_responsible_id(9);
  EXPECT_EQ(Attempt().task->responsible_id(), 9);
  // Nobody to give it to.
  task->set_responsible_id(0);
  deal_.set_assignee_id(0);
  result = Attempt();
  EXPECT_EQ(result.outcome, v1::Run::OUTCOME_FAILED);
  EXPECT_FALSE(result.task.has_value());
}

TEST_F(ActionRunnerTest, AMoveAnEarlierAttemptMadeCountsAsDone) {
  rule_.mutable_action()->mutable_change_stage()->set_stage_id("PREPARATION");
  ASSERT_EQ(Attempt().outcome, v1::Run::OUTCOME_SUCCEEDED);
  EXPECT_EQ(deals_.Find(7)->stage_id(), "PREPARATION");
  // deals refuses the run id with another payload: the change was made.
  deals_.FailNext(FakeDealsClient::kMoveStage,
                  absl::AlreadyExistsError("request_id: used already"));
  EXPECT_EQ(Attempt().outcome, v1::Run::OUTCOME_SUCCEEDED);
  // deals away: retried without counting towards max_attempts.
  deals_.FailNext(FakeDealsClient::kMoveStage,
                  absl::UnavailableError("deals is away"));
  const RunResult away = Attempt();
  EXPECT_EQ(away.outcome, v1::Run::OUTCOME_RETRYING);
  EXPECT_FALSE(away.counts);
  deals_.FailNext(FakeDealsClient::kMoveStage,
                  absl::FailedPreconditionError("no such stage"));
  EXPECT_EQ(Attempt().outcome, v1::Run::OUTCOME_FAILED);
}

TEST_F(ActionRunnerTest, ACommentIsAppendedToTheCurrentComments) {
  dv1::Deal current = *deals_.Find(7);
  current.set_comments("first");
  deals_.Put(current);
  rule_.mutable_action()->mutable_add_comment()->set_text("second");
  ASSERT_EQ(Attempt().outcome, v1::Run::OUTCOME_SUCCEEDED);
  EXPECT_EQ(deals_.Find(7)->comments(), "first\n\nsecond");
}

TEST_F(ActionRunnerTest, AnUnmetConditionSkipsAndNamesThePart) {
  rule_.mutable_action()->mutable_change_stage()->set_stage_id("PREPARATION");
  auto* condition = rule_.mutable_condition()->mutable_condition();
  condition->set_field("currency");
  condition->set_op(dv1::Condition::OPERATOR_EQ);
  condition->add_values("USD");
  const RunResult result = Attempt();
  EXPECT_EQ(result.outcome, v1::Run::OUTCOME_SKIPPED);
  EXPECT_THAT(result.error, HasSubstr("currency OPERATOR_EQ USD"));
  EXPECT_EQ(deals_.applied(FakeDealsClient::kMoveStage), 0);
}

TEST_F(ActionRunnerTest, ADelayedRunWhoseDealLeftIsCancelled) {
  rule_.mutable_action()->mutable_change_stage()->set_stage_id("PREPARATION");
  rule_.mutable_timing()->set_kind(v1::Timing::KIND_DELAY);
  rule_.mutable_timing()->mutable_delay()->set_seconds(60);
  dv1::Deal moved = *deals_.Find(7);
  moved.set_stage_id("NEGOTIATION");
  deals_.Put(moved);
  // No snapshot: a delayed run reads the deal as it is now.
  ActionRunner runner(deals_, pipelines_, mail_, http_, options_);
  const RunResult result = runner.Attempt(record_, &rule_, std::nullopt, now_);
  EXPECT_EQ(result.outcome, v1::Run::OUTCOME_CANCELLED);
  EXPECT_EQ(deals_.applied(FakeDealsClient::kMoveStage), 0);
}

TEST_F(ActionRunnerTest, ATriggerMovesTheDealWithItsRunId) {
  record_.mutable_run()->set_rule_id(0);
  record_.mutable_run()->set_trigger_id(4);
  record_.set_target_stage_id("PREPARATION");
  ActionRunner runner(deals_, pipelines_, mail_, http_, options_);
  const RunResult result = runner.Attempt(record_, nullptr, std::nullopt, now_);
  EXPECT_EQ(result.outcome, v1::Run::OUTCOME_SUCCEEDED) << result.error;
  const std::vector<FakeDealsClient::Call> calls = deals_.calls();
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0].request_id, kRunId);
  EXPECT_EQ(calls[0].channel, dv1::CHANNEL_TRIGGER);
}

TEST_F(ActionRunnerTest, AGoneOrDisabledRuleIsCancelled) {
  ActionRunner runner(deals_, pipelines_, mail_, http_, options_);
  RunResult result = runner.Attempt(record_, nullptr, deal_, now_);
  EXPECT_EQ(result.outcome, v1::Run::OUTCOME_CANCELLED);
  EXPECT_THAT(result.error, HasSubstr("deleted"));
  rule_.set_enabled(false);
  result = runner.Attempt(record_, &rule_, deal_, now_);
  EXPECT_EQ(result.outcome, v1::Run::OUTCOME_CANCELLED);
  EXPECT_THAT(result.error, HasSubstr("disabled"));
}

}  // namespace
}  // namespace crm::automation
