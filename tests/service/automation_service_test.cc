// The automation service in process over real gRPC, against the real deals
// service and pipeline-config (in process too) and real RocksDB stores. The
// test plays the deals relay: it reads the deals outbox and delivers events
// through the DealEventSink RPC, which lets it redeliver at will.
#include <algorithm>
#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "grpcpp/create_channel.h"
#include "gtest/gtest.h"

#include "crm/automation/v1/automation_service.grpc.pb.h"
#include "crm/deals/v1/deal_events.grpc.pb.h"

#include "common/grpc/message_limits.h"
#include "common/http/http_server.h"
#include "common/status/status_matchers.h"
#include "services/automation/api/automation_service_impl.h"
#include "services/automation/outbound/http_sender.h"
#include "services/automation/outbound/signing.h"
#include "tests/service/deals_service_test_fixture.h"

namespace crm::automation {
namespace {

namespace dv1 = ::crm::deals::v1;
namespace pv1 = ::crm::pipelines::v1;
using AutomationStub = v1::AutomationService::Stub;
using ::crm::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

class AutomationServiceTest : public crm::deals::DealsServiceTest {
 protected:
  void SetUp() override {
    DealsServiceTest::SetUp();
    StartAutomation();
  }

  void TearDown() override {
    StopAutomation();
    DealsServiceTest::TearDown();
  }

  void StartAutomation() {
    auto store = AutomationStore::Open(dir_.path() + "/automation",
                                       common::RocksOptions());
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    tokens_ = std::make_unique<crm::common::ServiceTokenSource>(kSecret,
                                                                "automation");
    deals_client_ = std::make_unique<GrpcDealsClient>(deals(), *tokens_);
    options_.metrics = &metrics_;
    engine_ = std::make_unique<AutomationEngine>(
        *store_, pipeline_client(), *deals_client_, clock_, options_);
    ASSERT_OK(engine_->Start());
    authenticator_ = std::make_unique<common::Authenticator>(kSecret, false);
    page_tokens_ = std::make_unique<common::PageTokenCodec>(kSecret);
    rpc_workers_ = std::make_unique<common::WorkerPool>(
        common::WorkerPoolOptions{4, 1000});
    ServiceDeps deps{*engine_,
                     pipeline_client(),
                     *authenticator_,
                     *page_tokens_,
                     {kAdminUserId}};
    deps.workers = rpc_workers_.get();
    service_ = std::make_unique<AutomationServiceImpl>(std::move(deps));
    sink_ = std::make_unique<EventSinkImpl>(*engine_, *authenticator_,
                                            rpc_workers_.get());
    common::ServerOptions options;
    options.service_name = "automation";
    runner_ = std::make_unique<common::ServerRunner>(options, metrics_);
    runner_->AddService(service_.get(),
                        v1::AutomationService::service_full_name());
    runner_->AddService(sink_.get(),
                        crm::deals::v1::DealEventSink::service_full_name());
    RegisterHttpHandlers(runner_->http(), *engine_, clock_);
    ASSERT_OK(runner_->Start());
    auto channel =
        grpc::CreateChannel(absl::StrCat("127.0.0.1:", runner_->grpc_port()),
                            grpc::InsecureChannelCredentials());
    stub_ = v1::AutomationService::NewStub(channel);
    sink_stub_ = dv1::DealEventSink::NewStub(channel);
  }

  void StopAutomation() {
    if (runner_ != nullptr) runner_->Shutdown();
    if (rpc_workers_ != nullptr) rpc_workers_->Shutdown();
    if (engine_ != nullptr) engine_->Stop();
    runner_.reset();
    rpc_workers_.reset();
    sink_.reset();
    service_.reset();
    engine_.reset();
    deals_client_.reset();
    store_.reset();
  }

  void RestartAutomation() {
    StopAutomation();
    StartAutomation();
  }

  template <typename Request, typename Response>
  absl::StatusOr<Response> AutoAs(
      const std::string& token,
      grpc::Status (AutomationStub::*method)(grpc::ClientContext*,
                                             const Request&, Response*),
      const Request& request) {
    auto context = MakeContext(token);
    Response response;
    const grpc::Status status =
        ((*stub_).*method)(context.get(), request, &response);
    if (!status.ok()) return common::FromGrpcStatus(status);
    return response;
  }
  template <typename Request, typename Response>
  absl::StatusOr<Response> Auto(
      grpc::Status (AutomationStub::*method)(grpc::ClientContext*,
                                             const Request&, Response*),
      const Request& request) {
    return AutoAs(AdminToken(), method, request);
  }

  // Delivers the deals events not delivered yet (or all of them again with
  // `from_start`), waits for the runs they cause, and repeats while runs
  // make new events.
  void Pump(bool from_start = false) {
    if (from_start) delivered_ = 0;
    for (int round = 0; round < 50; ++round) {
      std::vector<dv1::DealEvent> events = Events(delivered_ + 1);
      if (events.empty() && round > 0) return;
      if (!events.empty()) {
        dv1::DeliverEventsRequest request;
        for (auto& event : events) *request.add_events() = std::move(event);
        auto context = MakeContext(ServiceToken("deals"));
        dv1::DeliverEventsResponse response;
        ASSERT_TRUE(
            sink_stub_->DeliverEvents(context.get(), request, &response).ok());
        delivered_ = std::max(delivered_, response.applied_sequence());
      }
      WaitIdle();
    }
  }

  // Delivers the events not delivered yet once, without waiting for runs.
  grpc::Status DeliverOnce() {
    dv1::DeliverEventsRequest request;
    for (auto& event : Events(delivered_ + 1))
      *request.add_events() = std::move(event);
    auto context = MakeContext(ServiceToken("deals"));
    dv1::DeliverEventsResponse response;
    grpc::Status status =
        sink_stub_->DeliverEvents(context.get(), request, &response);
    if (status.ok())
      delivered_ = std::max(delivered_, response.applied_sequence());
    return status;
  }

  // From now on the store fails the operations `when` picks (UNAVAILABLE)
  // and counts them, until HealStore.
  void FailStore(
      std::function<bool(AutomationStore::Op, std::string_view cf)> when) {
    store_->SetFaultHookForTest(
        [this, when = std::move(when)](AutomationStore::Op op,
                                       std::string_view cf) {
          if (!when(op, cf)) return absl::OkStatus();
          ++faults_;
          return absl::UnavailableError("injected store fault");
        });
  }
  void HealStore() { store_->SetFaultHookForTest(nullptr); }
  // Waits until the store has failed at least `n` operations in all.
  void WaitForFaults(int n) {
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    while (faults_.load() < n) {
      ASSERT_LT(absl::Now(), deadline) << "the engine never hit the fault";
      absl::SleepFor(absl::Milliseconds(2));
    }
  }

  void WaitIdle() {
    const absl::Time deadline = absl::Now() + absl::Seconds(20);
    while (!engine_->Idle()) {
      ASSERT_LT(absl::Now(), deadline) << "automation did not settle";
      absl::SleepFor(absl::Milliseconds(5));
    }
  }

  // Moves the clock and lets the scheduler see it, without waiting for
  // what becomes due.
  void AdvanceWithoutWaiting(absl::Duration d) {
    ASSERT_OK(clock_.Advance(d));
    engine_->Wake();
  }

  void Advance(absl::Duration d) {
    AdvanceWithoutWaiting(d);
    WaitIdle();
  }

  // A task rule that runs `seconds` after the deal enters the stage.
  static v1::Rule DelayedTaskRule(const std::string& stage_id,
                                  const std::string& title, int seconds,
                                  int32_t sort = 0) {
    v1::Rule rule = TaskRule(stage_id, title, sort);
    rule.mutable_timing()->set_kind(v1::Timing::KIND_DELAY);
    rule.mutable_timing()->mutable_delay()->set_seconds(seconds);
    return rule;
  }

  // A deal in PREPARATION whose "Follow up" task rule is due in an hour.
  void DealWithAFollowUpInAnHour(dv1::Deal* deal) {
    ASSERT_OK(
        AddRule(DelayedTaskRule("PREPARATION", "Follow up", 3600)).status());
    ASSERT_OK_AND_ASSIGN(*deal, CreateDeal(MakeDeal("Deal")));
    ASSERT_OK(MoveStage(deal->id(), "PREPARATION").status());
    Pump();
  }

  static v1::Rule TaskRule(const std::string& stage_id,
                           const std::string& title, int32_t sort = 0) {
    v1::Rule rule;
    rule.set_pipeline_id(0);
    rule.set_stage_id(stage_id);
    rule.set_name(title);
    rule.set_sort(sort);
    rule.mutable_action()->mutable_create_task()->set_title(title);
    return rule;
  }

