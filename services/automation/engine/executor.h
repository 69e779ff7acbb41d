// Runs one due run and records its outcome. Before the attempt it checks,
// against the store, that the run is still wanted: a deal that entered
// another stage since cancels runs that have not started (and retries of
// changes to the deal, and trigger moves), a deleted trigger cancels its
// move, and an entry made by the run's own move (before a crash) means the
// run succeeded. After it, one write keeps the outcome together with what
// the run leaves (a task, a notification, completed tasks) and schedules a
// retry (doubling backoff with jitter; deals being away is waited out
// without limit) or the next rule of an after-previous chain.
#pragma once

#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/time/time.h"

#include "common/metrics/metrics.h"
#include "services/automation/engine/actions.h"
#include "services/automation/engine/catalog.h"
#include "services/automation/engine/clock.h"
#include "services/automation/engine/run_queue.h"
#include "services/automation/storage/automation_store.h"

namespace crm::automation {

struct ExecutorOptions {
  absl::TimeZone zone = absl::UTCTimeZone();
  // Outside calls (email, SMS, webhook): attempts before a run parks as
  // FAILED, and the backoff between them (doubling, +-20% jitter).
  int max_attempts = 5;
  absl::Duration retry_base = absl::Seconds(1);
  absl::Duration retry_max = absl::Minutes(5);
  // Calls to deals that fail for its unavailability retry without limit,
  // waiting at most this long between attempts.
  absl::Duration deals_retry_max = absl::Seconds(5);
  common::MetricsRegistry* metrics = nullptr;  // optional
};

class RunExecutor {
 public:
  RunExecutor(AutomationStore& store, RunQueue& queue, const Catalog& catalog,
              ActionRunner& actions, const Clock& clock,
              ExecutorOptions options);

  // Runs the run under `key` (the scheduler marked it in flight) and
  // records what came of it; releases the run either way.
  void Execute(const std::string& key);

 private:
  void Finish(const std::string& key, RunResult result);
  // Records the outcome (written, fsync deferred); false when nothing was
  // written.
  bool FinishLocked(const std::string& key, RunResult result)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(queue_.mu());

  AutomationStore& store_;
  RunQueue& queue_;
  const Catalog& catalog_;
  ActionRunner& actions_;
  const Clock& clock_;
  const ExecutorOptions options_;
};

}  // namespace crm::automation
