// The automation engine: takes deal events in (stage entries schedule the
// stage's rules, leaving a stage cancels what has not run, field and
// assignee changes fire triggers), runs due rules on a worker pool and keeps
// rules, triggers, tasks, the run log and notifications.
//
// Exactly-once internal effects: a run's change to a deal carries the run id
// as request id (deals applies a request id once); a run's own records (a
// task, a notification, completed tasks) are written in the same batch as
// its outcome. Outside effects (email, SMS, webhook) are at-least-once with
// the run id as idempotency key.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "google/protobuf/field_mask.pb.h"

#include "crm/automation/v1/automation.pb.h"
#include "crm/automation/v1/automation_service.pb.h"
#include "crm/deals/v1/deal_events.pb.h"

#include "common/concurrency/worker_pool.h"
#include "common/metrics/metrics.h"
#include "common/pipelines_client/pipeline_client.h"
#include "services/automation/clients/deals_client.h"
#include "services/automation/engine/catalog.h"
#include "services/automation/engine/clock.h"
#include "services/automation/outbound/smtp_sender.h"
#include "services/automation/storage/automation_store.h"

namespace crm::automation {

// What FireTrigger prefixes to a request id ("fire/") for its call to deals.
inline constexpr size_t kFireRequestIdReserved = 5;

struct EngineOptions {
  absl::TimeZone zone = absl::UTCTimeZone();
  SmtpServer smtp;
  std::string mail_from = "crm@localhost";
  // Empty: SendSms runs fail with a clear reason.
  std::string sms_gateway_url;
  // Webhook URLs are written by users: by default they may not reach
  // loopback, private or link-local addresses (the SMS gateway, set by the
  // operator, may).
  bool allow_private_webhooks = false;
  // Outside calls (email, SMS, webhook): attempts before a run parks as
  // FAILED, and the backoff between them (doubling, +-20% jitter).
  int max_attempts = 5;
  absl::Duration retry_base = absl::Seconds(1);
  absl::Duration retry_max = absl::Minutes(5);
  // Calls to deals that fail for its unavailability retry without limit,
  // waiting at most this long between attempts.
  absl::Duration deals_retry_max = absl::Seconds(5);
  // Automated moves of one deal (channel AUTOMATION or TRIGGER) in a row,
  // each within `loop_window` of the chain's start, past which the entered
  // stage's rules are not run (LOOP_STOPPED).
  int loop_max_depth = 10;
  absl::Duration loop_window = absl::Minutes(1);
  int workers = 4;
  absl::Duration outbound_timeout = absl::Seconds(10);
  // After the store fails a read or a write, runs are held back this long
  // (doubling while it keeps failing, at most 30 s) and the due index is
  // rebuilt from the store when it was read.
  absl::Duration store_retry = absl::Seconds(1);
  // Optional: counters of applied events and finished runs by outcome.
  common::MetricsRegistry* metrics = nullptr;
};

// A page of a keyed listing: items and the key of the last one.
template <typename T>
struct Page {
  std::vector<T> items;
  std::string last_key;
  bool more = false;
};

struct TaskQuery {
  int64_t deal_id = 0;
  int64_t responsible_id = 0;
  v1::Task::Status status = v1::Task::STATUS_UNSPECIFIED;
};

class AutomationEngine {
 public:
  AutomationEngine(AutomationStore& store, crm::common::PipelineClient& config,
                   DealsClient& deals, Clock& clock, EngineOptions options);
  ~AutomationEngine();
  AutomationEngine(const AutomationEngine&) = delete;
  AutomationEngine& operator=(const AutomationEngine&) = delete;

  // Loads rules and triggers, then starts the scheduler and workers.
  [[nodiscard]] absl::Status Start();
  // Waits for running runs to finish their current step.
  void Stop();

  // Applies consecutive events of one shard; returns the highest sequence
  // applied (events at or below the shard's applied sequence are skipped).
  [[nodiscard]] absl::StatusOr<int64_t> ApplyEvents(
      const google::protobuf::RepeatedPtrField<crm::deals::v1::DealEvent>&
          events);

  // Rules and triggers (see catalog.h).
  Catalog& catalog() { return catalog_; }
  const Catalog& catalog() const { return catalog_; }

  // Applies the matching triggers of the deal's pipeline now (outside
  // events); `only_trigger_id` restricts to one (incoming webhooks).
  [[nodiscard]] absl::StatusOr<v1::FireTriggerResponse> FireTrigger(
      int64_t deal_id, v1::TriggerType type, const std::string& app_code,
      const std::string& request_id, int64_t only_trigger_id = 0);