  absl::StatusOr<v1::Rule> AddRule(const v1::Rule& rule) {
    v1::CreateRuleRequest request;
    *request.mutable_rule() = rule;
    return Auto(&AutomationStub::CreateRule, request);
  }

  absl::StatusOr<v1::Trigger> AddTrigger(const v1::Trigger& trigger) {
    v1::CreateTriggerRequest request;
    *request.mutable_trigger() = trigger;
    return Auto(&AutomationStub::CreateTrigger, request);
  }

  std::vector<v1::Task> Tasks(int64_t deal_id) {
    v1::ListTasksRequest request;
    request.set_deal_id(deal_id);
    auto response = Auto(&AutomationStub::ListTasks, request);
    EXPECT_TRUE(response.ok()) << response.status();
    if (!response.ok()) return {};
    return {response->tasks().begin(), response->tasks().end()};
  }

  std::vector<std::string> TaskTitles(int64_t deal_id) {
    std::vector<std::string> titles;
    for (const v1::Task& task : Tasks(deal_id)) titles.push_back(task.title());
    return titles;
  }

  // Oldest first.
  std::vector<v1::Run> Runs(int64_t deal_id) {
    v1::ListRunsRequest request;
    request.set_deal_id(deal_id);
    request.set_page_size(500);
    auto response = Auto(&AutomationStub::ListRuns, request);
    EXPECT_TRUE(response.ok()) << response.status();
    if (!response.ok()) return {};
    std::vector<v1::Run> runs(response->runs().begin(), response->runs().end());
    std::reverse(runs.begin(), runs.end());
    return runs;
  }

  absl::StatusOr<v1::FireTriggerResponse> Fire(int64_t deal_id,
                                               v1::TriggerType type,
                                               const std::string& app = "") {
    v1::FireTriggerRequest request;
    request.set_deal_id(deal_id);
    request.set_type(type);
    request.set_app_code(app);
    return Auto(&AutomationStub::FireTrigger, request);
  }

  crm::testing::TempDir dir_;
  Clock clock_{true};
  EngineOptions options_ = [] {
    EngineOptions options;
    options.retry_base = absl::Milliseconds(5);
    options.retry_max = absl::Milliseconds(20);
    options.deals_retry_max = absl::Milliseconds(50);
    options.outbound_timeout = absl::Seconds(2);
    options.loop_max_depth = 4;
    options.store_retry = absl::Milliseconds(20);
    options.smtp.host = "127.0.0.1";
    options.smtp.port = 1;                  // nothing listens: email runs fail
    options.allow_private_webhooks = true;  // receivers are on loopback
    return options;
  }();
  std::unique_ptr<AutomationStore> store_;
  std::unique_ptr<crm::common::ServiceTokenSource> tokens_;
  std::unique_ptr<GrpcDealsClient> deals_client_;
  std::unique_ptr<common::WorkerPool> rpc_workers_;
  std::unique_ptr<AutomationEngine> engine_;
  std::unique_ptr<common::Authenticator> authenticator_;
  std::unique_ptr<common::PageTokenCodec> page_tokens_;
  std::unique_ptr<AutomationServiceImpl> service_;
  std::unique_ptr<EventSinkImpl> sink_;
  common::MetricsRegistry metrics_;
  std::unique_ptr<common::ServerRunner> runner_;
  std::unique_ptr<AutomationStub> stub_;
  std::unique_ptr<dv1::DealEventSink::Stub> sink_stub_;
  int64_t delivered_ = 0;
  std::atomic<int> faults_{0};
};

using Op = AutomationStore::Op;

TEST_F(AutomationServiceTest, RulesAreValidatedNamingTheField) {
  struct Case {
    const char* name;
    std::function<void(v1::Rule*)> change;
    const char* field;
  };
  const std::vector<Case> cases = {
      {"unknown stage", [](v1::Rule* r) { r->set_stage_id("NOPE"); },
       "rule.stage_id"},
      {"unknown pipeline", [](v1::Rule* r) { r->set_pipeline_id(77); },
       "rule.pipeline_id"},
      {"no name", [](v1::Rule* r) { r->set_name(""); }, "rule.name"},
      {"bad delay",
       [](v1::Rule* r) {
         r->mutable_timing()->set_kind(v1::Timing::KIND_DELAY);
         r->mutable_timing()->mutable_delay()->set_seconds(-5);
       },
       "rule.timing.delay"},
      {"bad condition",
       [](v1::Rule* r) {
         auto* c = r->mutable_condition()->mutable_condition();
         c->set_field("no_such_field");
         c->set_op(dv1::Condition::OPERATOR_EQ);
         c->add_values("1");
       },
       "rule.condition"},
      {"bad template",
       [](v1::Rule* r) {
         r->mutable_action()->mutable_create_task()->set_title("{{#title}}");
       },
       "rule.action.create_task.title"},
      {"bad url",
       [](v1::Rule* r) {
         r->mutable_action()->mutable_call_webhook()->set_url("ftp://x");
       },
       "rule.action.call_webhook.url"},
      {"no action", [](v1::Rule* r) { r->clear_action(); }, "rule.action"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    v1::Rule rule = TaskRule("NEW", "Call");
    c.change(&rule);
    EXPECT_THAT(AddRule(rule), StatusIs(absl::StatusCode::kInvalidArgument,
                                        HasSubstr(c.field)));
  }
  EXPECT_TRUE(
      engine_->catalog().ListRules(0, "").empty());  // nothing half written
}

TEST_F(AutomationServiceTest, RuleCrudWithEtagsAndSecretsHidden) {
  ASSERT_OK_AND_ASSIGN(v1::Rule second, AddRule(TaskRule("NEW", "Second", 20)));
  ASSERT_OK_AND_ASSIGN(v1::Rule first, AddRule(TaskRule("NEW", "First", 10)));
  v1::Rule hook = TaskRule("PREPARATION", "Hook");
  hook.mutable_action()->mutable_call_webhook()->set_url(
      "http://127.0.0.1:1/x");
  hook.mutable_action()->mutable_call_webhook()->set_secret("s3cret");
  ASSERT_OK_AND_ASSIGN(v1::Rule created_hook, AddRule(hook));
  EXPECT_TRUE(created_hook.action().call_webhook().secret().empty());
  EXPECT_TRUE(first.enabled());

  v1::ListRulesRequest list;
  list.set_pipeline_id(0);
  ASSERT_OK_AND_ASSIGN(v1::ListRulesResponse all,
                       Auto(&AutomationStub::ListRules, list));
  std::vector<std::string> names;
  for (const v1::Rule& r : all.rules()) names.push_back(r.name());
  EXPECT_THAT(names, ElementsAre("First", "Second", "Hook"));
  list.set_stage_id("NOPE");
  EXPECT_THAT(
      Auto(&AutomationStub::ListRules, list),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("stage_id")));

  v1::UpdateRuleRequest update;
  update.mutable_rule()->set_id(first.id());
  update.mutable_rule()->set_name("First renamed");
  update.mutable_update_mask()->add_paths("name");
  update.set_etag(first.etag());
  ASSERT_OK_AND_ASSIGN(v1::Rule renamed,
                       Auto(&AutomationStub::UpdateRule, update));
  EXPECT_EQ(renamed.name(), "First renamed");
  EXPECT_NE(renamed.etag(), first.etag());
  // Stale etag.
  EXPECT_THAT(Auto(&AutomationStub::UpdateRule, update),
              StatusIs(absl::StatusCode::kAborted, HasSubstr("etag")));
  update.set_etag("");
  update.mutable_update_mask()->set_paths(0, "pipeline_id");
  EXPECT_THAT(
      Auto(&AutomationStub::UpdateRule, update),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("update_mask")));
  // The webhook secret survives an update that does not repeat it.
  update.mutable_rule()->set_id(created_hook.id());
  *update.mutable_rule()->mutable_action() = created_hook.action();
  update.mutable_update_mask()->set_paths(0, "action");
  ASSERT_OK(Auto(&AutomationStub::UpdateRule, update).status());
  ASSERT_OK_AND_ASSIGN(v1::Rule stored,
                       engine_->catalog().GetRule(created_hook.id()));
  EXPECT_EQ(stored.action().call_webhook().secret(), "s3cret");

  v1::DeleteRuleRequest del;
  del.set_rule_id(second.id());
  del.set_etag("r999999");
  EXPECT_THAT(Auto(&AutomationStub::DeleteRule, del),
              StatusIs(absl::StatusCode::kAborted));
  del.set_etag(second.etag());
  ASSERT_OK(Auto(&AutomationStub::DeleteRule, del).status());
  v1::GetRuleRequest get;
  get.set_rule_id(second.id());
  EXPECT_THAT(Auto(&AutomationStub::GetRule, get),
              StatusIs(absl::StatusCode::kNotFound));

