#include "services/deals/events/outbox_relay.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

#include "common/log/log.h"
#include "common/status/status_macros.h"

namespace crm::deals {

OutboxRelay::OutboxRelay(DealStore& store, std::string subscriber,
                         DealEventPublisher& publisher, RelayOptions options)
    : store_(store),
      subscriber_(std::move(subscriber)),
      publisher_(publisher),
      options_(options) {}

OutboxRelay::~OutboxRelay() { Stop(); }

void OutboxRelay::Start() {
  thread_ = std::thread([this] { Run(); });
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

absl::StatusOr<int> OutboxRelay::DeliverOnce() {
  CRM_ASSIGN_OR_RETURN(const int64_t cursor, store_.GetCursor(subscriber_));
  CRM_ASSIGN_OR_RETURN(std::vector<v1::DealEvent> events,
                       store_.ReadOutbox(cursor + 1, options_.batch_size));
  if (events.empty()) return 0;
  if (events.front().sequence() != cursor + 1) {
    // Retention removed events this subscriber never got: it must catch up
    // from elsewhere (e.g. rebuild); say so loudly and go on.
    CRM_LOG(kWarning, "outbox events expired before delivery",
            {{"subscriber", subscriber_},
             {"from", absl::StrCat(cursor + 1)},
             {"to", absl::StrCat(events.front().sequence() - 1)}});
  }
  const int64_t last = events.back().sequence();
  absl::StatusOr<int64_t> applied = publisher_.Deliver(events);
  if (!applied.ok()) {
    absl::MutexLock lock(&mu_);
    ++failures_;
    return applied.status();
  }
  // A subscriber may apply a prefix; it can never apply more than it got.
  const int64_t new_cursor = std::min(*applied, last);
  if (new_cursor <= cursor) return 0;
  CRM_RETURN_IF_ERROR(store_.SetCursor(subscriber_, new_cursor));
  int delivered = 0;
  for (const auto& event : events)
    delivered += event.sequence() <= new_cursor ? 1 : 0;
  return delivered;
}

void OutboxRelay::Run() {
  absl::Duration backoff = options_.min_backoff;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (stop_) return;
      notified_ = false;
    }
    absl::StatusOr<int> delivered = DeliverOnce();
    absl::Duration wait = absl::ZeroDuration();
    if (!delivered.ok()) {
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
}

}  // namespace crm::deals
