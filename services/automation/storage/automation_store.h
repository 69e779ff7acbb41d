// The automation service's RocksDB store. Column families:
//   rules           rule id                          -> v1::Rule
//   triggers        trigger id                       -> v1::Trigger
//   runs            deal id, entry seq, job id       -> RunRecord
//   due             due micros, run key              -> "" (scheduled runs)
//   entries         deal id                          -> EntryRecord
//   tasks           task id                          -> v1::Task
//   tasks_by_deal   deal id, task id                 -> ""
//   tasks_by_user   responsible id, task id          -> ""
//   notifications   user id, notification id         -> v1::Notification
//   meta            "counters" -> Counters, "applied/<shard>" -> sequence,
//                   "rr/<rule id>" -> round-robin position
// Job ids in run keys are rule ids (> 0) or minus the trigger id (< 0).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "google/protobuf/message.h"

#include "crm/automation/v1/automation.pb.h"

#include "common/rocks/rocks_options.h"
#include "services/automation/storage/automation_records.pb.h"

// RocksDB stays inside the store: its dependents never see it.
namespace rocksdb {
class ColumnFamilyHandle;
class Iterator;
class WriteBatch;
}  // namespace rocksdb
namespace crm::common {
class RocksDb;
}  // namespace crm::common

namespace crm::automation {

inline constexpr char kRulesCf[] = "rules";
inline constexpr char kTriggersCf[] = "triggers";
inline constexpr char kRunsCf[] = "runs";
inline constexpr char kDueCf[] = "due";
inline constexpr char kEntriesCf[] = "entries";
inline constexpr char kTasksCf[] = "tasks";
inline constexpr char kTasksByDealCf[] = "tasks_by_deal";
inline constexpr char kTasksByUserCf[] = "tasks_by_user";
inline constexpr char kNotificationsCf[] = "notifications";
inline constexpr char kMetaCf[] = "meta";

// The key of a run: deal id, entry sequence, job id (big-endian, so a
// deal's runs are contiguous and ordered by entry).
std::string RunKey(int64_t deal_id, int64_t entry_seq, int64_t job_id);
struct RunKeyParts {
  int64_t deal_id = 0;
  int64_t entry_seq = 0;
  int64_t job_id = 0;
};
std::optional<RunKeyParts> ParseRunKey(std::string_view key);
// "<deal>/<entry>/<rule>" or "<deal>/<entry>/t<trigger>".
std::string RunIdOf(const RunKeyParts& parts);
std::string DueKey(int64_t due_micros, std::string_view run_key);
// The run key inside a due key, and the due time.
bool ParseDueKey(std::string_view key, int64_t* due_micros,
                 std::string* run_key);
std::string AppliedKey(int32_t shard);
std::string RoundRobinKey(int64_t rule_id);

class AutomationStore {
 public:
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<AutomationStore>> Open(
      const std::string& path, const common::RocksOptions& options);
  ~AutomationStore();

  // Typed writes that go into the store together (Write or
  // WriteDeferringSync). Building a batch changes nothing.
  class Batch {
   public:
    explicit Batch(AutomationStore& store);
    ~Batch();
    Batch(Batch&&) noexcept;
    Batch& operator=(Batch&&) noexcept;

    void PutRule(const v1::Rule& rule);
    void DeleteRule(int64_t rule_id);
    void PutTrigger(const v1::Trigger& trigger);
    void DeleteTrigger(int64_t trigger_id);
    void PutRun(std::string_view run_key, const storage::RunRecord& record);
    void PutDue(int64_t due_micros, std::string_view run_key);
    void DeleteDue(int64_t due_micros, std::string_view run_key);
    void PutEntry(int64_t deal_id, const storage::EntryRecord& entry);
    void DeleteEntry(int64_t deal_id);
    void PutApplied(int32_t shard, int64_t sequence);
    void PutRoundRobin(int64_t rule_id, int64_t position);
    // The task and its entries in the by-deal and by-responsible indexes
    // (neither changes over a task's life).
    void PutTask(const v1::Task& task);
    void PutNotification(const v1::Notification& note);
    void PutMeta(std::string_view key, const google::protobuf::Message& value);
    void DeleteMeta(std::string_view key);

   private:
    friend class AutomationStore;
    void Put(std::string_view cf, std::string_view key, std::string value);
    AutomationStore* store_;
    std::unique_ptr<rocksdb::WriteBatch> batch_;
  };

  // Every write also stores the id counters when ids were handed out since
  // the last write that stored them, so a record written with an id never
  // outlives the counter that produced it.
  [[nodiscard]] absl::Status Write(Batch& batch);
  // See common::RocksDb::WriteDeferringSync.
  [[nodiscard]] absl::Status WriteDeferringSync(Batch& batch);
  [[nodiscard]] absl::Status SyncWal();

  // Typed reads: false (or 0) when absent, DATA_LOSS when unreadable.
  [[nodiscard]] absl::StatusOr<bool> GetRun(std::string_view run_key,
                                            storage::RunRecord* out) const;
  [[nodiscard]] absl::StatusOr<bool> GetEntry(int64_t deal_id,
                                              storage::EntryRecord* out) const;
  [[nodiscard]] absl::StatusOr<bool> GetTask(int64_t task_id,
                                             v1::Task* out) const;
  [[nodiscard]] absl::StatusOr<bool> GetMeta(
      std::string_view key, google::protobuf::Message* out) const;
  // The highest sequence of `shard` applied (0: none).
  [[nodiscard]] absl::StatusOr<int64_t> GetApplied(int32_t shard) const;
  // How many picks a round-robin rule made.
  [[nodiscard]] absl::StatusOr<int64_t> GetRoundRobin(int64_t rule_id) const;

