// crm-deals-bench: closed-loop load on a running crm-deals compared with the
// cheapest call the server has, grpc.health.v1.Health/Check.
//
// For every point (method x calls in flight) the bench keeps exactly N unary
// calls in flight (tests/bench/bench_runner.h, the client of
// crm-bench-pipeline-config), spread round-robin over --channels channels
// (each its own connection), with the deals calls:
//
//   health  grpc.health.v1.Health/Check (no token), the baseline
//   create  CreateDeal of a small deal (every call adds a deal)
//   get     GetDeal of an id drawn per call from a pool of existing ids
//           sampled uniformly over the store's id range
//   move    MoveDealStage without etag, each call slot owning its own deal
//           (created at start) and alternating it between two process
//           stages (--move_stages), so calls never contend on one deal
//   list    ListDeals, filter stage_id EQ --list_stage, page_size 50, first
//           page
//   board   GetKanbanBoard of --pipeline_id
//
// health, create, get and move run at --in_flight; list and board at
// --scan_in_flight. Before the runs every method is called once; a method
// that fails there is reported and skipped.
//
//   crm-deals-bench --target=127.0.0.1:50051 --jwt_secret=... [--server_pid=N]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/support/proto_buffer_reader.h"

#include "crm/deals/v1/deals_service.grpc.pb.h"

#include "common/auth/auth.h"
#include "tests/bench/bench_runner.h"
#include "tests/e2e/service_process.h"

ABSL_FLAG(std::string, target, "", "host:port of a running crm-deals");
ABSL_FLAG(std::string, token, "",
          "Bearer token for the deals calls; empty = mint one for --user "
          "with --jwt_secret");
ABSL_FLAG(std::string, jwt_secret, "",
          "Secret to mint the token with (required unless --token)");
ABSL_FLAG(int64_t, user, 1, "User id of the minted token");
ABSL_FLAG(bool, admin, true, "Mint an administrator token");
ABSL_FLAG(std::vector<std::string>, in_flight,
          std::vector<std::string>({"1", "8", "64"}),
          "Calls kept in flight for health, create, get and move");
ABSL_FLAG(std::vector<std::string>, scan_in_flight,
          std::vector<std::string>({"1", "8"}),
          "Calls kept in flight for list and board");
ABSL_FLAG(std::vector<std::string>, methods,
          std::vector<std::string>({"health", "create", "get", "move", "list",
                                    "board"}),
          "Methods to measure: health, create, get, move, list, board");
ABSL_FLAG(bool, parse_replies, false,
          "Parse every reply into its message in the completion callback. Off "
          "by default: the client shares the cores with the server, and "
          "parsing the larger replies (list, board) would be charged to the "
          "server's figures; requests go out pre-serialized through a "
          "generic stub and replies are kept as bytes for every method alike");
ABSL_FLAG(int64_t, pipeline_id, 0, "Pipeline of the board, moves and creates");
ABSL_FLAG(std::string, list_stage, "PREPARATION",
          "Stage of the ListDeals filter (stage_id EQ)");
ABSL_FLAG(std::vector<std::string>, move_stages,
          std::vector<std::string>({"NEW", "PREPARATION"}),
          "The two stages the move deals alternate between (the first is "
          "where they are created)");
ABSL_FLAG(int, get_ids, 20000,
          "Existing ids in the GetDeal pool (sampled before the runs)");
ABSL_FLAG(int64_t, server_pid, 0,
          "Pid of the crm-deals process, for its CPU per call (0 = unknown)");
ABSL_FLAG(double, wait_s, 60, "Seconds to wait for the server to be SERVING");
ABSL_FLAG(uint64_t, seed, 1, "Random seed of the id sampling and GetDeal ids");

