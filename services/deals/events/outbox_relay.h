// Pushes the deal events of the outbox, in order, to one subscriber, and
// keeps the subscriber's durable cursor (the highest sequence it applied).
// Delivery is at least once: after a crash between the subscriber's apply
// and the cursor write, the batch is sent again and the subscriber drops it
// by event id. While the subscriber fails, the relay retries with
// exponential backoff and jitter; the deals service keeps serving.
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

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

#include "services/deals/events/deal_event_publisher.h"
#include "services/deals/storage/deal_store.h"

namespace crm::deals {

struct RelayOptions {
  int batch_size = 200;
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
  // Stops and joins the thread; an in-flight delivery finishes first.
  // Idempotent.
  void Stop();
  // Wakes the relay: new events were committed.
  void Notify();

  // One step: reads the next batch after the cursor, delivers it, advances
  // the cursor. Returns how many events the subscriber applied (0 when the
  // outbox had nothing new). Used by the thread, and by tests directly.
  [[nodiscard]] absl::StatusOr<int> DeliverOnce();

  // Delivery attempts that failed, since construction.
  int64_t failures() const;

 private:
  void Run();

  DealStore& store_;
  const std::string subscriber_;
  DealEventPublisher& publisher_;
  const RelayOptions options_;

  mutable absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool notified_ ABSL_GUARDED_BY(mu_) = false;
  int64_t failures_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread thread_;
  std::mt19937_64 jitter_{std::random_device{}()};
};

}  // namespace crm::deals
