// crm-deals as a process among the others it needs: the outbox relay
// delivering to a real subscriber (crm-test-event-sink) in order, exactly
// once per event id, across a subscriber outage and a SIGKILL of deals under
// concurrent writes; and pipeline-config asking deals before deleting a
// pipeline that still holds deals.
#include <atomic>
#include <csignal>
#include <iostream>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "google/protobuf/empty.pb.h"
#include "gtest/gtest.h"

#include "tests/e2e/deals_fixture.h"

namespace crm::testing {
namespace {

using ::testing::HasSubstr;
using PipelinesStub = v1::PipelinesService::Stub;

// How long SIGTERM may take: the default shutdown grace plus slack.
const absl::Duration kExitTimeout = kShutdownGrace + absl::Seconds(5);

struct ExpectedEvent {
  std::string type;
  int64_t deal_id = 0;
  // Checked for STAGE_CHANGED only.
  std::string to_stage_id;
};

::testing::AssertionResult Matches(const std::vector<SinkEvent>& events,
                                   const std::vector<ExpectedEvent>& expected) {
  if (events.size() != expected.size()) {
    return ::testing::AssertionFailure()
           << events.size() << " events, expected " << expected.size();
  }
  for (size_t i = 0; i < events.size(); ++i) {
    const SinkEvent& got = events[i];
    const ExpectedEvent& want = expected[i];
    if (got.type != want.type || got.deal_id != want.deal_id ||
        (want.type == "STAGE_CHANGED" && got.to_stage_id != want.to_stage_id)) {
      return ::testing::AssertionFailure()
             << "event #" << i << " (" << got.event_id << ") is " << got.type
             << " of deal " << got.deal_id << " to \"" << got.to_stage_id
             << "\", expected " << want.type << " of deal " << want.deal_id
             << " to \"" << want.to_stage_id << "\"";
    }
  }
  return ::testing::AssertionSuccess();
}

// Every write emits one event, and the relay delivers them in commit
// order with consecutive sequences.
TEST_F(DealsE2eTest, StageMovesReachTheSinkInOrder) {
  auto config = StartPipelineConfig();
  ASSERT_NE(config, nullptr);
  auto sink = StartSink();
  ASSERT_NE(sink, nullptr);
  DealsOptions options;
  options.pipeline_config_addr = config->grpc_address();
  options.subscribers = SinkSubscriber(sink->grpc_port());
  auto deals = StartDeals(options);
  ASSERT_NE(deals, nullptr);

  std::vector<ExpectedEvent> expected;
  {
    DealsClient client(deals->NewChannel());
    deals_v1::Deal won;
    ASSERT_TRUE(IsOk(client.Create(deals_v1::Deal(), &won)));
    EXPECT_EQ(won.stage_id(), "NEW");
    EXPECT_EQ(won.id() & 1023, 0) << "deal ids carry shard 0 in the low bits";
    expected.push_back({"CREATED", won.id(), ""});
    for (const char* stage : {"PREPARATION", "PREPAYMENT_INVOICE", "EXECUTING",
                              "FINAL_INVOICE", "WON"}) {
      deals_v1::Deal moved;
      ASSERT_TRUE(IsOk(client.Move(won.id(), stage, &moved))) << stage;
      EXPECT_EQ(moved.stage_id(), stage);
      expected.push_back({"STAGE_CHANGED", won.id(), stage});
    }
    // A second deal is lost, then reopened.
    deals_v1::Deal lost;
    ASSERT_TRUE(IsOk(client.Create(deals_v1::Deal(), &lost)));
    EXPECT_NE(lost.id(), won.id());
    expected.push_back({"CREATED", lost.id(), ""});
    for (const char* stage : {"LOSE", "PREPARATION"}) {
      deals_v1::Deal moved;
      ASSERT_TRUE(IsOk(client.Move(lost.id(), stage, &moved))) << stage;
      EXPECT_EQ(moved.stage_id(), stage);
      expected.push_back({"STAGE_CHANGED", lost.id(), stage});
    }
    deals_v1::Deal got;
    ASSERT_TRUE(IsOk(client.Get(won.id(), &got)));
    EXPECT_EQ(got.stage_id(), "WON");
    EXPECT_TRUE(got.closed());
  }

  std::vector<SinkEvent> events =
      WaitForSink([&](const std::vector<SinkEvent>& e) {
        return e.size() >= expected.size();
      });
  EXPECT_TRUE(GapFreeFromOne(events));
  EXPECT_TRUE(Matches(events, expected));
  // Nothing more arrives later, nothing was refused or redelivered.
  absl::SleepFor(absl::Milliseconds(500));
  EXPECT_EQ(ReadLines(sink_files().out_file).size(), expected.size());
  EXPECT_EQ(ReadFileOrEmpty(sink_files().reject_file), "");
  EXPECT_EQ(ReadFileOrEmpty(sink_files().dup_file), "");

  ExpectGracefulExit(*deals, kExitTimeout);
  ExpectGracefulExit(*sink, kExitTimeout);
  ExpectGracefulExit(*config, kExitTimeout);
}

// While the subscriber is down deals keeps serving; when it comes back
// on the same port the relay catches up, and every event is applied once.
TEST_F(DealsE2eTest, SubscriberDownThenUpGetsEveryEventOnce) {
  const absl::StatusOr<int> sink_port = PickFreePort();
  ASSERT_TRUE(sink_port.ok()) << sink_port.status();
  auto config = StartPipelineConfig();
  ASSERT_NE(config, nullptr);
  auto sink = StartSink(*sink_port);
  ASSERT_NE(sink, nullptr);
  DealsOptions options;
  options.pipeline_config_addr = config->grpc_address();
  options.subscribers = SinkSubscriber(*sink_port);
  auto deals = StartDeals(options);
  ASSERT_NE(deals, nullptr);
  DealsClient client(deals->NewChannel());

  std::vector<ExpectedEvent> expected;
  for (int i = 0; i < 5; ++i) {
    deals_v1::Deal deal;
    ASSERT_TRUE(IsOk(client.Create(deals_v1::Deal(), &deal)));
    expected.push_back({"CREATED", deal.id(), ""});
  }
  std::vector<SinkEvent> events = WaitForSink(
      [&](const std::vector<SinkEvent>& e) { return e.size() >= 5; });
  ASSERT_EQ(events.size(), 5u);

  absl::StatusOr<ExitInfo> killed = sink->process().Kill();
  ASSERT_TRUE(killed.ok()) << killed.status();
  // 50 writes while nobody listens: 25 creates, each followed by an update.
  for (int i = 0; i < 25; ++i) {
    deals_v1::Deal deal;
    ASSERT_TRUE(IsOk(client.Create(deals_v1::Deal(), &deal))) << i;
    expected.push_back({"CREATED", deal.id(), ""});
    deals_v1::Deal updated;
    ASSERT_TRUE(IsOk(
        client.UpdateTitle(deal.id(), absl::StrCat("Offline #", i), &updated)))
        << i;
    EXPECT_EQ(updated.title(), absl::StrCat("Offline #", i));
    expected.push_back({"UPDATED", deal.id(), ""});
  }
  // Let the relay fail a few times and reach its maximum backoff.
  absl::SleepFor(absl::Seconds(1));
  EXPECT_EQ(ReadLines(sink_files().out_file).size(), 5u);

  sink = StartSink(*sink_port);
  ASSERT_NE(sink, nullptr);
  events = WaitForSink([&](const std::vector<SinkEvent>& e) {
    return e.size() >= expected.size();
  });
  EXPECT_TRUE(GapFreeFromOne(events));
  EXPECT_TRUE(Matches(events, expected));

  // Delivery goes on as usual afterwards.
  deals_v1::Deal after;
  ASSERT_TRUE(IsOk(client.Create(deals_v1::Deal(), &after)));
  expected.push_back({"CREATED", after.id(), ""});
  events = WaitForSink([&](const std::vector<SinkEvent>& e) {
    return e.size() >= expected.size();
  });
  absl::SleepFor(absl::Milliseconds(500));
  events = WaitForSink([](const std::vector<SinkEvent>&) { return true; });
  EXPECT_TRUE(GapFreeFromOne(events));
  EXPECT_TRUE(Matches(events, expected));
  EXPECT_EQ(ReadFileOrEmpty(sink_files().reject_file), "");
}

// A backlog of large events (120 deals with 20,000-character comments,
// 7.2 MB) used to go out as one delivery the subscriber refused as larger
// than its message limit, on every retry, and nothing after it was ever
// delivered. Deliveries are bounded by bytes now.
TEST_F(DealsE2eTest, ABacklogOfLargeEventsGetsThroughAndSoDoesWhatFollows) {
  const absl::StatusOr<int> sink_port = PickFreePort();
  ASSERT_TRUE(sink_port.ok()) << sink_port.status();
  auto config = StartPipelineConfig();
  ASSERT_NE(config, nullptr);
  DealsOptions options;
  options.pipeline_config_addr = config->grpc_address();
  options.subscribers = SinkSubscriber(*sink_port);
  options.extra_args = {"--relay_max_backoff_ms=200"};
  auto deals = StartDeals(options);  // the subscriber is down
  ASSERT_NE(deals, nullptr);
  DealsClient client(deals->NewChannel());
  std::string comments;
  for (int i = 0; i < 20000; ++i) comments += "\u20ac";  // 3 bytes each
  std::vector<ExpectedEvent> expected;
  for (int i = 0; i < 120; ++i) {
    deals_v1::Deal deal;
    deal.set_comments(comments);
    deals_v1::Deal created;
    ASSERT_TRUE(IsOk(client.Create(deal, &created))) << i;
    expected.push_back({"CREATED", created.id(), ""});
  }
  auto sink = StartSink(*sink_port);
  ASSERT_NE(sink, nullptr);
  deals_v1::Deal small;
  ASSERT_TRUE(IsOk(client.Create(deals_v1::Deal(), &small)));
  expected.push_back({"CREATED", small.id(), ""});
  std::vector<SinkEvent> events =
      WaitForSink([&](const std::vector<SinkEvent>& e) {
        return e.size() >= expected.size();
      });
  EXPECT_TRUE(GapFreeFromOne(events));
  EXPECT_TRUE(Matches(events, expected));
  EXPECT_EQ(ReadFileOrEmpty(sink_files().reject_file), "");
}

// After a long outage the backlog still arrives about as soon as the
// subscriber is back: the relay's waits are capped by --relay_max_backoff_ms
// (200 ms here), and nothing else (such as the gRPC channel's own reconnect
// backoff, 1 s growing by 1.6x up to 120 s by default) may stretch them.
TEST_F(DealsE2eTest, RelayCatchesUpSoonAfterALongOutage) {
  // Long enough for gRPC's default reconnect backoff to have grown to
  // several seconds; the allowance is the relay's cap plus scheduling slack
  // on a loaded two-core machine.
  const absl::Duration kOutage = absl::Seconds(12);
  const absl::Duration kCatchUpAllowance = absl::Seconds(3);
  const absl::StatusOr<int> sink_port = PickFreePort();
  ASSERT_TRUE(sink_port.ok()) << sink_port.status();
  auto config = StartPipelineConfig();
  ASSERT_NE(config, nullptr);
  auto sink = StartSink(*sink_port);
  ASSERT_NE(sink, nullptr);
  DealsOptions options;
  options.pipeline_config_addr = config->grpc_address();
  options.subscribers = SinkSubscriber(*sink_port);
  auto deals = StartDeals(options);
  ASSERT_NE(deals, nullptr);
  DealsClient client(deals->NewChannel());

  deals_v1::Deal first;
  ASSERT_TRUE(IsOk(client.Create(deals_v1::Deal(), &first)));
  ASSERT_EQ(WaitForSink([](const std::vector<SinkEvent>& e) {
              return !e.empty();
            }).size(),
            1u);
  absl::StatusOr<ExitInfo> killed = sink->process().Kill();
  ASSERT_TRUE(killed.ok()) << killed.status();
  deals_v1::Deal second;
  ASSERT_TRUE(IsOk(client.Create(deals_v1::Deal(), &second)));
  absl::SleepFor(kOutage);

  sink = StartSink(*sink_port);
  ASSERT_NE(sink, nullptr);
  const absl::Time back = absl::Now();
  const std::vector<SinkEvent> events = WaitForSink(
      [](const std::vector<SinkEvent>& e) { return e.size() >= 2; });
  const absl::Duration catch_up = absl::Now() - back;
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[1].deal_id, second.id());
  EXPECT_LE(catch_up, kCatchUpAllowance)
      << "the backlog arrived " << absl::FormatDuration(catch_up)
      << " after the subscriber came back (outage "
      << absl::FormatDuration(kOutage) << ", --relay_max_backoff_ms=200)";
}

// What one writer thread of the crash test did.
struct WriterLog {
  struct TrackedDeal {
    int64_t id = 0;
    // The stage of its last acknowledged write (NEW once created).
    std::string acked_stage;
    // A move sent but not acknowledged when deals died ("" if none): it may
    // or may not have been committed.
    std::string unacked_stage;
  };
  std::vector<TrackedDeal> deals;
  // Every acknowledged write's event.
  std::vector<ExpectedEvent> acked_events;
  // Writes whose outcome is unknown (at most one per thread).
  int unacked_writes = 0;
  bool unacked_create = false;
  // Failures before deals was killed: there should be none.
  std::vector<std::string> errors;
};

// Creates deals and moves each through NEW .. WON, until a call fails (deals
// was killed) or `stop`.
void RunWriter(const std::shared_ptr<grpc::Channel>& channel, int index,
               const std::atomic<bool>& killing, const std::atomic<bool>& stop,
               WriterLog* log) {
  const DealsClient client(channel);
  const std::vector<std::string> moves = {"PREPARATION", "PREPAYMENT_INVOICE",
                                          "EXECUTING", "FINAL_INVOICE", "WON"};
  auto failed = [&](const grpc::Status& status, const std::string& what) {
    ++log->unacked_writes;
    if (!killing.load()) {
      log->errors.push_back(absl::StrCat(what, ": ", status.error_code(), " ",
                                         status.error_message()));
    }
  };
  for (int n = 0; !stop.load(); ++n) {
    deals_v1::Deal created;
    const grpc::Status status = client.Create(
        deals_v1::Deal(), &created, absl::StrCat("e2e-crash-", index, "-", n));
    if (!status.ok()) {
      log->unacked_create = true;
      failed(status, "CreateDeal");
      return;
    }
    log->deals.push_back({created.id(), created.stage_id(), ""});
    log->acked_events.push_back({"CREATED", created.id(), ""});
    for (const std::string& stage : moves) {
      if (stop.load()) return;
      WriterLog::TrackedDeal& deal = log->deals.back();
      deal.unacked_stage = stage;
      deals_v1::Deal moved;
      const grpc::Status move = client.Move(deal.id, stage, &moved);
      if (!move.ok()) {
        failed(move, absl::StrCat("MoveDealStage ", deal.id, " to ", stage));
        return;
      }
      deal.acked_stage = moved.stage_id();
      deal.unacked_stage.clear();
      log->acked_events.push_back({"STAGE_CHANGED", deal.id, stage});
    }
  }
}

class DealsCrashTest : public DealsE2eTest,
                       public ::testing::WithParamInterface<bool> {};

INSTANTIATE_TEST_SUITE_P(SyncWrites, DealsCrashTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& param) {
                           return param.param ? "Sync" : "NoSync";
                         });