namespace crm::bench {
namespace {

namespace v1 = ::crm::deals::v1;
using ::grpc::health::v1::Health;
using ::grpc::health::v1::HealthCheckRequest;
using ::grpc::health::v1::HealthCheckResponse;

// Deal ids are (sequence << 10) | shard (services/deals/storage).
constexpr int kShardBits = 10;

enum class Method { kHealth, kCreate, kGet, kMove, kList, kBoard };
constexpr Method kAllMethods[] = {Method::kHealth, Method::kCreate,
                                  Method::kGet,    Method::kMove,
                                  Method::kList,   Method::kBoard};

const char* MethodName(Method method) {
  switch (method) {
    case Method::kHealth:
      return "grpc.health.v1.Health/Check";
    case Method::kCreate:
      return "DealsService/CreateDeal";
    case Method::kGet:
      return "DealsService/GetDeal";
    case Method::kMove:
      return "DealsService/MoveDealStage";
    case Method::kList:
      return "DealsService/ListDeals";
    case Method::kBoard:
      return "DealsService/GetKanbanBoard";
  }
  return "?";
}

const char* MethodPath(Method method) {
  switch (method) {
    case Method::kHealth:
      return "/grpc.health.v1.Health/Check";
    case Method::kCreate:
      return "/crm.deals.v1.DealsService/CreateDeal";
    case Method::kGet:
      return "/crm.deals.v1.DealsService/GetDeal";
    case Method::kMove:
      return "/crm.deals.v1.DealsService/MoveDealStage";
    case Method::kList:
      return "/crm.deals.v1.DealsService/ListDeals";
    case Method::kBoard:
      return "/crm.deals.v1.DealsService/GetKanbanBoard";
  }
  return "";
}

std::optional<Method> ParseMethod(const std::string& name) {
  if (name == "health") return Method::kHealth;
  if (name == "create") return Method::kCreate;
  if (name == "get") return Method::kGet;
  if (name == "move") return Method::kMove;
  if (name == "list") return Method::kList;
  if (name == "board") return Method::kBoard;
  return std::nullopt;
}

bool IsScan(Method method) {
  return method == Method::kList || method == Method::kBoard;
}

template <typename Message>
bool ParseReply(grpc::ByteBuffer* bytes) {
  Message message;
  grpc::ProtoBufferReader reader(bytes);
  return message.ParseFromZeroCopyStream(&reader);
}

bool ParseReply(Method method, grpc::ByteBuffer* bytes) {
  switch (method) {
    case Method::kHealth:
      return ParseReply<HealthCheckResponse>(bytes);
    case Method::kCreate:
    case Method::kGet:
    case Method::kMove:
      return ParseReply<v1::Deal>(bytes);
    case Method::kList:
      return ParseReply<v1::ListDealsResponse>(bytes);
    case Method::kBoard:
      return ParseReply<v1::KanbanBoard>(bytes);
  }
  return false;
}

// One deal a move slot alternates between two stages.
struct MoveDeal {
  int64_t id = 0;
  grpc::ByteBuffer to[2];  // MoveDealStageRequest to stage 0 / stage 1
  int next = 1;            // index into `to` of the next move
};

// Requests of every method, built once before the runs.
struct Workload {
  grpc::ByteBuffer health;
  grpc::ByteBuffer create;
  std::vector<grpc::ByteBuffer> get;  // one per pooled id
  std::vector<MoveDeal> moves;        // one per call slot
  grpc::ByteBuffer list;
  grpc::ByteBuffer board;
};

// The calls of one point of `method`: call slot i sends over channel
// i % channels, pre-serialized requests through a generic stub.
class DealsCalls : public CallDriver {
 public:
  DealsCalls(std::vector<std::unique_ptr<grpc::GenericStub>>& stubs,
             Workload& workload, Method method, int in_flight, uint64_t seed)
      : stubs_(stubs),
        workload_(workload),
        method_(method),
        slots_(static_cast<size_t>(in_flight)) {
    for (size_t i = 0; i < slots_.size(); ++i) slots_[i].rng.seed(seed + i);
  }

  void Start(size_t index, grpc::ClientContext* context,
             std::function<void(grpc::Status)> done) override {
    Slot* slot = &slots_[index];
    stubs_[index % stubs_.size()]->UnaryCall(
        context, MethodPath(method_), grpc::StubOptions(), Request(index, slot),
        &slot->raw_response, std::move(done));
  }

