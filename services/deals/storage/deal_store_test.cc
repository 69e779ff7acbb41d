#include "services/deals/storage/deal_store.h"

#include <algorithm>
#include <set>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "google/protobuf/util/time_util.h"
#include "gtest/gtest.h"

#include "common/grpc/message_limits.h"
#include "common/rocks/key_codec.h"
#include "common/status/status_matchers.h"
#include "common/testing/temp_dir.h"

namespace crm::deals {
namespace {

namespace storage = ::crm::deals::storage;
using ::crm::testing::StatusIs;
using ::google::protobuf::util::TimeUtil;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

class DealStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { Reopen(); }

  void Reopen(int shard = 3) {
    store_.reset();
    auto store = DealStore::Open(dir_.path(), {}, shard);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(store).value();
  }

  v1::Deal NewDeal(const std::string& stage, const std::string& amount,
                   const std::string& currency = "EUR") {
    v1::Deal deal;
    deal.set_id(store_->AllocateDealId());
    deal.set_title("Deal");
    deal.set_pipeline_id(0);
    deal.set_stage_id(stage);
    deal.set_amount(amount);
    deal.set_currency(currency);
    deal.set_assignee_id(7);
    deal.set_close_date("2026-12-04");
    return deal;
  }

  static v1::DealEvent Event(v1::DealEventType type, int64_t seconds = 1000) {
    v1::DealEvent event;
    event.set_type(type);
    *event.mutable_occur_time() = TimeUtil::SecondsToTimestamp(seconds);
    return event;
  }

  CommitResult Create(const v1::Deal& deal, int64_t seconds = 1000) {
    DealWrite write;
    write.after = deal;
    write.event = Event(v1::DEAL_EVENT_TYPE_CREATED, seconds);
    v1::StageHistoryEntry created;
    created.set_kind(v1::StageHistoryEntry::KIND_CREATED);
    created.set_to_stage_id(deal.stage_id());
    write.history.push_back(created);
    auto result = store_->Commit(std::move(write));
    EXPECT_TRUE(result.ok()) << result.status();
    return result.ok() ? *result : CommitResult{};
  }

  storage::DealRecord Stored(int64_t id) {
    auto record = store_->Get(id);
    EXPECT_TRUE(record.ok() && record->has_value());
    return record.ok() && record->has_value() ? **record
                                              : storage::DealRecord();
  }

  crm::testing::TempDir dir_;
  std::unique_ptr<DealStore> store_;
};

TEST_F(DealStoreTest, IdsCarryTheShardAndNeverRepeatAcrossRestarts) {
  const int64_t first = store_->AllocateDealId();
  EXPECT_EQ(ShardOfDeal(first), 3);
  const v1::Deal deal = NewDeal("NEW", "10");
  Create(deal);
  Reopen();
  const int64_t after_restart = store_->AllocateDealId();
  EXPECT_EQ(ShardOfDeal(after_restart), 3);
  EXPECT_GT(after_restart, deal.id());
  EXPECT_GT(after_restart, first);
}

TEST_F(DealStoreTest,
       CreateWritesRecordIndexesCountersHistoryAndEventAtomically) {
  const v1::Deal deal = NewDeal("NEW", "100.50");
  const CommitResult result = Create(deal);
  EXPECT_EQ(result.revision, 1);
  EXPECT_EQ(result.event_sequence, 1);
  ASSERT_TRUE(result.deal.has_value());
  EXPECT_EQ(result.deal->etag(), "\"1\"");

  Reopen();
  EXPECT_EQ(Stored(deal.id()).deal().amount(), "100.50");
  ASSERT_OK_AND_ASSIGN(auto ids, store_->IdsInStage(0, "NEW", 0, 10));
  EXPECT_THAT(ids, ElementsAre(deal.id()));
  ASSERT_OK_AND_ASSIGN(auto totals, store_->ColumnTotalsOf(0));
  ASSERT_EQ(totals.count("NEW"), 1u);
  EXPECT_EQ(totals["NEW"].count, 1);
  EXPECT_EQ(totals["NEW"].sums.at("EUR").ToString(2), "100.50");
  ASSERT_OK_AND_ASSIGN(auto history, store_->ReadHistory(deal.id(), 0, 10));
  ASSERT_EQ(history.size(), 1u);
  EXPECT_EQ(history[0].second.kind(), v1::StageHistoryEntry::KIND_CREATED);
  ASSERT_OK_AND_ASSIGN(auto events, store_->ReadOutbox(1, 10));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].event_id(), "3-1");
  EXPECT_EQ(events[0].deal_id(), deal.id());
  EXPECT_EQ(events[0].deal().etag(), "\"1\"");
  EXPECT_EQ(store_->next_event_sequence(), 2);
}

