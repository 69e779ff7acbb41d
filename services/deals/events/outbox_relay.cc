#include "services/deals/events/outbox_relay.h"

#include <pthread.h>

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

#include "common/log/log.h"
#include "common/status/status_macros.h"

namespace crm::deals {
namespace {

// Refusals that say nothing about the batch itself: waiting helps, a
// smaller batch does not.
bool SaysNothingAboutTheBatch(absl::StatusCode code) {
  return code == absl::StatusCode::kUnavailable ||
         code == absl::StatusCode::kUnauthenticated ||
         code == absl::StatusCode::kPermissionDenied ||
         code == absl::StatusCode::kCancelled;
}

// A metric name part from a subscriber name: [a-z0-9_] only.
std::string MetricPart(const std::string& name) {
  std::string out;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
    if (c >= 'A' && c <= 'Z') {
      out.push_back(static_cast<char>(c - 'A' + 'a'));
    } else {
      out.push_back(ok ? c : '_');
    }
  }
  return out;
}

}  // namespace

OutboxRelay::OutboxRelay(DealStore& store, std::string subscriber,
                         DealEventPublisher& publisher, RelayOptions options)
    : store_(store),
      subscriber_(std::move(subscriber)),
      publisher_(publisher),
      options_(options) {
  metric_prefix_ = absl::StrCat("crm_deals_relay_", MetricPart(subscriber_));
  limit_ = std::max(1, options_.batch_size);
}

OutboxRelay::~OutboxRelay() { Stop(); }

void OutboxRelay::Start() {
  thread_ = std::thread([this] { Run(); });
  // "relay-<subscriber>" in top and /proc (at most 15 characters).
  pthread_setname_np(thread_.native_handle(),
                     ("relay-" + subscriber_).substr(0, 15).c_str());
}

void OutboxRelay::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void OutboxRelay::Notify() {
  absl::MutexLock lock(&mu_);
  notified_ = true;
}

int64_t OutboxRelay::failures() const {
  absl::MutexLock lock(&mu_);
  return failures_;
}

int64_t OutboxRelay::stuck_sequence() const {
  absl::MutexLock lock(&mu_);
  return stuck_sequence_;
}

void OutboxRelay::Export(const char* name, const char* help, double value,
                         bool counter) {
  if (options_.metrics == nullptr) return;
  const std::string full = absl::StrCat(metric_prefix_, "_", name);
  if (counter) {
    options_.metrics->IncrementCounter(full, help, value);
  } else {
    options_.metrics->SetGauge(full, help, value);
  }
}

absl::StatusOr<int> OutboxRelay::DeliverOnce() {
  if (cursor_ < 0) {
    CRM_ASSIGN_OR_RETURN(cursor_, store_.GetCursor(subscriber_));
    stored_cursor_ = cursor_;
  }
  const int64_t cursor = cursor_;
  EventBatch batch;
  CRM_RETURN_IF_ERROR(store_.ReadOutboxRaw(cursor + 1, limit_,
                                           options_.batch_bytes, &batch.events,
                                           &batch.sequences));
  Export("lag_events", "Events committed but not yet applied by the subscriber.",
         static_cast<double>(store_.next_event_sequence() - 1 - cursor), false);
  if (batch.events.empty()) return 0;
  if (batch.sequences.front() != cursor + 1) {
    // Retention removed events this subscriber never got: it must catch up
    // from elsewhere (e.g. rebuild); say so loudly and go on.
    CRM_LOG(kWarning, "outbox events expired before delivery",
            {{"subscriber", subscriber_},
             {"from", absl::StrCat(cursor + 1)},
             {"to", absl::StrCat(batch.sequences.front() - 1)}});
  }
  const int64_t first = batch.sequences.front();
  const int64_t last = batch.sequences.back();
  absl::StatusOr<int64_t> applied = publisher_.Deliver(batch);
  if (!applied.ok()) {
    Export("delivery_failures_total", "Deliveries the subscriber refused.", 1,
           true);
    failing_attempts_ = failing_since_ == first ? failing_attempts_ + 1 : 1;
    failing_since_ = first;
    if (batch.events.size() > 1 &&
        !SaysNothingAboutTheBatch(applied.status().code())) {
      // Maybe this batch is the problem (too large, one bad event): try
      // fewer events next time, down to one.
      limit_ = std::max(1, static_cast<int>(batch.events.size()) / 2);
      shrunk_ = true;
    } else if (batch.events.size() == 1 &&
               !SaysNothingAboutTheBatch(applied.status().code())) {
      CRM_LOG(kError, "the subscriber refuses an event; retrying it",
              {{"subscriber", subscriber_},
               {"event_id", absl::StrCat(store_.shard(), "-", first)},
               {"sequence", absl::StrCat(first)},
               {"attempts", absl::StrCat(failing_attempts_)},
               {"bytes", absl::StrCat(batch.bytes())},
               {"error", applied.status().ToString()}});
    }
    Export("stuck_sequence",
           "First sequence of a delivery that keeps failing (0 = flowing).",
           static_cast<double>(first), false);
    absl::MutexLock lock(&mu_);
    ++failures_;
    stuck_sequence_ = first;
    return applied.status();
  }
  // A subscriber may apply a prefix; it can never apply more than it got.
  const int64_t new_cursor = std::min(*applied, last);
  if (failing_since_ != 0) {
    failing_since_ = 0;
    failing_attempts_ = 0;
    Export("stuck_sequence",
           "First sequence of a delivery that keeps failing (0 = flowing).", 0,
           false);
    absl::MutexLock lock(&mu_);
    stuck_sequence_ = 0;
  }
  // Grow back step by step: a subscriber that refused a larger batch is
  // not sent one again at once.
  limit_ = std::min(std::max(1, options_.batch_size), limit_ * 2);
  if (new_cursor <= cursor) return 0;
  cursor_ = new_cursor;
  if (absl::Now() - cursor_stored_at_ >= options_.cursor_flush) {
    CRM_RETURN_IF_ERROR(FlushCursor());
  }
  int delivered = 0;
  for (int64_t sequence : batch.sequences)
    delivered += sequence <= new_cursor ? 1 : 0;
  Export("delivered_events_total", "Events the subscriber applied.", delivered,
         true);
  Export("deliveries_total", "Successful deliveries.", 1, true);
  return delivered;
}

