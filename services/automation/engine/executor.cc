#include "services/automation/engine/executor.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <optional>
#include <utility>

#include "absl/random/random.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

#include "common/log/log.h"
#include "common/time/proto_time.h"
#include "services/automation/domain/rules.h"
#include "services/automation/engine/runs.h"

namespace crm::automation {

namespace dv1 = ::crm::deals::v1;
using ::crm::common::ToTimestamp;

RunExecutor::RunExecutor(AutomationStore& store, RunQueue& queue,
                         const Catalog& catalog, ActionRunner& actions,
                         const Clock& clock, ExecutorOptions options)
    : store_(store),
      queue_(queue),
      catalog_(catalog),
      actions_(actions),
      clock_(clock),
      options_(options) {}

void RunExecutor::Execute(const std::string& key) {
  storage::RunRecord record;
  std::optional<v1::Rule> rule;
  std::optional<dv1::Deal> snapshot;
  std::string cancel_reason;
  bool already_done = false;
  {
    absl::MutexLock lock(&queue_.mu());
    absl::StatusOr<bool> found = store_.GetRun(key, &record);
    const bool runnable =
        found.ok() && *found && !IsTerminal(record.run().outcome()) &&
        record.due_micros() != 0 &&
        absl::FromUnixMicros(record.due_micros()) <= clock_.Now();
    if (!runnable) {
      queue_.Release(key);
      if (!found.ok()) {
        // The due index entry was taken off; it comes back from the store
        // with the reload, and the run is tried again.
        queue_.StoreFailed("read of a run", found.status(), /*reload=*/true);
      } else if (*found && !IsTerminal(record.run().outcome()) &&
                 record.due_micros() != 0) {
        // Not due after all (the wall clock stepped back): back in line.
        queue_.PutBack({record.due_micros(), key}, /*wake=*/true);
      }
      return;
    }
    if (record.run().rule_id() != 0) {
      if (Catalog::RulePtr found_rule =
              catalog_.FindRule(record.run().rule_id())) {
        rule = *found_rule;
      }
    }
    // The deal entered another stage (or this one again) since: runs that
    // have not started are cancelled, and so are retries of changes to the
    // deal and trigger moves, which would act on a deal that moved on.
    const int64_t expected_entry = record.run().trigger_id() != 0
                                       ? record.entry_at_schedule()
                                       : record.entry_seq();
    storage::EntryRecord entry;
    absl::StatusOr<bool> has_entry =
        store_.GetEntry(record.run().deal_id(), &entry);
    if (!has_entry.ok()) {
      // Whether the deal moved on is unknown: not now.
      queue_.Release(key);
      queue_.PutBack({record.due_micros(), key});
      queue_.StoreFailed("read of a stage entry", has_entry.status(),
                         /*reload=*/false);
      return;
    }
    const bool moved_on = expected_entry != 0 &&
                          (!*has_entry || entry.entry_seq() != expected_entry);
    const bool started = record.run().attempts() > 0;
    if (record.run().trigger_id() != 0 &&
        !catalog_.HasTrigger(record.run().trigger_id())) {
      cancel_reason = "the trigger was deleted before its move";
    }
    // The entry that replaced the run's own is the run's own move (made
    // before a crash; its event arrived while the run waited to go again).
    if (moved_on && *has_entry &&
        entry.entered_by_run() == record.run().run_id()) {
      already_done = true;
    }
    if (!already_done && cancel_reason.empty() && moved_on &&
        (!started || record.run().trigger_id() != 0 ||
         (rule.has_value() && ChangesDeal(rule->action())))) {
      cancel_reason = "the deal moved on before the run";
    }
    snapshot = queue_.TakeSnapshot(key);
  }
  if (already_done) {
    Finish(key, RunResult());  // succeeded
    return;
  }
  if (!cancel_reason.empty()) {
    RunResult cancelled;
    cancelled.outcome = v1::Run::OUTCOME_CANCELLED;
    cancelled.error = cancel_reason;
    Finish(key, std::move(cancelled));
    return;
  }
  Finish(key, actions_.Attempt(record, rule.has_value() ? &*rule : nullptr,
                               std::move(snapshot), clock_.Now()));
}

void RunExecutor::Finish(const std::string& key, RunResult result) {
  bool written = false;
  {
    absl::MutexLock lock(&queue_.mu());
    written = FinishLocked(key, std::move(result));
  }
  // Group commit: the outcome was written without waiting for its fsync
  // (under the lock, writes only queue behind each other, not behind the
  // disk); runs finishing together share this one. Nothing is acknowledged
  // before it: a later synced write (any user's) makes it durable too, and
  // an outcome lost in a crash means the run goes again (internal effects
  // once by run id, outside ones at least once).
  if (written) {
    if (absl::Status synced = store_.SyncWal(); !synced.ok()) {
      absl::MutexLock lock(&queue_.mu());
      queue_.StoreFailed("sync of a run's outcome", synced, /*reload=*/false);
    }
  }
}

bool RunExecutor::FinishLocked(const std::string& key, RunResult result) {
  const absl::Time now = clock_.Now();
  storage::RunRecord record;
  absl::StatusOr<bool> found = store_.GetRun(key, &record);
  if (!found.ok() || !*found) {
    queue_.Release(key);
    if (!found.ok()) queue_.StoreFailed("read of a run", found.status(), true);
    return false;
  }
  // Nothing of this finish is kept unless all of it is: on any failure the
  // run stays due as stored (its due key back in the index) and goes again
  // once the store answers.
  const int64_t stored_due = record.due_micros();
  auto put_back = [&](const absl::Status& status) {
    queue_.mu().AssertHeld();  // (the caller holds it)
    CRM_LOG(kError, "cannot record a run",
            {{"run_id", record.run().run_id()}, {"error", status.ToString()}});
    queue_.Release(key);
    if (stored_due != 0) queue_.PutBack({stored_due, key});
    return false;
  };
  auto abandon = [&](const char* what, const absl::Status& status) {
    queue_.mu().AssertHeld();
    queue_.StoreFailed(what, status, /*reload=*/false);
    return put_back(status);
  };
  v1::Run& run = *record.mutable_run();
  RunQueue::Change change = queue_.NewChange();
  AutomationStore::Batch& batch = change.batch();
  if (!run.has_start_time()) *run.mutable_start_time() = ToTimestamp(now);
  run.set_attempts(run.attempts() + 1);
  if (result.retry && result.counts)
    record.set_outside_attempts(record.outside_attempts() + 1);
  run.set_error(result.error);
  if (result.retry &&
      (!result.counts || record.outside_attempts() < options_.max_attempts)) {
    // Doubling backoff with +-20% jitter; deals outages retry forever but
    // no slower than deals_retry_max.
    const int exponent = std::min(
        (result.counts ? record.outside_attempts() : run.attempts()) - 1, 20);
    absl::Duration backoff = options_.retry_base * std::pow(2.0, exponent);
    backoff = std::min(
        backoff, result.counts ? options_.retry_max : options_.deals_retry_max);
    static thread_local absl::BitGen gen;
    backoff *= absl::Uniform(gen, 0.8, 1.2);
    run.set_outcome(v1::Run::OUTCOME_RETRYING);
    change.Schedule(&record, key, now + backoff, now);
    batch.PutRun(key, record);
  } else {
    if (result.retry) {
      result.outcome = v1::Run::OUTCOME_FAILED;
      run.set_error(absl::StrCat("gave up after ", record.outside_attempts(),
                                 " attempts: ", result.error));
    }
    run.set_outcome(result.outcome);
    *run.mutable_finish_time() = ToTimestamp(now);
    change.Unschedule(&record, key);
    if (result.task.has_value()) {
      result.task->set_id(store_.NewTaskId());
      batch.PutTask(*result.task);
    }
    if (result.complete_stage_tasks) {
      absl::Status task_read;
      absl::Status listed = store_.ForEachTaskId(
          /*by_deal=*/true, run.deal_id(), "",
          [&](const std::string&, int64_t task_id) {
            v1::Task task;
            absl::StatusOr<bool> got = store_.GetTask(task_id, &task);
            if (!got.ok()) {
              task_read = got.status();
              return false;
            }
            if (!*got || task.status() != v1::Task::STATUS_OPEN ||
                task.pipeline_id() != run.pipeline_id() ||
                task.stage_id() != run.stage_id()) {
              return true;
            }
            task.set_status(v1::Task::STATUS_COMPLETED);
            *task.mutable_complete_time() = ToTimestamp(now);
            batch.PutTask(task);
            return true;
          });
      if (!task_read.ok()) return abandon("read of a task", task_read);
      if (!listed.ok()) return abandon("listing of a deal's tasks", listed);
    }
    if (result.notification.has_value()) {
      result.notification->set_id(store_.NewNotificationId());
      batch.PutNotification(*result.notification);
    }
    batch.PutRun(key, record);
    // The next rule of the stage that waits for this one (and past it, any
    // that is skipped at once).
    int64_t finished_rule = run.rule_id();
    while (finished_rule != 0) {
      std::optional<std::pair<std::string, storage::RunRecord>> waiting;
      absl::Status listed = store_.ForEachRunOfEntry(
          run.deal_id(), record.entry_seq(),
          [&](const std::string& next_key, storage::RunRecord& next) {
            if (next.waiting_for_rule_id() == finished_rule &&
                next.run().outcome() == v1::Run::OUTCOME_SCHEDULED) {
              waiting.emplace(next_key, std::move(next));
              return false;
            }
            return true;
          },
          // Not retried: it would not read better next time.
          AutomationStore::RunScan{nullptr, /*skip_unreadable=*/true});
      if (!listed.ok()) {
        return abandon("listing of the stage's waiting runs", listed);
      }
      finished_rule = 0;
      if (!waiting.has_value()) break;
      auto& [next_key, next] = *waiting;
      if (!next.skip_reason().empty()) {
        next.set_waiting_for_rule_id(0);
        next.mutable_run()->set_outcome(v1::Run::OUTCOME_SKIPPED);
        next.mutable_run()->set_error(next.skip_reason());
        *next.mutable_run()->mutable_finish_time() = ToTimestamp(now);
        batch.PutRun(next_key, next);
        finished_rule = next.run().rule_id();
        continue;
      }
      absl::Time due = now;
      const Catalog::RulePtr rule = catalog_.FindRule(next.run().rule_id());
      if (next.fixed_due_micros() != 0) {
        due = absl::FromUnixMicros(next.fixed_due_micros());
      } else if (rule != nullptr) {
        // A delay (or nothing): from now.
        due = DueTime(rule->timing(), dv1::Deal(), now, options_.zone)
                  .value_or(now);
      }
      change.Schedule(&next, next_key, due, now);
      batch.PutRun(next_key, next);
    }
  }
  // (Commit counts a failed write itself.)
  if (absl::Status written = queue_.Commit(change); !written.ok()) {
    return put_back(written);
  }
  if (options_.metrics != nullptr) {
    std::string outcome = v1::Run::Outcome_Name(run.outcome());
    absl::AsciiStrToLower(&outcome);
    options_.metrics->IncrementCounter(
        absl::StrCat("crm_automation_runs_", outcome.substr(strlen("outcome_")),
                     "_total"),
        "Rule runs and trigger moves that reached this outcome (retries "
        "count each attempt).");
  }
  if (run.outcome() == v1::Run::OUTCOME_FAILED) {
    CRM_LOG(kWarning, "rule run failed",
            {{"run_id", run.run_id()}, {"error", run.error()}});
  }
  queue_.Release(key);
  return true;
}

}  // namespace crm::automation
