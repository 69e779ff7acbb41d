// The engine's memory of its runs: the due index (a mirror of the store's
// `due` column family: due micros and run key, read from the store only at
// start and after a store failure), the runs handed to a worker and not
// finished, the deal as it entered for runs due at once (saves a GetDeal),
// and the hold after a store failure.
//
// Its mutex also serialises the engine's writes (intake, a run's outcome,
// task changes): each is a Change, whose edits of the due index and
// snapshots Commit applies only once its batch is written, so a change
// that is dropped (an error before the write, or a failed write) leaves
// memory as the store is.
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

#include "crm/deals/v1/deal.pb.h"

#include "common/metrics/metrics.h"
#include "services/automation/storage/automation_store.h"

namespace crm::automation {

class RunQueue {
 public:
  using DueEntry = std::pair<int64_t, std::string>;  // due micros, run key

  // One write: the batch, and the edits of the due index and snapshots
  // that follow it.
  class Change {
   public:
    explicit Change(AutomationStore& store) : batch_(store) {}
    AutomationStore::Batch& batch() { return batch_; }

    // Puts the run on the due index at `due`, or at `now` when that is
    // past: keeping every due key at or after the moment it was written
    // lets the scheduler skip the consumed head of the index. Replaces the
    // run's earlier due key; the caller writes the record.
    void Schedule(storage::RunRecord* record, const std::string& key,
                  absl::Time due, absl::Time now);
    // Takes the run off the due index (the caller writes the record).
    void Unschedule(storage::RunRecord* record, const std::string& key);
    void KeepSnapshot(const std::string& key, crm::deals::v1::Deal deal);
    void DropSnapshot(const std::string& key);

   private:
    friend class RunQueue;
    struct DueEdit {
      bool insert = false;
      DueEntry entry;
    };
    AutomationStore::Batch batch_;
    std::vector<DueEdit> due_;
    // nullopt erases.
    std::vector<std::pair<std::string, std::optional<crm::deals::v1::Deal>>>
        snapshots_;
  };

  struct Options {
    // After the store fails a read or a write, runs are held back this long
    // (doubling while it keeps failing, at most 30 s).
    absl::Duration store_retry = absl::Seconds(1);
    size_t max_snapshots = 20000;
    common::MetricsRegistry* metrics = nullptr;  // optional
  };

  RunQueue(AutomationStore& store, Options options);
  RunQueue(const RunQueue&) = delete;
  RunQueue& operator=(const RunQueue&) = delete;

  absl::Mutex& mu() ABSL_LOCK_RETURNED(mu_) { return mu_; }
  Change NewChange() { return Change(store_); }

  // Writes without waiting for the fsync (AutomationStore::
  // WriteDeferringSync): the caller syncs the WAL, outside the lock, before
  // it acknowledges anything. A failed write counts as a store failure.
  absl::Status Commit(Change& change) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The store failed `what`: log, count, hold runs back for a while and,
  // with `reload`, have the due index rebuilt from the store (the
  // scheduler retries that until it succeeds).
  void StoreFailed(const char* what, const absl::Status& status, bool reload)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Rebuilds the due index from the store (runs in flight excepted).
  absl::Status Reload() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // -- Runs in flight.
  bool InFlight(const std::string& key) const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // The run's worker is done with it (finished, or not run after all).
  void Release(const std::string& key) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A run taken off the index goes back on it; with `wake`, the scheduler
  // looks at the index again at once.
  void PutBack(const DueEntry& entry, bool wake = false)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool HasRoomForSnapshot() const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  std::optional<crm::deals::v1::Deal> TakeSnapshot(const std::string& key)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // -- The scheduler's side.
  void Wake() ABSL_LOCKS_EXCLUDED(mu_);
  void Stop() ABSL_LOCKS_EXCLUDED(mu_);
  // Waits up to `timeout` for a wake-up (Commit of a change that scheduled
  // something, Wake, Stop) and clears it; false once stopping.
  bool AwaitWake(absl::Duration timeout) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // How much longer runs are held back after a store failure (0 if not).
  absl::Duration HeldFor() const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  bool reload_wanted() const ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    return reload_wanted_;
  }
  void ReloadDone() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    reload_wanted_ = false;
  }
  // Takes up to `max` runs due at or before `now_micros` off the index and
  // marks them in flight.
  std::vector<DueEntry> TakeDue(int64_t now_micros, size_t max)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // When the first run on the index is due.
  std::optional<int64_t> NextDueMicros() const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // Nothing in flight, no reload pending, nothing due before `until`.
  bool Idle(absl::Time until) const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  AutomationStore& store_;
  const Options options_;

  mutable absl::Mutex mu_;
  std::set<DueEntry> due_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<std::string> in_flight_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, crm::deals::v1::Deal> snapshots_
      ABSL_GUARDED_BY(mu_);
  bool wake_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // Set by StoreFailed: the due index is to be rebuilt from the store, and
  // no run starts before `hold_until_` (real time).
  bool reload_wanted_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time hold_until_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  absl::Duration hold_ ABSL_GUARDED_BY(mu_) = absl::ZeroDuration();
};

}  // namespace crm::automation
