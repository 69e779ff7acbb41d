// The engine on its own: a real automation store (RocksDB in a temp dir),
// the fake deals client, a fake pipeline configuration and the adjustable
// clock. Events are made here as deals would send them, so each test
// decides exactly what deals did. The service tier (tests/service) runs the
// same engine against the real deals service.
#include "services/automation/engine/engine.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "common/pipelines_client/fake_pipeline_client.h"
#include "common/rocks/rocks_options.h"
#include "common/status/status_matchers.h"
#include "common/testing/temp_dir.h"
#include "services/automation/clients/fake_deals_client.h"
#include "services/automation/outbound/fake_senders.h"
#include "services/automation/storage/automation_store.h"

namespace crm::automation {
namespace {

namespace dv1 = ::crm::deals::v1;
using Method = FakeDealsClient::Method;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr int kShard = 3;

class EngineTest : public ::testing::Test {
 protected:
  EngineTest() {
    options_.workers = 2;
    // Retries are a minute apart, so the real time a test takes (the
    // adjustable clock follows it) never makes one due early.
    options_.retry_base = absl::Minutes(1);
    options_.deals_retry_max = absl::Hours(1);
    options_.loop_max_depth = 3;
    options_.max_attempts = 3;
    options_.mail = &mail_;
  }

  void SetUp() override {
    auto store = AutomationStore::Open(dir_.path(), common::RocksOptions());
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    engine_ = std::make_unique<AutomationEngine>(*store_, pipelines_, deals_,
                                                 clock_, options_);
    ASSERT_OK(engine_->Start());
  }

  void TearDown() override {
    if (engine_ != nullptr) engine_->Stop();
  }

  // A deal of pipeline 0 in `stage_id`, known to the fake deals.
  dv1::Deal PutDeal(int64_t local_id, const std::string& stage_id) {
    dv1::Deal deal;
    deal.set_id((local_id << 10) | kShard);
    deal.set_title(absl::StrCat("Deal ", local_id));
    deal.set_pipeline_id(0);
    deal.set_stage_id(stage_id);
    deal.set_assignee_id(5);
    deals_.Put(deal);
    return *deals_.Find(deal.id());
  }

  // Delivers the event of `deal` entering `to_stage` (created there when
  // `from_stage` is empty), made by a user unless `request_id` names a run
  // of automation.
  void Enter(const dv1::Deal& deal, const std::string& from_stage,
             const std::string& to_stage, const std::string& request_id = "") {
    dv1::DealEvent event;
    event.set_sequence(++sequence_);
    event.set_shard(kShard);
    event.set_event_id(absl::StrCat(kShard, "-", sequence_));
    event.set_deal_id(deal.id());
    event.set_type(from_stage.empty() ? dv1::DEAL_EVENT_TYPE_CREATED
                                      : dv1::DEAL_EVENT_TYPE_STAGE_CHANGED);
    if (request_id.empty()) {
      event.set_actor_id(5);
      event.set_channel(dv1::CHANNEL_API);
    } else {
      event.set_actor_service("automation");
      event.set_channel(dv1::CHANNEL_AUTOMATION);
      event.set_request_id(request_id);
    }
    event.set_from_pipeline_id(0);
    event.set_from_stage_id(from_stage);
    event.set_to_pipeline_id(0);
    event.set_to_stage_id(to_stage);
    *event.mutable_deal() = deal;
    event.mutable_deal()->set_stage_id(to_stage);
    google::protobuf::RepeatedPtrField<dv1::DealEvent> events;
    *events.Add() = event;
    ASSERT_OK_AND_ASSIGN(int64_t applied, engine_->ApplyEvents(events));
    ASSERT_EQ(applied, sequence_);
  }

