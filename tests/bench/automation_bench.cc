// crm-automation-bench: event intake throughput and rule lag of a running
// crm-automation fed by a running crm-deals (--subscribers=automation=...);
// run_automation_bench.sh starts crm-pipeline-config, crm-automation and
// crm-deals and runs it.
//
//   1. Reads the stages of --pipeline_id from crm-pipeline-config and gives
//      every stage one immediate create-task rule (AutomationService
//      CreateRule, Action.create_task); rules of an earlier run of the bench
//      on the same service are reused.
//   2. Creates the deals (CreateDeal, 8 threads) and waits until the run of
//      their creation stage finished (a warm-up of the whole path).
//   3. Open loop: MoveDealStage at --rate per second for --warmup_s +
//      --duration_s, issued on schedule from one pacing thread through the
//      gRPC callback API over --channels connections, whatever the replies
//      do. Move k moves deal k % deals to its next stage (the pipeline's
//      stages in order, without its creation stage), so every (deal, stage)
//      pair is entered once and a deal moves every deals / rate seconds.
//      Each move's commit time is the returned deal's move_time.
//   4. Waits (at most --drain_timeout_s) until the runs of the last moves
//      finished, then reads the run log of every deal (ListRuns) until every
//      expected run is finished or the time is up.
//
// Figures, over the moves issued after the warm-up:
//   lag         run.finish_time - deal.move_time of the bench rule's run of
//               that (deal, stage) entry: commit of the move in crm-deals to
//               the task written by crm-automation (both server clocks, one
//               machine);
//   intake lag  run.scheduled_time - deal.move_time: an immediate rule's run
//               is scheduled at the time its event is applied, so this is the
//               relay delivery plus the intake;
//   throughput  moves issued per second (the pacing achieved), events
//               applied per second (runs scheduled over their time span) and
//               runs finished per second.
// The goal checked at the end: lag p99 <= --goal_p99_ms with every expected
// run succeeded and the pacing holding --rate (1,000 moves/s by default).
// Exits 1 when a move failed or an expected run did not succeed, whatever
// the goal.
//
//   crm-automation-bench --deals_target=127.0.0.1:50051
//       --automation_target=127.0.0.1:50053
//       --pipeline_config_target=127.0.0.1:50052 --jwt_secret=...
//
// --repeats of the shared bench flags is not used (one paced run).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/flags/declare.h"
#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"

#include "crm/automation/v1/automation_service.grpc.pb.h"
#include "crm/deals/v1/deals_service.grpc.pb.h"
#include "crm/pipelines/v1/pipelines_service.grpc.pb.h"

#include "common/auth/auth.h"
#include "common/time/proto_time.h"
#include "tests/bench/bench_runner.h"
#include "tests/e2e/service_process.h"

// The shared loop flags (tests/bench/bench_runner.cc): --channels are the
// connections the moves go over, --warmup_s and --duration_s the paced
// phase.
ABSL_DECLARE_FLAG(double, warmup_s);
ABSL_DECLARE_FLAG(double, duration_s);

ABSL_FLAG(std::string, deals_target, "", "host:port of a running crm-deals");
ABSL_FLAG(std::string, automation_target, "",
          "host:port of the crm-automation that crm-deals delivers its events "
          "to");
ABSL_FLAG(std::string, pipeline_config_target, "",
          "host:port of the crm-pipeline-config both use");
ABSL_FLAG(std::string, jwt_secret, "",
          "Secret of the services, to mint the administrator token with "
          "(required)");
ABSL_FLAG(int64_t, user, 1, "User id of the minted administrator token");
ABSL_FLAG(int64_t, pipeline_id, 0,
          "Pipeline whose every stage gets a rule and whose deals move");
ABSL_FLAG(double, rate, 1000, "Moves per second, issued open loop");
ABSL_FLAG(int, deals, 0,
          "Deals created up front; 0 = just enough for every move to enter a "
          "stage its deal has not been in");
ABSL_FLAG(double, drain_timeout_s, 60,
          "Longest wait, after the last move, for the runs to finish");
ABSL_FLAG(double, setup_timeout_s, 120,
          "Longest wait for the runs of the deals' creation to finish");
ABSL_FLAG(double, goal_p99_ms, 50, "Goal: lag p99 at most this many ms");
ABSL_FLAG(int64_t, automation_pid, 0,
          "Pid of crm-automation, for its CPU over the paced phase (0 = "
          "unknown)");
ABSL_FLAG(int64_t, deals_pid, 0,
          "Pid of crm-deals, for its CPU over the paced phase (0 = unknown)");
ABSL_FLAG(double, wait_s, 60, "Seconds to wait for the servers to be SERVING");