TEST_F(DealStoreTest, MoveUpdatesIndexesAndCountersOfBothColumns) {
  const v1::Deal deal = NewDeal("NEW", "10", "USD");
  Create(deal);
  Create(NewDeal("NEW", "5", "USD"));
  DealWrite move;
  move.before = Stored(deal.id());
  move.after = move.before->deal();
  move.after->set_stage_id("WON");
  move.event = Event(v1::DEAL_EVENT_TYPE_STAGE_CHANGED);
  ASSERT_OK_AND_ASSIGN(CommitResult result, store_->Commit(std::move(move)));
  EXPECT_EQ(result.revision, 2);
  EXPECT_EQ(result.event_sequence, 3);

  ASSERT_OK_AND_ASSIGN(auto in_new, store_->IdsInStage(0, "NEW", 0, 10));
  ASSERT_OK_AND_ASSIGN(auto in_won, store_->IdsInStage(0, "WON", 0, 10));
  EXPECT_EQ(in_new.size(), 1u);
  EXPECT_THAT(in_won, ElementsAre(deal.id()));
  ASSERT_OK_AND_ASSIGN(auto totals, store_->ColumnTotalsOf(0));
  EXPECT_EQ(totals["NEW"].count, 1);
  EXPECT_EQ(totals["NEW"].sums.at("USD").ToString(2), "5.00");
  EXPECT_EQ(totals["WON"].count, 1);
  EXPECT_EQ(totals["WON"].sums.at("USD").ToString(2), "10.00");
}

TEST_F(DealStoreTest, ADealLargerThanTheLimitIsRefusedUnlessItShrinks) {
  v1::Deal large = NewDeal("NEW", "10");
  large.set_comments(std::string(common::kMaxDealBytes, 'x'));
  DealWrite create;
  create.after = large;
  create.event = Event(v1::DEAL_EVENT_TYPE_CREATED);
  EXPECT_THAT(store_->Commit(std::move(create)),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       ::testing::HasSubstr("deal: ")));
  ASSERT_OK_AND_ASSIGN(auto events, store_->ReadOutbox(1, 10));
  EXPECT_THAT(events, IsEmpty());

  // Growing a stored deal past the limit is refused, nothing written...
  const v1::Deal deal = NewDeal("NEW", "10");
  Create(deal);
  const storage::DealRecord stored = Stored(deal.id());
  DealWrite grow;
  grow.before = stored;
  grow.after = stored.deal();
  grow.after->set_comments(std::string(common::kMaxDealBytes, 'y'));
  grow.event = Event(v1::DEAL_EVENT_TYPE_UPDATED);
  EXPECT_THAT(store_->Commit(std::move(grow)),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(Stored(deal.id()).revision(), stored.revision());
}

TEST_F(DealStoreTest, StaleBeforeIsAbortedAndWritesNothing) {
  const v1::Deal deal = NewDeal("NEW", "10");
  Create(deal);
  const storage::DealRecord read = Stored(deal.id());
  DealWrite first;
  first.before = read;
  first.after = read.deal();
  first.after->set_title("First");
  first.event = Event(v1::DEAL_EVENT_TYPE_UPDATED);
  ASSERT_OK(store_->Commit(std::move(first)).status());

  DealWrite second;
  second.before = read;  // stale: revision 1, stored is 2
  second.after = read.deal();
  second.after->set_stage_id("WON");
  second.event = Event(v1::DEAL_EVENT_TYPE_STAGE_CHANGED);
  EXPECT_THAT(store_->Commit(std::move(second)),
              StatusIs(absl::StatusCode::kAborted));
  EXPECT_EQ(Stored(deal.id()).deal().title(), "First");
  EXPECT_EQ(Stored(deal.id()).deal().stage_id(), "NEW");
  ASSERT_OK_AND_ASSIGN(auto events, store_->ReadOutbox(1, 10));
  EXPECT_EQ(events.size(),
            2u);  // created + updated, nothing from the aborted move
  ASSERT_OK_AND_ASSIGN(auto in_won, store_->IdsInStage(0, "WON", 0, 10));
  EXPECT_THAT(in_won, IsEmpty());
}

