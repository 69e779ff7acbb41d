// RAII RocksDB with column families, and the one rocksdb::Status ->
// absl::Status mapping.
//
//   CRM_ASSIGN_OR_RETURN(std::unique_ptr<RocksDb> db,
//                        RocksDb::Open(dir, {"pipelines", "stages"}, {}));
//   rocksdb::WriteBatch batch;
//   batch.Put(db->Handle("pipelines"), key, value);
//   CRM_RETURN_IF_ERROR(db->Write(&batch));
//
// The WAL is always on: a write that returned OK survives a process crash.
// With `sync_writes` every write also fsyncs the WAL (RocksDB groups
// concurrent writers into one fsync), so it survives power loss too.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "rocksdb/db.h"
#include "rocksdb/write_batch.h"

#include "common/rocks/rocks_options.h"

namespace crm::common {

// Maps a RocksDB status: NotFound -> NOT_FOUND, Corruption -> DATA_LOSS,
// Busy/TryAgain -> ABORTED, IOError/Incomplete/TimedOut -> UNAVAILABLE, and
// InvalidArgument/NotSupported (our bug, not the caller's) -> INTERNAL.
absl::Status FromRocksStatus(const rocksdb::Status& status,
                             std::string_view what);

class RocksDb {
 public:
  // Opens (creating if missing) the database at `path` with the "default"
  // column family plus `column_families`. Fails with FAILED_PRECONDITION if
  // the store on disk holds a column family this code does not know.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<RocksDb>> Open(
      const std::string& path, const std::vector<std::string>& column_families,
      const RocksOptions& options);

  RocksDb(const RocksDb&) = delete;
  RocksDb& operator=(const RocksDb&) = delete;
  ~RocksDb();

  // The handle of a column family passed to Open. REQUIRES: a known name.
  rocksdb::ColumnFamilyHandle* Handle(std::string_view name) const;

  // Commits a batch atomically across column families.
  [[nodiscard]] absl::Status Write(rocksdb::WriteBatch* batch);
  // Group commit for one caller's run of writes: writes without waiting for
  // the fsync; SyncWal (a no-op unless writes are synced) then makes every
  // write before it durable with one fsync. Acknowledge nothing written
  // this way before SyncWal has returned OK.
  [[nodiscard]] absl::Status WriteDeferringSync(rocksdb::WriteBatch* batch);
  [[nodiscard]] absl::Status SyncWal();

  // The value under `key`, or nullopt when absent.
  [[nodiscard]] absl::StatusOr<std::optional<std::string>> Get(
      rocksdb::ColumnFamilyHandle* cf, std::string_view key) const;

  std::unique_ptr<rocksdb::Iterator> NewIterator(
      rocksdb::ColumnFamilyHandle* cf,
      const rocksdb::ReadOptions& options = rocksdb::ReadOptions()) const;

  rocksdb::DB* db() const { return db_; }
  bool sync_writes() const { return write_options_.sync; }

 private:
  RocksDb() = default;

  rocksdb::DB* db_ = nullptr;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
  std::vector<std::string> names_;
  rocksdb::WriteOptions write_options_;
};

}  // namespace crm::common