namespace crm::bench {
namespace {

namespace av1 = ::crm::automation::v1;
namespace dv1 = ::crm::deals::v1;
namespace pv1 = ::crm::pipelines::v1;

constexpr char kRuleNamePrefix[] = "bench: task on ";
// Threads of the synchronous set-up calls and run log reads.
constexpr int kCallThreads = 8;
// Deadline of every call.
constexpr auto kCallTimeout = std::chrono::seconds(10);

double Seconds(Clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

bool IsTerminal(av1::Run::Outcome outcome) {
  return outcome == av1::Run::OUTCOME_SUCCEEDED ||
         outcome == av1::Run::OUTCOME_SKIPPED ||
         outcome == av1::Run::OUTCOME_CANCELLED ||
         outcome == av1::Run::OUTCOME_FAILED ||
         outcome == av1::Run::OUTCOME_LOOP_STOPPED;
}

std::string OutcomeName(av1::Run::Outcome outcome) {
  std::string name = av1::Run::Outcome_Name(outcome);
  const std::string prefix = "OUTCOME_";
  return name.rfind(prefix, 0) == 0 ? name.substr(prefix.size()) : name;
}

// p50, p99 and max of a sample (the runner's nearest-rank percentiles).
struct Summary {
  size_t count = 0;
  double p50 = 0;
  double p99 = 0;
  double max = 0;
};

Summary Summarize(std::vector<double> values) {
  Summary summary;
  summary.count = values.size();
  if (values.empty()) return summary;
  std::sort(values.begin(), values.end());
  auto percentile = [&](double p) {
    const size_t index =
        std::min(values.size() - 1,
                 static_cast<size_t>(p * static_cast<double>(values.size())));
    return values[index];
  };
  summary.p50 = percentile(0.50);
  summary.p99 = percentile(0.99);
  summary.max = values.back();
  return summary;
}

// Runs f(i) for i in [0, count) on kCallThreads threads.
template <typename F>
void ParallelFor(size_t count, F f) {
  std::vector<std::thread> threads;
  for (int t = 0; t < kCallThreads; ++t) {
    threads.emplace_back([&, t] {
      for (size_t i = static_cast<size_t>(t); i < count; i += kCallThreads)
        f(i);
    });
  }
  for (std::thread& thread : threads) thread.join();
}

// The synchronous calls: set-up and the run log reads.
class Clients {
 public:
  Clients(const std::string& deals, const std::string& automation,
          const std::string& pipeline_config, std::string bearer)
      : deals_channel_(crm::testing::NewLoopbackChannel(deals)),
        automation_channel_(crm::testing::NewLoopbackChannel(automation)),
        pipelines_channel_(crm::testing::NewLoopbackChannel(pipeline_config)),
        deals_(dv1::DealsService::NewStub(deals_channel_)),
        automation_(av1::AutomationService::NewStub(automation_channel_)),
        pipelines_(pv1::PipelinesService::NewStub(pipelines_channel_)),
        bearer_(std::move(bearer)) {}

  // Every server answers Health/Check SERVING within `timeout`.
  absl::Status WaitForServing(absl::Duration timeout) const {
    const absl::Time deadline = absl::Now() + timeout;
    for (const auto& [name, channel] :
         {std::pair("crm-deals", deals_channel_),
          std::pair("crm-automation", automation_channel_),
          std::pair("crm-pipeline-config", pipelines_channel_)}) {
      absl::Status serving = crm::testing::WaitForServing(
          channel, "", std::max(deadline - absl::Now(), absl::Seconds(1)));
      if (!serving.ok()) {
        return absl::Status(serving.code(),
                            absl::StrCat(name, ": ", serving.message()));
      }
    }
    return absl::OkStatus();
  }

  grpc::Status GetPipeline(int64_t id, pv1::Pipeline* pipeline) {
    pv1::GetPipelineRequest request;
    request.set_pipeline_id(id);
    return pipelines_->GetPipeline(Context().get(), request, pipeline);
  }
  grpc::Status ListRules(int64_t pipeline_id, std::vector<av1::Rule>* rules) {
    av1::ListRulesRequest request;
    request.set_pipeline_id(pipeline_id);
    request.set_page_size(500);
    while (true) {
      av1::ListRulesResponse response;
      grpc::Status status =
          automation_->ListRules(Context().get(), request, &response);
      if (!status.ok()) return status;
      rules->insert(rules->end(), response.rules().begin(),
                    response.rules().end());
      if (response.next_page_token().empty()) return grpc::Status::OK;
      request.set_page_token(response.next_page_token());
    }
  }
  grpc::Status CreateRule(const av1::Rule& rule, av1::Rule* created) {
    av1::CreateRuleRequest request;
    *request.mutable_rule() = rule;
    return automation_->CreateRule(Context().get(), request, created);
  }
  grpc::Status CreateDeal(const dv1::CreateDealRequest& request,
                          dv1::Deal* deal) {
    return deals_->CreateDeal(Context().get(), request, deal);
  }
  // The whole run log of a deal.
  grpc::Status ListRuns(int64_t deal_id, std::vector<av1::Run>* runs) {
    av1::ListRunsRequest request;
    request.set_deal_id(deal_id);
    request.set_page_size(500);
    while (true) {
      av1::ListRunsResponse response;
      grpc::Status status =
          automation_->ListRuns(Context().get(), request, &response);
      if (!status.ok()) return status;
      for (av1::Run& run : *response.mutable_runs())
        runs->push_back(std::move(run));
      if (response.next_page_token().empty()) return grpc::Status::OK;
      request.set_page_token(response.next_page_token());
    }
  }

 private:
  std::unique_ptr<grpc::ClientContext> Context() const {
    auto context = std::make_unique<grpc::ClientContext>();
    context->set_deadline(std::chrono::system_clock::now() + kCallTimeout);
    context->AddMetadata("authorization", bearer_);
    return context;
  }

  std::shared_ptr<grpc::Channel> deals_channel_;
  std::shared_ptr<grpc::Channel> automation_channel_;
  std::shared_ptr<grpc::Channel> pipelines_channel_;
  std::unique_ptr<dv1::DealsService::Stub> deals_;
  std::unique_ptr<av1::AutomationService::Stub> automation_;
  std::unique_ptr<pv1::PipelinesService::Stub> pipelines_;
  std::string bearer_;
};

// One stage entry whose rule run the bench waits for.
struct Expected {
  size_t deal = 0;  // index into the deal ids
  std::string stage_id;
};

// The bench rules' runs of every deal, by stage, as last read.
class RunLog {
 public:
  RunLog(Clients& clients, std::vector<int64_t> deal_ids,
         absl::flat_hash_set<int64_t> rule_ids)
      : clients_(clients),
        deal_ids_(std::move(deal_ids)),
        rule_ids_(std::move(rule_ids)),
        runs_(deal_ids_.size()),
        duplicates_(deal_ids_.size(), 0) {}

  // Reads the run logs of the deals `which` (indexes), kCallThreads at a
  // time. Returns the first failure.
  grpc::Status Read(const std::vector<size_t>& which) {
    absl::Mutex mu;
    grpc::Status failure = grpc::Status::OK;
    ParallelFor(which.size(), [&](size_t i) {
      const size_t deal = which[i];
      std::vector<av1::Run> runs;
      grpc::Status status = clients_.ListRuns(deal_ids_[deal], &runs);
      if (!status.ok()) {
        absl::MutexLock lock(&mu);
        if (failure.ok()) failure = status;
        return;
      }
      std::map<std::string, av1::Run> by_stage;
      int duplicates = 0;
      for (av1::Run& run : runs) {
        if (!rule_ids_.contains(run.rule_id())) continue;
        const std::string stage = run.stage_id();
        if (!by_stage.emplace(stage, std::move(run)).second) ++duplicates;
      }
      runs_[deal] = std::move(by_stage);
      duplicates_[deal] = duplicates;
    });
    return failure;
  }

  // The run of the entry, or null when none was read.
  const av1::Run* Find(const Expected& entry) const {
    auto it = runs_[entry.deal].find(entry.stage_id);
    return it == runs_[entry.deal].end() ? nullptr : &it->second;
  }

  bool Finished(const Expected& entry) const {
    const av1::Run* run = Find(entry);
    return run != nullptr && IsTerminal(run->outcome());
  }

  // Polls the deals of `watch` (a few entries) every 50 ms until all of
  // them finished or `deadline` passed. Polling only a few deals keeps the
  // reads from competing with the runs still finishing.
  grpc::Status WaitForWatched(const std::vector<Expected>& watch,
                              Clock::time_point deadline) {
    std::set<size_t> deals;
    for (const Expected& entry : watch) deals.insert(entry.deal);
    while (true) {
      grpc::Status status = Read({deals.begin(), deals.end()});
      if (!status.ok()) return status;
      if (std::all_of(watch.begin(), watch.end(),
                      [&](const Expected& e) { return Finished(e); }) ||
          Clock::now() >= deadline) {
        return grpc::Status::OK;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }

  // Reads the deals of `entries`, then re-reads those with unfinished
  // entries every 200 ms until none is left or `deadline` passed (at least
  // one read either way).
  grpc::Status WaitForAll(const std::vector<Expected>& entries,
                          Clock::time_point deadline) {
    std::set<size_t> pending;
    for (const Expected& entry : entries) pending.insert(entry.deal);
    while (true) {
      grpc::Status status = Read({pending.begin(), pending.end()});
      if (!status.ok()) return status;
      pending.clear();
      for (const Expected& entry : entries) {
        if (!Finished(entry)) pending.insert(entry.deal);
      }
      if (pending.empty() || Clock::now() >= deadline) return grpc::Status::OK;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  }

  int duplicates() const {
    int total = 0;
    for (int d : duplicates_) total += d;
    return total;
  }

 private:
  Clients& clients_;
  const std::vector<int64_t> deal_ids_;
  const absl::flat_hash_set<int64_t> rule_ids_;
  std::vector<std::map<std::string, av1::Run>> runs_;
  std::vector<int> duplicates_;
};

// One paced MoveDealStage call.
struct Move {
  Expected entry;
  Clock::time_point due;   // when the schedule says to send it
  Clock::time_point sent;  // when it was sent
  Clock::time_point done;  // when its reply arrived
  grpc::Status status;
  absl::Time move_time = absl::InfinitePast();  // the reply's move_time
  std::string reply_stage;                      // the reply's stage_id
  std::unique_ptr<grpc::ClientContext> context;
  dv1::MoveDealStageRequest request;
  dv1::Deal reply;
};

// Sends `moves` open loop, move k at start + k / rate, round-robin over
// `stubs`, and waits for every reply (calls have a deadline, so it ends).
class PacedMoves {
 public:
  PacedMoves(std::vector<std::unique_ptr<dv1::DealsService::Stub>>& stubs,
             std::string bearer, std::vector<Move>& moves)
      : stubs_(stubs), bearer_(std::move(bearer)), moves_(moves) {}

  void Run(double rate) {
    {
      absl::MutexLock lock(&mu_);
      outstanding_ = static_cast<int64_t>(moves_.size());
    }
    const Clock::time_point start = Clock::now();
    for (size_t k = 0; k < moves_.size(); ++k) {
      Move& move = moves_[k];
      move.due =
          start +
          std::chrono::duration_cast<Clock::duration>(
              std::chrono::duration<double>(static_cast<double>(k) / rate));
      // Behind schedule (a busy core): send at once, never skip.
      std::this_thread::sleep_until(move.due);
      move.context = std::make_unique<grpc::ClientContext>();
      move.context->set_deadline(std::chrono::system_clock::now() +
                                 kCallTimeout);
      move.context->AddMetadata("authorization", bearer_);
      move.sent = Clock::now();
      stubs_[k % stubs_.size()]->async()->MoveDealStage(
          move.context.get(), &move.request, &move.reply,
          [this, &move](grpc::Status status) {
            Done(&move, std::move(status));
          });
      absl::MutexLock lock(&mu_);
      ++sent_;
      max_in_flight_ = std::max(max_in_flight_, sent_ - completed_);
    }
    // Every call has a deadline, so this ends.
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(
        +[](int64_t* outstanding) { return *outstanding == 0; },
        &outstanding_));
  }

  int64_t max_in_flight() const {
    absl::MutexLock lock(&mu_);
    return max_in_flight_;
  }

 private:
  void Done(Move* move, grpc::Status status) {
    move->done = Clock::now();
    move->status = std::move(status);
    if (move->status.ok()) {
      if (move->reply.has_move_time())
        move->move_time = common::FromTimestamp(move->reply.move_time());
      move->reply_stage = move->reply.stage_id();
    }
    move->reply.Clear();
    absl::MutexLock lock(&mu_);
    --outstanding_;
    ++completed_;
  }

  std::vector<std::unique_ptr<dv1::DealsService::Stub>>& stubs_;
  const std::string bearer_;
  std::vector<Move>& moves_;
  mutable absl::Mutex mu_;
  int64_t outstanding_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t sent_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t completed_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t max_in_flight_ ABSL_GUARDED_BY(mu_) = 0;
};

std::string Ms(double ms) { return absl::StrFormat("%.1f", ms); }

int Run() {
  const std::string deals_target = absl::GetFlag(FLAGS_deals_target);
  const std::string automation_target = absl::GetFlag(FLAGS_automation_target);
  const std::string pipeline_target =
      absl::GetFlag(FLAGS_pipeline_config_target);
  if (deals_target.empty() || automation_target.empty() ||
      pipeline_target.empty()) {
    std::cerr << "--deals_target, --automation_target and "
                 "--pipeline_config_target are required\n";
    return 2;
  }
  const std::optional<LoopSettings> loop = LoopSettingsFromFlags();
  if (!loop.has_value()) return 2;
  const double rate = absl::GetFlag(FLAGS_rate);
  if (!(rate > 0)) {
    std::cerr << "--rate must be positive\n";
    return 2;
  }
  if (loop->warmup < absl::ZeroDuration()) {
    std::cerr << "--warmup_s must not be negative\n";
    return 2;
  }
  std::string secret = absl::GetFlag(FLAGS_jwt_secret);
  if (secret.empty()) {
    std::cerr << "--jwt_secret (the services' secret) is required\n";
    return 2;
  }
  const std::string bearer =
      "Bearer " + common::MakeUserToken(secret, absl::GetFlag(FLAGS_user),
                                        /*admin=*/true, absl::Hours(6),
                                        absl::Now());
  const int64_t pipeline_id = absl::GetFlag(FLAGS_pipeline_id);

  Clients clients(deals_target, automation_target, pipeline_target, bearer);
  if (absl::Status serving =
          clients.WaitForServing(absl::Seconds(absl::GetFlag(FLAGS_wait_s)));
      !serving.ok()) {
    std::cerr << "not serving: " << serving << "\n";
    return 2;
  }

  // 1. The stages, and one immediate create-task rule on each.
  pv1::Pipeline pipeline;
  if (grpc::Status status = clients.GetPipeline(pipeline_id, &pipeline);
      !status.ok()) {
    std::cerr << "GetPipeline(" << pipeline_id << "): " << StatusText(status)
              << "\n";
    return 2;
  }
  std::vector<std::string> stages;
  for (const pv1::Stage& stage : pipeline.stages())
    stages.push_back(stage.stage_id());
  if (stages.size() < 2) {
    std::cerr << "pipeline " << pipeline_id
              << " needs two stages or more to move deals\n";
    return 2;
  }
  std::vector<av1::Rule> existing;
  if (grpc::Status status = clients.ListRules(pipeline_id, &existing);
      !status.ok()) {
    std::cerr << "ListRules: " << StatusText(status) << "\n";
    return 2;
  }
  absl::flat_hash_set<int64_t> rule_ids;
  std::set<std::string> covered;
  int other_rules = 0;
  for (const av1::Rule& rule : existing) {
    if (rule.name() == kRuleNamePrefix + rule.stage_id() &&
        rule.action().has_create_task() &&
        covered.insert(rule.stage_id()).second) {
      rule_ids.insert(rule.id());
    } else {
      ++other_rules;
    }
  }
  int created_rules = 0;
  for (const std::string& stage_id : stages) {
    if (covered.count(stage_id) > 0) continue;
    av1::Rule rule;
    rule.set_pipeline_id(pipeline_id);
    rule.set_stage_id(stage_id);
    rule.set_name(kRuleNamePrefix + stage_id);
    rule.mutable_timing()->set_kind(av1::Timing::KIND_IMMEDIATE);
    av1::CreateTask* task = rule.mutable_action()->mutable_create_task();
    task->set_title("Follow up on {{title}}");
    task->set_description("Amount {{amount}} {{currency}}");
    task->mutable_deadline_after()->set_seconds(24 * 3600);
    av1::Rule created;
    if (grpc::Status status = clients.CreateRule(rule, &created);
        !status.ok()) {
      std::cerr << "CreateRule(" << stage_id << "): " << StatusText(status)
                << "\n";
      return 2;
    }
    rule_ids.insert(created.id());
    ++created_rules;
  }
  const std::string other_note =
      other_rules > 0 ? absl::StrCat("; ", other_rules,
                                     " other rule(s) of the pipeline also run")
                      : "";
  std::printf(
      "rules: one immediate create-task rule on each of the %zu stages of "
      "pipeline %lld (%d created, %zu reused)%s\n",
      stages.size(), static_cast<long long>(pipeline_id), created_rules,
      stages.size() - static_cast<size_t>(created_rules), other_note.c_str());

  // 2. The deals.
  const int64_t warmup_moves = static_cast<int64_t>(
      std::llround(rate * absl::ToDoubleSeconds(loop->warmup)));
  const int64_t measured_moves = std::max<int64_t>(
      1, std::llround(rate * absl::ToDoubleSeconds(loop->duration)));
  const int64_t total_moves = warmup_moves + measured_moves;
  const int64_t moves_per_deal = static_cast<int64_t>(stages.size()) - 1;
  const int64_t needed = (total_moves + moves_per_deal - 1) / moves_per_deal;
  int64_t deal_count = absl::GetFlag(FLAGS_deals);
  if (deal_count == 0) deal_count = needed;
  if (deal_count < needed) {
    std::cerr << "--deals: " << total_moves << " moves through "
              << moves_per_deal << " stages need at least " << needed
              << " deals\n";
    return 2;
  }
  dv1::CreateDealRequest create;
  create.mutable_deal()->set_pipeline_id(pipeline_id);
  create.mutable_deal()->set_amount("1250.00");
  create.mutable_deal()->set_currency("EUR");
  std::vector<int64_t> deal_ids(static_cast<size_t>(deal_count), 0);
  std::vector<std::string> first_stage(deal_ids.size());
  {
    absl::Mutex mu;
    grpc::Status failure = grpc::Status::OK;
    const Clock::time_point start = Clock::now();
    ParallelFor(deal_ids.size(), [&](size_t i) {
      dv1::CreateDealRequest request = create;
      request.mutable_deal()->set_title(absl::StrCat("Bench deal ", i));
      dv1::Deal deal;
      grpc::Status status = clients.CreateDeal(request, &deal);
      if (!status.ok()) {
        absl::MutexLock lock(&mu);
        if (failure.ok()) failure = status;
        return;
      }
      deal_ids[i] = deal.id();
      first_stage[i] = deal.stage_id();
    });
    if (!failure.ok()) {
      std::cerr << "CreateDeal: " << StatusText(failure) << "\n";
      return 2;
    }
    const double created_s = Seconds(Clock::now() - start);
    std::vector<Expected> entries;
    for (size_t i = 0; i < deal_ids.size(); ++i)
      entries.push_back({i, first_stage[i]});
    RunLog log(clients, deal_ids, rule_ids);
    const std::vector<Expected> watch(
        entries.end() - std::min<size_t>(entries.size(), 8), entries.end());
    const Clock::time_point deadline =
        start + std::chrono::duration_cast<Clock::duration>(
                    std::chrono::duration<double>(
                        absl::GetFlag(FLAGS_setup_timeout_s)));
    grpc::Status read = log.WaitForWatched(watch, deadline);
    if (read.ok()) read = log.WaitForAll(entries, deadline);
    if (!read.ok()) {
      std::cerr << "ListRuns: " << StatusText(read) << "\n";
      return 2;
    }
    int finished = 0;
    for (const Expected& entry : entries) finished += log.Finished(entry);
    std::printf(
        "deals: %lld created in %.1f s (%.0f/s, %d threads); the runs of "
        "their creation stage: %d of %zu finished %.1f s after the first "
        "create\n",
        static_cast<long long>(deal_count), created_s,
        static_cast<double>(deal_count) / created_s, kCallThreads, finished,
        entries.size(), Seconds(Clock::now() - start));
    if (finished < static_cast<int>(entries.size())) {
      std::cerr << "the runs of the deals' creation did not finish within "
                   "--setup_timeout_s; is crm-deals delivering its events to "
                   "this crm-automation?\n";
      return 1;
    }
  }

  // 3. The paced moves: move k moves deal k % deals to its next stage.
  std::vector<std::vector<std::string>> route(deal_ids.size());
  for (size_t i = 0; i < deal_ids.size(); ++i) {
    for (const std::string& stage : stages) {
      if (stage != first_stage[i]) route[i].push_back(stage);
    }
  }
  std::vector<Move> moves(static_cast<size_t>(total_moves));
  for (size_t k = 0; k < moves.size(); ++k) {
    const size_t deal = k % deal_ids.size();
    const size_t step = k / deal_ids.size();
    if (step >= route[deal].size()) {
      std::cerr << "deal " << deal_ids[deal] << " has no stage left\n";
      return 2;
    }
    moves[k].entry = {deal, route[deal][step]};
    moves[k].request.set_deal_id(deal_ids[deal]);
    moves[k].request.set_stage_id(route[deal][step]);
  }
  std::vector<std::unique_ptr<dv1::DealsService::Stub>> stubs;
  for (std::shared_ptr<grpc::Channel>& channel :
       ConnectChannels(deals_target, loop->channels)) {
    stubs.push_back(dv1::DealsService::NewStub(channel));
  }
  if (stubs.empty()) return 2;

  CpuClock automation_cpu = [] { return -1.0; };
  CpuClock deals_cpu = [] { return -1.0; };
  if (const int64_t pid = absl::GetFlag(FLAGS_automation_pid); pid > 0)
    automation_cpu = [pid] {
      return ProcessCpuSeconds(static_cast<pid_t>(pid));
    };
  if (const int64_t pid = absl::GetFlag(FLAGS_deals_pid); pid > 0)
    deals_cpu = [pid] { return ProcessCpuSeconds(static_cast<pid_t>(pid)); };

  std::printf(
      "moves: %lld at %.0f/s open loop (%lld warm-up, not counted, then "
      "%lld measured) over %zu connection(s); %lld deals, each moving every "
      "%.2f s through %lld stages; %u hardware threads shared by the bench "
      "and the three servers\n",
      static_cast<long long>(total_moves), rate,
      static_cast<long long>(warmup_moves),
      static_cast<long long>(measured_moves), stubs.size(),
      static_cast<long long>(deal_count),
      static_cast<double>(deal_count) / rate,
      static_cast<long long>(moves_per_deal),
      std::thread::hardware_concurrency());
  std::fflush(stdout);

  const double automation_cpu_start = automation_cpu();
  const double deals_cpu_start = deals_cpu();
  const double client_cpu_start = SelfCpuSeconds();
  const Clock::time_point paced_start = Clock::now();
  PacedMoves paced(stubs, bearer, moves);
  paced.Run(rate);
  const Clock::time_point moves_done = Clock::now();

  // 4. Wait for the runs, then read the run log.
  std::vector<Expected> entries;
  std::vector<Expected> watch;
  for (const Move& move : moves) {
    if (move.status.ok()) entries.push_back(move.entry);
  }
  watch.assign(entries.end() - std::min<size_t>(entries.size(), 16),
               entries.end());
  RunLog log(clients, deal_ids, rule_ids);
  const Clock::time_point drain_deadline =
      moves_done +
      std::chrono::duration_cast<Clock::duration>(
          std::chrono::duration<double>(absl::GetFlag(FLAGS_drain_timeout_s)));
  // CPU is taken once the last runs finished, before the full read.
  grpc::Status read = log.WaitForWatched(watch, drain_deadline);
  const Clock::time_point drained = Clock::now();
  const double automation_cpu_end = automation_cpu();
  const double deals_cpu_end = deals_cpu();
  const double client_cpu_end = SelfCpuSeconds();
  if (read.ok()) read = log.WaitForAll(entries, drain_deadline);
  if (!read.ok()) {
    std::cerr << "ListRuns: " << StatusText(read) << "\n";
    return 1;
  }

  // Figures over the measured moves.
  int64_t moves_ok = 0;
  int64_t moves_failed = 0;
  int64_t wrong_stage = 0;
  std::string first_move_error;
  std::vector<double> call_ms;
  std::vector<double> slip_ms;
  std::vector<double> lag_ms;
  // Lags by slice of the measured window (by when the move was sent), to
  // show a trend over the run.
  constexpr int kSlices = 10;
  std::vector<std::vector<double>> slice_lag_ms(kSlices);
  std::vector<double> intake_ms;
  int64_t runs_expected = 0;
  int64_t runs_succeeded = 0;
  int64_t runs_missing = 0;
  int64_t runs_unfinished = 0;
  std::map<std::string, int64_t> other_outcomes;
  std::string first_run_error;
  absl::Time first_commit = absl::InfiniteFuture();
  absl::Time last_commit = absl::InfinitePast();
  absl::Time first_intake = absl::InfiniteFuture();
  absl::Time last_intake = absl::InfinitePast();
  absl::Time first_finish = absl::InfiniteFuture();
  absl::Time last_finish = absl::InfinitePast();
  const size_t first_measured = static_cast<size_t>(warmup_moves);
  for (size_t k = first_measured; k < moves.size(); ++k) {
    const Move& move = moves[k];
    slip_ms.push_back(
        std::chrono::duration<double, std::milli>(move.sent - move.due)
            .count());
    if (!move.status.ok()) {
      ++moves_failed;
      if (first_move_error.empty()) first_move_error = StatusText(move.status);
      continue;
    }
    ++moves_ok;
    call_ms.push_back(
        std::chrono::duration<double, std::milli>(move.done - move.sent)
            .count());
    if (move.reply_stage != move.entry.stage_id) ++wrong_stage;
    first_commit = std::min(first_commit, move.move_time);
    last_commit = std::max(last_commit, move.move_time);
    ++runs_expected;
    const av1::Run* run = log.Find(move.entry);
    if (run == nullptr) {
      ++runs_missing;
      continue;
    }
    if (run->has_scheduled_time()) {
      const absl::Time scheduled = common::FromTimestamp(run->scheduled_time());
      first_intake = std::min(first_intake, scheduled);
      last_intake = std::max(last_intake, scheduled);
      intake_ms.push_back(
          absl::ToDoubleMilliseconds(scheduled - move.move_time));
    }
    if (!IsTerminal(run->outcome())) {
      ++runs_unfinished;
      continue;
    }
    if (run->outcome() != av1::Run::OUTCOME_SUCCEEDED) {
      ++other_outcomes[OutcomeName(run->outcome())];
      if (first_run_error.empty()) {
        first_run_error =
            absl::StrCat(run->run_id(), " ", OutcomeName(run->outcome()), ": ",
                         run->error());
      }
      continue;
    }
    ++runs_succeeded;
    const absl::Time finish = common::FromTimestamp(run->finish_time());
    first_finish = std::min(first_finish, finish);
    last_finish = std::max(last_finish, finish);
    lag_ms.push_back(absl::ToDoubleMilliseconds(finish - move.move_time));
    const size_t slice =
        (k - first_measured) * kSlices / (moves.size() - first_measured);
    slice_lag_ms[slice].push_back(lag_ms.back());
  }
  const Summary lag = Summarize(lag_ms);
  const Summary intake = Summarize(intake_ms);
  const Summary call = Summarize(call_ms);
  const Summary slip = Summarize(slip_ms);
  const size_t last = moves.size() - 1;
  const double send_span =
      Seconds(moves[last].sent - moves[first_measured].sent);
  const double moves_per_s =
      send_span > 0
          ? static_cast<double>(moves.size() - first_measured - 1) / send_span
          : 0;
  auto per_second = [](int64_t count, absl::Time from, absl::Time to) {
    const double span = absl::ToDoubleSeconds(to - from);
    return count > 1 && span > 0 ? static_cast<double>(count - 1) / span : 0.0;
  };
  const double committed_per_s =
      per_second(moves_ok, first_commit, last_commit);
  const double intake_per_s =
      per_second(static_cast<int64_t>(intake.count), first_intake, last_intake);
  const double applied_per_s =
      per_second(runs_succeeded, first_finish, last_finish);

  std::printf("\n");
  std::printf(
      "pacing: target %.0f moves/s, issued %.1f moves/s; send slip behind "
      "schedule p50 %s ms, p99 %s ms, max %s ms; at most %lld calls in "
      "flight\n",
      rate, moves_per_s, Ms(slip.p50).c_str(), Ms(slip.p99).c_str(),
      Ms(slip.max).c_str(), static_cast<long long>(paced.max_in_flight()));
  const std::string error_note =
      first_move_error.empty()
          ? ""
          : absl::StrCat(" (first: ", first_move_error, ")");
  const std::string stage_note =
      wrong_stage > 0 ? absl::StrCat("; ", wrong_stage,
                                     " replies in another stage than requested")
                      : "";
  std::printf(
      "MoveDealStage: %lld OK, %lld failed%s; call latency p50 %s ms, p99 %s "
      "ms, max %s ms; committed %.1f moves/s%s\n",
      static_cast<long long>(moves_ok), static_cast<long long>(moves_failed),
      error_note.c_str(), Ms(call.p50).c_str(), Ms(call.p99).c_str(),
      Ms(call.max).c_str(), committed_per_s, stage_note.c_str());
  std::printf(
      "intake (move committed -> event applied, run scheduled): p50 %s ms, "
      "p99 %s ms, max %s ms; %.1f events applied/s\n",
      Ms(intake.p50).c_str(), Ms(intake.p99).c_str(), Ms(intake.max).c_str(),
      intake_per_s);
  std::printf(
      "lag (move committed -> create-task run finished): p50 %s ms, p99 %s "
      "ms, max %s ms over %zu runs; %.1f runs finished/s\n",
      Ms(lag.p50).c_str(), Ms(lag.p99).c_str(), Ms(lag.max).c_str(), lag.count,
      applied_per_s);
  std::string p99_trend;
  std::string max_trend;
  for (const std::vector<double>& slice : slice_lag_ms) {
    const Summary summary = Summarize(slice);
    absl::StrAppend(&p99_trend, " ", Ms(summary.p99));
    absl::StrAppend(&max_trend, " ", Ms(summary.max));
  }
  std::printf("  lag by tenth of the measured moves (ms): p99%s; max%s\n",
              p99_trend.c_str(), max_trend.c_str());
  std::string others;
  for (const auto& [name, count] : other_outcomes)
    absl::StrAppend(&others, " ", name, "=", count);
  if (log.duplicates() > 0) {
    absl::StrAppend(&others, "; ", log.duplicates(),
                    " extra run(s) of one (deal, stage) entry");
  }
  std::printf(
      "runs: %lld expected, %lld succeeded, %lld missing, %lld not finished "
      "%.0f s after the last move%s\n",
      static_cast<long long>(runs_expected),
      static_cast<long long>(runs_succeeded),
      static_cast<long long>(runs_missing),
      static_cast<long long>(runs_unfinished),
      absl::GetFlag(FLAGS_drain_timeout_s), others.c_str());
  if (!first_run_error.empty())
    std::printf("  first run not succeeded: %s\n", first_run_error.c_str());
  const double phase_s = Seconds(drained - paced_start);
  auto cpu_line = [&](const char* name, double start, double end) {
    if (start < 0 || end < 0) return;
    std::printf(
        "CPU %s: %.2f s over the %.1f s of moves and drain (%.0f%% of one "
        "core, %.0f us per move)\n",
        name, end - start, phase_s, 100 * (end - start) / phase_s,
        (end - start) * 1e6 / static_cast<double>(moves.size()));
  };
  cpu_line("crm-automation", automation_cpu_start, automation_cpu_end);
  cpu_line("crm-deals", deals_cpu_start, deals_cpu_end);
  cpu_line("bench client", client_cpu_start, client_cpu_end);
  std::printf("drain: the last runs finished %.2f s after the last reply\n",
              Seconds(drained - moves_done));

  std::printf("\n");
  std::printf(
      "lag_p50_ms=%s lag_p99_ms=%s lag_max_ms=%s moves_per_s=%.1f "
      "events_applied_per_s=%.1f runs_expected=%lld runs_succeeded=%lld\n",
      Ms(lag.p50).c_str(), Ms(lag.p99).c_str(), Ms(lag.max).c_str(),
      moves_per_s, intake_per_s, static_cast<long long>(runs_expected),
      static_cast<long long>(runs_succeeded));
  const double goal = absl::GetFlag(FLAGS_goal_p99_ms);
  const bool all_ran = runs_expected > 0 && runs_succeeded == runs_expected;
  const bool rate_held = moves_per_s >= 0.95 * rate;
  const bool met = all_ran && rate_held && lag.p99 <= goal;
  std::string why;
  if (!all_ran) {
    why = " (not every expected run succeeded)";
  } else if (!rate_held) {
    why = " (the pacing did not hold the rate)";
  } else if (!met) {
    why = absl::StrCat(" (p99 ", Ms(lag.p99), " ms)");
  }
  std::printf("goal lag_p99_ms <= %s at %.0f moves/s: %s%s\n", Ms(goal).c_str(),
              rate, met ? "MET" : "NOT MET", why.c_str());
  std::fflush(stdout);

  // Close our connections first: idle ones would hold up the servers'
  // graceful shutdown.
  stubs.clear();
  return moves_failed > 0 || !all_ran ? 1 : 0;
}

}  // namespace
}  // namespace crm::bench

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Event intake throughput and create-task rule lag of crm-automation at "
      "a paced rate of crm-deals stage moves.");
  // This bench's defaults for the shared loop flags.
  absl::SetFlag(&FLAGS_warmup_s, 1.0);
  absl::SetFlag(&FLAGS_duration_s, 10.0);
  absl::ParseCommandLine(argc, argv);
  return crm::bench::Run();
}
