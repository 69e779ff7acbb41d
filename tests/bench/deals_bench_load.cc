// crm-deals-bench-load: fills a deals data dir offline (the server must not
// be running: RocksDB holds a lock) with --count deals, the way the server
// writes them: DealStore::Open on the dir, then per deal PrepareNewDeal
// against pipeline 0 with the default stages, and one DealStore::Commit of
// the deal, its CREATED history entry and its CREATED event (outbox).
//
//   crm-deals-bench-load --data_dir=var/deals --count=1000000
//
// The deals are spread uniformly over the 8 stages of pipeline 0, assignees
// 1..--assignees, companies 1..10000, amounts 100.00..100000.00 in USD or
// EUR. Creation times grow with the id, evenly over the --spread_days before
// now (events and history carry the creation time, so the outbox is in time
// order as a server writes it); open deals close 7..120 days after creation,
// closed ones on their creation day (PrepareNewDeal puts a deal into its
// stage with ApplyStage). Ids continue after whatever the store already
// holds. At the end, events older than --event_retention_days are pruned
// with DealStore::PruneOutbox, as the server's hourly pruner would have
// done, so the server starts on the outbox of a store in steady state; then
// the memtables are flushed so it opens table files instead of replaying a
// long WAL. Prints deals/s while loading and at the end.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "google/protobuf/util/time_util.h"
#include "rocksdb/db.h"

#include "crm/deals/v1/deal.pb.h"
#include "crm/deals/v1/deal_events.pb.h"

#include "common/pipelines_client/config_view.h"
#include "common/pipelines_client/fake_pipeline_client.h"
#include "common/rocks/rocks_db.h"
#include "services/deals/domain/deal_rules.h"
#include "services/deals/storage/deal_store.h"

ABSL_FLAG(std::string, data_dir, "",
          "Deals data dir to fill (created if missing; the deals server must "
          "not be running on it)");
ABSL_FLAG(int64_t, count, 1000000, "Deals to add");
ABSL_FLAG(int, shard, 0, "Shard of the store (as the server's --shard)");
ABSL_FLAG(int, assignees, 50, "Assignees are users 1..N");
ABSL_FLAG(int, spread_days, 365,
          "Creation times are spread over this many days before now");
ABSL_FLAG(uint64_t, seed, 1, "Random seed (the same seed loads the same data)");
ABSL_FLAG(int64_t, progress_every, 100000,
          "Print a progress line every N deals (0 = never)");
ABSL_FLAG(int, event_retention_days, 30,
          "Prune events older than this at the end, as crm-deals' "
          "--event_retention_days (0 = keep every event)");
ABSL_FLAG(bool, flush, true,
          "Flush the memtables at the end (the server then opens table files "
          "instead of replaying the WAL)");