  // Bounded per stage.
  for (int i = 0; i < 100; ++i) {
    absl::StatusOr<v1::Rule> added =
        AddRule(TaskRule("EXECUTING", absl::StrCat("Rule ", i)));
    ASSERT_TRUE(added.ok()) << i << ": " << added.status();
  }
  EXPECT_THAT(
      AddRule(TaskRule("EXECUTING", "One too many")),
      StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("per stage")));

  // Rules survive a restart.
  RestartAutomation();
  get.set_rule_id(first.id());
  ASSERT_OK_AND_ASSIGN(v1::Rule reloaded, Auto(&AutomationStub::GetRule, get));
  EXPECT_EQ(reloaded.name(), "First renamed");
}

TEST_F(AutomationServiceTest, AutomationPermissionGuardsRules) {
  ASSERT_OK_AND_ASSIGN(v1::Rule rule, AddRule(TaskRule("NEW", "Call")));
  const int64_t kReader = 21, kEditor = 22, kNobody = 23;
  for (auto [user, access] :
       {std::pair{kReader, pv1::AUTOMATION_ACCESS_READ},
        std::pair{kEditor, pv1::AUTOMATION_ACCESS_EDIT}}) {
    pv1::Role role;
    role.set_name(absl::StrCat("automation ", user));
    pv1::PipelinePermissions* p = role.add_pipelines();
    p->set_pipeline_id(0);
    p->mutable_levels()->set_read(pv1::ACCESS_LEVEL_ALL);
    p->set_automation(access);
    ASSERT_OK_AND_ASSIGN(pv1::Role created, CreateRole(role));
    ASSERT_OK(AssignToUser(created.id(), user));
  }
  WaitForConfigSync();
  v1::ListRulesRequest list;
  list.set_pipeline_id(0);
  v1::CreateRuleRequest create;
  *create.mutable_rule() = TaskRule("NEW", "Another");

  EXPECT_OK(AutoAs(UserToken(kReader), &AutomationStub::ListRules, list));
  EXPECT_THAT(AutoAs(UserToken(kReader), &AutomationStub::CreateRule, create),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       HasSubstr("AUTOMATION EDIT")));
  EXPECT_OK(AutoAs(UserToken(kEditor), &AutomationStub::CreateRule, create));
  // Moving deals into a pipeline needs AUTOMATION EDIT there as well.
  ASSERT_OK_AND_ASSIGN(pv1::Pipeline other, CreatePipeline("Other"));
  WaitForConfigSync();
  v1::CreateRuleRequest export_rule;
  *export_rule.mutable_rule() = TaskRule("NEW", "Export");
  export_rule.mutable_rule()
      ->mutable_action()
      ->mutable_move_to_pipeline()
      ->set_pipeline_id(other.id());
  EXPECT_THAT(
      AutoAs(UserToken(kEditor), &AutomationStub::CreateRule, export_rule),
      StatusIs(absl::StatusCode::kPermissionDenied,
               HasSubstr(absl::StrCat("pipeline ", other.id()))));
  EXPECT_OK(Auto(&AutomationStub::CreateRule, export_rule));
  EXPECT_THAT(AutoAs(UserToken(kNobody), &AutomationStub::ListRules, list),
              StatusIs(absl::StatusCode::kPermissionDenied));
  v1::DeleteRuleRequest del;
  del.set_rule_id(rule.id());
  EXPECT_THAT(AutoAs(UserToken(kReader), &AutomationStub::DeleteRule, del),
              StatusIs(absl::StatusCode::kPermissionDenied));
  // Firing triggers is for integrations.
  v1::FireTriggerRequest fire;
  fire.set_deal_id(1);
  fire.set_type(v1::TRIGGER_TYPE_CALL_MISSED);
  EXPECT_THAT(AutoAs(UserToken(kEditor), &AutomationStub::FireTrigger, fire),
              StatusIs(absl::StatusCode::kPermissionDenied));
}

TEST_F(AutomationServiceTest, EntryRunsRulesOnceEvenWhenEventsAreRedelivered) {
  ASSERT_OK_AND_ASSIGN(v1::Rule rule,
                       AddRule(TaskRule("PREPARATION", "Call {{title}}")));
  ASSERT_OK_AND_ASSIGN(dv1::Deal deal, CreateDeal(MakeDeal("Acme")));
  ASSERT_OK(MoveStage(deal.id(), "PREPARATION").status());
  Pump();
  std::vector<v1::Task> tasks = Tasks(deal.id());
  ASSERT_EQ(tasks.size(), 1u);
  EXPECT_EQ(tasks[0].title(), "Call Acme");
  EXPECT_EQ(tasks[0].rule_id(), rule.id());
  EXPECT_EQ(tasks[0].stage_id(), "PREPARATION");
  EXPECT_EQ(tasks[0].responsible_id(), deal.assignee_id());
  EXPECT_EQ(tasks[0].status(), v1::Task::STATUS_OPEN);

  // Every event again, then after a restart: nothing new.
  Pump(/*from_start=*/true);
  RestartAutomation();
  Pump(/*from_start=*/true);
  EXPECT_EQ(Tasks(deal.id()).size(), 1u);
  EXPECT_THAT(metrics_.RenderPrometheus(),
              HasSubstr("crm_automation_runs_succeeded_total 1\n"));
  std::vector<v1::Run> runs = Runs(deal.id());
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].outcome(), v1::Run::OUTCOME_SUCCEEDED);
  EXPECT_EQ(runs[0].rule_id(), rule.id());
  EXPECT_THAT(runs[0].run_id(), HasSubstr(absl::StrCat(deal.id(), "/")));
  EXPECT_FALSE(runs[0].cause_event_id().empty());
  EXPECT_TRUE(runs[0].has_finish_time());

  // A rule added now does not run for deals already in the stage...
  ASSERT_OK(AddRule(TaskRule("PREPARATION", "Late rule")).status());
  Pump();
  EXPECT_EQ(Tasks(deal.id()).size(), 1u);
  // ...but re-entering runs the stage's rules again.
  ASSERT_OK(MoveStage(deal.id(), "NEW").status());
  ASSERT_OK(MoveStage(deal.id(), "PREPARATION").status());
  Pump();
  EXPECT_EQ(Tasks(deal.id()).size(), 3u);
}

TEST_F(AutomationServiceTest, FailedConditionSkipsAndSaysWhy) {
  v1::Rule rule = TaskRule("NEW", "Big deal");
  auto* group = rule.mutable_condition()->mutable_group();
  auto* c1 = group->add_filters()->mutable_condition();
  c1->set_field("currency");
  c1->set_op(dv1::Condition::OPERATOR_EQ);
  c1->add_values("EUR");
  auto* c2 = group->add_filters()->mutable_condition();
  c2->set_field("amount");
  c2->set_op(dv1::Condition::OPERATOR_GT);
  c2->add_values("1000");
  ASSERT_OK(AddRule(rule).status());
  ASSERT_OK_AND_ASSIGN(dv1::Deal small,
                       CreateDeal(MakeDeal("Small", 0, "500", "EUR")));
  ASSERT_OK_AND_ASSIGN(dv1::Deal big,
                       CreateDeal(MakeDeal("Big", 0, "5000", "EUR")));
  Pump();
  EXPECT_TRUE(Tasks(small.id()).empty());
  std::vector<v1::Run> runs = Runs(small.id());
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].outcome(), v1::Run::OUTCOME_SKIPPED);
  EXPECT_THAT(runs[0].error(), HasSubstr("filters[1]"));
  EXPECT_THAT(runs[0].error(), HasSubstr("amount"));
  EXPECT_THAT(TaskTitles(big.id()), ElementsAre("Big deal"));
}

TEST_F(AutomationServiceTest, DelayedRuleWaitsForTheClockAndIsCancelledOnExit) {
  v1::Rule rule = TaskRule("PREPARATION", "Follow up");
  rule.mutable_timing()->set_kind(v1::Timing::KIND_DELAY);
  rule.mutable_timing()->mutable_delay()->set_seconds(3600);
  ASSERT_OK(AddRule(rule).status());
  ASSERT_OK_AND_ASSIGN(dv1::Deal stays, CreateDeal(MakeDeal("Stays")));
  ASSERT_OK_AND_ASSIGN(dv1::Deal leaves, CreateDeal(MakeDeal("Leaves")));
  ASSERT_OK(MoveStage(stays.id(), "PREPARATION").status());
  ASSERT_OK(MoveStage(leaves.id(), "PREPARATION").status());
  Pump();
  EXPECT_TRUE(Tasks(stays.id()).empty());
  std::vector<v1::Run> runs = Runs(stays.id());
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].outcome(), v1::Run::OUTCOME_SCHEDULED);

  ASSERT_OK(MoveStage(leaves.id(), "EXECUTING").status());
  Pump();
  // Scheduled runs survive a restart.
  RestartAutomation();
  Advance(absl::Minutes(30));
  EXPECT_TRUE(Tasks(stays.id()).empty());
  Advance(absl::Minutes(31));
  EXPECT_THAT(TaskTitles(stays.id()), ElementsAre("Follow up"));
  EXPECT_TRUE(Tasks(leaves.id()).empty());
  runs = Runs(leaves.id());
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].outcome(), v1::Run::OUTCOME_CANCELLED);
  EXPECT_THAT(runs[0].error(), HasSubstr("left stage"));
}

