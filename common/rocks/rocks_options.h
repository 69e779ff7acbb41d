// How a store opens RocksDB; apart from rocks_db.h so that a store's header
// can take the options without exposing RocksDB to its dependents.
#pragma once

#include <cstddef>

namespace crm::common {

struct RocksOptions {
  bool sync_writes = false;
  // Shared block cache for all column families.
  size_t block_cache_bytes = 64u << 20;
  // Budget of all memtables together (a full memtable is flushed early when
  // the budget is reached); each one is at most a quarter of it.
  size_t memtable_bytes = 64u << 20;
  // Cache of whole key-value pairs for point reads (0 = none): a hit skips
  // the index and data block search.
  size_t row_cache_bytes = 0;
};

}  // namespace crm::common