// SIGKILL of deals in the middle of 4 writers: after a restart on the
// same data dir every acknowledged write is there, and the subscriber gets
// exactly one event per committed write, gap-free, the acknowledged ones
// included.
TEST_P(DealsCrashTest, AcknowledgedWritesAndTheirEventsSurviveSigkill) {
  auto config = StartPipelineConfig();
  ASSERT_NE(config, nullptr);
  auto sink = StartSink();
  ASSERT_NE(sink, nullptr);
  DealsOptions options;
  options.pipeline_config_addr = config->grpc_address();
  options.subscribers = SinkSubscriber(sink->grpc_port());
  options.sync_writes = GetParam();
  auto deals = StartDeals(options);
  ASSERT_NE(deals, nullptr);

  constexpr int kWriters = 4;
  std::vector<WriterLog> logs(kWriters);
  std::atomic<bool> killing{false};
  std::atomic<bool> stop{false};
  {
    std::vector<std::thread> writers;
    for (int i = 0; i < kWriters; ++i) {
      writers.emplace_back(RunWriter, deals->NewChannel(), i,
                           std::cref(killing), std::cref(stop), &logs[i]);
    }
    absl::SleepFor(absl::Seconds(2));
    killing = true;
    absl::StatusOr<ExitInfo> killed = deals->process().Kill();
    stop = true;
    for (auto& writer : writers) writer.join();
    ASSERT_TRUE(killed.ok()) << killed.status();
    ASSERT_TRUE(killed->signaled)
        << "deals ended before the kill: " << killed->ToString();
  }
  int64_t acked_writes = 0;
  int64_t unacked_writes = 0;
  int unacked_creates = 0;
  std::map<int64_t, WriterLog::TrackedDeal> tracked;
  std::set<std::pair<int64_t, std::string>> acked_keys;  // (deal, type/stage)
  std::set<std::pair<int64_t, std::string>> unacked_keys;
  auto key = [](const std::string& type, int64_t deal_id,
                const std::string& to_stage) {
    return std::make_pair(
        deal_id, type == "STAGE_CHANGED" ? "STAGE_CHANGED " + to_stage : type);
  };
  for (const WriterLog& log : logs) {
    for (const std::string& error : log.errors)
      ADD_FAILURE() << "before the kill: " << error;
    acked_writes += static_cast<int64_t>(log.acked_events.size());
    unacked_writes += log.unacked_writes;
    unacked_creates += log.unacked_create ? 1 : 0;
    for (const ExpectedEvent& event : log.acked_events)
      acked_keys.insert(key(event.type, event.deal_id, event.to_stage_id));
    for (const WriterLog::TrackedDeal& deal : log.deals) {
      tracked[deal.id] = deal;
      if (!deal.unacked_stage.empty())
        unacked_keys.insert(key("STAGE_CHANGED", deal.id, deal.unacked_stage));
    }
  }
  ASSERT_GT(tracked.size(), 0u) << "no write was acknowledged";
  std::cerr << "acknowledged writes: " << acked_writes << " on "
            << tracked.size() << " deals; unknown outcome: " << unacked_writes
            << "\n";

  deals = StartDeals(options);
  ASSERT_NE(deals, nullptr);
  {
    DealsClient client(deals->NewChannel());
    for (const auto& [id, deal] : tracked) {
      deals_v1::Deal got;
      ASSERT_TRUE(IsOk(client.Get(id, &got))) << "deal " << id;
      if (deal.unacked_stage.empty()) {
        EXPECT_EQ(got.stage_id(), deal.acked_stage) << "deal " << id;
      } else {
        EXPECT_THAT(got.stage_id(),
                    ::testing::AnyOf(deal.acked_stage, deal.unacked_stage))
            << "deal " << id;
      }
    }
  }

  // Every acknowledged write's event arrives; then the outbox is drained.
  auto all_acked = [&](const std::vector<SinkEvent>& events) {
    size_t found = 0;
    for (const SinkEvent& e : events)
      found += acked_keys.count(key(e.type, e.deal_id, e.to_stage_id));
    return found >= acked_keys.size();
  };
  std::vector<SinkEvent> events = WaitForSink(all_acked);
  ASSERT_TRUE(all_acked(events))
      << events.size() << " events, " << acked_keys.size() << " acknowledged";
  absl::SleepFor(absl::Seconds(1));
  events = WaitForSink([](const std::vector<SinkEvent>&) { return true; });
  EXPECT_TRUE(GapFreeFromOne(events));
  EXPECT_GE(static_cast<int64_t>(events.size()), acked_writes);
  EXPECT_LE(static_cast<int64_t>(events.size()), acked_writes + unacked_writes)
      << "more events than writes";
  EXPECT_EQ(ReadFileOrEmpty(sink_files().reject_file), "");
  // Each event is an acknowledged write or one of unknown outcome, once.
  std::set<std::pair<int64_t, std::string>> seen;
  int unknown_creates = 0;
  for (const SinkEvent& e : events) {
    const auto k = key(e.type, e.deal_id, e.to_stage_id);
    EXPECT_TRUE(seen.insert(k).second)
        << "write applied twice: " << e.event_id << " " << e.type << " of deal "
        << e.deal_id << " to " << e.to_stage_id;
    if (acked_keys.count(k) != 0 || unacked_keys.count(k) != 0) continue;
    if (e.type == "CREATED" && tracked.count(e.deal_id) == 0) {
      ++unknown_creates;
      continue;
    }
    ADD_FAILURE() << "event of no write: " << e.event_id << " " << e.type
                  << " of deal " << e.deal_id << " to " << e.to_stage_id;
  }
  EXPECT_LE(unknown_creates, unacked_creates);
  // Each deal's writes were made one after the other, so its events follow
  // the same order: CREATED, then the stages NEW .. WON in turn.
  std::map<int64_t, int> next_stage;  // deal -> index in kPipeline0Stages
  for (const SinkEvent& e : events) {
    if (e.type == "CREATED") {
      EXPECT_EQ(next_stage.count(e.deal_id), 0u) << e.event_id;
      next_stage[e.deal_id] = 1;
      continue;
    }
    ASSERT_EQ(next_stage.count(e.deal_id), 1u)
        << e.event_id << ": " << e.type << " before CREATED";
    EXPECT_EQ(e.to_stage_id, kPipeline0Stages[next_stage[e.deal_id]++])
        << e.event_id << " of deal " << e.deal_id;
  }

  // Ids and sequences go on after the crash without reuse.
  {
    DealsClient client(deals->NewChannel());
    deals_v1::Deal fresh;
    ASSERT_TRUE(IsOk(client.Create(deals_v1::Deal(), &fresh)));
    EXPECT_EQ(tracked.count(fresh.id()), 0u) << "deal id reused";
    for (const SinkEvent& e : events) {
      EXPECT_NE(e.deal_id, fresh.id()) << "deal id reused";
    }
    const size_t before = events.size();
    events = WaitForSink(
        [&](const std::vector<SinkEvent>& e) { return e.size() > before; });
    ASSERT_EQ(events.size(), before + 1);
    EXPECT_EQ(events.back().deal_id, fresh.id());
    EXPECT_EQ(events.back().type, "CREATED");
    EXPECT_TRUE(GapFreeFromOne(events));
  }
}