TEST_F(AutomationServiceTest, AfterPreviousWaitsForThePreviousRule) {
  v1::Rule first = TaskRule("NEW", "First", 1);
  first.mutable_timing()->set_kind(v1::Timing::KIND_DELAY);
  first.mutable_timing()->mutable_delay()->set_seconds(600);
  v1::Rule second = TaskRule("NEW", "Second", 2);
  second.set_execution(v1::EXECUTION_AFTER_PREVIOUS);
  v1::Rule parallel = TaskRule("NEW", "Parallel", 3);
  // After "Parallel", but due by the deal's date (close in 7 days - 2).
  v1::Rule dated = TaskRule("NEW", "Dated", 4);
  dated.set_execution(v1::EXECUTION_AFTER_PREVIOUS);
  dated.mutable_timing()->set_kind(v1::Timing::KIND_RELATIVE_TO_DATE);
  dated.mutable_timing()->set_date_field("close_date");
  dated.mutable_timing()->mutable_offset()->set_seconds(-2 * 24 * 3600);
  for (const v1::Rule* rule : {&first, &second, &parallel, &dated})
    ASSERT_OK(AddRule(*rule).status());
  ASSERT_OK_AND_ASSIGN(dv1::Deal deal, CreateDeal(MakeDeal("Chain")));
  Pump();
  EXPECT_THAT(TaskTitles(deal.id()), ElementsAre("Parallel"));
  Advance(absl::Seconds(601));
  EXPECT_THAT(TaskTitles(deal.id()),
              ElementsAre("Parallel", "First", "Second"));
  Advance(absl::Hours(24 * 5 + 1));
  EXPECT_THAT(TaskTitles(deal.id()),
              ElementsAre("Parallel", "First", "Second", "Dated"));
}

TEST_F(AutomationServiceTest, DateRelativeTimingUsesTheDealsDate) {
  v1::Rule rule = TaskRule("NEW", "Before close");
  rule.mutable_timing()->set_kind(v1::Timing::KIND_RELATIVE_TO_DATE);
  rule.mutable_timing()->set_date_field("close_date");
  rule.mutable_timing()->mutable_offset()->set_seconds(-2 * 24 * 3600);
  ASSERT_OK(AddRule(rule).status());
  // Default close date: in 7 days; the rule is due 2 days before.
  ASSERT_OK_AND_ASSIGN(dv1::Deal deal, CreateDeal(MakeDeal("Closing")));
  Pump();
  EXPECT_TRUE(Tasks(deal.id()).empty());
  Advance(absl::Hours(24 * 4));
  EXPECT_TRUE(Tasks(deal.id()).empty());
  Advance(absl::Hours(24 * 1 + 1));
  EXPECT_THAT(TaskTitles(deal.id()), ElementsAre("Before close"));
}

TEST_F(AutomationServiceTest, StageChangeRulesChainAndLoopsAreCutOff) {
  v1::Rule forward = TaskRule("PREPARATION", "to executing");
  forward.mutable_action()->mutable_change_stage()->set_stage_id("EXECUTING");
  v1::Rule back = TaskRule("EXECUTING", "to preparation");
  back.mutable_action()->mutable_change_stage()->set_stage_id("PREPARATION");
  ASSERT_OK(AddRule(forward).status());
  ASSERT_OK(AddRule(back).status());
  ASSERT_OK_AND_ASSIGN(dv1::Deal deal, CreateDeal(MakeDeal("Ping pong")));
  ASSERT_OK(MoveStage(deal.id(), "PREPARATION").status());
  Pump();
  std::vector<v1::Run> runs = Runs(deal.id());
  ASSERT_FALSE(runs.empty());
  EXPECT_EQ(runs.back().outcome(), v1::Run::OUTCOME_LOOP_STOPPED);
  EXPECT_THAT(runs.back().error(), HasSubstr("automated moves"));
  int automated = 0;
  for (const dv1::DealEvent& event : Events()) {
    if (event.deal_id() == deal.id() &&
        event.type() == dv1::DEAL_EVENT_TYPE_STAGE_CHANGED &&
        event.channel() == dv1::CHANNEL_AUTOMATION) {
      ++automated;
      EXPECT_FALSE(event.request_id().empty());
    }
  }
  // The entry past the bound is the last move: its rules did not run.
  EXPECT_EQ(automated, options_.loop_max_depth + 1);
}

TEST_F(AutomationServiceTest, InternalActionsChangeTheDeal) {
  v1::Rule assign = TaskRule("PREPARATION", "assign");
  assign.mutable_action()->mutable_change_assignee()->add_user_ids(5);
  assign.mutable_action()->mutable_change_assignee()->add_user_ids(6);
  v1::Rule fields = TaskRule("PREPARATION", "fields");
  auto& values =
      *fields.mutable_action()->mutable_set_fields()->mutable_values();
  values["source"].add_values("automation for {{title}}");
  values["probability"].add_values("40");
  values["opened"].add_values("false");
  v1::Rule comment = TaskRule("PREPARATION", "comment");
  comment.mutable_action()->mutable_add_comment()->set_text(
      "Prepared {{title}}");
  v1::Rule notify = TaskRule("PREPARATION", "notify");
  notify.mutable_action()->mutable_notify_employee()->set_user_id(9);
  notify.mutable_action()->mutable_notify_employee()->set_text(
      "{{title}} moved");
  for (const v1::Rule* rule : {&assign, &fields, &comment, &notify})
    ASSERT_OK(AddRule(*rule).status());
  std::vector<int64_t> ids;
  for (const char* title : {"A", "B", "C"}) {
    ASSERT_OK_AND_ASSIGN(dv1::Deal deal, CreateDeal(MakeDeal(title)));
    ASSERT_OK(MoveStage(deal.id(), "PREPARATION").status());
    ids.push_back(deal.id());
  }
  Pump();
  std::vector<int64_t> assignees;
  for (int64_t id : ids) {
    ASSERT_OK_AND_ASSIGN(dv1::Deal deal, GetDeal(id));
    assignees.push_back(deal.assignee_id());
    EXPECT_EQ(deal.source(), "automation for " + deal.title());
    EXPECT_EQ(deal.probability(), 40);
    EXPECT_FALSE(deal.opened());
    EXPECT_EQ(deal.comments(), "Prepared " + deal.title());
    for (const v1::Run& run : Runs(id))
      EXPECT_EQ(run.outcome(), v1::Run::OUTCOME_SUCCEEDED) << run.error();
  }
  EXPECT_THAT(assignees, ElementsAre(5, 6, 5));  // round robin
  v1::ListNotificationsRequest notes;
  notes.set_user_id(9);
  ASSERT_OK_AND_ASSIGN(v1::ListNotificationsResponse listed,
                       Auto(&AutomationStub::ListNotifications, notes));
  ASSERT_EQ(listed.notifications_size(), 3);
  EXPECT_EQ(listed.notifications(0).text(), "C moved");  // newest first
  // Users read only their own notifications.
  EXPECT_THAT(AutoAs(UserToken(8), &AutomationStub::ListNotifications, notes),
              StatusIs(absl::StatusCode::kPermissionDenied));

  // Replaying every event changes nothing more (request ids).
  const size_t events = Events().size();
  Pump(/*from_start=*/true);
  EXPECT_EQ(Events().size(), events);
}

