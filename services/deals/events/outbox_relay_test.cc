#include "services/deals/events/outbox_relay.h"

#include <map>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "google/protobuf/util/time_util.h"
#include "gtest/gtest.h"

#include "common/status/status_matchers.h"
#include "common/testing/temp_dir.h"

namespace crm::deals {
namespace {

using ::crm::testing::StatusIs;

// A subscriber stand-in: fails the first `failures` deliveries, may apply
// only a prefix, and records every event it applied (by id, counting
// repeats).
class FakePublisher final : public DealEventPublisher {
 public:
  absl::StatusOr<int64_t> Deliver(const EventBatch& batch) override {
    std::vector<v1::DealEvent> events;
    for (const std::string& bytes : batch.events) {
      events.emplace_back();
      if (!events.back().ParseFromString(bytes))
        return absl::InvalidArgumentError("not a DealEvent");
      if (events.back().sequence() != batch.sequences[events.size() - 1])
        return absl::InvalidArgumentError("sequence mismatch");
    }
    absl::MutexLock lock(&mu_);
    ++calls_;
    sizes_.push_back(static_cast<int>(events.size()));
    if (refuse_larger_than_ > 0 &&
        static_cast<int>(events.size()) > refuse_larger_than_) {
      return absl::ResourceExhaustedError("larger than max");
    }
    if (failures_left_ > 0) {
      --failures_left_;
      return absl::UnavailableError("subscriber down");
    }
    size_t take = events.size();
    if (apply_at_most_ > 0)
      take = std::min(take, static_cast<size_t>(apply_at_most_));
    for (size_t i = 0; i < take; ++i) {
      ++applied_[events[i].event_id()];
      order_.push_back(events[i].sequence());
    }
    return events[take - 1].sequence();
  }

  void FailNext(int n) {
    absl::MutexLock lock(&mu_);
    failures_left_ = n;
  }
  // Refuses (RESOURCE_EXHAUSTED) any delivery of more than n events.
  void RefuseLargerThan(int n) {
    absl::MutexLock lock(&mu_);
    refuse_larger_than_ = n;
  }
  std::vector<int> sizes() const {
    absl::MutexLock lock(&mu_);
    return sizes_;
  }
  void ApplyAtMost(int n) {
    absl::MutexLock lock(&mu_);
    apply_at_most_ = n;
  }
  std::vector<int64_t> order() const {
    absl::MutexLock lock(&mu_);
    return order_;
  }
  std::map<std::string, int> applied() const {
    absl::MutexLock lock(&mu_);
    return applied_;
  }
  int calls() const {
    absl::MutexLock lock(&mu_);
    return calls_;
  }

 private:
  mutable absl::Mutex mu_;
  int failures_left_ = 0;
  int apply_at_most_ = 0;
  int refuse_larger_than_ = 0;
  std::vector<int> sizes_;
  int calls_ = 0;
  std::vector<int64_t> order_;
  std::map<std::string, int> applied_;
};

class OutboxRelayTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = DealStore::Open(dir_.path(), {}, 0);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(store).value();
  }

  // Commits `n` deals, each with a CREATED event.
  void CreateDeals(int n) {
    for (int i = 0; i < n; ++i) {
      DealWrite write;
      write.after.emplace();
      write.after->set_id(store_->AllocateDealId());
      write.after->set_stage_id("NEW");
      write.event.emplace();
      write.event->set_type(v1::DEAL_EVENT_TYPE_CREATED);
      *write.event->mutable_occur_time() =
          google::protobuf::util::TimeUtil::GetCurrentTime();
      ASSERT_OK(store_->Commit(std::move(write)).status());
    }
  }

  static std::vector<int64_t> Range(int64_t from, int64_t to) {
    std::vector<int64_t> out;
    for (int64_t i = from; i <= to; ++i) out.push_back(i);
    return out;
  }

  // Waits (bounded) until the subscriber's cursor reaches `sequence`.
  bool WaitForCursor(int64_t sequence) {
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    while (absl::Now() < deadline) {
      auto cursor = store_->GetCursor("sink");
      if (cursor.ok() && *cursor >= sequence) return true;
      absl::SleepFor(absl::Milliseconds(5));
    }
    return false;
  }