namespace crm::bench {
namespace {

namespace v1 = ::crm::deals::v1;
namespace pv1 = ::crm::pipelines::v1;
using crm::common::ConfigView;
using ::crm::deals::DealStore;
using ::crm::deals::DealWrite;
using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Bytes of the files under `dir`; -1 if it cannot be read.
int64_t DirBytes(const std::string& dir) {
  std::error_code error;
  int64_t bytes = 0;
  for (const auto& entry :
       std::filesystem::recursive_directory_iterator(dir, error)) {
    if (entry.is_regular_file(error)) {
      bytes += static_cast<int64_t>(entry.file_size(error));
    }
  }
  return error ? -1 : bytes;
}

int Run() {
  const std::string dir = absl::GetFlag(FLAGS_data_dir);
  const int64_t count = absl::GetFlag(FLAGS_count);
  const int assignees = absl::GetFlag(FLAGS_assignees);
  const int spread_days = absl::GetFlag(FLAGS_spread_days);
  if (dir.empty()) {
    std::cerr << "--data_dir is required\n";
    return 2;
  }
  if (count < 0 || assignees <= 0 || spread_days <= 0) {
    std::cerr << "--count >= 0, --assignees and --spread_days > 0\n";
    return 2;
  }

  absl::StatusOr<std::unique_ptr<DealStore>> opened =
      DealStore::Open(dir, common::RocksOptions{}, absl::GetFlag(FLAGS_shard));
  if (!opened.ok()) {
    std::cerr << "cannot open the deals store at " << dir << ": "
              << opened.status() << "\n";
    return 2;
  }
  std::unique_ptr<DealStore> store = std::move(opened).value();
  const int64_t before = store->CountDeals(0, "").value_or(-1);

  const ConfigView config =
      ConfigView::FromProtos(1, {crm::common::DefaultPipelineProto(0)}, {});
  const crm::common::PipelineView* pipeline = config.FindPipeline(0);
  if (pipeline == nullptr || pipeline->stages.empty()) {
    std::cerr << "no default pipeline\n";
    return 2;
  }
  const std::vector<crm::common::StageView>& stages = pipeline->stages;

  std::mt19937_64 rng(absl::GetFlag(FLAGS_seed));
  auto uniform = [&rng](int64_t lo, int64_t hi) {  // [lo, hi]
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
  };
  const absl::Time now = absl::Now();
  const int64_t spread_seconds = int64_t{spread_days} * 86400;
  const int64_t progress_every = absl::GetFlag(FLAGS_progress_every);

  std::printf(
      "crm-deals-bench-load: %lld deal(s) into %s (shard %d, %lld there "
      "before), %zu stages of pipeline 0, assignees 1..%d, created over %d "
      "days\n",
      static_cast<long long>(count), dir.c_str(), store->shard(),
      static_cast<long long>(before), stages.size(), assignees, spread_days);
  std::fflush(stdout);

  const Clock::time_point start = Clock::now();
  Clock::time_point window_start = start;
  int64_t window_count = 0;
  double prepare_seconds = 0;
  for (int64_t i = 0; i < count; ++i) {
    const Clock::time_point prepare_start = Clock::now();
    const crm::common::StageView& stage =
        stages[static_cast<size_t>(uniform(0, stages.size() - 1))];
    const int64_t creator = uniform(1, assignees);
    crm::deals::NewDealContext context;
    context.deal_id = store->AllocateDealId();
    context.creator_id = creator;
    // Evenly over the spread, oldest first.
    context.now = now - absl::Seconds(spread_seconds) +
                  absl::Seconds(static_cast<double>(spread_seconds) *
                                (static_cast<double>(i) + 0.5) /
                                static_cast<double>(count));

    v1::Deal input;
    input.set_pipeline_id(0);
    // PrepareNewDeal puts the deal into its stage with ApplyStage: a deal
    // created into a closing stage is closed on its creation day.
    input.set_stage_id(stage.stage_id);
    input.set_assignee_id(creator);
    input.set_company_id(uniform(1, 10000));
    const int64_t cents = uniform(10000, 10000000);
    input.set_amount(absl::StrFormat("%d.%02d", cents / 100, cents % 100));
    input.set_currency(uniform(0, 1) == 0 ? "USD" : "EUR");
    // Open deals: a planned close date 7..120 days after creation.
    input.set_close_date(crm::deals::DayOf(context.now, context.zone,
                                           static_cast<int>(uniform(7, 120))));
    absl::StatusOr<v1::Deal> deal =
        crm::deals::PrepareNewDeal(input, config, context);
    if (!deal.ok()) {
      std::cerr << "PrepareNewDeal: " << deal.status() << "\n";
      return 1;
    }

    const google::protobuf::Timestamp created =
        google::protobuf::util::TimeUtil::MicrosecondsToTimestamp(
            absl::ToUnixMicros(context.now));
    DealWrite write;
    v1::StageHistoryEntry history;
    history.set_deal_id(deal->id());
    history.set_kind(v1::StageHistoryEntry::KIND_CREATED);
    history.set_to_pipeline_id(deal->pipeline_id());
    history.set_to_stage_id(deal->stage_id());
    history.set_to_semantics(deal->stage_semantics());
    history.set_actor_id(creator);
    *history.mutable_time() = created;
    history.set_channel(v1::CHANNEL_API);
    write.history.push_back(std::move(history));
    v1::DealEvent event;
    event.set_type(v1::DEAL_EVENT_TYPE_CREATED);
    event.set_actor_id(creator);
    event.set_channel(v1::CHANNEL_API);
    *event.mutable_occur_time() = created;
    write.event = std::move(event);
    write.after = *std::move(deal);
    prepare_seconds += SecondsSince(prepare_start);

    absl::StatusOr<crm::deals::CommitResult> committed =
        store->Commit(std::move(write));
    if (!committed.ok()) {
      std::cerr << "Commit of deal " << i + 1 << ": " << committed.status()
                << "\n";
      return 1;
    }
    ++window_count;
    if (progress_every > 0 && (i + 1) % progress_every == 0) {
      const double window = SecondsSince(window_start);
      std::printf("  %10lld deals  %8.1f s  %9.0f deals/s (last %lld)\n",
                  static_cast<long long>(i) + 1, SecondsSince(start),
                  static_cast<double>(window_count) / window,
                  static_cast<long long>(window_count));
      std::fflush(stdout);
      window_start = Clock::now();
      window_count = 0;
    }
  }
  const double load_seconds = SecondsSince(start);

  int64_t pruned = 0;
  double prune_seconds = 0;
  if (const int days = absl::GetFlag(FLAGS_event_retention_days); days > 0) {
    const Clock::time_point prune_start = Clock::now();
    absl::StatusOr<int64_t> done =
        store->PruneOutbox(absl::Now() - absl::Hours(24) * days);
    if (!done.ok()) {
      std::cerr << "PruneOutbox: " << done.status() << "\n";
      return 1;
    }
    pruned = *done;
    prune_seconds = SecondsSince(prune_start);
  }

  double flush_seconds = 0;
  if (absl::GetFlag(FLAGS_flush)) {
    const Clock::time_point flush_start = Clock::now();
    rocksdb::DB* db = store->db().db();
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    for (const char* name :
         {"deals", "deals_by_stage", "deals_by_assignee", "deals_by_close_date",
          "column_totals", "stage_history", "outbox", "request_ids", "meta"}) {
      handles.push_back(store->db().Handle(name));
    }
    rocksdb::Status flushed = db->Flush(rocksdb::FlushOptions(), handles);
    if (!flushed.ok()) {
      std::cerr << "flush: " << flushed.ToString() << "\n";
      return 1;
    }
    flush_seconds = SecondsSince(flush_start);
  }
  const int64_t after = store->CountDeals(0, "").value_or(-1);
  store.reset();

  std::printf(
      "loaded %lld deal(s) in %.1f s: %.0f deals/s (%.1f us per deal, of "
      "which %.1f us preparing and %.1f us in DealStore::Commit)\n",
      static_cast<long long>(count), load_seconds,
      load_seconds > 0 ? static_cast<double>(count) / load_seconds : 0.0,
      count > 0 ? load_seconds * 1e6 / static_cast<double>(count) : 0.0,
      count > 0 ? prepare_seconds * 1e6 / static_cast<double>(count) : 0.0,
      count > 0
          ? (load_seconds - prepare_seconds) * 1e6 / static_cast<double>(count)
          : 0.0);
  std::printf(
      "pruned %lld event(s) older than %d days in %.1f s; flush %.1f s\n",
      static_cast<long long>(pruned), absl::GetFlag(FLAGS_event_retention_days),
      prune_seconds, flush_seconds);
  const int64_t bytes = DirBytes(dir);
  std::printf("store: %lld deal(s) in pipeline 0, %.1f MiB on disk\n",
              static_cast<long long>(after),
              bytes >= 0 ? static_cast<double>(bytes) / (1 << 20) : -1.0);
  return 0;
}

}  // namespace
}  // namespace crm::bench

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Fills a deals data dir offline with deals committed through "
      "DealStore.");
  absl::ParseCommandLine(argc, argv);
  return crm::bench::Run();
}