// A run whose change deals committed but whose answer was lost runs again
// and computes another payload (add_comment appends to the comments as they
// are now). deals refuses the run's request id for it: the change is made,
// so the run succeeds and the comment is not added twice.
TEST_F(AutomationServiceTest, RetryAfterACommittedChangeSucceedsOnce) {
  v1::Rule comment = TaskRule("PREPARATION", "comment");
  comment.mutable_action()->mutable_add_comment()->set_text("Noted");
  ASSERT_OK_AND_ASSIGN(v1::Rule rule, AddRule(comment));
  ASSERT_OK_AND_ASSIGN(dv1::Deal deal, CreateDeal(MakeDeal("Lost answer")));
  ASSERT_OK(MoveStage(deal.id(), "PREPARATION").status());
  const int64_t entry_seq = Events().back().sequence();

  // The first attempt's call, as deals committed it.
  dv1::UpdateDealRequest first;
  first.mutable_deal()->set_id(deal.id());
  first.mutable_deal()->set_comments("Noted");
  first.mutable_update_mask()->add_paths("comments");
  first.set_request_id(absl::StrCat(deal.id(), "/", entry_seq, "/", rule.id()));
  first.set_channel(dv1::CHANNEL_AUTOMATION);
  ASSERT_OK(CallAs(ServiceToken("automation"),
                   &crm::deals::DealsStub::UpdateDeal, first)
                .status());

  Pump();
  ASSERT_OK_AND_ASSIGN(dv1::Deal after, GetDeal(deal.id()));
  EXPECT_EQ(after.comments(), "Noted");
  std::vector<v1::Run> runs = Runs(deal.id());
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].run_id(), first.request_id());
  EXPECT_EQ(runs[0].outcome(), v1::Run::OUTCOME_SUCCEEDED) << runs[0].error();
}

// FireTrigger's request id binds one request: a repeat gets the first
// answer (a "not moved" one too), another deal, type or app under the id is
// refused as deals refuses a reused request id.
TEST_F(AutomationServiceTest, FireTriggerRequestIdBindsOneRequest) {
  v1::Trigger paid;
  paid.set_pipeline_id(0);
  paid.set_stage_id("EXECUTING");
  paid.set_name("paid");
  paid.set_type(v1::TRIGGER_TYPE_PAYMENT_RECEIVED);
  ASSERT_OK_AND_ASSIGN(v1::Trigger trigger, AddTrigger(paid));
  ASSERT_OK_AND_ASSIGN(dv1::Deal a, CreateDeal(MakeDeal("A")));
  ASSERT_OK_AND_ASSIGN(dv1::Deal b, CreateDeal(MakeDeal("B")));
  auto fire = [&](int64_t deal_id, v1::TriggerType type,
                  const std::string& request_id) {
    v1::FireTriggerRequest request;
    request.set_deal_id(deal_id);
    request.set_type(type);
    request.set_request_id(request_id);
    return Auto(&AutomationStub::FireTrigger, request);
  };

  ASSERT_OK_AND_ASSIGN(
      v1::FireTriggerResponse first,
      fire(a.id(), v1::TRIGGER_TYPE_PAYMENT_RECEIVED, "pay-1"));
  EXPECT_TRUE(first.moved());
  EXPECT_EQ(first.trigger_id(), trigger.id());
  const size_t events = Events().size();
  ASSERT_OK_AND_ASSIGN(
      v1::FireTriggerResponse again,
      fire(a.id(), v1::TRIGGER_TYPE_PAYMENT_RECEIVED, "pay-1"));
  EXPECT_EQ(again.SerializeAsString(), first.SerializeAsString());
  EXPECT_EQ(Events().size(), events);
  for (const auto& [deal_id, type] :
       std::vector<std::pair<int64_t, v1::TriggerType>>{
           {b.id(), v1::TRIGGER_TYPE_PAYMENT_RECEIVED},
           {a.id(), v1::TRIGGER_TYPE_CALL_MISSED}}) {
    EXPECT_THAT(fire(deal_id, type, "pay-1"),
                StatusIs(absl::StatusCode::kAlreadyExists,
                         "request_id: used already for a different request"));
  }
  ASSERT_OK_AND_ASSIGN(dv1::Deal b_now, GetDeal(b.id()));
  EXPECT_EQ(b_now.stage_id(), "NEW");
  EXPECT_EQ(Events().size(), events);

  // Nothing applied at first (B's stage is past the trigger's): a repeat
  // after the deal moved back does not move it then.
  ASSERT_OK(MoveStage(b.id(), "FINAL_INVOICE").status());
  ASSERT_OK_AND_ASSIGN(
      v1::FireTriggerResponse none,
      fire(b.id(), v1::TRIGGER_TYPE_PAYMENT_RECEIVED, "pay-2"));
  EXPECT_FALSE(none.moved());
  ASSERT_OK(MoveStage(b.id(), "NEW").status());
  ASSERT_OK_AND_ASSIGN(
      v1::FireTriggerResponse still,
      fire(b.id(), v1::TRIGGER_TYPE_PAYMENT_RECEIVED, "pay-2"));
  EXPECT_FALSE(still.moved());
  ASSERT_OK_AND_ASSIGN(b_now, GetDeal(b.id()));
  EXPECT_EQ(b_now.stage_id(), "NEW");

  // A fire whose move deals committed but whose answer automation did not
  // keep: the repeat chooses again, deals refuses the id for the other
  // move, and the answer is "not moved" rather than an error.
  dv1::MoveDealStageRequest lost;
  lost.set_deal_id(b.id());
  lost.set_stage_id("PREPARATION");
  lost.set_request_id(absl::StrCat("fire/u", kAdminUserId, "/pay-3"));
  lost.set_channel(dv1::CHANNEL_TRIGGER);
  ASSERT_OK(CallAs(ServiceToken("automation"),
                   &crm::deals::DealsStub::MoveDealStage, lost)
                .status());
  ASSERT_OK_AND_ASSIGN(
      v1::FireTriggerResponse after_lost,
      fire(b.id(), v1::TRIGGER_TYPE_PAYMENT_RECEIVED, "pay-3"));
  EXPECT_FALSE(after_lost.moved());
  ASSERT_OK_AND_ASSIGN(b_now, GetDeal(b.id()));
  EXPECT_EQ(b_now.stage_id(), "PREPARATION");
}