TEST_F(DealStoreTest, CreatingAnExistingIdIsAborted) {
  const v1::Deal deal = NewDeal("NEW", "10");
  Create(deal);
  DealWrite again;
  again.after = deal;
  EXPECT_THAT(store_->Commit(std::move(again)),
              StatusIs(absl::StatusCode::kAborted, HasSubstr("exists")));
}

TEST_F(DealStoreTest, BadAmountIsInvalidArgumentBeforeAnythingIsWritten) {
  v1::Deal deal = NewDeal("NEW", "12,5");
  DealWrite write;
  write.after = deal;
  write.event = Event(v1::DEAL_EVENT_TYPE_CREATED);
  EXPECT_THAT(
      store_->Commit(std::move(write)),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("deal.amount")));
  ASSERT_OK_AND_ASSIGN(auto found, store_->Get(deal.id()));
  EXPECT_FALSE(found.has_value());
  EXPECT_EQ(store_->next_event_sequence(), 1);
}

TEST_F(DealStoreTest, DeleteRemovesRecordIndexesAndCountersButKeepsTheEvent) {
  const v1::Deal deal = NewDeal("NEW", "10");
  Create(deal);
  DealWrite erase;
  erase.before = Stored(deal.id());
  erase.event = Event(v1::DEAL_EVENT_TYPE_DELETED);
  ASSERT_OK_AND_ASSIGN(CommitResult result, store_->Commit(std::move(erase)));
  EXPECT_FALSE(result.deal.has_value());
  ASSERT_OK_AND_ASSIGN(auto found, store_->Get(deal.id()));
  EXPECT_FALSE(found.has_value());
  ASSERT_OK_AND_ASSIGN(auto ids, store_->IdsInStage(0, "NEW", 0, 10));
  EXPECT_THAT(ids, IsEmpty());
  ASSERT_OK_AND_ASSIGN(auto totals, store_->ColumnTotalsOf(0));
  EXPECT_THAT(totals, IsEmpty());
  ASSERT_OK_AND_ASSIGN(auto events, store_->ReadOutbox(2, 10));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].type(), v1::DEAL_EVENT_TYPE_DELETED);
  EXPECT_EQ(events[0].deal().id(), deal.id());  // the deal before the delete
}

TEST_F(DealStoreTest, RequestIdsAreRemembered) {
  const v1::Deal deal = NewDeal("NEW", "1");
  DealWrite write;
  write.after = deal;
  write.request_id = "req-1";
  write.request_fingerprint = "fp";
  ASSERT_OK(store_->Commit(std::move(write)).status());
  ASSERT_OK_AND_ASSIGN(auto found, store_->FindRequest("req-1"));
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->deal_id(), deal.id());
  EXPECT_EQ(found->fingerprint(), "fp");
  ASSERT_OK_AND_ASSIGN(auto missing, store_->FindRequest("req-2"));
  EXPECT_FALSE(missing.has_value());
}

TEST_F(DealStoreTest, PruneDropsOldEventsButSequencesContinue) {
  Create(NewDeal("NEW", "1"), /*seconds=*/100);
  Create(NewDeal("NEW", "2"), /*seconds=*/200);
  Create(NewDeal("NEW", "3"), /*seconds=*/300);
  ASSERT_OK_AND_ASSIGN(int64_t pruned,
                       store_->PruneOutbox(absl::FromUnixSeconds(250)));
  EXPECT_EQ(pruned, 2);
  ASSERT_OK_AND_ASSIGN(auto events, store_->ReadOutbox(0, 10));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].sequence(), 3);
  ASSERT_OK_AND_ASSIGN(auto rest,
                       store_->PruneOutbox(absl::FromUnixSeconds(1000)));
  EXPECT_EQ(rest, 1);
  Reopen();
  EXPECT_EQ(store_->next_event_sequence(), 4);  // never reused after expiry
}

