// The automation engine: takes deal events in (stage entries schedule the
// stage's rules, leaving a stage cancels what has not run, field and
// assignee changes fire triggers), runs due rules on a worker pool and keeps
// rules, triggers, tasks, the run log and notifications. It puts together
//   catalog.h    rules and triggers and their indexes
//   intake.h     deal events in
//   run_queue.h  the due index, runs in flight, the engine's writes
//   scheduler.h  starts due runs on the worker pool
//   executor.h   runs one run and records its outcome
//   actions.h    one runner per action kind (mail and HTTP senders)
// and answers FireTrigger and the task, run and notification queries.
//
// Exactly-once internal effects: a run's change to a deal carries the run id
// as request id (deals applies a request id once); a run's own records (a
// task, a notification, completed tasks) are written in the same batch as
// its outcome. Outside effects (email, SMS, webhook) are at-least-once with
// the run id as idempotency key.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

#include "crm/automation/v1/automation.pb.h"
#include "crm/automation/v1/automation_service.pb.h"
#include "crm/deals/v1/deal_events.pb.h"

#include "common/metrics/metrics.h"
#include "common/pipelines_client/pipeline_client.h"
#include "services/automation/clients/deals_client.h"
#include "services/automation/engine/actions.h"
#include "services/automation/engine/catalog.h"
#include "services/automation/engine/clock.h"
#include "services/automation/engine/executor.h"
#include "services/automation/engine/intake.h"
#include "services/automation/engine/run_queue.h"
#include "services/automation/engine/scheduler.h"
#include "services/automation/outbound/senders.h"
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
  // Optional: where mail and POSTs go (tests); by default SMTP to `smtp`
  // and libcurl.
  MailSender* mail = nullptr;
  HttpSender* http = nullptr;
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
  AutomationStore& store_;
  crm::common::PipelineClient& config_;
  DealsClient& deals_;
  Clock& clock_;
  const EngineOptions options_;

  Catalog catalog_;
  RunQueue queue_;
  // The senders the engine made itself when the options name none.
  std::unique_ptr<MailSender> own_mail_;
  std::unique_ptr<HttpSender> own_http_;
  ActionRunner actions_;
  Intake intake_;
  RunExecutor executor_;
  Scheduler scheduler_;
};

}  // namespace crm::automation