TEST_F(AutomationServiceTest, CompleteStageTasksAndTaskQueries) {
  ASSERT_OK(AddRule(TaskRule("PREPARATION", "Prepare")).status());
  ASSERT_OK(AddRule(TaskRule("EXECUTING", "Execute")).status());
  ASSERT_OK_AND_ASSIGN(dv1::Deal deal, CreateDeal(MakeDeal("Tasks", 4)));
  ASSERT_OK(MoveStage(deal.id(), "PREPARATION").status());
  Pump();  // (moving on before the runs ran would cancel them)
  ASSERT_OK(MoveStage(deal.id(), "EXECUTING").status());
  Pump();
  // Completes the PREPARATION tasks once this entry's own task exists.
  v1::Rule done = TaskRule("PREPARATION", "done", 100);
  done.mutable_action()->mutable_complete_stage_tasks();
  done.set_execution(v1::EXECUTION_AFTER_PREVIOUS);
  ASSERT_OK(AddRule(done).status());
  ASSERT_OK(MoveStage(deal.id(), "PREPARATION").status());
  Pump();
  int completed = 0;
  for (const v1::Task& task : Tasks(deal.id())) {
    if (task.stage_id() == "PREPARATION") {
      EXPECT_EQ(task.status(), v1::Task::STATUS_COMPLETED) << task.id();
      EXPECT_TRUE(task.has_complete_time());
      ++completed;
    } else {
      EXPECT_EQ(task.status(), v1::Task::STATUS_OPEN);  // other stage
    }
  }
  EXPECT_EQ(completed, 2);  // both entries' tasks

  v1::ListTasksRequest query;
  query.set_responsible_id(4);
  query.set_status(v1::Task::STATUS_OPEN);
  ASSERT_OK_AND_ASSIGN(v1::ListTasksResponse open,
                       Auto(&AutomationStub::ListTasks, query));
  ASSERT_EQ(open.tasks_size(), 1);
  EXPECT_EQ(open.tasks(0).title(), "Execute");
  // The responsible completes it; another user may not.
  v1::CompleteTaskRequest complete;
  complete.set_task_id(open.tasks(0).id());
  EXPECT_THAT(AutoAs(UserToken(5), &AutomationStub::CompleteTask, complete),
              StatusIs(absl::StatusCode::kPermissionDenied));
  ASSERT_OK_AND_ASSIGN(
      v1::Task closed,
      AutoAs(UserToken(4), &AutomationStub::CompleteTask, complete));
  EXPECT_EQ(closed.status(), v1::Task::STATUS_COMPLETED);
  // Paging.
  query.clear_status();
  query.set_page_size(1);
  ASSERT_OK_AND_ASSIGN(v1::ListTasksResponse page1,
                       Auto(&AutomationStub::ListTasks, query));
  ASSERT_EQ(page1.tasks_size(), 1);
  ASSERT_FALSE(page1.next_page_token().empty());
  query.set_page_token(page1.next_page_token());
  ASSERT_OK_AND_ASSIGN(v1::ListTasksResponse page2,
                       Auto(&AutomationStub::ListTasks, query));
  ASSERT_EQ(page2.tasks_size(), 1);
  EXPECT_NE(page2.tasks(0).id(), page1.tasks(0).id());
  query.set_deal_id(0);
  query.set_responsible_id(0);
  query.clear_page_token();
  EXPECT_THAT(
      Auto(&AutomationStub::ListTasks, query),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("deal_id")));
  complete.set_task_id(999999);
  EXPECT_THAT(Auto(&AutomationStub::CompleteTask, complete),
              StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(AutomationServiceTest, TriggersMoveForwardEarliestFirstAndNotBack) {
  v1::Trigger late;
  late.set_pipeline_id(0);
  late.set_stage_id("FINAL_INVOICE");
  late.set_name("paid late");
  late.set_type(v1::TRIGGER_TYPE_PAYMENT_RECEIVED);
  v1::Trigger early = late;
  early.set_stage_id("EXECUTING");
  early.set_name("paid early");
  // Only for deals over 100: a failed condition passes to the next.
  auto* c = early.mutable_condition()->mutable_condition();
  c->set_field("amount");
  c->set_op(dv1::Condition::OPERATOR_GT);
  c->add_values("100");
  ASSERT_OK(AddTrigger(late).status());
  ASSERT_OK_AND_ASSIGN(v1::Trigger early_created, AddTrigger(early));
  ASSERT_OK(AddRule(TaskRule("EXECUTING", "Execute")).status());

  ASSERT_OK_AND_ASSIGN(dv1::Deal big,
                       CreateDeal(MakeDeal("Big", 0, "500", "USD")));
  ASSERT_OK_AND_ASSIGN(dv1::Deal small,
                       CreateDeal(MakeDeal("Small", 0, "50", "USD")));
  ASSERT_OK_AND_ASSIGN(v1::FireTriggerResponse fired,
                       Fire(big.id(), v1::TRIGGER_TYPE_PAYMENT_RECEIVED));
  EXPECT_TRUE(fired.moved());
  EXPECT_EQ(fired.to_stage_id(), "EXECUTING");
  EXPECT_EQ(fired.trigger_id(), early_created.id());
  ASSERT_OK_AND_ASSIGN(fired,
                       Fire(small.id(), v1::TRIGGER_TYPE_PAYMENT_RECEIVED));
  EXPECT_EQ(fired.to_stage_id(), "FINAL_INVOICE");
  Pump();
  EXPECT_THAT(TaskTitles(big.id()), ElementsAre("Execute"));  // its rules ran
  EXPECT_EQ(Events().back().channel(), dv1::CHANNEL_TRIGGER);

  // Small is past EXECUTING; big is at EXECUTING. Firing again moves big
  // forward to FINAL_INVOICE and leaves small where it is.
  ASSERT_OK_AND_ASSIGN(fired,
                       Fire(small.id(), v1::TRIGGER_TYPE_PAYMENT_RECEIVED));
  EXPECT_FALSE(fired.moved());
  ASSERT_OK_AND_ASSIGN(dv1::Deal still, GetDeal(small.id()));
  EXPECT_EQ(still.stage_id(), "FINAL_INVOICE");
  // Allowing backwards moves lets the earliest stage win again.
  v1::Trigger back;
  back.set_pipeline_id(0);
  back.set_stage_id("PREPARATION");
  back.set_name("reopened");
  back.set_type(v1::TRIGGER_TYPE_APP);
  back.set_app_code("crm.reopen");
  ASSERT_OK_AND_ASSIGN(v1::Trigger back_created, AddTrigger(back));
  ASSERT_OK_AND_ASSIGN(fired,
                       Fire(small.id(), v1::TRIGGER_TYPE_APP, "crm.reopen"));
  EXPECT_FALSE(fired.moved());
  v1::UpdateTriggerRequest update;
  update.mutable_trigger()->set_id(back_created.id());
  update.mutable_trigger()->set_allow_backwards(true);
  update.mutable_update_mask()->add_paths("allow_backwards");
  ASSERT_OK(Auto(&AutomationStub::UpdateTrigger, update).status());
  ASSERT_OK_AND_ASSIGN(fired,
                       Fire(small.id(), v1::TRIGGER_TYPE_APP, "other.app"));
  EXPECT_FALSE(fired.moved());
  ASSERT_OK_AND_ASSIGN(fired,
                       Fire(small.id(), v1::TRIGGER_TYPE_APP, "crm.reopen"));
  EXPECT_TRUE(fired.moved());
  EXPECT_EQ(fired.to_stage_id(), "PREPARATION");

  // Bad input.
  EXPECT_THAT(
      Fire(0, v1::TRIGGER_TYPE_APP, "x"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("deal_id")));
  EXPECT_THAT(Fire(small.id(), v1::TRIGGER_TYPE_UNSPECIFIED),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("type")));
  EXPECT_THAT(Fire(999999, v1::TRIGGER_TYPE_CALL_MISSED),
              StatusIs(absl::StatusCode::kNotFound));
  v1::Trigger bad = late;
  bad.set_type(v1::TRIGGER_TYPE_APP);
  EXPECT_THAT(AddTrigger(bad), StatusIs(absl::StatusCode::kInvalidArgument,
                                        HasSubstr("trigger.app_code")));
  bad.set_type(v1::TRIGGER_TYPE_FIELD_CHANGED);
  bad.set_field("no_such_field");
  EXPECT_THAT(AddTrigger(bad), StatusIs(absl::StatusCode::kInvalidArgument,
                                        HasSubstr("trigger.field")));
  bad.set_stage_id("NOPE");
  EXPECT_THAT(AddTrigger(bad), StatusIs(absl::StatusCode::kInvalidArgument,
                                        HasSubstr("trigger.stage_id")));
}

TEST_F(AutomationServiceTest, FieldAndAssigneeChangesFireTriggers) {
  v1::Trigger title;
  title.set_pipeline_id(0);
  title.set_stage_id("EXECUTING");
  title.set_name("title changed");
  title.set_type(v1::TRIGGER_TYPE_FIELD_CHANGED);
  title.set_field("title");
  ASSERT_OK(AddTrigger(title).status());
  v1::Trigger assignee = title;
  assignee.set_stage_id("FINAL_INVOICE");
  assignee.set_type(v1::TRIGGER_TYPE_ASSIGNEE_CHANGED);
  assignee.clear_field();
  ASSERT_OK(AddTrigger(assignee).status());

  ASSERT_OK_AND_ASSIGN(dv1::Deal deal, CreateDeal(MakeDeal("Old title")));
  dv1::UpdateDealRequest update;
  update.mutable_deal()->set_id(deal.id());
  update.mutable_deal()->set_source("web");
  update.mutable_update_mask()->add_paths("source");
  ASSERT_OK(Call(&crm::deals::DealsStub::UpdateDeal, update).status());
  Pump();
  ASSERT_OK_AND_ASSIGN(dv1::Deal after, GetDeal(deal.id()));
  EXPECT_EQ(after.stage_id(), "NEW");  // another field: no move

  update.mutable_deal()->set_title("New title");
  update.mutable_update_mask()->set_paths(0, "title");
  ASSERT_OK(Call(&crm::deals::DealsStub::UpdateDeal, update).status());
  Pump();
  ASSERT_OK_AND_ASSIGN(after, GetDeal(deal.id()));
  EXPECT_EQ(after.stage_id(), "EXECUTING");

  update.mutable_deal()->set_assignee_id(7);
  update.mutable_update_mask()->set_paths(0, "assignee_id");
  ASSERT_OK(Call(&crm::deals::DealsStub::UpdateDeal, update).status());
  Pump();
  ASSERT_OK_AND_ASSIGN(after, GetDeal(deal.id()));
  EXPECT_EQ(after.stage_id(), "FINAL_INVOICE");
  std::vector<v1::Run> runs = Runs(deal.id());
  ASSERT_EQ(runs.size(), 2u);
  for (const v1::Run& run : runs) {
    EXPECT_NE(run.trigger_id(), 0);
    EXPECT_EQ(run.outcome(), v1::Run::OUTCOME_SUCCEEDED) << run.error();
  }
}