TEST_F(DealStoreTest, PruneKeepsWhatASubscriberHasNotApplied) {
  Create(NewDeal("NEW", "1"), /*seconds=*/100);
  Create(NewDeal("NEW", "2"), /*seconds=*/200);
  Create(NewDeal("NEW", "3"), /*seconds=*/300);
  // All three are old, but the slowest subscriber applied only sequence 1.
  ASSERT_OK_AND_ASSIGN(int64_t pruned,
                       store_->PruneOutbox(absl::FromUnixSeconds(1000), 1));
  EXPECT_EQ(pruned, 1);
  ASSERT_OK_AND_ASSIGN(int64_t first, store_->FirstRetainedSequence());
  EXPECT_EQ(first, 2);
}

TEST_F(DealStoreTest, RequestIdCannotBeCommittedTwice) {
  DealWrite first;
  first.after = NewDeal("NEW", "1");
  first.request_id = "same";
  ASSERT_OK(store_->Commit(std::move(first)).status());
  DealWrite second;
  second.after = NewDeal("NEW", "2");
  second.request_id = "same";
  EXPECT_THAT(store_->Commit(std::move(second)),
              StatusIs(absl::StatusCode::kAlreadyExists,
                       ::testing::HasSubstr("request_id")));
  ASSERT_OK_AND_ASSIGN(auto events, store_->ReadOutbox(0, 10));
  EXPECT_TRUE(events.empty());  // neither write had an event; nothing leaked
  ASSERT_OK_AND_ASSIGN(int64_t count, store_->CountDeals(0, ""));
  EXPECT_EQ(count, 1);
}

namespace {

std::vector<int64_t> Drain(IdStream& stream) {
  std::vector<int64_t> ids;
  int64_t id = 0;
  while (stream.Next(&id)) ids.push_back(id);
  EXPECT_TRUE(stream.status().ok()) << stream.status();
  return ids;
}

}  // namespace

TEST_F(DealStoreTest, IdStreamsWalkIndexesBothWaysFromACursor) {
  std::vector<int64_t> new_ids;
  std::vector<int64_t> won_ids;
  for (int i = 0; i < 6; ++i) {
    v1::Deal deal = NewDeal(i % 2 == 0 ? "NEW" : "WON", "1");
    deal.set_assignee_id(i < 3 ? 7 : 8);
    deal.set_close_date(i < 4 ? "2026-01-10" : "2026-03-01");
    Create(deal);
    (i % 2 == 0 ? new_ids : won_ids).push_back(deal.id());
  }
  std::vector<int64_t> all = new_ids;
  all.insert(all.end(), won_ids.begin(), won_ids.end());
  std::sort(all.begin(), all.end());

  EXPECT_EQ(Drain(*store_->StreamStage(0, "NEW", 0, false)), new_ids);
  EXPECT_EQ(Drain(*store_->StreamStage(0, "NEW", new_ids[0], false)),
            std::vector<int64_t>(new_ids.begin() + 1, new_ids.end()));
  std::vector<int64_t> reversed(new_ids.rbegin(), new_ids.rend());
  EXPECT_EQ(Drain(*store_->StreamStage(0, "NEW", 0, true)), reversed);
  EXPECT_EQ(Drain(*store_->StreamStage(0, "NEW", new_ids[2], true)),
            std::vector<int64_t>(reversed.begin() + 1, reversed.end()));
  EXPECT_TRUE(Drain(*store_->StreamStage(0, "LOSE", 0, false)).empty());
  EXPECT_TRUE(Drain(*store_->StreamStage(5, "NEW", 0, false)).empty());

  EXPECT_EQ(Drain(*store_->StreamAll(0, false)), all);
  EXPECT_EQ(Drain(*store_->StreamAll(all[3], false)),
            std::vector<int64_t>(all.begin() + 4, all.end()));
  EXPECT_EQ(Drain(*store_->StreamAll(all[3], true)),
            std::vector<int64_t>({all[2], all[1], all[0]}));
  EXPECT_EQ(Drain(*store_->StreamAssignee(8, 0, false)),
            std::vector<int64_t>(all.begin() + 3, all.end()));
  EXPECT_EQ(Drain(*store_->StreamCloseDates("2026-02-01", "")),
            std::vector<int64_t>(all.begin() + 4, all.end()));
  EXPECT_EQ(Drain(*store_->StreamCloseDates("", "2026-01-10")),
            std::vector<int64_t>(all.begin(), all.begin() + 4));

  std::vector<std::unique_ptr<IdStream>> streams;
  streams.push_back(store_->StreamStage(0, "NEW", 0, false));
  streams.push_back(store_->StreamStage(0, "WON", 0, false));
  streams.push_back(store_->StreamAssignee(7, 0, false));  // overlaps
  EXPECT_EQ(Drain(*MergeIdStreams(std::move(streams), false)), all);
}

