#include "common/rocks/rocks_db.h"

#include <algorithm>
#include <filesystem>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "rocksdb/cache.h"
#include "rocksdb/filter_policy.h"
#include "rocksdb/options.h"
#include "rocksdb/table.h"
#include "rocksdb/write_buffer_manager.h"

namespace crm::common {

absl::Status FromRocksStatus(const rocksdb::Status& status,
                             std::string_view what) {
  if (status.ok()) return absl::OkStatus();
  const std::string message =
      absl::StrCat(std::string(what), ": ", status.ToString());
  switch (status.code()) {
    case rocksdb::Status::kNotFound:
      return absl::NotFoundError(message);
    case rocksdb::Status::kCorruption:
      return absl::DataLossError(message);
    case rocksdb::Status::kBusy:
    case rocksdb::Status::kTryAgain:
      return absl::AbortedError(message);
    case rocksdb::Status::kIOError:
    case rocksdb::Status::kIncomplete:
    case rocksdb::Status::kTimedOut:
      return absl::UnavailableError(message);
    default:
      return absl::InternalError(message);
  }
}

absl::StatusOr<std::unique_ptr<RocksDb>> RocksDb::Open(
    const std::string& path, const std::vector<std::string>& column_families,
    const RocksOptions& options) {
  rocksdb::Options db_options;
  db_options.create_if_missing = true;
  db_options.create_missing_column_families = true;
  db_options.IncreaseParallelism(2);
  db_options.max_open_files = 512;

  // Memory stays bounded whatever the data size: every memtable counts
  // against one budget, and index and filter blocks live in the block cache
  // (the hot ones pinned) instead of growing with the number of files.
  db_options.write_buffer_manager =
      std::make_shared<rocksdb::WriteBufferManager>(options.memtable_bytes);
  if (options.row_cache_bytes > 0)
    db_options.row_cache = rocksdb::NewLRUCache(options.row_cache_bytes);
  rocksdb::BlockBasedTableOptions table_options;
  table_options.block_cache = rocksdb::NewLRUCache(options.block_cache_bytes);
  table_options.cache_index_and_filter_blocks = true;
  table_options.pin_l0_filter_and_index_blocks_in_cache = true;
  table_options.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  rocksdb::ColumnFamilyOptions cf_options(db_options);
  cf_options.write_buffer_size = options.memtable_bytes / 4;
  cf_options.table_factory.reset(
      rocksdb::NewBlockBasedTableFactory(table_options));

  std::vector<std::string> names = {rocksdb::kDefaultColumnFamilyName};
  for (const auto& name : column_families) {
    if (std::find(names.begin(), names.end(), name) == names.end())
      names.push_back(name);
  }

  // Refuse a store written by code that knew more column families: opening
  // it would silently ignore data.
  std::vector<std::string> existing;
  const rocksdb::Status list_status =
      rocksdb::DB::ListColumnFamilies(db_options, path, &existing);
  if (list_status.ok()) {
    std::vector<std::string> unknown;
    for (const auto& name : existing) {
      if (std::find(names.begin(), names.end(), name) == names.end())
        unknown.push_back(name);
    }
    if (!unknown.empty()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "store at ", path,
          " has unknown column families: ", absl::StrJoin(unknown, ", ")));
    }
  }

  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  descriptors.reserve(names.size());
  for (const auto& name : names) descriptors.emplace_back(name, cf_options);

  // RocksDB creates only the last level of the path; a fresh data folder
  // ("./var/deals" with no ./var yet) should just work.
  std::error_code mkdir_error;
  std::filesystem::create_directories(path, mkdir_error);
  if (mkdir_error) {
    return absl::UnavailableError(
        absl::StrCat("open ", path, ": ", mkdir_error.message()));
  }
  auto db = std::unique_ptr<RocksDb>(new RocksDb());
  rocksdb::DBOptions open_options(db_options);
  const rocksdb::Status status = rocksdb::DB::Open(
      open_options, path, descriptors, &db->handles_, &db->db_);
  if (!status.ok()) return FromRocksStatus(status, absl::StrCat("open ", path));
  db->names_ = std::move(names);
  db->write_options_.sync = options.sync_writes;
  return db;
}

RocksDb::~RocksDb() {
  if (db_ == nullptr) return;
  for (auto* handle : handles_) {
    // Destroying a handle only fails for the default one, which is fine.
    static_cast<void>(db_->DestroyColumnFamilyHandle(handle));
  }
  handles_.clear();
  static_cast<void>(db_->Close());  // Reason: nothing to do on a close error.
  delete db_;
}

rocksdb::ColumnFamilyHandle* RocksDb::Handle(std::string_view name) const {
  for (size_t i = 0; i < names_.size(); ++i) {
    if (names_[i] == name) return handles_[i];
  }
  return nullptr;
}

absl::Status RocksDb::Write(rocksdb::WriteBatch* batch) {
  return FromRocksStatus(db_->Write(write_options_, batch), "write");
}

absl::Status RocksDb::WriteDeferringSync(rocksdb::WriteBatch* batch) {
  rocksdb::WriteOptions options = write_options_;
  options.sync = false;
  return FromRocksStatus(db_->Write(options, batch), "write");
}

absl::Status RocksDb::SyncWal() {
  if (!write_options_.sync) return absl::OkStatus();
  return FromRocksStatus(db_->SyncWAL(), "wal sync");
}

absl::StatusOr<std::optional<std::string>> RocksDb::Get(
    rocksdb::ColumnFamilyHandle* cf, std::string_view key) const {
  std::string value;
  const rocksdb::Status status =
      db_->Get(rocksdb::ReadOptions(), cf,
               rocksdb::Slice(key.data(), key.size()), &value);
  if (status.IsNotFound()) return std::optional<std::string>();
  if (!status.ok()) return FromRocksStatus(status, "get");
  return std::optional<std::string>(std::move(value));
}

std::unique_ptr<rocksdb::Iterator> RocksDb::NewIterator(
    rocksdb::ColumnFamilyHandle* cf,
    const rocksdb::ReadOptions& options) const {
  return std::unique_ptr<rocksdb::Iterator>(db_->NewIterator(options, cf));
}

}  // namespace crm::common