// pipeline-config asks deals how many deals a pipeline (or stage) holds
// before deleting it. Each needs the other's address: deals gets a port
// picked in advance.
TEST_F(DealsE2eTest, PipelineConfigRefusesToDeleteAPipelineThatHoldsDeals) {
  std::unique_ptr<ServiceProcess> config, deals;
  ASSERT_NO_FATAL_FAILURE(StartLinkedPipelineConfigAndDeals(&config, &deals));

  const Client pipelines(config->NewChannel());
  v1::CreatePipelineRequest create;
  create.mutable_pipeline()->set_name("E2E delete check");
  v1::Pipeline pipeline;
  ASSERT_TRUE(
      IsOk(pipelines.Call(&PipelinesStub::CreatePipeline, create, &pipeline)));
  ASSERT_GT(pipeline.stages_size(), 2);
  const std::string first_stage = pipeline.stages(0).stage_id();
  const std::string second_stage = pipeline.stages(1).stage_id();

  auto deals_client = std::make_unique<DealsClient>(deals->NewChannel());
  // deals learns about the new pipeline from pipeline-config's change
  // stream, a moment later: retry (the request id keeps it one deal).
  deals_v1::Deal input;
  input.set_pipeline_id(pipeline.id());
  deals_v1::Deal deal;
  grpc::Status created;
  const absl::Time give_up = absl::Now() + absl::Seconds(15);
  while (true) {
    created = deals_client->Create(input, &deal, "e2e-delete-check");
    if (created.ok() || absl::Now() >= give_up) break;
    absl::SleepFor(absl::Milliseconds(50));
  }
  ASSERT_TRUE(IsOk(created)) << "deals never accepted the new pipeline";
  EXPECT_EQ(deal.pipeline_id(), pipeline.id());
  EXPECT_EQ(deal.stage_id(), first_stage);
  deals_v1::Deal moved;
  ASSERT_TRUE(IsOk(deals_client->Move(deal.id(), second_stage, &moved)));

  google::protobuf::Empty empty;
  v1::DeletePipelineRequest delete_pipeline;
  delete_pipeline.set_pipeline_id(pipeline.id());
  grpc::Status refused =
      pipelines.Call(&PipelinesStub::DeletePipeline, delete_pipeline, &empty);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::FAILED_PRECONDITION)
      << refused.error_message();
  EXPECT_THAT(refused.error_message(), HasSubstr("still holds 1 deals"));
  // The stage the deal is in cannot go either; an empty one can.
  v1::DeleteStageRequest delete_stage;
  delete_stage.set_pipeline_id(pipeline.id());
  delete_stage.set_stage_id(second_stage);
  refused = pipelines.Call(&PipelinesStub::DeleteStage, delete_stage, &empty);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::FAILED_PRECONDITION)
      << refused.error_message();
  EXPECT_THAT(refused.error_message(), HasSubstr("still holds 1 deals"));
  v1::GetPipelineRequest get;
  get.set_pipeline_id(pipeline.id());
  v1::Pipeline still_there;
  ASSERT_TRUE(
      IsOk(pipelines.Call(&PipelinesStub::GetPipeline, get, &still_there)));
  EXPECT_EQ(still_there.stages_size(), pipeline.stages_size());

  ASSERT_TRUE(IsOk(deals_client->Delete(deal.id())));
  EXPECT_TRUE(IsOk(
      pipelines.Call(&PipelinesStub::DeletePipeline, delete_pipeline, &empty)));
  EXPECT_EQ(pipelines.Call(&PipelinesStub::GetPipeline, get, &still_there)
                .error_code(),
            grpc::StatusCode::NOT_FOUND);

  // Without an answer from deals the delete fails closed.
  create.mutable_pipeline()->set_name("E2E deals down");
  v1::Pipeline other;
  ASSERT_TRUE(
      IsOk(pipelines.Call(&PipelinesStub::CreatePipeline, create, &other)));
  deals_client.reset();
  ExpectGracefulExit(*deals, kExitTimeout);
  delete_pipeline.set_pipeline_id(other.id());
  refused =
      pipelines.Call(&PipelinesStub::DeletePipeline, delete_pipeline, &empty);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::UNAVAILABLE)
      << refused.error_message();
  get.set_pipeline_id(other.id());
  EXPECT_TRUE(IsOk(pipelines.Call(&PipelinesStub::GetPipeline, get, &other)));
}

