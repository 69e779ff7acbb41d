// Durable storage of the deals service, with the transactional outbox.
//
// One change of a deal is one atomic RocksDB WriteBatch holding the deal
// record, the index entries that changed, the kanban column counters, the
// stage history entries and the deal event (outbox). The event exists if and
// only if the change committed.
//
// Group commit. The checks and bookkeeping of a commit (revision, request
// id, counters, sequences) run under one short lock against the store's
// latest state, including commits that are queued but not yet on disk; the
// commit then appends its operations to the open group batch. One committer
// at a time writes the open group as one RocksDB write (one WAL append, one
// fsync with sync_writes) while the next group fills, so concurrent commits
// share an fsync instead of queueing for one each. Groups are written in the
// order they were filled, so outbox sequence order is commit order. A
// commit returns only once its group is durable. If a group's write fails,
// that group and every commit queued behind it (checked against its state)
// fail with the write's error and the in-memory state is rebuilt from disk.
//
// Column families (keys from common/rocks/key_codec; stage ids and dates are
// validated before they get here, so they hold no 0 byte):
//   deals                int64 id                          -> DealRecord
//   deals_by_stage       int64 pipeline, stage, int64 id   -> ""
//   deals_by_assignee    int64 assignee, int64 id          -> ""
//   deals_by_close_date  close date, int64 id              -> ""
//   column_totals        int64 pipeline, stage             -> ColumnTotals
//   stage_history        int64 deal id, uint64 seq         -> StageHistoryEntry
//   outbox               uint64 sequence                   -> DealEvent
//   request_ids          request id                        -> RequestRecord
//   meta                 "sequences"                       -> Sequences
//                        "cursor/<subscriber>"             -> uint64 sequence
//
// The stored deal is the API message inside DealRecord: every field of the
// API is a stored field, and the record adds what the API does not show
// (revision). Fields evolve under the proto compatibility rules.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "rocksdb/write_batch.h"

#include "crm/deals/v1/deal.pb.h"
#include "crm/deals/v1/deal_events.pb.h"

#include "common/money/decimal_sum.h"
#include "common/rocks/rocks_db.h"
#include "services/deals/storage/deal_record.pb.h"

namespace crm::deals {

// The low 10 bits of a deal id are the shard that owns it.
inline constexpr int kShardBits = 10;
inline constexpr int64_t kMaxShard = (int64_t{1} << kShardBits) - 1;
inline int ShardOfDeal(int64_t deal_id) {
  return static_cast<int>(deal_id & kMaxShard);
}

// A walk over deal ids taken from one index range, for list scans: in id
// order (ascending or descending) unless said otherwise. One per request; not
// thread-safe. Reads a consistent view only per key, which is what lists
// need (a deal is re-read and re-checked after its id comes out).
class IdStream {
 public:
  virtual ~IdStream() = default;
  // The next id; false at the end or on error (then status() says which).
  virtual bool Next(int64_t* id) = 0;
  virtual absl::Status status() const = 0;
};

// Merges id streams that are each in the same order into one, in that
// order, dropping repeated ids.
std::unique_ptr<IdStream> MergeIdStreams(
    std::vector<std::unique_ptr<IdStream>> streams, bool descending);

// One change to commit.
struct DealWrite {
  // The stored state before the change; nullopt for a create.
  std::optional<crm::deals::storage::DealRecord> before;
  // The deal after the change; nullopt for a delete. Its id must be set
  // (AllocateDealId for a create); its etag is set by Commit.
  std::optional<v1::Deal> after;
  // Appended to the deal's history.
  std::vector<v1::StageHistoryEntry> history;
  // The event of the change, without event_id, sequence and shard (Commit
  // sets them) and without the deal (Commit copies `after`, or `before` for
  // a delete).
  std::optional<v1::DealEvent> event;
  // For an idempotent request: remembered with the deal id.
  std::string request_id;
  std::string request_fingerprint;
  // The pipeline-config version the change was checked against; the record
  // keeps the highest one (DealRecord.config_version).
  int64_t config_version = 0;
};

// The counters of one kanban column: deals and exact sums per currency.
struct ColumnCounters {
  int64_t count = 0;
  std::map<std::string, common::DecimalSum> sums;
};

struct CommitResult {
  // The stored revision of the deal (0 after a delete).
  int64_t revision = 0;
  // The event's sequence, 0 when there was none.
  int64_t event_sequence = 0;
  // The deal as stored (with its etag), when not deleted.
  std::optional<v1::Deal> deal;
};

class DealStore {
 public:
  // Opens or creates the store of `shard` (0..1023) under `path`.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<DealStore>> Open(
      const std::string& path, const common::RocksOptions& options, int shard);