TEST_F(AutomationServiceTest, OutsideCallsRetryThenParkAsFailed) {
  // A webhook nobody answers, an email without a recipient, an SMS without
  // a gateway.
  v1::Rule hook = TaskRule("NEW", "hook");
  hook.mutable_action()->mutable_call_webhook()->set_url(
      "http://127.0.0.1:1/hook");
  v1::Rule mail = TaskRule("NEW", "mail");
  mail.mutable_action()->mutable_send_email()->set_subject("Hi");
  mail.mutable_action()->mutable_send_email()->set_body("Hello");
  v1::Rule sms = TaskRule("NEW", "sms");
  sms.mutable_action()->mutable_send_sms()->set_to("+15550100");
  sms.mutable_action()->mutable_send_sms()->set_text("Hi");
  for (const v1::Rule* rule : {&hook, &mail, &sms})
    ASSERT_OK(AddRule(*rule).status());
  ASSERT_OK_AND_ASSIGN(dv1::Deal deal, CreateDeal(MakeDeal("Outside")));
  Pump();
  std::map<std::string, v1::Run> by_rule;
  for (const v1::Run& run : Runs(deal.id())) {
    auto rule = engine_->catalog().GetRule(run.rule_id());
    ASSERT_TRUE(rule.ok());
    by_rule[rule->name()] = run;
  }
  EXPECT_EQ(by_rule["hook"].outcome(), v1::Run::OUTCOME_FAILED);
  EXPECT_EQ(by_rule["hook"].attempts(), options_.max_attempts);
  EXPECT_THAT(by_rule["hook"].error(), HasSubstr("gave up after"));
  EXPECT_EQ(by_rule["mail"].outcome(), v1::Run::OUTCOME_FAILED);
  EXPECT_EQ(by_rule["mail"].attempts(), 1);
  EXPECT_THAT(by_rule["mail"].error(), HasSubstr("contact"));
  EXPECT_EQ(by_rule["sms"].outcome(), v1::Run::OUTCOME_FAILED);
  EXPECT_THAT(by_rule["sms"].error(), HasSubstr("sms_gateway_url"));
}

TEST_F(AutomationServiceTest, WebhookTriggerOverHttpAndSignedWebhookAction) {
  // A real HTTP receiver for the webhook action.
  absl::Mutex mu;
  std::vector<common::HttpServer::Request> received;
  common::MetricsRegistry registry;
  common::HttpServer receiver(registry);
  receiver.HandlePost("/hook", [&](const common::HttpServer::Request& r) {
    absl::MutexLock lock(&mu);
    received.push_back(r);
    return common::HttpServer::Response{200, "ok"};
  });
  ASSERT_OK_AND_ASSIGN(int port, receiver.Start("127.0.0.1", 0));
  v1::Rule hook = TaskRule("EXECUTING", "hook");
  hook.mutable_action()->mutable_call_webhook()->set_url(
      absl::StrCat("http://127.0.0.1:", port, "/hook"));
  hook.mutable_action()->mutable_call_webhook()->set_secret("hook-secret");
  ASSERT_OK(AddRule(hook).status());

  v1::Trigger trigger;
  trigger.set_pipeline_id(0);
  trigger.set_stage_id("EXECUTING");
  trigger.set_name("signed up");
  trigger.set_type(v1::TRIGGER_TYPE_INCOMING_WEBHOOK);
  ASSERT_OK_AND_ASSIGN(v1::Trigger created, AddTrigger(trigger));
  ASSERT_EQ(created.webhook_token().size(), 48u);

  ASSERT_OK_AND_ASSIGN(dv1::Deal deal, CreateDeal(MakeDeal("Hooked")));
  const std::string base =
      absl::StrCat("http://127.0.0.1:", runner_->http_port(), "/hooks/");
  auto post = [&](const std::string& path, const std::string& body) {
    HttpPost request;
    request.url = base + path;
    request.body = body;
    return SendHttpPost(request);
  };
  ASSERT_OK_AND_ASSIGN(HttpResult unknown, post("nope", "{}"));
  EXPECT_EQ(unknown.status_code, 404);
  ASSERT_OK_AND_ASSIGN(HttpResult bad, post(created.webhook_token(), "{}"));
  EXPECT_EQ(bad.status_code, 400);
  EXPECT_THAT(bad.body, HasSubstr("deal_id"));
  ASSERT_OK_AND_ASSIGN(HttpResult moved,
                       post(created.webhook_token(),
                            absl::StrCat("{\"deal_id\": ", deal.id(), "}")));
  EXPECT_EQ(moved.status_code, 200) << moved.body;
  EXPECT_THAT(moved.body, HasSubstr("\"moved\":true"));
  Pump();
  ASSERT_OK_AND_ASSIGN(dv1::Deal after, GetDeal(deal.id()));
  EXPECT_EQ(after.stage_id(), "EXECUTING");

  absl::MutexLock lock(&mu);
  ASSERT_EQ(received.size(), 1u);
  const auto& request = received[0];
  auto header = [&](const std::string& name) {
    auto it = request.headers.find(absl::AsciiStrToLower(name));
    return it == request.headers.end() ? std::string() : it->second;
  };
  EXPECT_TRUE(VerifyWebhookSignature("hook-secret", header(kTimestampHeader),
                                     request.body, header(kSignatureHeader)));
  std::vector<v1::Run> runs = Runs(deal.id());
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(header(kIdempotencyKeyHeader), runs[0].run_id());
  EXPECT_THAT(request.body, HasSubstr("\"title\":\"Hooked\""));
}

TEST_F(AutomationServiceTest, WebhooksToPrivateAddressesFailUnlessAllowed) {
  options_.allow_private_webhooks = false;
  RestartAutomation();
  v1::Rule hook = TaskRule("NEW", "inside");
  hook.mutable_action()->mutable_call_webhook()->set_url(
      "http://169.254.169.254/latest/meta-data");
  ASSERT_OK(AddRule(hook).status());
  ASSERT_OK_AND_ASSIGN(dv1::Deal deal, CreateDeal(MakeDeal("Probe")));
  Pump();
  std::vector<v1::Run> runs = Runs(deal.id());
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].outcome(), v1::Run::OUTCOME_FAILED);
  EXPECT_EQ(runs[0].attempts(), 1);  // not retried
  EXPECT_THAT(runs[0].error(), HasSubstr("private"));
}

TEST_F(AutomationServiceTest, BadEventDeliveriesAreRefused) {
  dv1::DeliverEventsRequest request;
  auto* event = request.add_events();
  event->set_sequence(0);
  auto context = MakeContext(ServiceToken("deals"));
  dv1::DeliverEventsResponse response;
  EXPECT_EQ(
      sink_stub_->DeliverEvents(context.get(), request, &response).error_code(),
      grpc::StatusCode::INVALID_ARGUMENT);
  // Only the deals service delivers events.
  event->set_sequence(1);
  for (const std::string& token : {AdminToken(), ServiceToken("reporting")}) {
    context = MakeContext(token);
    EXPECT_EQ(sink_stub_->DeliverEvents(context.get(), request, &response)
                  .error_code(),
              grpc::StatusCode::PERMISSION_DENIED);
  }
}

TEST_F(AutomationServiceTest, EveryRpcRefusesBadTokens) {
  using Rpc = std::function<absl::Status(const std::string&)>;
  auto rpc = [this](auto method, auto request) -> Rpc {
    return [this, method, request](const std::string& token) {
      return AutoAs(token, method, request).status();
    };
  };
  std::vector<std::pair<std::string, Rpc>> rpcs = {
      {"CreateRule", rpc(&AutomationStub::CreateRule, v1::CreateRuleRequest())},
      {"GetRule", rpc(&AutomationStub::GetRule, v1::GetRuleRequest())},
      {"ListRules", rpc(&AutomationStub::ListRules, v1::ListRulesRequest())},
      {"UpdateRule", rpc(&AutomationStub::UpdateRule, v1::UpdateRuleRequest())},
      {"DeleteRule", rpc(&AutomationStub::DeleteRule, v1::DeleteRuleRequest())},
      {"CreateTrigger",
       rpc(&AutomationStub::CreateTrigger, v1::CreateTriggerRequest())},
      {"GetTrigger", rpc(&AutomationStub::GetTrigger, v1::GetTriggerRequest())},
      {"ListTriggers",
       rpc(&AutomationStub::ListTriggers, v1::ListTriggersRequest())},
      {"UpdateTrigger",
       rpc(&AutomationStub::UpdateTrigger, v1::UpdateTriggerRequest())},
      {"DeleteTrigger",
       rpc(&AutomationStub::DeleteTrigger, v1::DeleteTriggerRequest())},
      {"FireTrigger",
       rpc(&AutomationStub::FireTrigger, v1::FireTriggerRequest())},
      {"ListTasks", rpc(&AutomationStub::ListTasks, v1::ListTasksRequest())},
      {"CompleteTask",
       rpc(&AutomationStub::CompleteTask, v1::CompleteTaskRequest())},
      {"ListRuns", rpc(&AutomationStub::ListRuns, v1::ListRunsRequest())},
      {"ListNotifications",
       rpc(&AutomationStub::ListNotifications, v1::ListNotificationsRequest())},
      {"DeliverEvents",
       [this](const std::string& token) {
         auto context = MakeContext(token);
         dv1::DeliverEventsResponse response;
         return common::FromGrpcStatus(sink_stub_->DeliverEvents(
             context.get(), dv1::DeliverEventsRequest(), &response));
       }},
  };
  ExpectBadTokensRefused(rpcs);
}