  // Delivers the event of the last MoveStage call the engine made.
  void DeliverLastMove(const dv1::Deal& deal, const std::string& from_stage) {
    const std::vector<FakeDealsClient::Call> calls = deals_.calls();
    ASSERT_FALSE(calls.empty());
    const FakeDealsClient::Call& last = calls.back();
    ASSERT_EQ(last.method, FakeDealsClient::kMoveStage);
    Enter(deal, from_stage, last.stage_id, last.request_id);
  }

  void WaitIdle() {
    const absl::Time deadline = absl::Now() + absl::Seconds(20);
    while (!engine_->Idle()) {
      ASSERT_LT(absl::Now(), deadline) << "the engine did not settle";
      absl::SleepFor(absl::Milliseconds(2));
    }
  }

  // Moves the clock, lets the scheduler see it and waits for what is due.
  void Advance(absl::Duration d) {
    ASSERT_OK(clock_.Advance(d));
    engine_->Wake();
    WaitIdle();
  }

  v1::Rule AddRule(v1::Rule rule) {
    rule.set_pipeline_id(0);
    if (rule.name().empty()) rule.set_name("rule");
    auto created = engine_->catalog().CreateRule(rule);
    EXPECT_TRUE(created.ok()) << created.status();
    return created.ok() ? *created : v1::Rule();
  }

  static v1::Rule MoveRule(const std::string& stage_id,
                           const std::string& to_stage, int delay_seconds = 0) {
    v1::Rule rule;
    rule.set_stage_id(stage_id);
    rule.mutable_action()->mutable_change_stage()->set_stage_id(to_stage);
    if (delay_seconds > 0) {
      rule.mutable_timing()->set_kind(v1::Timing::KIND_DELAY);
      rule.mutable_timing()->mutable_delay()->set_seconds(delay_seconds);
    }
    return rule;
  }

  static v1::Rule CommentRule(const std::string& stage_id,
                              const std::string& text, int32_t sort,
                              int delay_seconds = 0,
                              bool after_previous = false) {
    v1::Rule rule;
    rule.set_stage_id(stage_id);
    rule.set_sort(sort);
    rule.mutable_action()->mutable_add_comment()->set_text(text);
    if (delay_seconds > 0) {
      rule.mutable_timing()->set_kind(v1::Timing::KIND_DELAY);
      rule.mutable_timing()->mutable_delay()->set_seconds(delay_seconds);
    }
    if (after_previous) rule.set_execution(v1::EXECUTION_AFTER_PREVIOUS);
    return rule;
  }

  // The deal's runs, oldest first, as (rule id, outcome).
  std::vector<std::pair<int64_t, v1::Run::Outcome>> Runs(int64_t deal_id) {
    auto page = engine_->ListRuns(deal_id, "", 100);
    EXPECT_TRUE(page.ok()) << page.status();
    std::vector<std::pair<int64_t, v1::Run::Outcome>> runs;
    if (!page.ok()) return runs;
    for (auto it = page->items.rbegin(); it != page->items.rend(); ++it)
      runs.emplace_back(it->rule_id(), it->outcome());
    return runs;
  }

  v1::Run OnlyRun(int64_t deal_id) {
    auto page = engine_->ListRuns(deal_id, "", 100);
    EXPECT_TRUE(page.ok()) << page.status();
    EXPECT_EQ(page.ok() ? page->items.size() : 0u, 1u);
    return page.ok() && !page->items.empty() ? page->items[0] : v1::Run();
  }

  int Calls(Method method) {
    int n = 0;
    for (const FakeDealsClient::Call& call : deals_.calls())
      n += call.method == method ? 1 : 0;
    return n;
  }

