#include "common/rocks/rocks_db.h"

#include "gtest/gtest.h"

#include "common/status/status_matchers.h"
#include "common/testing/temp_dir.h"

namespace crm::common {
namespace {

using ::crm::testing::IsOk;
using ::crm::testing::StatusIs;
using ::testing::HasSubstr;

TEST(RocksDbTest, BatchAcrossColumnFamiliesSurvivesReopen) {
  crm::testing::TempDir dir;
  {
    ASSERT_OK_AND_ASSIGN(auto db, RocksDb::Open(dir.path(), {"a", "b"}, {}));
    rocksdb::WriteBatch batch;
    batch.Put(db->Handle("a"), "k1", "v1");
    batch.Put(db->Handle("b"), "k2", "v2");
    ASSERT_OK(db->Write(&batch));
  }
  RocksOptions options;
  options.sync_writes = true;
  ASSERT_OK_AND_ASSIGN(auto db, RocksDb::Open(dir.path(), {"a", "b"}, options));
  EXPECT_TRUE(db->sync_writes());
  ASSERT_OK_AND_ASSIGN(auto v1, db->Get(db->Handle("a"), "k1"));
  ASSERT_OK_AND_ASSIGN(auto v2, db->Get(db->Handle("b"), "k2"));
  ASSERT_OK_AND_ASSIGN(auto missing, db->Get(db->Handle("a"), "k2"));
  EXPECT_EQ(v1, "v1");
  EXPECT_EQ(v2, "v2");
  EXPECT_FALSE(missing.has_value());
}

TEST(RocksDbTest, RefusesStoreWithUnknownColumnFamily) {
  crm::testing::TempDir dir;
  {
    ASSERT_OK_AND_ASSIGN(auto db,
                         RocksDb::Open(dir.path(), {"a", "extra"}, {}));
  }
  EXPECT_THAT(
      RocksDb::Open(dir.path(), {"a"}, {}),
      StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("extra")));
}

TEST(RocksDbTest, MapsStatuses) {
  EXPECT_THAT(FromRocksStatus(rocksdb::Status::OK(), "x"), IsOk());
  EXPECT_THAT(FromRocksStatus(rocksdb::Status::Corruption("bad"), "x"),
              StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_THAT(FromRocksStatus(rocksdb::Status::Busy(), "x"),
              StatusIs(absl::StatusCode::kAborted));
  EXPECT_THAT(FromRocksStatus(rocksdb::Status::IOError("disk"), "x"),
              StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(FromRocksStatus(rocksdb::Status::InvalidArgument("oops"), "x"),
              StatusIs(absl::StatusCode::kInternal));
}

}  // namespace
}  // namespace crm::common