// Deleting a stage while deals are created in it: once DeleteStage answers
// OK no deal is, or ever gets, into the stage. Writers create deals in the
// stage and move each out at once, so the stage is empty now and then and
// the delete can go through; a deal whose create succeeds after the delete
// answered is left where it landed, and the stage must be empty at the end.
TEST_F(DealsE2eTest, NoDealArrivesInAStageOnceItsDeleteSucceeded) {
  std::unique_ptr<ServiceProcess> config, deals;
  ASSERT_NO_FATAL_FAILURE(StartLinkedPipelineConfigAndDeals(&config, &deals));
  const Client pipelines(config->NewChannel());
  const DealsClient deals_client(deals->NewChannel());

  constexpr int kRounds = 3;
  constexpr int kWriters = 3;
  for (int round = 0; round < kRounds; ++round) {
    SCOPED_TRACE(absl::StrCat("round ", round));
    const std::string stage_id = absl::StrCat("RACE", round);
    v1::CreateStageRequest create_stage;
    create_stage.set_pipeline_id(0);
    create_stage.mutable_stage()->set_stage_id(stage_id);
    create_stage.mutable_stage()->set_name(stage_id);
    create_stage.mutable_stage()->set_sort(15);
    create_stage.mutable_stage()->set_semantics(v1::STAGE_SEMANTICS_PROCESS);
    v1::Stage stage;
    ASSERT_TRUE(IsOk(
        pipelines.Call(&PipelinesStub::CreateStage, create_stage, &stage)));

    std::atomic<bool> deleted{false};
    std::atomic<bool> stop{false};
    std::atomic<int> landed{0};        // creates into the stage that succeeded
    std::atomic<int> after_delete{0};  // ... and were seen after the delete
    std::atomic<int> unexpected{0};
    std::vector<std::thread> writers;
    for (int w = 0; w < kWriters; ++w) {
      writers.emplace_back([&] {
        deals_v1::Deal input;
        input.set_stage_id(stage_id);
        while (!stop.load()) {
          deals_v1::Deal deal;
          const grpc::Status created = deals_client.Create(input, &deal);
          if (created.ok()) {
            ++landed;
            if (deleted.load()) {
              ++after_delete;  // left in the stage: the final count sees it
              continue;
            }
            deals_v1::Deal moved;
            if (!deals_client.Move(deal.id(), "NEW", &moved).ok()) ++unexpected;
          } else if (created.error_code() !=
                         grpc::StatusCode::INVALID_ARGUMENT &&  // not known
                     created.error_code() !=
                         grpc::StatusCode::FAILED_PRECONDITION) {  // deleting
            ++unexpected;
          }
          absl::SleepFor(absl::Milliseconds(1));
        }
      });
    }
    // Wait until deals knows the stage and deals land in it.
    const absl::Time give_up = absl::Now() + absl::Seconds(15);
    while (landed.load() < 5 && absl::Now() < give_up)
      absl::SleepFor(absl::Milliseconds(5));
    EXPECT_GE(landed.load(), 5) << "deals never accepted the new stage";

    v1::DeleteStageRequest delete_stage;
    delete_stage.set_pipeline_id(0);
    delete_stage.set_stage_id(stage_id);
    google::protobuf::Empty empty;
    grpc::Status outcome;
    int refused = 0;
    while (absl::Now() < give_up) {
      outcome =
          pipelines.Call(&PipelinesStub::DeleteStage, delete_stage, &empty);
      if (outcome.ok()) break;
      ++refused;
      if (outcome.error_code() != grpc::StatusCode::FAILED_PRECONDITION) {
        ADD_FAILURE() << "DeleteStage: " << outcome.error_message();
        break;
      }
    }
    if (outcome.ok()) deleted.store(true);
    // Keep writing while deals' copy of the configuration catches up.
    absl::SleepFor(absl::Milliseconds(300));
    stop.store(true);
    for (auto& writer : writers) writer.join();
    ASSERT_TRUE(IsOk(outcome))
        << "the stage never emptied, " << refused << " refusals";
    std::cout << "round " << round << ": " << landed.load()
              << " creates landed in the stage, " << refused
              << " deletes refused before one succeeded\n";
    EXPECT_EQ(unexpected.load(), 0);
    EXPECT_EQ(after_delete.load(), 0);
    deals_v1::CountDealsRequest count;
    count.set_pipeline_id(0);
    count.set_stage_id(stage_id);
    deals_v1::CountDealsResponse counted;
    grpc::ClientContext context;
    deals_client.Prepare(&context);
    ASSERT_TRUE(
        IsOk(deals_client.stub().CountDeals(&context, count, &counted)));
    EXPECT_EQ(counted.count(), 0) << "deals left in the deleted stage";
  }
}