absl::Status OutboxRelay::FlushCursor() {
  if (cursor_ < 0 || cursor_ == stored_cursor_) return absl::OkStatus();
  CRM_RETURN_IF_ERROR(store_.SetCursor(subscriber_, cursor_));
  stored_cursor_ = cursor_;
  cursor_stored_at_ = absl::Now();
  return absl::OkStatus();
}

void OutboxRelay::Run() {
  absl::Duration backoff = options_.min_backoff;
  absl::Time last_start = absl::InfinitePast();
  auto flush = [this] {
    if (absl::Status flushed = FlushCursor(); !flushed.ok()) {
      CRM_LOG(kWarning, "cannot store the delivery cursor",
              {{"subscriber", subscriber_}, {"error", flushed.ToString()}});
    }
  };
  while (true) {
    // Coalesce: everything committed since the last delivery started goes
    // in the next one.
    const absl::Time due = last_start + options_.min_interval;
    if (const absl::Time now = absl::Now(); now < due) {
      absl::MutexLock lock(&mu_);
      mu_.AwaitWithTimeout(absl::Condition(&stop_), due - now);
    }
    {
      absl::MutexLock lock(&mu_);
      if (stop_) break;
      notified_ = false;
    }
    last_start = absl::Now();
    shrunk_ = false;
    absl::StatusOr<int> delivered = DeliverOnce();
    absl::Duration wait = absl::ZeroDuration();
    if (!delivered.ok() && shrunk_) {
      // The remedy is the smaller batch, not waiting.
      continue;
    }
    if (!delivered.ok()) {
      // A failed read of the store re-reads the cursor next time.
      if (delivered.status().code() == absl::StatusCode::kDataLoss) cursor_ = -1;
      CRM_LOG(kWarning, "event delivery failed",
              {{"subscriber", subscriber_},
               {"error", delivered.status().ToString()}});
      // Full jitter: a random wait up to the current backoff, which doubles.
      std::uniform_real_distribution<double> share(0.5, 1.0);
      wait = backoff * share(jitter_);
      backoff = std::min(backoff * 2, options_.max_backoff);
    } else {
      backoff = options_.min_backoff;
      if (*delivered > 0) continue;  // more may be waiting
      flush();  // idle: the stored cursor catches up
      wait = options_.idle_poll;
    }
    absl::MutexLock lock(&mu_);
    auto wake = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return stop_ || notified_;
    };
    // After a failure only Stop() cuts the wait short: a commit must not
    // turn backoff into a busy retry loop.
    if (!delivered.ok()) {
      mu_.AwaitWithTimeout(absl::Condition(&stop_), wait);
    } else {
      mu_.AwaitWithTimeout(absl::Condition(&wake), wait);
    }
  }
  flush();
}

absl::StatusOr<int64_t> PruneDeliveredEvents(
    DealStore& store, const std::vector<std::string>& subscribers,
    absl::Time cutoff) {
  int64_t keep_after = INT64_MAX;
  for (const std::string& subscriber : subscribers) {
    absl::StatusOr<int64_t> cursor = store.GetCursor(subscriber);
    if (!cursor.ok()) {
      return absl::Status(
          cursor.status().code(),
          absl::StrCat("not pruning: cursor of ", subscriber, ": ",
                       cursor.status().message()));
    }
    keep_after = std::min(keep_after, *cursor);
  }
  return store.PruneOutbox(cutoff, keep_after);
}

}  // namespace crm::deals