  int shard() const { return shard_; }

  // A new deal id, unique forever on this shard ((seq << 10) | shard). Ids
  // allocated but never committed leave gaps, which is fine.
  [[nodiscard]] int64_t AllocateDealId();

  // The stored deal, or nullopt.
  [[nodiscard]] absl::StatusOr<std::optional<crm::deals::storage::DealRecord>>
  Get(int64_t deal_id) const;

  // The stored deals of `ids` (nullopt where absent), in the same order; one
  // batched lookup (RocksDB MultiGet), much cheaper than a Get per id.
  [[nodiscard]] absl::StatusOr<
      std::vector<std::optional<crm::deals::storage::DealRecord>>>
  GetMany(const std::vector<int64_t>& ids) const;

  // Commits the change atomically. ABORTED when `before` no longer matches
  // the stored revision (a concurrent write won) or a create finds the id
  // taken; ALREADY_EXISTS when `request_id` was used by an earlier commit
  // (a concurrent retry won: read it with FindRequest); INVALID_ARGUMENT
  // for an amount that is not an exact decimal.
  [[nodiscard]] absl::StatusOr<CommitResult> Commit(DealWrite write);

  // What a request id was used for, if anything.
  [[nodiscard]] absl::StatusOr<
      std::optional<crm::deals::storage::RequestRecord>>
  FindRequest(const std::string& request_id) const;

  // Remembers a request id that changes no deal (a change that turned out
  // to be a no-op, a batch's own id), with the same checks and durability
  // as a commit: ALREADY_EXISTS when the id is used already or by a queued
  // commit. Waits for queued commits of `record.deal_id()` first, like a
  // commit of that deal.
  [[nodiscard]] absl::Status RememberRequest(
      const std::string& request_id,
      const crm::deals::storage::RequestRecord& record);

  // Up to `limit` events with sequence >= `from`, in order.
  [[nodiscard]] absl::StatusOr<std::vector<v1::DealEvent>> ReadOutbox(
      int64_t from, int limit) const;
  // The same as stored bytes (serialized DealEvents), without parsing them:
  // stops after `limit` events or once the bytes reach `max_bytes` (the
  // first event always comes). `sequences` gets each event's sequence.
  [[nodiscard]] absl::Status ReadOutboxRaw(
      int64_t from, int limit, size_t max_bytes,
      std::vector<std::string>* events, std::vector<int64_t>* sequences) const;
  // The sequence the next event will get.
  int64_t next_event_sequence() const;
  // Deletes events that occurred before `cutoff` and whose sequence is at
  // most `max_sequence` (so that events a subscriber has not received yet
  // can be kept), in batches of at most `chunk` deletions each; returns how
  // many.
  [[nodiscard]] absl::StatusOr<int64_t> PruneOutbox(
      absl::Time cutoff, int64_t max_sequence = INT64_MAX, int chunk = 1000);

  // The delivery cursor of a subscriber: the highest sequence it applied
  // (0 = none). Kept in `meta` under "cursor/<name>".
  [[nodiscard]] absl::StatusOr<int64_t> GetCursor(
      const std::string& subscriber) const;
  // Not fsynced even with sync_writes: a cursor lost to a power cut only
  // makes the relay send events again, which subscribers drop by id.
  [[nodiscard]] absl::Status SetCursor(const std::string& subscriber,
                                       int64_t sequence);

  // History of a deal in order, entries after `after_seq` (0 = from the
  // start), up to `limit`; each with its sequence.
  [[nodiscard]] absl::StatusOr<
      std::vector<std::pair<uint64_t, v1::StageHistoryEntry>>>
  ReadHistory(int64_t deal_id, uint64_t after_seq, int limit) const;

  // Kanban counters of every column of a pipeline, keyed by stage id.
  [[nodiscard]] absl::StatusOr<std::map<std::string, ColumnCounters>>
  ColumnTotalsOf(int64_t pipeline_id) const;