  RelayOptions FastOptions() {
    RelayOptions options;
    options.batch_size = 4;
    options.min_backoff = absl::Milliseconds(1);
    options.max_backoff = absl::Milliseconds(20);
    options.idle_poll = absl::Milliseconds(10);
    options.min_interval = absl::ZeroDuration();
    options.cursor_flush = absl::ZeroDuration();  // store every cursor
    return options;
  }

  crm::testing::TempDir dir_;
  std::unique_ptr<DealStore> store_;
  FakePublisher publisher_;
};

TEST_F(OutboxRelayTest, DeliversInOrderInBatchesAndAdvancesTheCursor) {
  CreateDeals(10);
  OutboxRelay relay(*store_, "sink", publisher_, FastOptions());
  ASSERT_OK_AND_ASSIGN(int first, relay.DeliverOnce());
  EXPECT_EQ(first, 4);
  ASSERT_OK_AND_ASSIGN(int64_t cursor, store_->GetCursor("sink"));
  EXPECT_EQ(cursor, 4);
  ASSERT_OK_AND_ASSIGN(int second, relay.DeliverOnce());
  ASSERT_OK_AND_ASSIGN(int third, relay.DeliverOnce());
  ASSERT_OK_AND_ASSIGN(int idle, relay.DeliverOnce());
  EXPECT_EQ(second + third, 6);
  EXPECT_EQ(idle, 0);
  EXPECT_EQ(publisher_.order(), Range(1, 10));
}

TEST_F(OutboxRelayTest, FailureDeliversNothingAndIsRetried) {
  CreateDeals(3);
  OutboxRelay relay(*store_, "sink", publisher_, FastOptions());
  publisher_.FailNext(1);
  EXPECT_THAT(relay.DeliverOnce(), StatusIs(absl::StatusCode::kUnavailable));
  ASSERT_OK_AND_ASSIGN(int64_t cursor, store_->GetCursor("sink"));
  EXPECT_EQ(cursor, 0);
  EXPECT_EQ(relay.failures(), 1);
  ASSERT_OK_AND_ASSIGN(int delivered, relay.DeliverOnce());
  EXPECT_EQ(delivered, 3);
  EXPECT_EQ(publisher_.order(), Range(1, 3));
}

TEST_F(OutboxRelayTest, PartialApplyResendsOnlyTheRest) {
  CreateDeals(4);
  OutboxRelay relay(*store_, "sink", publisher_, FastOptions());
  publisher_.ApplyAtMost(1);
  ASSERT_OK_AND_ASSIGN(int delivered, relay.DeliverOnce());
  EXPECT_EQ(delivered, 1);
  publisher_.ApplyAtMost(0);
  ASSERT_OK_AND_ASSIGN(int rest, relay.DeliverOnce());
  EXPECT_EQ(rest, 3);
  EXPECT_EQ(publisher_.order(), Range(1, 4));
  for (const auto& [id, times] : publisher_.applied())
    EXPECT_EQ(times, 1) << id;
}

TEST_F(OutboxRelayTest, BackgroundThreadRetriesThroughAnOutageAndLosesNothing) {
  CreateDeals(5);
  publisher_.FailNext(5);  // the subscriber is down for a while
  OutboxRelay relay(*store_, "sink", publisher_, FastOptions());
  relay.Start();
  CreateDeals(5);
  relay.Notify();
  ASSERT_TRUE(WaitForCursor(10));
  relay.Stop();
  EXPECT_GE(relay.failures(), 5);
  EXPECT_EQ(publisher_.order(), Range(1, 10));
  for (const auto& [id, times] : publisher_.applied())
    EXPECT_EQ(times, 1) << id;
}

TEST_F(OutboxRelayTest, ARestartedRelayResumesAfterTheDurableCursor) {
  CreateDeals(6);
  {
    OutboxRelay relay(*store_, "sink", publisher_, FastOptions());
    ASSERT_OK(relay.DeliverOnce().status());  // 1..4
  }
  // Reopen the store: the cursor must come from disk.
  store_.reset();
  auto store = DealStore::Open(dir_.path(), {}, 0);
  ASSERT_TRUE(store.ok());
  store_ = std::move(store).value();
  OutboxRelay relay(*store_, "sink", publisher_, FastOptions());
  relay.Start();
  ASSERT_TRUE(WaitForCursor(6));
  relay.Stop();
  EXPECT_EQ(publisher_.order(), Range(1, 6));
}

