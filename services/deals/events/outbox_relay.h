// Pushes the deal events of the outbox, in order, to one subscriber, and
// keeps the subscriber's durable cursor (the highest sequence it applied).
// Delivery is at least once: after a crash between the subscriber's apply
// and the cursor write, the batch is sent again and the subscriber drops it
// by event id. While the subscriber fails, the relay retries with
// exponential backoff and jitter; the deals service keeps serving.
//
// A delivery is one unary call, which on a small machine costs about as much
// CPU as a create, so deliveries coalesce: a delivery starts at least
// `min_interval` (2 ms) after the previous one started and takes everything
// committed meanwhile, bounded by count and by bytes (kReplyBudgetBytes; one
// event alone always goes). An event committed while the relay is idle goes
// at once, so at low load nothing waits, and under load no event waits more
// than about 2 ms for its delivery to start. Events go out as the bytes the
// commit stored; the cursor lives in memory and is stored at most every
// `cursor_flush` (and when idle or stopping), without fsync: a cursor lost to
// a crash only makes the subscriber see some events again, which it drops by
// id.
//
// A delivery the subscriber refuses for a reason other than being
// unavailable is retried with half as many events, down to one, so a batch
// too large for the subscriber never wedges the stream; an event that keeps
// failing alone is logged at error level by id on every attempt and
// exported as the stuck sequence, and retried for ever (events are never
// skipped).
//
//   OutboxRelay relay(store, "automation", publisher, {});
//   relay.Start();
//   ... relay.Notify() after each commit that wrote an event ...
//   relay.Stop();
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

#include "common/grpc/message_limits.h"
#include "common/metrics/metrics.h"
#include "services/deals/events/deal_event_publisher.h"
#include "services/deals/storage/deal_store.h"

namespace crm::deals {

struct RelayOptions {
  int batch_size = 500;
  size_t batch_bytes = common::kReplyBudgetBytes;
  // Shortest time between the starts of two deliveries.
  absl::Duration min_interval = absl::Milliseconds(2);
  // Longest time an applied cursor stays in memory only.
  absl::Duration cursor_flush = absl::Milliseconds(100);
  // Where the relay's counters and gauges go (optional):
  //   crm_deals_relay_<subscriber>_delivered_events_total
  //   crm_deals_relay_<subscriber>_deliveries_total
  //   crm_deals_relay_<subscriber>_delivery_failures_total
  //   crm_deals_relay_<subscriber>_lag_events        (gauge)
  //   crm_deals_relay_<subscriber>_stuck_sequence    (gauge, 0 = flowing)
  common::MetricsRegistry* metrics = nullptr;
  absl::Duration min_backoff = absl::Milliseconds(50);
  absl::Duration max_backoff = absl::Seconds(5);
  // How long an idle relay sleeps when nobody calls Notify (a safety net).
  absl::Duration idle_poll = absl::Milliseconds(200);
};

class OutboxRelay {
 public:
  OutboxRelay(DealStore& store, std::string subscriber,
              DealEventPublisher& publisher, RelayOptions options);
  ~OutboxRelay();
  OutboxRelay(const OutboxRelay&) = delete;
  OutboxRelay& operator=(const OutboxRelay&) = delete;

  // Starts the background thread. REQUIRES: not started.
  void Start();
  // Stops and joins the thread; an in-flight delivery finishes first and
  // the cursor is stored. Idempotent.
  void Stop();
  // Wakes the relay: new events were committed.
  void Notify();

  // One step: reads the next batch after the cursor, delivers it, advances
  // the cursor. Returns how many events the subscriber applied (0 when the
  // outbox had nothing new). Used by the thread, and by tests directly.
  [[nodiscard]] absl::StatusOr<int> DeliverOnce();

  // Delivery attempts that failed, since construction.
  int64_t failures() const;
  // The first sequence of the delivery that failed last, while failures
  // repeat; 0 once a delivery succeeds.
  int64_t stuck_sequence() const;

 private:
  void Run();
  // Stores the cursor if the stored one is behind.
  absl::Status FlushCursor();
  void Export(const char* name, const char* help, double value, bool counter);

  std::string metric_prefix_;
  // The applied cursor (-1 = not read yet) and the one stored; only the
  // relay writes them.
  int64_t cursor_ = -1;
  int64_t stored_cursor_ = -1;
  absl::Time cursor_stored_at_ = absl::InfinitePast();
  // Events per delivery now: halved after a refusal, reset on success.
  int limit_ = 0;
  int64_t failing_since_ = 0;  // sequence that failed last, 0 = none
  int failing_attempts_ = 0;
  bool shrunk_ = false;  // the last failure made the batch smaller

  DealStore& store_;
  const std::string subscriber_;
  DealEventPublisher& publisher_;
  const RelayOptions options_;

  mutable absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool notified_ ABSL_GUARDED_BY(mu_) = false;
  int64_t failures_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t stuck_sequence_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread thread_;
  std::mt19937_64 jitter_{std::random_device{}()};
};

// Deletes events older than `cutoff` that every subscriber in `subscribers`
// has applied (in bounded chunks). An unreadable cursor stops it before
// anything is deleted: that subscriber might be the one furthest behind.
[[nodiscard]] absl::StatusOr<int64_t> PruneDeliveredEvents(
    DealStore& store, const std::vector<std::string>& subscribers,
    absl::Time cutoff);

}  // namespace crm::deals