  [[nodiscard]] absl::StatusOr<Page<v1::Task>> ListTasks(
      const TaskQuery& query, const std::string& after_key, int limit) const;
  [[nodiscard]] absl::StatusOr<v1::Task> GetTask(int64_t task_id) const;
  [[nodiscard]] absl::StatusOr<v1::Task> CompleteTask(int64_t task_id);
  // Newest first.
  [[nodiscard]] absl::StatusOr<Page<v1::Run>> ListRuns(
      int64_t deal_id, const std::string& after_key, int limit) const;
  // Newest first.
  [[nodiscard]] absl::StatusOr<Page<v1::Notification>> ListNotifications(
      int64_t user_id, const std::string& after_key, int limit) const;

  // Nothing running and nothing due within `horizon` (tests wait for it;
  // quick retries count as pending work).
  bool Idle(absl::Duration horizon = absl::Seconds(1)) const;
  // Re-checks the due index now (after a clock move).
  void Wake();
  const Clock& clock() const { return clock_; }

 private:
  struct RunResult;

  // One write of the engine: the batch, and the edits of the in-memory due
  // index and snapshots that follow it. Commit applies them only once the
  // batch is written; a change that is dropped (an error before the write,
  // or a failed write) leaves memory as the store is.
  struct Change {
    rocksdb::WriteBatch batch;
    struct DueEdit {
      bool insert = false;
      std::pair<int64_t, std::string> entry;
    };
    std::vector<DueEdit> due;
    // nullopt erases.
    std::vector<std::pair<std::string, std::optional<crm::deals::v1::Deal>>>
        snapshots;
  };
  // Writes without waiting for the fsync (AutomationStore::
  // WriteDeferringSync): the caller syncs the WAL, outside the lock, before
  // it acknowledges anything.
  absl::Status Commit(Change& change) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The store failed `what`: log, count, hold runs back for a while and,
  // with `reload`, rebuild the due index from the store (the scheduler
  // retries that until it succeeds).
  void StoreFailed(const char* what, const absl::Status& status, bool reload)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Rebuilds due_ from the `due` column family (runs in flight excepted).
  absl::Status ReloadDueIndex() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  absl::Status ApplyEvent(const crm::deals::v1::DealEvent& event,
                          Change* change) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status EnterStage(const crm::deals::v1::DealEvent& event,
                          Change* change) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Cancels the entry's runs that have not started. The run whose id is
  // `moved_by_run` (the request id of the event that moved the deal out)
  // made that move: it is recorded as succeeded instead.
  absl::Status CancelPending(int64_t deal_id, int64_t entry_seq,
                             const std::string& reason, Change* change,
                             const std::string& moved_by_run = "")
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status EventTriggers(const crm::deals::v1::DealEvent& event,
                             Change* change) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The trigger that wins for `deal` among `candidates`, or null.
  const v1::Trigger* ChooseTrigger(
      const crm::deals::v1::Deal& deal,
      const std::vector<const v1::Trigger*>& candidates) const;
  void Schedule(storage::RunRecord* record, const std::string& key,
                absl::Time due, Change* change)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  void SchedulerLoop();
  void ExecuteRun(const std::string& key);
  RunResult Perform(const storage::RunRecord& record, const v1::Rule* rule,
                    std::optional<crm::deals::v1::Deal> snapshot);
  RunResult PerformRule(const storage::RunRecord& record, const v1::Rule& rule,
                        const crm::deals::v1::Deal& deal);
  void Finish(const std::string& key, RunResult result);
  // Records the outcome (written, fsync deferred); false when nothing was
  // written.
  bool FinishLocked(const std::string& key, RunResult result)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  AutomationStore& store_;
  crm::common::PipelineClient& config_;
  DealsClient& deals_;
  Clock& clock_;
  const EngineOptions options_;

  Catalog catalog_;

  // Serialises the engine's writes; guards the due index and snapshots.
  mutable absl::Mutex mu_;
  // The due index (`due` column family) in memory: (due micros, run key).
  std::set<std::pair<int64_t, std::string>> due_ ABSL_GUARDED_BY(mu_);
  // Runs handed to a worker and not finished.
  absl::flat_hash_set<std::string> in_flight_ ABSL_GUARDED_BY(mu_);
  // Deal as of the entry, for runs due at once (saves a GetDeal).
  absl::flat_hash_map<std::string, crm::deals::v1::Deal> snapshots_
      ABSL_GUARDED_BY(mu_);
  bool wake_ ABSL_GUARDED_BY(mu_) = false;
  // Set by StoreFailed: the due index is to be rebuilt from the store, and
  // no run starts before `hold_until_` (real time).
  bool reload_wanted_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time hold_until_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  absl::Duration hold_ ABSL_GUARDED_BY(mu_) = absl::ZeroDuration();
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;

  std::unique_ptr<common::WorkerPool> workers_;
  std::thread scheduler_;
};

}  // namespace crm::automation