  // Visits, in key order, the runs of one stage entry of a deal until
  // `visit` returns false. Keys `skip` names are passed over unread. An
  // unreadable record is DATA_LOSS, or with `skip_unreadable` logged and
  // passed over.
  struct RunScan {
    std::function<bool(const std::string& run_key)> skip;  // optional
    bool skip_unreadable = false;
  };
  [[nodiscard]] absl::Status ForEachRunOfEntry(
      int64_t deal_id, int64_t entry_seq,
      const std::function<bool(const std::string& run_key,
                               storage::RunRecord& record)>& visit,
      const RunScan& scan) const;
  [[nodiscard]] absl::Status ForEachRunOfEntry(
      int64_t deal_id, int64_t entry_seq,
      const std::function<bool(const std::string& run_key,
                               storage::RunRecord& record)>& visit) const {
    return ForEachRunOfEntry(deal_id, entry_seq, visit, RunScan());
  }
  // Visits the due index in order.
  [[nodiscard]] absl::Status ForEachDue(
      const std::function<void(int64_t due_micros, std::string run_key)>& visit)
      const;
  // Visits the ids of a deal's tasks (by_deal) or of a user's, in id order,
  // starting after the index key `after_key` (empty: from the first), until
  // `visit` returns false; each visit gets the index key, for paging.
  [[nodiscard]] absl::Status ForEachTaskId(
      bool by_deal, int64_t owner_id, const std::string& after_key,
      const std::function<bool(const std::string& index_key, int64_t task_id)>&
          visit) const;

  // Every rule, every trigger (at start). DATA_LOSS for an unreadable one.
  [[nodiscard]] absl::Status ForEachRule(
      const std::function<void(v1::Rule rule)>& visit) const;
  [[nodiscard]] absl::Status ForEachTrigger(
      const std::function<void(v1::Trigger trigger)>& visit) const;
  // Newest first: a deal's runs, a user's notifications, starting before
  // the key `after_key` (empty: from the newest); each visit gets the
  // record's key, for paging. Before each record `full()` is asked: true
  // ends the walk there, unread, and the answer is true (more remain);
  // false when the records ran out. DATA_LOSS for an unreadable record.
  [[nodiscard]] absl::StatusOr<bool> ForEachRunNewestFirst(
      int64_t deal_id, const std::string& after_key,
      const std::function<bool()>& full,
      const std::function<void(const std::string& key,
                               storage::RunRecord& record)>& visit) const;
  [[nodiscard]] absl::StatusOr<bool> ForEachNotificationNewestFirst(
      int64_t user_id, const std::string& after_key,
      const std::function<bool()>& full,
      const std::function<void(const std::string& key, v1::Notification& note)>&
          visit) const;

  // Fault injection, for tests of what the engine does when the store
  // fails: while set, the hook is asked before every read (GetProto,
  // GetInt), iterator and write, and a non-OK answer is what that call
  // reports (an iterator reports it from status() and is never valid).
  enum class Op { kRead, kIterate, kWrite };
  using FaultHook = std::function<absl::Status(Op op, std::string_view cf)>;
  void SetFaultHookForTest(FaultHook hook);
  // Writes raw bytes under a key, e.g. a record that does not parse.
  [[nodiscard]] absl::Status WriteRawForTest(std::string_view cf,
                                             std::string_view key,
                                             std::string_view value);

  // Id counters (the last id handed out). Thread-safe; an id is stored
  // with (or before) the write of the batch that uses it (see Write), and
  // stored counters only grow, since writes that carry them are ordered
  // by the same lock.
  int64_t NewRuleId();
  int64_t NewTriggerId();
  int64_t NewTaskId();
  int64_t NewNotificationId();
  int64_t NewRevision();

 private:
  AutomationStore();
  absl::Status Fault(Op op, std::string_view cf) const;
  rocksdb::ColumnFamilyHandle* cf(std::string_view name) const;
  absl::StatusOr<bool> GetProto(std::string_view cf, std::string_view key,
                                google::protobuf::Message* out) const;
  absl::StatusOr<int64_t> GetInt(std::string_view cf,
                                 std::string_view key) const;
  // An iterator over one column family; check its status() after the loop.
  std::unique_ptr<rocksdb::Iterator> NewIterator(std::string_view cf) const;
  // Every record of `cf` in key order ("unreadable <what> record").
  template <typename Record>
  absl::Status ForEachRecord(std::string_view cf, std::string_view what,
                             const std::function<void(Record)>& visit) const;
  // Records of `cf` whose keys start with `prefix`, newest (last) first.
  template <typename Record>
  absl::StatusOr<bool> ForEachNewestFirst(
      std::string_view cf, const std::string& prefix,
      const std::string& after_key, const std::function<bool()>& full,
      const std::function<void(const std::string& key, Record& record)>& visit)
      const;

  // Adds the counters to `batch` when they changed since they were last
  // stored, writes it with `write`, and records them as stored on success.
  absl::Status WriteWithCounters(
      Batch& batch,
      const std::function<absl::Status(rocksdb::WriteBatch*)>& write);

  std::unique_ptr<common::RocksDb> db_;
  absl::Mutex counters_mu_;
  storage::Counters counters_ ABSL_GUARDED_BY(counters_mu_);
  // Bumped by every New*Id; `stored_generation_` is the value last written.
  int64_t generation_ ABSL_GUARDED_BY(counters_mu_) = 0;
  int64_t stored_generation_ ABSL_GUARDED_BY(counters_mu_) = 0;
  std::atomic<bool> has_fault_hook_{false};
  mutable absl::Mutex fault_mu_;
  FaultHook fault_hook_ ABSL_GUARDED_BY(fault_mu_);
};

}  // namespace crm::automation
