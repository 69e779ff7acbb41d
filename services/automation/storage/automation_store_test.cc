// AutomationStore: its id counters (stored with the writes that follow their
// use, never going back, across a reopen) and its typed records and
// iterations.
#include "services/automation/storage/automation_store.h"

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "common/rocks/rocks_options.h"
#include "common/status/status_matchers.h"
#include "common/testing/temp_dir.h"

namespace crm::automation {
namespace {

using Op = AutomationStore::Op;
using ::crm::testing::StatusIs;
using ::testing::ElementsAre;

class AutomationStoreTest : public ::testing::Test {
 protected:
  std::unique_ptr<AutomationStore> Open() {
    auto store = AutomationStore::Open(dir_.path(), common::RocksOptions());
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? *std::move(store) : nullptr;
  }

  // A write that carries no id of its own.
  static absl::Status WriteSomething(AutomationStore& store) {
    AutomationStore::Batch batch(store);
    batch.PutRoundRobin(99, 1);
    return store.Write(batch);
  }

  crm::testing::TempDir dir_;
};

TEST_F(AutomationStoreTest, IdsHandedOutAreStoredByTheNextWrite) {
  {
    auto store = Open();
    ASSERT_NE(store, nullptr);
    EXPECT_EQ(store->NewRuleId(), 1);
    EXPECT_EQ(store->NewRuleId(), 2);
    EXPECT_EQ(store->NewRevision(), 1);
    ASSERT_OK(WriteSomething(*store));
    EXPECT_EQ(store->NewTaskId(), 1);
    AutomationStore::Batch batch(*store);
    batch.PutApplied(1, 2);
    ASSERT_OK(store->WriteDeferringSync(batch));
    ASSERT_OK(store->SyncWal());
  }
  auto reopened = Open();
  ASSERT_NE(reopened, nullptr);
  EXPECT_EQ(reopened->NewRuleId(), 3);
  EXPECT_EQ(reopened->NewRevision(), 2);
  EXPECT_EQ(reopened->NewTaskId(), 2);
  EXPECT_EQ(reopened->NewTriggerId(), 1);
}

TEST_F(AutomationStoreTest, AFailedWriteLeavesTheCountersForTheNextOne) {
  {
    auto store = Open();
    ASSERT_NE(store, nullptr);
    EXPECT_EQ(store->NewTriggerId(), 1);
    store->SetFaultHookForTest([](Op op, std::string_view) {
      return op == Op::kWrite ? absl::UnavailableError("disk away")
                              : absl::OkStatus();
    });
    EXPECT_FALSE(WriteSomething(*store).ok());
    store->SetFaultHookForTest(nullptr);
    ASSERT_OK(WriteSomething(*store));
  }
  auto reopened = Open();
  ASSERT_NE(reopened, nullptr);
  EXPECT_EQ(reopened->NewTriggerId(), 2);
}

TEST_F(AutomationStoreTest, IdsNotFollowedByAWriteAreNotReused) {
  {
    auto store = Open();
    ASSERT_NE(store, nullptr);
    EXPECT_EQ(store->NewNotificationId(), 1);
    ASSERT_OK(WriteSomething(*store));
    EXPECT_EQ(store->NewNotificationId(), 2);  // no write follows
  }
  auto reopened = Open();
  ASSERT_NE(reopened, nullptr);
  // Id 2 was never written with a record, so handing it out again is safe;
  // id 1 was, and is not.
  EXPECT_EQ(reopened->NewNotificationId(), 2);
}

TEST_F(AutomationStoreTest, TypedRecordsReadBackAndIterateInKeyOrder) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  AutomationStore::Batch batch(*store);
  // Runs of deal 7: entry 3 (two jobs) and entry 4; deal 8's entry 3.
  storage::RunRecord run;
  run.mutable_run()->set_run_id("7/3/2");
  batch.PutRun(RunKey(7, 3, 2), run);
  run.mutable_run()->set_run_id("7/3/-1");
  batch.PutRun(RunKey(7, 3, -1), run);
  run.mutable_run()->set_run_id("7/4/2");
  batch.PutRun(RunKey(7, 4, 2), run);
  run.mutable_run()->set_run_id("8/3/2");
  batch.PutRun(RunKey(8, 3, 2), run);
  batch.PutDue(2000, RunKey(7, 3, 2));
  batch.PutDue(1000, RunKey(8, 3, 2));
  batch.PutDue(3000, RunKey(7, 4, 2));
  batch.DeleteDue(3000, RunKey(7, 4, 2));
  storage::EntryRecord entry;
  entry.set_entry_seq(4);
  batch.PutEntry(7, entry);
  batch.PutApplied(5, 41);
  batch.PutRoundRobin(2, 3);
  v1::Task task;
  task.set_deal_id(7);
  task.set_responsible_id(11);
  for (int64_t id : {2, 1, 3}) {
    task.set_id(id);
    if (id == 3) task.set_deal_id(8);
    batch.PutTask(task);
  }
  ASSERT_OK(store->Write(batch));