// Lists stop at the reply budget (2 MiB) with a token, whatever the page
// size: 120 rules and tasks of 20 KB each (the longest template).
TEST_F(AutomationServiceTest, ListsStopAtTheReplyBudget) {
  const std::string text(20000, 'x');
  for (int i = 0; i < 120; ++i) {
    // At most 100 rules per stage: two stages.
    v1::Rule rule = TaskRule(i % 2 == 0 ? "PREPARATION" : "EXECUTING",
                             absl::StrCat("Large ", i), i);
    rule.mutable_action()->mutable_create_task()->set_description(text);
    ASSERT_OK(AddRule(rule).status());
  }
  v1::ListRulesRequest rules;
  rules.set_pipeline_id(0);
  rules.set_page_size(500);
  std::set<int64_t> seen_rules;
  int rule_pages = 0;
  for (; rule_pages < 20; ++rule_pages) {
    ASSERT_OK_AND_ASSIGN(v1::ListRulesResponse page,
                         Auto(&AutomationStub::ListRules, rules));
    EXPECT_GT(page.rules_size(), 0);
    EXPECT_LE(page.ByteSizeLong(), common::kReplyBudgetBytes + (1 << 20));
    for (const v1::Rule& rule : page.rules()) {
      EXPECT_TRUE(seen_rules.insert(rule.id()).second);
    }
    if (page.next_page_token().empty()) break;
    rules.set_page_token(page.next_page_token());
  }
  EXPECT_EQ(seen_rules.size(), 120u);
  EXPECT_GE(rule_pages, 1);  // more than one page

  ASSERT_OK_AND_ASSIGN(dv1::Deal deal, CreateDeal(MakeDeal("Large", 4)));
  ASSERT_OK(MoveStage(deal.id(), "PREPARATION").status());
  Pump();
  ASSERT_OK(MoveStage(deal.id(), "EXECUTING").status());
  Pump();
  v1::ListTasksRequest tasks;
  tasks.set_responsible_id(4);
  tasks.set_page_size(500);
  std::set<int64_t> seen_tasks;
  int task_pages = 0;
  for (; task_pages < 20; ++task_pages) {
    ASSERT_OK_AND_ASSIGN(v1::ListTasksResponse page,
                         Auto(&AutomationStub::ListTasks, tasks));
    EXPECT_LE(page.ByteSizeLong(), common::kReplyBudgetBytes + (1 << 20));
    for (const v1::Task& task : page.tasks()) {
      EXPECT_TRUE(seen_tasks.insert(task.id()).second);
    }
    if (page.next_page_token().empty()) break;
    tasks.set_page_token(page.next_page_token());
  }
  EXPECT_EQ(seen_tasks.size(), 120u);
  EXPECT_GE(task_pages, 1);
}

// The in-memory due index follows only what was written: an event whose
// batch is not written cancels nothing, even when the index cannot be
// reloaded from the store either.
TEST_F(AutomationServiceTest, AnUnwrittenEventLeavesScheduledRunsDue) {
  dv1::Deal deal;
  ASSERT_NO_FATAL_FAILURE(DealWithAFollowUpInAnHour(&deal));
  ASSERT_OK(MoveStage(deal.id(), "EXECUTING").status());
  FailStore([](Op op, std::string_view cf) {
    return op == Op::kWrite || (op == Op::kIterate && cf == kDueCf);
  });
  EXPECT_FALSE(DeliverOnce().ok());  // leaving PREPARATION is not taken in
  HealStore();
  // Automation has not taken the move in, so its run is still due and goes
  // when due; it then finds the deal gone from the stage. (Had the failed
  // event dropped it from the index, it would sit SCHEDULED, never started.)
  Advance(absl::Minutes(61));
  std::vector<v1::Run> runs = Runs(deal.id());
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].outcome(), v1::Run::OUTCOME_CANCELLED);
  EXPECT_THAT(runs[0].error(), HasSubstr("no longer in the rule's stage"));
  EXPECT_TRUE(runs[0].has_start_time());
  EXPECT_TRUE(Tasks(deal.id()).empty());
  // Redelivered, the move changes nothing of the finished run.
  Pump();
  runs = Runs(deal.id());
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_THAT(runs[0].error(), HasSubstr("no longer in the rule's stage"));
}

// A due run that cannot be read is taken off the index; the engine rebuilds
// the index from the store once it answers again (retrying the rebuild
// while it fails) and the run goes.
TEST_F(AutomationServiceTest, AReadFailureOfADueRunIsRetried) {
  dv1::Deal deal;
  ASSERT_NO_FATAL_FAILURE(DealWithAFollowUpInAnHour(&deal));
  FailStore([](Op op, std::string_view cf) {
    return (op == Op::kRead && cf == kRunsCf) ||
           (op == Op::kIterate && cf == kDueCf);
  });
  AdvanceWithoutWaiting(absl::Minutes(61));
  WaitForFaults(3);               // the run's read and at least two reloads
  EXPECT_FALSE(engine_->Idle());  // the reload is still owed
  HealStore();
  WaitIdle();
  EXPECT_THAT(TaskTitles(deal.id()), ElementsAre("Follow up"));
}

// A run whose outcome cannot be written goes again later, once, and not in
// a tight loop while the store keeps failing.
TEST_F(AutomationServiceTest, AnUnwrittenFinishIsRetriedWithBackoff) {
  dv1::Deal deal;
  ASSERT_NO_FATAL_FAILURE(DealWithAFollowUpInAnHour(&deal));
  FailStore([](Op op, std::string_view) { return op == Op::kWrite; });
  AdvanceWithoutWaiting(absl::Minutes(61));
  WaitForFaults(1);
  absl::SleepFor(absl::Milliseconds(300));
  // Holds of 20, 40, 80, 160 ms...: a handful of attempts, not hundreds.
  EXPECT_LE(faults_.load(), 8);
  HealStore();
  WaitIdle();
  EXPECT_THAT(TaskTitles(deal.id()), ElementsAre("Follow up"));
  std::vector<v1::Run> runs = Runs(deal.id());
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].outcome(), v1::Run::OUTCOME_SUCCEEDED);
  EXPECT_EQ(runs[0].attempts(), 1);  // failed attempts left nothing behind
}

// Finishing a run lists the stage's waiting runs: when that listing fails,
// the finish is not kept (the next rule would never start) and is retried.
TEST_F(AutomationServiceTest, AFailedListingOfWaitingRunsDoesNotStallAChain) {
  ASSERT_OK(AddRule(DelayedTaskRule("NEW", "First", 600, 1)).status());
  v1::Rule second = TaskRule("NEW", "Second", 2);
  second.set_execution(v1::EXECUTION_AFTER_PREVIOUS);
  ASSERT_OK(AddRule(second).status());
  ASSERT_OK_AND_ASSIGN(dv1::Deal deal, CreateDeal(MakeDeal("Chain")));
  Pump();
  FailStore([](Op op, std::string_view cf) {
    return op == Op::kIterate && cf == kRunsCf;
  });
  AdvanceWithoutWaiting(absl::Seconds(601));
  WaitForFaults(1);
  HealStore();
  WaitIdle();
  EXPECT_THAT(TaskTitles(deal.id()), ElementsAre("First", "Second"));
}

// Completing a stage's tasks lists the deal's tasks: when that listing
// fails, the run is not recorded as succeeded with the tasks left open.
TEST_F(AutomationServiceTest, AFailedListingOfTasksIsNotASuccess) {
  ASSERT_OK(AddRule(TaskRule("PREPARATION", "Prepare", 1)).status());
  v1::Rule done = DelayedTaskRule("PREPARATION", "done", 600, 2);
  done.mutable_action()->mutable_complete_stage_tasks();
  ASSERT_OK(AddRule(done).status());
  ASSERT_OK_AND_ASSIGN(dv1::Deal deal, CreateDeal(MakeDeal("Tasks")));
  ASSERT_OK(MoveStage(deal.id(), "PREPARATION").status());
  Pump();
  ASSERT_THAT(TaskTitles(deal.id()), ElementsAre("Prepare"));
  FailStore([](Op op, std::string_view cf) {
    return op == Op::kIterate && cf == kTasksByDealCf;
  });
  AdvanceWithoutWaiting(absl::Seconds(601));
  WaitForFaults(1);
  HealStore();
  WaitIdle();
  std::vector<v1::Task> tasks = Tasks(deal.id());
  ASSERT_EQ(tasks.size(), 1u);
  EXPECT_EQ(tasks[0].status(), v1::Task::STATUS_COMPLETED);
}

}  // namespace
}  // namespace crm::automation
