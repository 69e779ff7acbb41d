// The run queue on a real store: edits of the due index and snapshots take
// effect only with their write, a failed write holds runs back, runs taken
// are in flight until released, and a reload leaves running ones out.
#include "services/automation/engine/run_queue.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "common/rocks/rocks_options.h"
#include "common/status/status_matchers.h"
#include "common/testing/temp_dir.h"

namespace crm::automation {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

// Run keys of deal 1, entry 1, jobs 1 to 3.
const std::string kA = RunKey(1, 1, 1);
const std::string kB = RunKey(1, 1, 2);
const std::string kC = RunKey(1, 1, 3);

class RunQueueTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = AutomationStore::Open(dir_.path(), common::RocksOptions());
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    RunQueue::Options options;
    options.store_retry = absl::Seconds(5);
    queue_ = std::make_unique<RunQueue>(*store_, options);
  }

  // Schedules run `key` at `due_micros` in one committed change.
  absl::Status ScheduleRun(const std::string& key, int64_t due_micros) {
    absl::MutexLock lock(&queue_->mu());
    RunQueue::Change change = queue_->NewChange();
    storage::RunRecord record;
    change.Schedule(&record, key, absl::FromUnixMicros(due_micros),
                    absl::FromUnixMicros(0));
    change.batch().PutRun(key, record);
    return queue_->Commit(change);
  }

  std::vector<std::string> TakeDue(int64_t now_micros) {
    absl::MutexLock lock(&queue_->mu());
    std::vector<std::string> keys;
    for (auto& [due, key] : queue_->TakeDue(now_micros, 100))
      keys.push_back(key);
    return keys;
  }

  crm::testing::TempDir dir_;
  std::unique_ptr<AutomationStore> store_;
  std::unique_ptr<RunQueue> queue_;
};

TEST_F(RunQueueTest, RunsComeDueInOrderAndStayInFlightUntilReleased) {
  ASSERT_OK(ScheduleRun(kB, 2000));
  ASSERT_OK(ScheduleRun(kA, 1000));
  ASSERT_OK(ScheduleRun(kC, 9000));
  EXPECT_THAT(TakeDue(500), IsEmpty());
  EXPECT_THAT(TakeDue(2000), ElementsAre(kA, kB));
  absl::MutexLock lock(&queue_->mu());
  EXPECT_TRUE(queue_->InFlight(kA));
  EXPECT_EQ(queue_->NextDueMicros(), 9000);
  queue_->Release(kA);
  EXPECT_FALSE(queue_->InFlight(kA));
}

TEST_F(RunQueueTest, AFailedWriteLeavesMemoryAsTheStoreIsAndHoldsRuns) {
  store_->SetFaultHookForTest([](AutomationStore::Op op, std::string_view) {
    return op == AutomationStore::Op::kWrite ? absl::UnavailableError("disk")
                                             : absl::OkStatus();
  });
  EXPECT_THAT(ScheduleRun(kA, 1000),
              crm::testing::StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(TakeDue(5000), IsEmpty());
  {
    absl::MutexLock lock(&queue_->mu());
    EXPECT_GT(queue_->HeldFor(), absl::Seconds(4));
  }
  store_->SetFaultHookForTest(nullptr);
  // A successful write ends the hold's doubling, not the hold itself.
  ASSERT_OK(ScheduleRun(kA, 1000));
  EXPECT_THAT(TakeDue(5000), ElementsAre(kA));
}

TEST_F(RunQueueTest, AReloadRebuildsTheIndexWithoutTheRunningOnes) {
  ASSERT_OK(ScheduleRun(kA, 1000));
  ASSERT_OK(ScheduleRun(kB, 2000));
  ASSERT_THAT(TakeDue(1000), ElementsAre(kA));  // kA is running
  {
    absl::MutexLock lock(&queue_->mu());
    ASSERT_OK(queue_->Reload());
  }
  EXPECT_THAT(TakeDue(5000), ElementsAre(kB));
  // A fresh queue on the same store sees both: the index is the store's.
  RunQueue other(*store_, RunQueue::Options());
  absl::MutexLock lock(&other.mu());
  ASSERT_OK(other.Reload());
  std::vector<std::string> keys;
  for (auto& [due, key] : other.TakeDue(5000, 100)) keys.push_back(key);
  EXPECT_THAT(keys, ElementsAre(kA, kB));
}

TEST_F(RunQueueTest, SnapshotsAreTakenOnce) {
  {
    absl::MutexLock lock(&queue_->mu());
    RunQueue::Change change = queue_->NewChange();
    crm::deals::v1::Deal deal;
    deal.set_id(7);
    change.KeepSnapshot(kA, deal);
    ASSERT_OK(queue_->Commit(change));
    ASSERT_TRUE(queue_->TakeSnapshot(kA).has_value());
    EXPECT_FALSE(queue_->TakeSnapshot(kA).has_value());
  }
}

}  // namespace
}  // namespace crm::automation