  std::vector<std::string> ids;
  ASSERT_OK(store->ForEachRunOfEntry(
      7, 3, [&](const std::string&, storage::RunRecord& record) {
        ids.push_back(record.run().run_id());
        return true;
      }));
  // Job ids sort as signed numbers: the trigger's (-1) first.
  EXPECT_THAT(ids, ElementsAre("7/3/-1", "7/3/2"));
  std::vector<std::pair<int64_t, std::string>> due;
  ASSERT_OK(store->ForEachDue([&](int64_t micros, std::string key) {
    due.emplace_back(micros, std::move(key));
  }));
  EXPECT_THAT(
      due, ElementsAre(std::pair<int64_t, std::string>(1000, RunKey(8, 3, 2)),
                       std::pair<int64_t, std::string>(2000, RunKey(7, 3, 2))));
  storage::EntryRecord read_entry;
  ASSERT_OK_AND_ASSIGN(bool has_entry, store->GetEntry(7, &read_entry));
  EXPECT_TRUE(has_entry);
  EXPECT_EQ(read_entry.entry_seq(), 4);
  ASSERT_OK_AND_ASSIGN(has_entry, store->GetEntry(8, &read_entry));
  EXPECT_FALSE(has_entry);
  ASSERT_OK_AND_ASSIGN(int64_t applied, store->GetApplied(5));
  EXPECT_EQ(applied, 41);
  ASSERT_OK_AND_ASSIGN(applied, store->GetApplied(6));
  EXPECT_EQ(applied, 0);
  ASSERT_OK_AND_ASSIGN(int64_t picks, store->GetRoundRobin(2));
  EXPECT_EQ(picks, 3);

  std::vector<int64_t> deal_tasks, user_tasks;
  std::string first_key;
  ASSERT_OK(store->ForEachTaskId(
      /*by_deal=*/true, 7, "", [&](const std::string& key, int64_t id) {
        if (first_key.empty()) first_key = key;
        deal_tasks.push_back(id);
        return true;
      }));
  EXPECT_THAT(deal_tasks, ElementsAre(1, 2));
  ASSERT_OK(store->ForEachTaskId(
      /*by_deal=*/false, 11, "", [&](const std::string&, int64_t id) {
        user_tasks.push_back(id);
        return true;
      }));
  EXPECT_THAT(user_tasks, ElementsAre(1, 2, 3));
  // Paging: after the first index key comes the second task only.
  deal_tasks.clear();
  ASSERT_OK(store->ForEachTaskId(/*by_deal=*/true, 7, first_key,
                                 [&](const std::string&, int64_t id) {
                                   deal_tasks.push_back(id);
                                   return true;
                                 }));
  EXPECT_THAT(deal_tasks, ElementsAre(2));
}

TEST_F(AutomationStoreTest, AnUnreadableRunIsDataLossUnlessSkipped) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  AutomationStore::Batch batch(*store);
  storage::RunRecord run;
  run.mutable_run()->set_run_id("7/3/2");
  batch.PutRun(RunKey(7, 3, 2), run);
  ASSERT_OK(store->Write(batch));
  // A record that does not parse, written beside it through the raw
  // interface a corrupt disk would give.
  ASSERT_OK(store->WriteRawForTest(kRunsCf, RunKey(7, 3, 1), "\xff\xff"));
  auto count = [&](bool skip) {
    int seen = 0;
    absl::Status status = store->ForEachRunOfEntry(
        7, 3,
        [&](const std::string&, storage::RunRecord&) {
          ++seen;
          return true;
        },
        AutomationStore::RunScan{nullptr, skip});
    return std::make_pair(status, seen);
  };
  EXPECT_THAT(count(false).first, StatusIs(absl::StatusCode::kDataLoss));
  auto [status, seen] = count(true);
  EXPECT_OK(status);
  EXPECT_EQ(seen, 1);
  // A key the scan is told to skip is not read at all.
  const std::string bad_key = RunKey(7, 3, 1);
  int visited = 0;
  EXPECT_OK(store->ForEachRunOfEntry(
      7, 3,
      [&](const std::string&, storage::RunRecord&) {
        ++visited;
        return true;
      },
      AutomationStore::RunScan{
          [&](const std::string& key) { return key == bad_key; }, false}));
  EXPECT_EQ(visited, 1);
  // Newest first, a page that is full before the unreadable (older) record
  // ends there with more to come, unread.
  std::vector<std::string> keys;
  ASSERT_OK_AND_ASSIGN(bool more,
                       store->ForEachRunNewestFirst(
                           7, "", [&] { return keys.size() >= 1; },
                           [&](const std::string& key, storage::RunRecord&) {
                             keys.push_back(key);
                           }));
  EXPECT_TRUE(more);
  EXPECT_THAT(keys, ElementsAre(RunKey(7, 3, 2)));
  // Reading on from there meets it.
  EXPECT_THAT(store
                  ->ForEachRunNewestFirst(
                      7, keys[0], [] { return false; },
                      [](const std::string&, storage::RunRecord&) {})
                  .status(),
              StatusIs(absl::StatusCode::kDataLoss));
}

}  // namespace
}  // namespace crm::automation