  crm::testing::TempDir dir_;
  std::unique_ptr<AutomationStore> store_;
  common::FakePipelineClient pipelines_;
  FakeDealsClient deals_;
  FakeMailSender mail_;
  Clock clock_{/*adjustable=*/true};
  EngineOptions options_;
  std::unique_ptr<AutomationEngine> engine_;
  int64_t sequence_ = 0;
};

TEST_F(EngineTest, ADelayedRunIsCancelledWhenTheDealLeavesTheStage) {
  AddRule(MoveRule("NEW", "PREPARATION", /*delay_seconds=*/3600));
  const dv1::Deal deal = PutDeal(1, "NEW");
  Enter(deal, "", "NEW");
  WaitIdle();
  EXPECT_EQ(OnlyRun(deal.id()).outcome(), v1::Run::OUTCOME_SCHEDULED);
  Enter(deal, "NEW", "EXECUTING");  // a user moves it on
  Advance(absl::Hours(2));
  EXPECT_EQ(Calls(FakeDealsClient::kMoveStage), 0);
  const v1::Run run = OnlyRun(deal.id());
  EXPECT_EQ(run.outcome(), v1::Run::OUTCOME_CANCELLED);
  EXPECT_THAT(run.error(), HasSubstr("left stage"));
}

TEST_F(EngineTest, AfterPreviousWaitsForTheRuleBeforeIt) {
  const v1::Rule first =
      AddRule(CommentRule("NEW", "first", 1, /*delay_seconds=*/600));
  const v1::Rule second = AddRule(CommentRule(
      "NEW", "second", 2, /*delay_seconds=*/0, /*after_previous=*/true));
  const v1::Rule parallel = AddRule(CommentRule("NEW", "parallel", 3));
  const dv1::Deal deal = PutDeal(2, "NEW");
  Enter(deal, "", "NEW");
  WaitIdle();
  // Only the parallel rule ran; the second waits for the delayed first.
  ASSERT_EQ(deals_.applied(FakeDealsClient::kUpdateDeal), 1);
  EXPECT_THAT(deals_.Find(deal.id())->comments(), HasSubstr("parallel"));
  Advance(absl::Minutes(11));
  EXPECT_EQ(deals_.applied(FakeDealsClient::kUpdateDeal), 3);
  const std::string comments = deals_.Find(deal.id())->comments();
  EXPECT_LT(comments.find("first"), comments.find("second")) << comments;
  EXPECT_THAT(Runs(deal.id()),
              ::testing::UnorderedElementsAre(
                  std::pair(first.id(), v1::Run::OUTCOME_SUCCEEDED),
                  std::pair(second.id(), v1::Run::OUTCOME_SUCCEEDED),
                  std::pair(parallel.id(), v1::Run::OUTCOME_SUCCEEDED)));
}

TEST_F(EngineTest, AnAfterPreviousChainIsCancelledWithItsStage) {
  AddRule(CommentRule("NEW", "first", 1, /*delay_seconds=*/600));
  AddRule(CommentRule("NEW", "second", 2, /*delay_seconds=*/0,
                      /*after_previous=*/true));
  const dv1::Deal deal = PutDeal(3, "NEW");
  Enter(deal, "", "NEW");
  WaitIdle();
  Enter(deal, "NEW", "PREPARATION");
  Advance(absl::Minutes(11));
  EXPECT_EQ(Calls(FakeDealsClient::kUpdateDeal), 0);
  EXPECT_THAT(
      Runs(deal.id()),
      ElementsAre(::testing::Pair(::testing::_, v1::Run::OUTCOME_CANCELLED),
                  ::testing::Pair(::testing::_, v1::Run::OUTCOME_CANCELLED)));
}

TEST_F(EngineTest, DealsBeingAwayIsRetriedWithDoublingBackoff) {
  AddRule(MoveRule("NEW", "PREPARATION"));
  const dv1::Deal deal = PutDeal(4, "NEW");
  for (int i = 0; i < 3; ++i) {
    deals_.FailNext(FakeDealsClient::kMoveStage,
                    absl::UnavailableError("deals: connection refused"));
  }
  Enter(deal, "", "NEW");
  // The first attempt is immediate and fails; the next is due a minute
  // later (+-20%), then two, then four.
  WaitIdle();
  ASSERT_EQ(Calls(FakeDealsClient::kMoveStage), 1);
  const absl::Duration waits[] = {absl::Minutes(1), absl::Minutes(2),
                                  absl::Minutes(4)};
  for (int attempt = 0; attempt < 3; ++attempt) {
    SCOPED_TRACE(absl::StrCat("after failure ", attempt + 1));
    EXPECT_EQ(OnlyRun(deal.id()).outcome(), v1::Run::OUTCOME_RETRYING);
    // Not yet at 75% of the wait...
    ASSERT_OK(clock_.Advance(waits[attempt] * 0.75));
    engine_->Wake();
    absl::SleepFor(absl::Milliseconds(50));
    EXPECT_EQ(Calls(FakeDealsClient::kMoveStage), attempt + 1);
    // ... but by 125% of it.
    Advance(waits[attempt] * 0.5);
    EXPECT_EQ(Calls(FakeDealsClient::kMoveStage), attempt + 2);
  }
  const v1::Run run = OnlyRun(deal.id());
  EXPECT_EQ(run.outcome(), v1::Run::OUTCOME_SUCCEEDED);
  EXPECT_EQ(run.attempts(), 4);
  EXPECT_EQ(deals_.Find(deal.id())->stage_id(), "PREPARATION");
}

TEST_F(EngineTest, OutsideFailuresRetryUpToMaxAttemptsThenPark) {
  v1::Rule rule;
  rule.set_stage_id("NEW");
  rule.mutable_action()->mutable_send_email()->set_to("client@example.org");
  rule.mutable_action()->mutable_send_email()->set_subject("{{title}}");
  rule.mutable_action()->mutable_send_email()->set_body("Hello");
  AddRule(rule);
  const dv1::Deal deal = PutDeal(9, "NEW");
  for (int i = 0; i < 3; ++i)
    mail_.AnswerNext(absl::UnavailableError("421 busy"));
  Enter(deal, "", "NEW");
  WaitIdle();
  ASSERT_EQ(mail_.sent().size(), 1u);
  EXPECT_EQ(OnlyRun(deal.id()).outcome(), v1::Run::OUTCOME_RETRYING);
  // Second attempt a minute later (+-20%), third two minutes after that:
  // max_attempts is 3, so the run parks as FAILED and sends nothing more.
  Advance(absl::Minutes(1) * 1.25);
  ASSERT_EQ(mail_.sent().size(), 2u);
  Advance(absl::Minutes(2) * 1.25);
  ASSERT_EQ(mail_.sent().size(), 3u);
  const v1::Run run = OnlyRun(deal.id());
  EXPECT_EQ(run.outcome(), v1::Run::OUTCOME_FAILED);
  EXPECT_THAT(run.error(), HasSubstr("gave up after 3 attempts"));
  Advance(absl::Hours(1));
  EXPECT_EQ(mail_.sent().size(), 3u);
  // Every attempt carried the same Message-ID, so receivers dedupe.
  EXPECT_EQ(mail_.sent()[0].message_id, mail_.sent()[2].message_id);
  EXPECT_EQ(mail_.sent()[0].subject, "Deal 9");
}

TEST_F(EngineTest, ARuleThatCannotWorkFailsAtOnce) {
  AddRule(MoveRule("NEW", "PREPARATION"));
  const dv1::Deal deal = PutDeal(5, "NEW");
  deals_.FailNext(FakeDealsClient::kMoveStage,
                  absl::FailedPreconditionError("stage PREPARATION is gone"));
  Enter(deal, "", "NEW");
  WaitIdle();
  const v1::Run run = OnlyRun(deal.id());
  EXPECT_EQ(run.outcome(), v1::Run::OUTCOME_FAILED);
  EXPECT_THAT(run.error(), HasSubstr("PREPARATION is gone"));
  EXPECT_EQ(Calls(FakeDealsClient::kMoveStage), 1);
}

TEST_F(EngineTest, AutomatedMovesInALoopAreCutOff) {
  AddRule(MoveRule("NEW", "PREPARATION"));
  AddRule(MoveRule("PREPARATION", "NEW"));
  const dv1::Deal deal = PutDeal(6, "NEW");
  Enter(deal, "", "NEW");
  std::string stage = "NEW";
  // Deliver each automated move back, as deals would, until the engine
  // stops moving; options_.loop_max_depth is 3.
  for (int move = 1; move <= 10; ++move) {
    WaitIdle();
    if (Calls(FakeDealsClient::kMoveStage) < move) break;
    const std::string from = stage;
    stage = stage == "NEW" ? "PREPARATION" : "NEW";
    DeliverLastMove(deal, from);
  }
  WaitIdle();
  // The user's entry and three automated ones run their rule; the fourth
  // automated entry is one too many.
  EXPECT_EQ(Calls(FakeDealsClient::kMoveStage), 4);
  auto page = engine_->ListRuns(deal.id(), "", 100);
  ASSERT_OK(page.status());
  ASSERT_FALSE(page->items.empty());
  const v1::Run& newest = page->items.front();
  EXPECT_EQ(newest.outcome(), v1::Run::OUTCOME_LOOP_STOPPED);
  EXPECT_THAT(newest.error(), HasSubstr("more than 3 automated moves"));
}

TEST_F(EngineTest, ARunWhoseMoveArrivesBeforeItsAnswerSucceeds) {
  AddRule(MoveRule("NEW", "PREPARATION"));
  const dv1::Deal deal = PutDeal(7, "NEW");
  // Deals makes the move but the answer is lost: the run will retry.
  deals_.LoseNextAnswer(FakeDealsClient::kMoveStage,
                        absl::UnavailableError("connection reset"));
  Enter(deal, "", "NEW");
  WaitIdle();
  ASSERT_EQ(OnlyRun(deal.id()).outcome(), v1::Run::OUTCOME_RETRYING);
  // The event of that move, carrying the run's request id, arrives first.
  DeliverLastMove(deal, "NEW");
  WaitIdle();
  const v1::Run run = OnlyRun(deal.id());
  EXPECT_EQ(run.outcome(), v1::Run::OUTCOME_SUCCEEDED) << run.error();
  Advance(absl::Minutes(5));
  EXPECT_EQ(Calls(FakeDealsClient::kMoveStage), 1);
  EXPECT_EQ(deals_.applied(FakeDealsClient::kMoveStage), 1);
}

TEST_F(EngineTest, ARetriedMoveThatWasAlreadyMadeIsNotMadeTwice) {
  AddRule(MoveRule("NEW", "PREPARATION"));
  const dv1::Deal deal = PutDeal(8, "NEW");
  deals_.LoseNextAnswer(FakeDealsClient::kMoveStage,
                        absl::UnavailableError("connection reset"));
  Enter(deal, "", "NEW");
  WaitIdle();
  // No event comes (the relay is behind): the retry repeats the request id
  // and deals answers the move it already made.
  Advance(absl::Minutes(2));
  const v1::Run run = OnlyRun(deal.id());
  EXPECT_EQ(run.outcome(), v1::Run::OUTCOME_SUCCEEDED) << run.error();
  EXPECT_EQ(Calls(FakeDealsClient::kMoveStage), 2);
  EXPECT_EQ(deals_.applied(FakeDealsClient::kMoveStage), 1);
  std::vector<std::string> move_ids;
  for (const FakeDealsClient::Call& call : deals_.calls()) {
    if (call.method == FakeDealsClient::kMoveStage)
      move_ids.push_back(call.request_id);
  }
  ASSERT_EQ(move_ids.size(), 2u);
  EXPECT_EQ(move_ids[0], move_ids[1]);
  EXPECT_FALSE(move_ids[0].empty());
}

}  // namespace
}  // namespace crm::automation