  // How many deals a pipeline holds, or one of its stages when `stage_id` is
  // not empty; read from the column counters, never by scanning deals.
  [[nodiscard]] absl::StatusOr<int64_t> CountDeals(
      int64_t pipeline_id, const std::string& stage_id) const;

  // Deal ids in a stage, in id order, after `after_id` (0 = from the start).
  [[nodiscard]] absl::StatusOr<std::vector<int64_t>> IdsInStage(
      int64_t pipeline_id, const std::string& stage_id, int64_t after_id,
      int limit) const;

  // Streams over the indexes. `after_id` is an exclusive cursor in the
  // stream's direction (0 = from the start): ascending yields ids > after_id,
  // descending ids < after_id.
  std::unique_ptr<IdStream> StreamStage(int64_t pipeline_id,
                                        const std::string& stage_id,
                                        int64_t after_id,
                                        bool descending) const;
  std::unique_ptr<IdStream> StreamAssignee(int64_t assignee_id,
                                           int64_t after_id,
                                           bool descending) const;
  // Every deal of the shard.
  std::unique_ptr<IdStream> StreamAll(int64_t after_id, bool descending) const;
  // Deals whose close date is in [from, to] (inclusive "YYYY-MM-DD"; empty =
  // open end), ordered by (close date, id), NOT by id.
  std::unique_ptr<IdStream> StreamCloseDates(const std::string& from,
                                             const std::string& to) const;

  // The oldest retained event's sequence; next_event_sequence() when the
  // outbox is empty.
  [[nodiscard]] absl::StatusOr<int64_t> FirstRetainedSequence() const;

  // How many commits touched deals of the pipeline since this process
  // opened the store (in memory only). A reader that remembers the count
  // with something it derived from the pipeline's deals knows it is still
  // current while the count is unchanged. Thread-safe.
  int64_t PipelineWriteCount(int64_t pipeline_id) const;

  common::RocksDb& db() { return *db_; }

 private:
  DealStore(std::unique_ptr<common::RocksDb> db, int shard,
            crm::deals::storage::Sequences sequences);

  // The column's counters including queued commits, loaded on first use.
  absl::StatusOr<crm::deals::storage::ColumnTotals*> CachedColumn(
      const std::string& key) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The stored revision of a deal including queued commits (0 = absent).
  absl::StatusOr<int64_t> LatestRevision(int64_t deal_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A commit waiting for its group.
  struct Waiter {
    bool done = false;
    absl::Status status;
  };
  // Waits until the waiter's group is durable (or failed), writing groups
  // itself whenever no other committer is.
  absl::Status AwaitGroup(Waiter* waiter) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Returns once no queued commit touches the deal or the request id.
  void AwaitNotPending(int64_t deal_id, const std::string& request_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Writes the open group; releases mu_ during the write.
  void WriteOpenGroup() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  std::unique_ptr<common::RocksDb> db_;
  const int shard_;

  mutable absl::Mutex mu_;
  // Latest state, including queued commits.
  crm::deals::storage::Sequences sequences_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, crm::deals::storage::ColumnTotals> columns_
      ABSL_GUARDED_BY(mu_);
  // Deals and request ids of queued commits: deal -> (revision, 0 after a
  // delete, and the group that writes it); request id -> group.
  struct PendingRevision {
    int64_t revision = 0;
    uint64_t generation = 0;
  };
  std::map<int64_t, PendingRevision> pending_revisions_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, uint64_t> pending_requests_ ABSL_GUARDED_BY(mu_);
  // The open group: its batch, the deals and request ids in it.
  std::unique_ptr<rocksdb::WriteBatch> open_batch_ ABSL_GUARDED_BY(mu_);
  std::vector<int64_t> open_deals_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> open_requests_ ABSL_GUARDED_BY(mu_);
  std::vector<Waiter*> open_waiters_ ABSL_GUARDED_BY(mu_);
  uint64_t open_generation_ ABSL_GUARDED_BY(mu_) = 1;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;

  mutable absl::Mutex write_counts_mu_;
  std::map<int64_t, int64_t> write_counts_ ABSL_GUARDED_BY(write_counts_mu_);
};

}  // namespace crm::deals
