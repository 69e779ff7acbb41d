// AutomationStore's id counters: stored with the writes that follow their
// use, never going back, across a reopen.
#include "services/automation/storage/automation_store.h"

#include <memory>
#include <string>

#include "gtest/gtest.h"

#include "common/rocks/rocks_db.h"
#include "common/status/status_matchers.h"
#include "common/testing/temp_dir.h"

namespace crm::automation {
namespace {

using Op = AutomationStore::Op;

class AutomationStoreTest : public ::testing::Test {
 protected:
  std::unique_ptr<AutomationStore> Open() {
    auto store = AutomationStore::Open(dir_.path(), common::RocksOptions());
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? *std::move(store) : nullptr;
  }

  // A write that carries no id of its own.
  static absl::Status WriteSomething(AutomationStore& store) {
    rocksdb::WriteBatch batch;
    store.PutInt(&batch, kMetaCf, "something", 1);
    return store.Write(&batch);
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
    rocksdb::WriteBatch batch;
    store->PutInt(&batch, kMetaCf, "other", 2);
    ASSERT_OK(store->WriteDeferringSync(&batch));
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

}  // namespace
}  // namespace crm::automation