TEST_F(DealStoreTest, StagePagingAndHistoryPaging) {
  std::vector<int64_t> ids;
  for (int i = 0; i < 5; ++i) {
    v1::Deal deal = NewDeal("NEW", "1");
    ids.push_back(deal.id());
    Create(deal);
  }
  ASSERT_OK_AND_ASSIGN(auto page1, store_->IdsInStage(0, "NEW", 0, 2));
  ASSERT_OK_AND_ASSIGN(auto page2,
                       store_->IdsInStage(0, "NEW", page1.back(), 2));
  ASSERT_OK_AND_ASSIGN(auto page3,
                       store_->IdsInStage(0, "NEW", page2.back(), 2));
  EXPECT_THAT(page1, ElementsAre(ids[0], ids[1]));
  EXPECT_THAT(page2, ElementsAre(ids[2], ids[3]));
  EXPECT_THAT(page3, ElementsAre(ids[4]));
  // A stage id that is a prefix of another does not leak into it.
  ASSERT_OK_AND_ASSIGN(auto prefix, store_->IdsInStage(0, "NE", 0, 10));
  EXPECT_THAT(prefix, IsEmpty());
  ASSERT_OK_AND_ASSIGN(auto history, store_->ReadHistory(ids[2], 0, 10));
  ASSERT_EQ(history.size(), 1u);
  ASSERT_OK_AND_ASSIGN(auto after,
                       store_->ReadHistory(ids[2], history[0].first, 10));
  EXPECT_THAT(after, IsEmpty());
}

TEST_F(DealStoreTest, SubscriberCursorsAreDurableAndIndependent) {
  ASSERT_OK_AND_ASSIGN(int64_t fresh, store_->GetCursor("automation"));
  EXPECT_EQ(fresh, 0);
  ASSERT_OK(store_->SetCursor("automation", 41));
  ASSERT_OK(store_->SetCursor("reporting", 7));
  Reopen();
  ASSERT_OK_AND_ASSIGN(int64_t automation, store_->GetCursor("automation"));
  ASSERT_OK_AND_ASSIGN(int64_t reporting, store_->GetCursor("reporting"));
  EXPECT_EQ(automation, 41);
  EXPECT_EQ(reporting, 7);
}

TEST_F(DealStoreTest, CountsDealsPerPipelineAndStageFromCounters) {
  Create(NewDeal("NEW", "1"));
  Create(NewDeal("NEW", "2"));
  const v1::Deal won = NewDeal("WON", "3");
  Create(won);
  v1::Deal other = NewDeal("C3:NEW", "4");
  other.set_pipeline_id(3);
  Create(other);
  ASSERT_OK_AND_ASSIGN(int64_t pipeline0, store_->CountDeals(0, ""));
  ASSERT_OK_AND_ASSIGN(int64_t in_new, store_->CountDeals(0, "NEW"));
  ASSERT_OK_AND_ASSIGN(int64_t pipeline3, store_->CountDeals(3, ""));
  ASSERT_OK_AND_ASSIGN(int64_t empty, store_->CountDeals(0, "LOSE"));
  EXPECT_EQ(pipeline0, 3);
  EXPECT_EQ(in_new, 2);
  EXPECT_EQ(pipeline3, 1);
  EXPECT_EQ(empty, 0);
  DealWrite erase;
  erase.before = Stored(won.id());
  ASSERT_OK(store_->Commit(std::move(erase)).status());
  ASSERT_OK_AND_ASSIGN(int64_t after_delete, store_->CountDeals(0, ""));
  EXPECT_EQ(after_delete, 2);
}

