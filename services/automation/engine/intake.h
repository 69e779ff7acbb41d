// Deal events in: a stage entry (creation, a move, a pipeline change)
// cancels what the previous entry left unstarted and schedules the entered
// stage's rules (delays, dates, fixed times, after-previous chains, the
// round-robin pick, the cut-off of automated moves in a loop); a field or
// assignee change schedules the winning trigger's move; a deletion cancels
// the deal's pending runs. Each event is one write together with the
// shard's applied sequence, so a redelivered event changes nothing.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "google/protobuf/repeated_ptr_field.h"

#include "crm/deals/v1/deal_events.pb.h"

#include "common/metrics/metrics.h"
#include "common/pipelines_client/pipeline_client.h"
#include "services/automation/engine/catalog.h"
#include "services/automation/engine/clock.h"
#include "services/automation/engine/run_queue.h"
#include "services/automation/storage/automation_store.h"

namespace crm::automation {

struct IntakeOptions {
  absl::TimeZone zone = absl::UTCTimeZone();
  // Automated moves of one deal (channel AUTOMATION or TRIGGER) in a row,
  // each within `loop_window` of the chain's start, past which the entered
  // stage's rules are not run (LOOP_STOPPED).
  int loop_max_depth = 10;
  absl::Duration loop_window = absl::Minutes(1);
  common::MetricsRegistry* metrics = nullptr;  // optional
};

class Intake {
 public:
  Intake(AutomationStore& store, RunQueue& queue, const Catalog& catalog,
         crm::common::PipelineClient& config, const Clock& clock,
         IntakeOptions options);

  // Applies consecutive events of one shard; returns the highest sequence
  // applied (events at or below the shard's applied sequence are skipped).
  // Acknowledge only after it returns: the writes are synced once, at the
  // end.
  [[nodiscard]] absl::StatusOr<int64_t> ApplyEvents(
      const google::protobuf::RepeatedPtrField<crm::deals::v1::DealEvent>&
          events);

 private:
  using Change = RunQueue::Change;

  absl::Status ApplyEvent(const crm::deals::v1::DealEvent& event,
                          Change* change)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(queue_.mu());
  absl::Status EnterStage(const crm::deals::v1::DealEvent& event,
                          Change* change)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(queue_.mu());
  // Cancels the entry's runs that have not started. The run whose id is
  // `moved_by_run` (the request id of the event that moved the deal out)
  // made that move: it is recorded as succeeded instead.
  absl::Status CancelPending(int64_t deal_id, int64_t entry_seq,
                             const std::string& reason, Change* change,
                             const std::string& moved_by_run = "")
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(queue_.mu());
  absl::Status EventTriggers(const crm::deals::v1::DealEvent& event,
                             Change* change)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(queue_.mu());

  AutomationStore& store_;
  RunQueue& queue_;
  const Catalog& catalog_;
  crm::common::PipelineClient& config_;
  const Clock& clock_;
  const IntakeOptions options_;
};

}  // namespace crm::automation