// Without its configuration deals cannot check a stage or a permission, so
// it exits non-zero (the orchestrator restarts it) instead of serving.
TEST(DealsStartTest, ExitsWhenPipelineConfigIsUnreachable) {
  TempDir dir;
  const absl::StatusOr<int> unused_port = PickFreePort();
  ASSERT_TRUE(unused_port.ok()) << unused_port.status();
  const std::string port_file = dir.path() + "/deals.ports";
  const std::string output = dir.path() + "/deals.log";
  ProcessOptions options;
  options.binary = CRM_DEALS_BINARY;
  options.args = {
      "--port=0",
      "--http_port=0",
      "--port_file=" + port_file,
      "--data_dir=" + dir.path() + "/deals",
      "--jwt_secret=" + std::string(kE2eJwtSecret),
      absl::StrCat("--pipeline_config_addr=127.0.0.1:", *unused_port),
      "--pipeline_config_start_timeout_seconds=1"};
  options.output_file = output;
  absl::StatusOr<std::unique_ptr<Process>> deals = Process::Start(options);
  ASSERT_TRUE(deals.ok()) << deals.status();
  absl::StatusOr<ExitInfo> exit = (*deals)->Wait(absl::Seconds(15));
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_TRUE(exit->exited) << exit->ToString();
  EXPECT_NE(exit->code, 0);
  EXPECT_EQ(ReadFileOrEmpty(port_file), "") << "it bound its ports";
  EXPECT_THAT(ReadFileOrEmpty(output),
              ::testing::HasSubstr("cannot load the pipeline configuration"));
}

}  // namespace
}  // namespace crm::testing
