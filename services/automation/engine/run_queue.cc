#include "services/automation/engine/run_queue.h"

#include <algorithm>

#include "absl/time/clock.h"

#include "common/log/log.h"
#include "common/status/status_macros.h"
#include "common/time/proto_time.h"

namespace crm::automation {

void RunQueue::Change::Schedule(storage::RunRecord* record,
                                const std::string& key, absl::Time due,
                                absl::Time now) {
  due = std::max(due, now);
  Unschedule(record, key);
  record->set_due_micros(absl::ToUnixMicros(due));
  due_.push_back({true, {record->due_micros(), key}});
  record->set_waiting_for_rule_id(0);
  *record->mutable_run()->mutable_scheduled_time() = common::ToTimestamp(due);
  batch_.PutDue(record->due_micros(), key);
}

void RunQueue::Change::Unschedule(storage::RunRecord* record,
                                  const std::string& key) {
  if (record->due_micros() != 0) {
    batch_.DeleteDue(record->due_micros(), key);
    due_.push_back({false, {record->due_micros(), key}});
  }
  record->set_due_micros(0);
}

void RunQueue::Change::KeepSnapshot(const std::string& key,
                                    crm::deals::v1::Deal deal) {
  snapshots_.emplace_back(key, std::move(deal));
}

void RunQueue::Change::DropSnapshot(const std::string& key) {
  snapshots_.emplace_back(key, std::nullopt);
}

RunQueue::RunQueue(AutomationStore& store, Options options)
    : store_(store), options_(options) {}

absl::Status RunQueue::Commit(Change& change) {
  if (absl::Status written = store_.WriteDeferringSync(change.batch_);
      !written.ok()) {
    StoreFailed("write", written, /*reload=*/false);
    return written;
  }
  for (Change::DueEdit& edit : change.due_) {
    if (edit.insert) {
      due_.insert(std::move(edit.entry));
    } else {
      due_.erase(edit.entry);
    }
  }
  for (auto& [key, deal] : change.snapshots_) {
    if (deal.has_value()) {
      snapshots_[key] = std::move(*deal);
    } else {
      snapshots_.erase(key);
    }
  }
  if (!change.due_.empty()) wake_ = true;
  hold_ = absl::ZeroDuration();
  return absl::OkStatus();
}

void RunQueue::StoreFailed(const char* what, const absl::Status& status,
                           bool reload) {
  hold_ = std::clamp(hold_ * 2, options_.store_retry, absl::Seconds(30));
  hold_until_ = absl::Now() + hold_;
  if (reload) reload_wanted_ = true;
  wake_ = true;
  CRM_LOG(kError, "automation store failed; runs wait",
          {{"op", what},
           {"error", status.ToString()},
           {"retry_in", absl::FormatDuration(hold_)}});
  if (options_.metrics != nullptr) {
    options_.metrics->IncrementCounter(
        "crm_automation_store_failures_total",
        "Reads and writes of the automation store that failed; runs wait "
        "and are retried.");
  }
}

absl::Status RunQueue::Reload() {
  std::vector<DueEntry> stored;
  CRM_RETURN_IF_ERROR(store_.ForEachDue([&](int64_t micros, std::string key) {
    stored.emplace_back(micros, std::move(key));
  }));
  std::set<DueEntry> due;
  for (DueEntry& entry : stored) {
    // Running ones are back in the index when they finish or retry.
    if (!in_flight_.contains(entry.second)) due.insert(std::move(entry));
  }
  due_ = std::move(due);
  wake_ = true;
  return absl::OkStatus();
}

bool RunQueue::InFlight(const std::string& key) const {
  return in_flight_.contains(key);
}

void RunQueue::Release(const std::string& key) { in_flight_.erase(key); }

void RunQueue::PutBack(const DueEntry& entry, bool wake) {
  due_.insert(entry);
  if (wake) wake_ = true;
}

bool RunQueue::HasRoomForSnapshot() const {
  return snapshots_.size() < options_.max_snapshots;
}

std::optional<crm::deals::v1::Deal> RunQueue::TakeSnapshot(
    const std::string& key) {
  auto it = snapshots_.find(key);
  if (it == snapshots_.end()) return std::nullopt;
  std::optional<crm::deals::v1::Deal> deal = std::move(it->second);
  snapshots_.erase(it);
  return deal;
}

void RunQueue::Wake() {
  absl::MutexLock lock(&mu_);
  wake_ = true;
}

void RunQueue::Stop() {
  absl::MutexLock lock(&mu_);
  stopping_ = true;
  wake_ = true;
}

bool RunQueue::AwaitWake(absl::Duration timeout) {
  if (timeout > absl::ZeroDuration())
    mu_.AwaitWithTimeout(absl::Condition(&wake_), timeout);
  wake_ = false;
  return !stopping_;
}

absl::Duration RunQueue::HeldFor() const {
  return std::max(hold_until_ - absl::Now(), absl::ZeroDuration());
}

std::vector<RunQueue::DueEntry> RunQueue::TakeDue(int64_t now_micros,
                                                  size_t max) {
  std::vector<DueEntry> taken;
  while (!due_.empty() && due_.begin()->first <= now_micros &&
         taken.size() < max) {
    auto head = due_.extract(due_.begin());
    if (in_flight_.insert(head.value().second).second)
      taken.push_back(std::move(head.value()));
  }
  return taken;
}

std::optional<int64_t> RunQueue::NextDueMicros() const {
  if (due_.empty()) return std::nullopt;
  return due_.begin()->first;
}

bool RunQueue::Idle(absl::Time until) const {
  absl::ReaderMutexLock lock(&mu_);
  if (!in_flight_.empty() || reload_wanted_) return false;
  return due_.empty() || absl::FromUnixMicros(due_.begin()->first) > until;
}

}  // namespace crm::automation