  void Finish(size_t index, grpc::Status* status) override {
    Slot* slot = &slots_[index];
    if (status->ok() && parse_replies_ &&
        !ParseReply(method_, &slot->raw_response)) {
      *status = grpc::Status(grpc::StatusCode::INTERNAL, "unparsable reply");
    }
    if (status->ok() && method_ == Method::kMove) {
      // The deal is in the stage just requested; the next call moves it
      // back. (A failed move leaves it where it was: retry the same move.)
      workload_.moves[index].next = 1 - slot->move_target;
    }
  }

 private:
  struct Slot {
    std::minstd_rand rng;
    int move_target = 0;  // index into MoveDeal::to of the call in flight
    grpc::ByteBuffer raw_response;
  };

  const grpc::ByteBuffer* Request(size_t index, Slot* slot) {
    switch (method_) {
      case Method::kHealth:
        return &workload_.health;
      case Method::kCreate:
        return &workload_.create;
      case Method::kGet:
        return &workload_.get[std::uniform_int_distribution<size_t>(
            0, workload_.get.size() - 1)(slot->rng)];
      case Method::kMove: {
        MoveDeal& deal = workload_.moves[index];
        slot->move_target = deal.next;
        return &deal.to[deal.next];
      }
      case Method::kList:
        return &workload_.list;
      case Method::kBoard:
        return &workload_.board;
    }
    return nullptr;
  }

  std::vector<std::unique_ptr<grpc::GenericStub>>& stubs_;
  Workload& workload_;
  const Method method_;
  const bool parse_replies_ = absl::GetFlag(FLAGS_parse_replies);
  std::vector<Slot> slots_;
};

// Synchronous calls before the runs: check every method once, create the
// move deals, sample the GetDeal ids. Returns an error text per method that
// cannot be measured.
class Setup {
 public:
  Setup(std::shared_ptr<grpc::Channel> channel, std::string bearer)
      : health_(Health::NewStub(channel)),
        deals_(v1::DealsService::NewStub(channel)),
        bearer_(std::move(bearer)) {}

  std::unique_ptr<grpc::ClientContext> Context() const {
    auto context = std::make_unique<grpc::ClientContext>();
    context->set_deadline(std::chrono::system_clock::now() +
                          std::chrono::seconds(30));
    context->AddMetadata("authorization", bearer_);
    return context;
  }

  grpc::Status Health() {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(10));
    HealthCheckRequest request;
    HealthCheckResponse response;
    return health_->Check(&context, request, &response);
  }

  grpc::Status Create(const v1::CreateDealRequest& request, v1::Deal* deal) {
    return deals_->CreateDeal(Context().get(), request, deal);
  }
  grpc::Status Get(int64_t id, v1::Deal* deal) {
    v1::GetDealRequest request;
    request.set_deal_id(id);
    return deals_->GetDeal(Context().get(), request, deal);
  }
  grpc::Status Move(const v1::MoveDealStageRequest& request, v1::Deal* deal) {
    return deals_->MoveDealStage(Context().get(), request, deal);
  }
  grpc::Status List(const v1::ListDealsRequest& request,
                    v1::ListDealsResponse* response) {
    return deals_->ListDeals(Context().get(), request, response);
  }
  grpc::Status Board(const v1::GetKanbanBoardRequest& request,
                     v1::KanbanBoard* board) {
    return deals_->GetKanbanBoard(Context().get(), request, board);
  }

