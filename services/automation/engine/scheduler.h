// Starts due runs: one thread watches the run queue's due index and hands
// each run that is due (by the engine's clock) to a bounded worker pool,
// putting back what the pool has no room for. Nothing starts while the
// store is held after a failure; a wanted reload of the due index happens
// here, retried until it succeeds.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

#include "common/concurrency/worker_pool.h"
#include "services/automation/engine/clock.h"
#include "services/automation/engine/run_queue.h"

namespace crm::automation {

class Scheduler {
 public:
  // Runs one run (marked in flight); it must release the run when done.
  using Execute = std::function<void(const std::string& run_key)>;

  Scheduler(RunQueue& queue, const Clock& clock, int workers, Execute execute);
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  void Start();
  // Stops taking runs and waits for the running ones to finish.
  void Stop();

 private:
  void Loop();

  RunQueue& queue_;
  const Clock& clock_;
  const int workers_count_;
  const Execute execute_;
  // Serialises Stop (the engine's and the destructor's, or two threads').
  absl::Mutex stop_mu_;
  // Set before the thread starts and reset only after it is joined, so the
  // loop reads it without the lock.
  std::unique_ptr<common::WorkerPool> workers_;
  std::thread thread_ ABSL_GUARDED_BY(stop_mu_);
};

}  // namespace crm::automation