TEST_F(DealStoreTest, ColumnSumsAreExactBeyondTheInt64Range) {
  // 2 * 5e12 in micro units is past 2^63: an int64 sum wrapped to
  // -8446744073709.541616.
  const v1::Deal big = NewDeal("NEW", "5000000000000.00", "USD");
  Create(big);
  Create(NewDeal("NEW", "5000000000000.00", "USD"));
  Create(NewDeal("NEW", "0.01", "USD"));
  ASSERT_OK_AND_ASSIGN(auto totals, store_->ColumnTotalsOf(0));
  EXPECT_EQ(totals["NEW"].count, 3);
  EXPECT_EQ(totals["NEW"].sums.at("USD").ToString(2), "10000000000000.01");
  // Moving one out subtracts exactly, also after a restart.
  Reopen();
  DealWrite move;
  move.before = Stored(big.id());
  move.after = move.before->deal();
  move.after->set_stage_id("WON");
  ASSERT_OK(store_->Commit(std::move(move)).status());
  ASSERT_OK_AND_ASSIGN(totals, store_->ColumnTotalsOf(0));
  EXPECT_EQ(totals["NEW"].sums.at("USD").ToString(2), "5000000000000.01");
  EXPECT_EQ(totals["WON"].sums.at("USD").ToString(2), "5000000000000.00");
}

TEST_F(DealStoreTest, SumsStoredAsInt64ByOlderVersionsCarryOver) {
  // A column record as older versions wrote it: int64 micro sums only.
  storage::ColumnTotals legacy;
  legacy.set_count(1);
  (*legacy.mutable_sums_micros())["USD"] = 7'250'000;
  std::string key;
  common::AppendInt64(&key, 0);
  common::AppendString(&key, "NEW");
  rocksdb::WriteBatch batch;
  ASSERT_TRUE(batch
                  .Put(store_->db().Handle("column_totals"), key,
                       legacy.SerializeAsString())
                  .ok());
  ASSERT_OK(store_->db().Write(&batch));
  ASSERT_OK_AND_ASSIGN(auto totals, store_->ColumnTotalsOf(0));
  EXPECT_EQ(totals["NEW"].sums.at("USD").ToString(2), "7.25");
  Create(NewDeal("NEW", "1.00", "USD"));
  ASSERT_OK_AND_ASSIGN(totals, store_->ColumnTotalsOf(0));
  EXPECT_EQ(totals["NEW"].count, 2);
  EXPECT_EQ(totals["NEW"].sums.at("USD").ToString(2), "8.25");
}