TEST_F(OutboxRelayTest, SubscribersHaveIndependentCursors) {
  CreateDeals(3);
  FakePublisher other;
  OutboxRelay a(*store_, "sink", publisher_, FastOptions());
  OutboxRelay b(*store_, "other", other, FastOptions());
  other.FailNext(1);
  ASSERT_OK(a.DeliverOnce().status());
  EXPECT_FALSE(b.DeliverOnce().ok());
  ASSERT_OK_AND_ASSIGN(int64_t sink_cursor, store_->GetCursor("sink"));
  ASSERT_OK_AND_ASSIGN(int64_t other_cursor, store_->GetCursor("other"));
  EXPECT_EQ(sink_cursor, 3);
  EXPECT_EQ(other_cursor, 0);
}

TEST_F(OutboxRelayTest, StopReturnsPromptlyDuringBackoff) {
  CreateDeals(1);
  publisher_.FailNext(1000);
  RelayOptions options = FastOptions();
  options.min_backoff = absl::Seconds(30);
  options.max_backoff = absl::Seconds(30);
  OutboxRelay relay(*store_, "sink", publisher_, options);
  relay.Start();
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (publisher_.calls() == 0 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  const absl::Time start = absl::Now();
  relay.Stop();
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
}

TEST_F(OutboxRelayTest, RefusedBatchesShrinkUntilTheyPassAndNothingIsLost) {
  CreateDeals(10);
  publisher_.RefuseLargerThan(1);
  RelayOptions options = FastOptions();
  options.batch_size = 8;
  OutboxRelay relay(*store_, "sink", publisher_, options);
  // 8 and 4 and 2 are refused, then one event passes.
  EXPECT_THAT(relay.DeliverOnce(),
              StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_EQ(relay.stuck_sequence(), 1);
  EXPECT_FALSE(relay.DeliverOnce().ok());
  EXPECT_FALSE(relay.DeliverOnce().ok());
  ASSERT_OK_AND_ASSIGN(int delivered, relay.DeliverOnce());
  EXPECT_EQ(delivered, 1);
  EXPECT_EQ(relay.stuck_sequence(), 0);
  // The background thread gets the rest through without waiting out
  // backoffs, and in order.
  relay.Start();
  relay.Notify();
  ASSERT_TRUE(WaitForCursor(10));
  relay.Stop();
  EXPECT_EQ(publisher_.order(), Range(1, 10));
  EXPECT_EQ(publisher_.sizes()[0], 8);
  EXPECT_EQ(publisher_.sizes()[1], 4);
  EXPECT_EQ(publisher_.sizes()[2], 2);
}

TEST_F(OutboxRelayTest, DeliveriesAreBoundedByBytesButOneEventAlwaysGoes) {
  for (int i = 0; i < 6; ++i) {
    DealWrite write;
    write.after.emplace();
    write.after->set_id(store_->AllocateDealId());
    write.after->set_stage_id("NEW");
    write.after->set_comments(std::string(1000, 'c'));
    write.event.emplace();
    write.event->set_type(v1::DEAL_EVENT_TYPE_CREATED);
    ASSERT_OK(store_->Commit(std::move(write)).status());
  }
  RelayOptions options = FastOptions();
  options.batch_size = 100;
  options.batch_bytes = 2500;  // two of these events, not three
  OutboxRelay relay(*store_, "sink", publisher_, options);
  for (int i = 0; i < 3; ++i) {
    ASSERT_OK_AND_ASSIGN(int delivered, relay.DeliverOnce());
    EXPECT_EQ(delivered, 2);
  }
  options.batch_bytes = 10;  // smaller than any event: one at a time
  OutboxRelay single(*store_, "other", publisher_, options);
  ASSERT_OK_AND_ASSIGN(int one, single.DeliverOnce());
  EXPECT_EQ(one, 1);
}

TEST_F(OutboxRelayTest, AnEventRefusedAloneIsRetriedAndReportedNeverSkipped) {
  CreateDeals(3);
  publisher_.RefuseLargerThan(1);
  publisher_.FailNext(0);
  RelayOptions options = FastOptions();
  options.batch_size = 1;
  common::MetricsRegistry metrics;
  options.metrics = &metrics;
  OutboxRelay relay(*store_, "sink", publisher_, options);
  ASSERT_OK(relay.DeliverOnce().status());  // sequence 1
  publisher_.FailNext(3);  // now sequence 2 is refused three times
  for (int i = 0; i < 3; ++i) EXPECT_FALSE(relay.DeliverOnce().ok());
  EXPECT_EQ(relay.stuck_sequence(), 2);
  EXPECT_THAT(metrics.RenderPrometheus(),
              ::testing::HasSubstr("crm_deals_relay_sink_stuck_sequence 2"));
  ASSERT_OK(relay.DeliverOnce().status());
  ASSERT_OK(relay.DeliverOnce().status());
  EXPECT_EQ(publisher_.order(), Range(1, 3));
  EXPECT_THAT(metrics.RenderPrometheus(),
              ::testing::HasSubstr("crm_deals_relay_sink_stuck_sequence 0"));
}

TEST_F(OutboxRelayTest, PruningNeverPassesAnUnreadableCursor) {
  CreateDeals(5);
  ASSERT_OK(store_->SetCursor("fast", 5));
  ASSERT_OK(store_->SetCursor("slow", 2));
  // Everything is old enough; "slow" still lacks 3..5.
  const absl::Time later = absl::Now() + absl::Hours(1);
  ASSERT_OK_AND_ASSIGN(int64_t pruned,
                       PruneDeliveredEvents(*store_, {"fast", "slow"}, later));
  EXPECT_EQ(pruned, 2);
  // A cursor that cannot be read stops pruning altogether.
  rocksdb::WriteBatch batch;
  ASSERT_TRUE(
      batch.Put(store_->db().Handle("meta"), "cursor/slow", "garbage").ok());
  ASSERT_OK(store_->db().Write(&batch));
  EXPECT_THAT(PruneDeliveredEvents(*store_, {"fast", "slow"}, later),
              StatusIs(absl::StatusCode::kDataLoss));
  ASSERT_OK_AND_ASSIGN(int64_t first, store_->FirstRetainedSequence());
  EXPECT_EQ(first, 3);
}

TEST_F(OutboxRelayTest, TheCursorIsStoredLazilyButAlwaysOnStop) {
  CreateDeals(6);
  RelayOptions options = FastOptions();
  options.cursor_flush = absl::Hours(1);
  {
    OutboxRelay relay(*store_, "sink", publisher_, options);
    ASSERT_OK_AND_ASSIGN(int delivered, relay.DeliverOnce());
    EXPECT_EQ(delivered, 4);
    // The first store happens at once (nothing stored for an hour yet).
    ASSERT_OK_AND_ASSIGN(int64_t cursor, store_->GetCursor("sink"));
    EXPECT_EQ(cursor, 4);
    ASSERT_OK(relay.DeliverOnce().status());
    ASSERT_OK_AND_ASSIGN(cursor, store_->GetCursor("sink"));
    EXPECT_EQ(cursor, 4);  // applied 6, stored 4: a crash now repeats 5, 6
    relay.Start();
    relay.Stop();
  }
  ASSERT_OK_AND_ASSIGN(int64_t cursor, store_->GetCursor("sink"));
  EXPECT_EQ(cursor, 6);
  EXPECT_EQ(publisher_.order(), Range(1, 6));
}

TEST_F(OutboxRelayTest, DeliveriesUnderLoadCoalesce) {
  RelayOptions options = FastOptions();
  options.batch_size = 1000;
  options.min_interval = absl::Milliseconds(50);
  OutboxRelay relay(*store_, "sink", publisher_, options);
  relay.Start();
  // 40 commits spread over ~200 ms: at most one delivery starts per 50 ms.
  for (int i = 0; i < 40; ++i) {
    CreateDeals(1);
    relay.Notify();
    absl::SleepFor(absl::Milliseconds(5));
  }
  ASSERT_TRUE(WaitForCursor(40));
  relay.Stop();
  EXPECT_EQ(publisher_.order(), Range(1, 40));
  EXPECT_LE(publisher_.sizes().size(), 10u);
}

}  // namespace
}  // namespace crm::deals
