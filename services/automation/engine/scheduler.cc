#include "services/automation/engine/scheduler.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/time/clock.h"

namespace crm::automation {
namespace {

// Runs handed to the pool per look at the index.
constexpr size_t kMaxDispatch = 256;

}  // namespace

Scheduler::Scheduler(RunQueue& queue, const Clock& clock, int workers,
                     Execute execute)
    : queue_(queue),
      clock_(clock),
      workers_count_(std::max(1, workers)),
      execute_(std::move(execute)) {}

Scheduler::~Scheduler() { Stop(); }

void Scheduler::Start() {
  absl::MutexLock lock(&stop_mu_);
  common::WorkerPoolOptions pool;
  pool.threads = workers_count_;
  workers_ = std::make_unique<common::WorkerPool>(pool);
  thread_ = std::thread([this] { Loop(); });
}

void Scheduler::Stop() {
  absl::MutexLock lock(&stop_mu_);
  queue_.Stop();
  if (thread_.joinable()) thread_.join();
  if (workers_ != nullptr) {
    workers_->Shutdown();
    workers_.reset();
  }
}

void Scheduler::Loop() {
  absl::Duration wait = absl::ZeroDuration();
  while (true) {
    // Take what is due off the in-memory index (no RocksDB scan, so the
    // tombstones of consumed keys cost nothing here).
    std::vector<RunQueue::DueEntry> due;
    absl::Time now;
    absl::Time next;
    {
      absl::MutexLock lock(&queue_.mu());
      if (!queue_.AwaitWake(wait)) return;
      now = clock_.Now();
      // After a store failure: nothing starts until the hold ends, then the
      // due index is rebuilt from the store if it was asked for.
      const absl::Duration held = queue_.HeldFor();
      if (held > absl::ZeroDuration()) {
        wait = std::clamp(held, absl::Milliseconds(1), absl::Seconds(1));
        continue;
      }
      if (queue_.reload_wanted()) {
        if (absl::Status reloaded = queue_.Reload(); !reloaded.ok()) {
          queue_.StoreFailed("reload of the due index", reloaded,
                             /*reload=*/true);
          wait = absl::Milliseconds(1);
          continue;
        }
        queue_.ReloadDone();
      }
      due = queue_.TakeDue(absl::ToUnixMicros(now), kMaxDispatch);
      next = now + absl::Seconds(1);
      if (std::optional<int64_t> first = queue_.NextDueMicros())
        next = std::min(next, absl::FromUnixMicros(*first));
    }
    for (size_t i = 0; i < due.size(); ++i) {
      const std::string key = due[i].second;
      if (!workers_->TrySubmit([this, key] { execute_(key); })) {
        // Pool full: put the rest back and come back soon.
        absl::MutexLock lock(&queue_.mu());
        for (size_t j = i; j < due.size(); ++j) {
          queue_.Release(due[j].second);
          queue_.PutBack(due[j]);
        }
        next = now + absl::Milliseconds(50);
        break;
      }
    }
    wait = std::clamp(next - clock_.Now(), absl::Milliseconds(1),
                      absl::Seconds(1));
  }
}

}  // namespace crm::automation