TEST_F(DealStoreTest, ConcurrentCommitsShareGroupsAndKeepEveryInvariant) {
  store_.reset();
  common::RocksOptions options;
  options.sync_writes = true;
  auto opened = DealStore::Open(dir_.path(), options, 3);
  ASSERT_TRUE(opened.ok()) << opened.status();
  store_ = *std::move(opened);
  // Shared deals that every thread updates without coordination, and new
  // deals each thread creates.
  std::vector<int64_t> shared;
  for (int i = 0; i < 4; ++i)
    shared.push_back(Create(NewDeal("NEW", "1")).deal->id());
  constexpr int kThreads = 8;
  constexpr int kPerThread = 60;
  std::vector<int> applied_updates(kThreads, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        DealWrite create;
        create.after = NewDeal(i % 2 == 0 ? "NEW" : "WON", "2.50", "USD");
        create.event = Event(v1::DEAL_EVENT_TYPE_CREATED);
        create.request_id = absl::StrCat("t", t, "-", i);
        EXPECT_TRUE(store_->Commit(std::move(create)).ok());
        DealWrite update;
        auto before = store_->Get(shared[i % shared.size()]);
        ASSERT_TRUE(before.ok() && before->has_value());
        update.before = **before;
        update.after = update.before->deal();
        update.after->set_title(absl::StrCat("t", t, "-", i));
        update.event = Event(v1::DEAL_EVENT_TYPE_UPDATED);
        auto updated = store_->Commit(std::move(update));
        if (updated.ok()) {
          ++applied_updates[t];
        } else {
          // Only a lost race on the same revision may fail.
          EXPECT_EQ(updated.status().code(), absl::StatusCode::kAborted)
              << updated.status();
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  int updates = 0;
  for (int n : applied_updates) updates += n;
  // Each shared deal's revision counts exactly the updates that won.
  int64_t revisions = 0;
  for (int64_t id : shared) revisions += Stored(id).revision() - 1;
  EXPECT_EQ(revisions, updates);
  // One event per commit, gap-free, in order, each id once.
  const int expected = 4 + kThreads * kPerThread + updates;
  ASSERT_OK_AND_ASSIGN(auto events, store_->ReadOutbox(1, 100000));
  ASSERT_EQ(static_cast<int>(events.size()), expected);
  std::set<std::string> ids;
  for (size_t i = 0; i < events.size(); ++i) {
    EXPECT_EQ(events[i].sequence(), static_cast<int64_t>(i) + 1);
    EXPECT_EQ(events[i].event_id(), absl::StrCat("3-", i + 1));
    ids.insert(events[i].event_id());
  }
  EXPECT_EQ(ids.size(), events.size());
  // Counters agree with the deals, also after a restart.
  Reopen();
  ASSERT_OK_AND_ASSIGN(auto totals, store_->ColumnTotalsOf(0));
  EXPECT_EQ(totals["NEW"].count, 4 + kThreads * kPerThread / 2);
  EXPECT_EQ(totals["WON"].count, kThreads * kPerThread / 2);
  EXPECT_EQ(totals["WON"].sums.at("USD").ToString(2),
            absl::StrCat(kThreads * kPerThread / 2 * 5 / 2, ".00"));
  EXPECT_EQ(store_->next_event_sequence(), expected + 1);
  // Every request id stayed taken.
  DealWrite again;
  again.after = NewDeal("NEW", "1");
  again.request_id = "t3-7";
  EXPECT_THAT(store_->Commit(std::move(again)).status(),
              StatusIs(absl::StatusCode::kAlreadyExists));
}

TEST_F(DealStoreTest, ConcurrentRetriesOfOneRequestSeeTheWinnerOnDisk) {
  constexpr int kThreads = 8;
  std::vector<absl::Status> results(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      DealWrite create;
      create.after = NewDeal("NEW", "1");
      create.request_id = "retry";
      results[t] = store_->Commit(std::move(create)).status();
    });
  }
  for (auto& thread : threads) thread.join();
  int ok = 0;
  ASSERT_OK_AND_ASSIGN(auto winner, store_->FindRequest("retry"));
  ASSERT_TRUE(winner.has_value());
  for (const absl::Status& status : results) {
    if (status.ok()) {
      ++ok;
      continue;
    }
    // Every loser is told which deal won, and that deal is readable.
    EXPECT_THAT(status,
                StatusIs(absl::StatusCode::kAlreadyExists,
                         HasSubstr(absl::StrCat("deal ", winner->deal_id()))));
  }
  EXPECT_EQ(ok, 1);
  EXPECT_TRUE(Stored(winner->deal_id()).has_deal());
}

TEST_F(DealStoreTest, PruningGoesInBoundedChunks) {
  for (int i = 0; i < 25; ++i) Create(NewDeal("NEW", "1"), /*seconds=*/100);
  Create(NewDeal("NEW", "1"), /*seconds=*/900);
  ASSERT_OK_AND_ASSIGN(
      int64_t pruned,
      store_->PruneOutbox(absl::FromUnixSeconds(500), INT64_MAX, /*chunk=*/4));
  EXPECT_EQ(pruned, 25);
  ASSERT_OK_AND_ASSIGN(int64_t first, store_->FirstRetainedSequence());
  EXPECT_EQ(first, 26);
}

TEST_F(DealStoreTest, RawOutboxReadsStopAtTheByteBudgetButNeverEmpty) {
  for (int i = 0; i < 5; ++i) {
    v1::Deal deal = NewDeal("NEW", "1");
    deal.set_comments(std::string(1000, 'x'));
    Create(deal);
  }
  std::vector<std::string> events;
  std::vector<int64_t> sequences;
  ASSERT_OK(store_->ReadOutboxRaw(2, 10, 2500, &events, &sequences));
  ASSERT_EQ(events.size(), 2u);  // a third would pass 2,500 bytes
  EXPECT_THAT(sequences, ElementsAre(2, 3));
  v1::DealEvent parsed;
  ASSERT_TRUE(parsed.ParseFromString(events[1]));
  EXPECT_EQ(parsed.sequence(), 3);
  EXPECT_EQ(parsed.event_id(), "3-3");
  ASSERT_OK(store_->ReadOutboxRaw(1, 10, 10, &events, &sequences));
  EXPECT_EQ(events.size(), 1u);  // alone over budget, still delivered
}

TEST_F(DealStoreTest, ShardOutOfRangeIsRefused) {
  crm::testing::TempDir other;
  EXPECT_THAT(DealStore::Open(other.path(), {}, 1024),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("shard")));
}

}  // namespace
}  // namespace crm::deals