 private:
  std::unique_ptr<Health::Stub> health_;
  std::unique_ptr<v1::DealsService::Stub> deals_;
  std::string bearer_;
};

int Run() {
  std::optional<std::vector<int>> in_flight =
      ParseCounts("in_flight", absl::GetFlag(FLAGS_in_flight));
  std::optional<std::vector<int>> scan_in_flight =
      ParseCounts("scan_in_flight", absl::GetFlag(FLAGS_scan_in_flight));
  if (!in_flight.has_value() || !scan_in_flight.has_value()) return 2;
  std::set<Method> wanted;
  for (const std::string& name : absl::GetFlag(FLAGS_methods)) {
    std::optional<Method> method = ParseMethod(name);
    if (!method.has_value()) {
      std::cerr << "--methods: unknown method \"" << name << "\"\n";
      return 2;
    }
    wanted.insert(*method);
  }
  const std::vector<std::string> move_stages = absl::GetFlag(FLAGS_move_stages);
  if (move_stages.size() != 2 || move_stages[0] == move_stages[1]) {
    std::cerr << "--move_stages: two different stages\n";
    return 2;
  }
  const std::optional<LoopSettings> loop = LoopSettingsFromFlags();
  if (!loop.has_value()) return 2;
  const std::string address = absl::GetFlag(FLAGS_target);
  if (address.empty()) {
    std::cerr << "--target (host:port of a running crm-deals) is required\n";
    return 2;
  }
  std::string secret = absl::GetFlag(FLAGS_jwt_secret);
  std::string token = absl::GetFlag(FLAGS_token);
  if (secret.empty() && token.empty()) {
    std::cerr << "--jwt_secret (the server's secret) or --token is required\n";
    return 2;
  }
  if (token.empty()) {
    token = common::MakeUserToken(secret, absl::GetFlag(FLAGS_user),
                                  absl::GetFlag(FLAGS_admin), absl::Hours(6),
                                  absl::Now());
  }
  const std::string bearer = "Bearer " + token;
  const int64_t pipeline_id = absl::GetFlag(FLAGS_pipeline_id);

  CpuClock server_cpu = [] { return -1.0; };
  if (const int64_t pid = absl::GetFlag(FLAGS_server_pid); pid > 0) {
    server_cpu = [pid] { return ProcessCpuSeconds(static_cast<pid_t>(pid)); };
  }

  std::shared_ptr<grpc::Channel> setup_channel =
      crm::testing::NewLoopbackChannel(address);
  if (absl::Status serving = crm::testing::WaitForServing(
          setup_channel, "", absl::Seconds(absl::GetFlag(FLAGS_wait_s)));
      !serving.ok()) {
    std::cerr << "crm-deals at " << address << " is not serving: " << serving
              << "\n";
    return 2;
  }
  // Dropped before the runs (see the end of Run).
  auto setup_owner = std::make_unique<Setup>(setup_channel, bearer);
  Setup& setup = *setup_owner;
  Workload workload;
  std::map<Method, std::string> skipped;
  const Clock::time_point setup_start = Clock::now();

  // health
  workload.health = Serialize(HealthCheckRequest());

  // create: a small deal in the pipeline's first stage.
  v1::CreateDealRequest create;
  create.mutable_deal()->set_title("Bench deal");
  create.mutable_deal()->set_pipeline_id(pipeline_id);
  create.mutable_deal()->set_amount("1250.00");
  create.mutable_deal()->set_currency("EUR");
  workload.create = Serialize(create);
  std::vector<int64_t> known_ids;
  {
    v1::Deal deal;
    grpc::Status status = setup.Create(create, &deal);
    if (status.ok()) {
      known_ids.push_back(deal.id());
    } else {
      skipped[Method::kCreate] = StatusText(status);
    }
  }

  // move: one deal per call slot, created in the first of the two stages.
  if (wanted.count(Method::kMove) > 0) {
    const int slots = *std::max_element(in_flight->begin(), in_flight->end());
    for (int i = 0; i < slots && skipped.count(Method::kMove) == 0; ++i) {
      v1::CreateDealRequest request;
      request.mutable_deal()->set_title(absl::StrCat("Bench move deal ", i));
      request.mutable_deal()->set_pipeline_id(pipeline_id);
      request.mutable_deal()->set_stage_id(move_stages[0]);
      v1::Deal deal;
      grpc::Status status = setup.Create(request, &deal);
      if (!status.ok()) {
        skipped[Method::kMove] = absl::StrCat(
            "creating a deal in ", move_stages[0], ": ", StatusText(status));
        break;
      }
      known_ids.push_back(deal.id());
      MoveDeal move;
      move.id = deal.id();
      for (int to = 0; to < 2; ++to) {
        v1::MoveDealStageRequest move_request;
        move_request.set_deal_id(deal.id());
        move_request.set_stage_id(move_stages[static_cast<size_t>(to)]);
        move.to[to] = Serialize(move_request);
      }
      workload.moves.push_back(std::move(move));
    }
    if (skipped.count(Method::kMove) == 0 && !workload.moves.empty()) {
      // One round trip to check the move works (and back).
      for (int to : {1, 0}) {
        v1::MoveDealStageRequest request;
        request.set_deal_id(workload.moves.front().id);
        request.set_stage_id(move_stages[static_cast<size_t>(to)]);
        v1::Deal deal;
        grpc::Status status = setup.Move(request, &deal);
        if (!status.ok()) {
          skipped[Method::kMove] = StatusText(status);
          break;
        }
        if (deal.stage_id() != move_stages[static_cast<size_t>(to)]) {
          skipped[Method::kMove] = absl::StrCat(
              "MoveDealStage to ", move_stages[static_cast<size_t>(to)],
              " answered a deal in \"", deal.stage_id(), "\"");
          break;
        }
      }
    }
  }

  // list: the first page of the deals in one stage.
  v1::ListDealsRequest list;
  {
    v1::Condition* condition = list.mutable_filter()->mutable_condition();
    condition->set_field("stage_id");
    condition->set_op(v1::Condition::OPERATOR_EQ);
    condition->add_values(absl::GetFlag(FLAGS_list_stage));
    list.set_page_size(50);
    workload.list = Serialize(list);
    v1::ListDealsResponse response;
    grpc::Status status = setup.List(list, &response);
    if (!status.ok()) {
      skipped[Method::kList] = StatusText(status);
    } else {
      int other_stage = 0;
      for (const v1::Deal& deal : response.deals()) {
        if (deal.stage_id() != absl::GetFlag(FLAGS_list_stage)) ++other_stage;
      }
      const std::string wrong =
          other_stage > 0
              ? absl::StrCat(", ", other_stage, " NOT in that stage")
              : std::string();
      std::printf("ListDeals stage_id EQ %s: first page %d deal(s)%s%s\n",
                  absl::GetFlag(FLAGS_list_stage).c_str(),
                  response.deals_size(),
                  response.next_page_token().empty() ? ", no next page"
                                                     : ", more pages",
                  wrong.c_str());
    }
  }

  // board
  v1::GetKanbanBoardRequest board;
  board.set_pipeline_id(pipeline_id);
  workload.board = Serialize(board);
  int64_t deals_in_pipeline = -1;
  {
    v1::KanbanBoard response;
    grpc::Status status = setup.Board(board, &response);
    if (!status.ok()) {
      skipped[Method::kBoard] = StatusText(status);
    } else {
      deals_in_pipeline = 0;
      int cards = 0;
      for (const v1::KanbanColumn& column : response.columns()) {
        deals_in_pipeline += column.count();
        cards += column.cards_size();
      }
      std::printf(
          "GetKanbanBoard(%lld): %d column(s), %lld deal(s), %d card(s) in "
          "the reply (%zu bytes)\n",
          static_cast<long long>(pipeline_id), response.columns_size(),
          static_cast<long long>(deals_in_pipeline), cards,
          response.ByteSizeLong());
    }
  }

  // get: a pool of existing ids drawn uniformly from the id range between
  // the lowest listed id and the newest created one, each checked with
  // GetDeal (ids of deleted deals are skipped).
  if (wanted.count(Method::kGet) > 0) {
    v1::ListDealsRequest first_page;
    first_page.set_page_size(500);
    v1::ListDealsResponse response;
    grpc::Status status = setup.List(first_page, &response);
    for (const v1::Deal& deal : response.deals())
      known_ids.push_back(deal.id());
    std::vector<int64_t> pool;
    if (!known_ids.empty()) {
      const int64_t low = *std::min_element(known_ids.begin(), known_ids.end());
      const int64_t high =
          *std::max_element(known_ids.begin(), known_ids.end());
      const int64_t shard = high & ((int64_t{1} << kShardBits) - 1);
      std::mt19937_64 rng(absl::GetFlag(FLAGS_seed));
      const int64_t first_seq = low >> kShardBits;
      const int64_t last_seq = high >> kShardBits;
      std::uniform_int_distribution<int64_t> sequence(first_seq, last_seq);
      const int want = std::max(1, absl::GetFlag(FLAGS_get_ids));
      std::set<int64_t> seen;
      grpc::Status failure = grpc::Status::OK;
      const Clock::time_point sample_start = Clock::now();
      // Rounds of distinct untried ids, checked by a few threads at once.
      while (static_cast<int>(pool.size()) < want && failure.ok() &&
             static_cast<int64_t>(seen.size()) < last_seq - first_seq + 1) {
        std::vector<int64_t> batch;
        while (static_cast<int>(pool.size() + batch.size()) < want &&
               static_cast<int64_t>(seen.size()) < last_seq - first_seq + 1) {
          const int64_t id = (sequence(rng) << kShardBits) | shard;
          if (seen.insert(id).second) batch.push_back(id);
        }
        std::vector<grpc::Status> results(batch.size());
        std::vector<std::thread> threads;
        constexpr size_t kThreads = 8;
        for (size_t t = 0; t < kThreads; ++t) {
          threads.emplace_back([&, t] {
            for (size_t i = t; i < batch.size(); i += kThreads) {
              v1::Deal deal;
              results[i] = setup.Get(batch[i], &deal);
            }
          });
        }
        for (std::thread& thread : threads) thread.join();
        const size_t before = pool.size();
        for (size_t i = 0; i < batch.size(); ++i) {
          if (results[i].ok()) {
            pool.push_back(batch[i]);
          } else if (results[i].error_code() != grpc::StatusCode::NOT_FOUND &&
                     failure.ok()) {
            failure = results[i];
          }
        }
        if (pool.size() == before) break;  // nothing left to find
      }
      std::printf(
          "GetDeal pool: %zu existing id(s) of %zu distinct ids tried, ids "
          "%lld..%lld, sampled in %.1f s\n",
          pool.size(), seen.size(), static_cast<long long>(low),
          static_cast<long long>(high),
          std::chrono::duration<double>(Clock::now() - sample_start).count());
      if (!failure.ok()) {
        skipped[Method::kGet] = StatusText(failure);
        pool.clear();
      }
      if (pool.empty() && skipped.count(Method::kGet) == 0) {
        skipped[Method::kGet] = "no existing id found";
      }
    } else {
      skipped[Method::kGet] =
          absl::StrCat("no deal id known (ListDeals: ",
                       status.ok() ? "empty" : StatusText(status), ")");
    }
    for (int64_t id : pool) {
      v1::GetDealRequest request;
      request.set_deal_id(id);
      workload.get.push_back(Serialize(request));
    }
  }
  {
    grpc::Status status = setup.Health();
    if (!status.ok()) skipped[Method::kHealth] = StatusText(status);
  }

  setup_owner.reset();
  setup_channel.reset();

  std::vector<Method> methods;
  bool had_errors = false;
  for (Method method : kAllMethods) {
    if (wanted.count(method) == 0) continue;
    auto it = skipped.find(method);
    if (it != skipped.end()) {
      std::printf("%s: skipped, the check call failed: %s\n",
                  MethodName(method), it->second.c_str());
      had_errors = true;
      continue;
    }
    methods.push_back(method);
  }

  std::vector<std::unique_ptr<grpc::GenericStub>> stubs;
  for (std::shared_ptr<grpc::Channel>& channel :
       ConnectChannels(address, loop->channels)) {
    stubs.push_back(std::make_unique<grpc::GenericStub>(channel));
  }
  if (stubs.empty()) return 2;

  std::printf(
      "crm-deals bench: %s, %lld deal(s) in pipeline %lld, %d channel(s), %s "
      "warm-up + %s per point, %u hardware threads shared by client and "
      "server, replies %s, setup %.1f s\n",
      address.c_str(), static_cast<long long>(deals_in_pipeline),
      static_cast<long long>(pipeline_id), loop->channels,
      absl::FormatDuration(loop->warmup).c_str(),
      absl::FormatDuration(loop->duration).c_str(),
      std::thread::hardware_concurrency(),
      absl::GetFlag(FLAGS_parse_replies) ? "parsed" : "kept as bytes",
      std::chrono::duration<double>(Clock::now() - setup_start).count());
  PrintTableHeader();

  // Every in-flight count of either list, in increasing order; at each, the
  // methods that run at it.
  std::set<int> counts(in_flight->begin(), in_flight->end());
  counts.insert(scan_in_flight->begin(), scan_in_flight->end());
  auto runs_at = [&](Method method, int n) {
    const std::vector<int>& levels =
        IsScan(method) ? *scan_in_flight : *in_flight;
    return std::find(levels.begin(), levels.end(), n) != levels.end();
  };
  std::map<std::pair<int, Method>, PointResult> results;
  uint64_t seed = absl::GetFlag(FLAGS_seed);
  for (int n : counts) {
    std::vector<Method> here;
    std::vector<std::string> names;
    for (Method method : methods) {
      if (!runs_at(method, n)) continue;
      here.push_back(method);
      names.push_back(MethodName(method));
    }
    std::vector<PointResult> medians = RunRepeats(
        n, names, loop->repeats,
        [&](size_t i) {
          seed += 1000;
          DealsCalls calls(stubs, workload, here[i], n, seed);
          return RunPoint(calls, n, *loop, server_cpu,
                          here[i] == Method::kHealth ? "" : bearer);
        },
        &had_errors);
    for (size_t i = 0; i < here.size(); ++i) {
      results[{n, here[i]}] = medians[i];
    }
  }

  auto find = [&](int n, Method method) -> const PointResult* {
    auto it = results.find({n, method});
    return it == results.end() || it->second.calls == 0 ? nullptr : &it->second;
  };
  auto qps_ratio = [&](int n, Method method) -> std::optional<double> {
    const PointResult* call = find(n, method);
    const PointResult* health = find(n, Method::kHealth);
    if (call == nullptr || health == nullptr) return std::nullopt;
    return call->qps / health->qps;
  };
  auto p99_ratio = [&](int n, Method method) -> std::optional<double> {
    const PointResult* call = find(n, method);
    const PointResult* get = find(n, Method::kGet);
    if (call == nullptr || get == nullptr || get->p99_us <= 0) {
      return std::nullopt;
    }
    return call->p99_us / get->p99_us;
  };
  std::printf(
      "(CPU/call: user+system CPU of the server process (--server_pid) and "
      "of this client over the window, per OK call)\n");
  std::printf("\nQPS relative to Health/Check at the same calls in flight:\n");
  std::printf("%9s %12s %12s %12s %12s %12s\n", "in flight", "CreateDeal",
              "GetDeal", "MoveStage", "ListDeals", "KanbanBoard");
  for (int n : counts) {
    std::printf("%9d %12s %12s %12s %12s %12s\n", n,
                RatioCell(qps_ratio(n, Method::kCreate)).c_str(),
                RatioCell(qps_ratio(n, Method::kGet)).c_str(),
                RatioCell(qps_ratio(n, Method::kMove)).c_str(),
                RatioCell(qps_ratio(n, Method::kList)).c_str(),
                RatioCell(qps_ratio(n, Method::kBoard)).c_str());
  }
  std::printf("\np99 relative to GetDeal p99 at the same calls in flight:\n");
  std::printf("%9s %20s %20s\n", "in flight", "KanbanBoard/GetDeal",
              "ListDeals/GetDeal");
  for (int n : *scan_in_flight) {
    std::printf("%9d %20s %20s\n", n,
                RatioCell(p99_ratio(n, Method::kBoard)).c_str(),
                RatioCell(p99_ratio(n, Method::kList)).c_str());
  }
  std::fflush(stdout);

  // Close our connections first: idle ones would hold up the server's
  // graceful shutdown.
  stubs.clear();
  return had_errors ? 1 : 0;
}

}  // namespace
}  // namespace crm::bench

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Closed-loop QPS/latency of crm-deals calls vs Health/Check.");
  absl::ParseCommandLine(argc, argv);
  return crm::bench::Run();
}
