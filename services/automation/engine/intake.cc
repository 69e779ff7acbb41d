#include "services/automation/engine/intake.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

#include "common/log/log.h"
#include "common/status/status_macros.h"
#include "common/time/proto_time.h"
#include "services/automation/domain/rules.h"
#include "services/automation/engine/runs.h"

namespace crm::automation {

namespace dv1 = ::crm::deals::v1;
using ::crm::common::ToTimestamp;

Intake::Intake(AutomationStore& store, RunQueue& queue, const Catalog& catalog,
               crm::common::PipelineClient& config, const Clock& clock,
               IntakeOptions options)
    : store_(store),
      queue_(queue),
      catalog_(catalog),
      config_(config),
      clock_(clock),
      options_(options) {}

absl::StatusOr<int64_t> Intake::ApplyEvents(
    const google::protobuf::RepeatedPtrField<dv1::DealEvent>& events) {
  int64_t applied = 0;
  bool written = false;
  {
    absl::MutexLock lock(&queue_.mu());
    for (const dv1::DealEvent& event : events) {
      if (event.sequence() <= 0) {
        return absl::InvalidArgumentError("events.sequence: must be positive");
      }
      CRM_ASSIGN_OR_RETURN(int64_t done, store_.GetApplied(event.shard()));
      if (event.sequence() <= done) {
        applied = std::max(applied, done);
        continue;  // redelivered
      }
      // An error before the write or a failed write drops the change, and
      // the in-memory index with it: memory stays as the store is.
      Change change = queue_.NewChange();
      CRM_RETURN_IF_ERROR(ApplyEvent(event, &change));
      change.batch().PutApplied(event.shard(), event.sequence());
      // One fsync for the whole delivery (below), not one per event. An
      // event written but not yet synced is not acknowledged; lost in a
      // crash, it comes again and is applied then.
      CRM_RETURN_IF_ERROR(queue_.Commit(change));
      applied = event.sequence();
      written = true;
      if (options_.metrics != nullptr) {
        options_.metrics->IncrementCounter(
            "crm_automation_events_applied_total",
            "Deal events taken in (redeliveries not counted).");
      }
    }
  }
  // Outside the lock: other writers go on while the WAL syncs.
  if (written) {
    if (absl::Status synced = store_.SyncWal(); !synced.ok()) {
      absl::MutexLock lock(&queue_.mu());
      queue_.StoreFailed("sync of applied events", synced, /*reload=*/false);
      return synced;
    }
  }
  return applied;
}

absl::Status Intake::ApplyEvent(const dv1::DealEvent& event, Change* change) {
  switch (event.type()) {
    case dv1::DEAL_EVENT_TYPE_CREATED:
    case dv1::DEAL_EVENT_TYPE_STAGE_CHANGED:
    case dv1::DEAL_EVENT_TYPE_PIPELINE_CHANGED:
      return EnterStage(event, change);
    case dv1::DEAL_EVENT_TYPE_UPDATED:
    case dv1::DEAL_EVENT_TYPE_ASSIGNEE_CHANGED:
      return EventTriggers(event, change);
    case dv1::DEAL_EVENT_TYPE_DELETED: {
      storage::EntryRecord entry;
      CRM_ASSIGN_OR_RETURN(bool found,
                           store_.GetEntry(event.deal_id(), &entry));
      if (found) {
        CRM_RETURN_IF_ERROR(CancelPending(event.deal_id(), entry.entry_seq(),
                                          "the deal was deleted", change));
        change->batch().DeleteEntry(event.deal_id());
      }
      return absl::OkStatus();
    }
    default:
      return absl::OkStatus();
  }
}

absl::Status Intake::EnterStage(const dv1::DealEvent& event, Change* change) {
  const int64_t deal_id = event.deal_id();
  const absl::Time now = clock_.Now();
  storage::EntryRecord previous;
  CRM_ASSIGN_OR_RETURN(bool had_entry, store_.GetEntry(deal_id, &previous));
  // Only automation's own moves carry its run ids; anyone else's request id
  // naming a run proves nothing.
  const bool automated = event.channel() == dv1::CHANNEL_AUTOMATION ||
                         event.channel() == dv1::CHANNEL_TRIGGER;
  const std::string moved_by_run =
      event.actor_service() == "automation" && automated ? event.request_id()
                                                         : "";
  if (had_entry) {
    const crm::common::StageView* stage = config_.GetConfig()->FindStage(
        previous.pipeline_id(), previous.stage_id());
    CRM_RETURN_IF_ERROR(CancelPending(
        deal_id, previous.entry_seq(),
        absl::StrCat("the deal left stage ",
                     stage != nullptr ? stage->name : previous.stage_id(),
                     " before the run was due"),
        change, moved_by_run));
  }

  // Loop cut-off: count automated moves in a row within the window.
  storage::EntryRecord entry;
  entry.set_entry_seq(event.sequence());
  entry.set_pipeline_id(event.to_pipeline_id());
  entry.set_stage_id(event.to_stage_id());
  entry.set_enter_micros(absl::ToUnixMicros(now));
  entry.set_entered_by_run(moved_by_run);
  if (automated && had_entry && previous.chain_depth() > 0 &&
      now - absl::FromUnixMicros(previous.chain_start_micros()) <=
          options_.loop_window) {
    entry.set_chain_depth(previous.chain_depth() + 1);
    entry.set_chain_start_micros(previous.chain_start_micros());
  } else if (automated) {
    entry.set_chain_depth(1);
    entry.set_chain_start_micros(entry.enter_micros());
  }
  change->batch().PutEntry(deal_id, entry);
  const bool loop_stopped = entry.chain_depth() > options_.loop_max_depth;
  if (loop_stopped) {
    CRM_LOG(kWarning, "automated move chain cut off",
            {{"deal_id", absl::StrCat(deal_id)},
             {"depth", absl::StrCat(entry.chain_depth())},
             {"stage_id", entry.stage_id()}});
  }

  int64_t previous_rule = 0;
  bool previous_done = true;
  const std::vector<Catalog::RulePtr> rules =
      catalog_.StageRules(entry.pipeline_id(), entry.stage_id());
  for (const Catalog::RulePtr& rule : rules) {
    if (!Enabled(*rule)) continue;
    const std::string key = RunKey(deal_id, event.sequence(), rule->id());
    storage::RunRecord record;
    record.set_entry_seq(event.sequence());
    v1::Run& run = *record.mutable_run();
    run.set_run_id(RunIdOf({deal_id, event.sequence(), rule->id()}));
    run.set_deal_id(deal_id);
    run.set_rule_id(rule->id());
    run.set_cause_event_id(event.event_id());
    run.set_pipeline_id(entry.pipeline_id());
    run.set_stage_id(entry.stage_id());
    run.set_outcome(v1::Run::OUTCOME_SCHEDULED);
    record.set_entry_move_micros(EnteredMicros(event.deal()));
    if (rule->action().has_change_assignee()) {
      const auto& users = rule->action().change_assignee().user_ids();
      if (!users.empty()) {
        CRM_ASSIGN_OR_RETURN(int64_t position,
                             store_.GetRoundRobin(rule->id()));
        record.set_assignee_pick(
            users[static_cast<int>(position % users.size())]);
        change->batch().PutRoundRobin(rule->id(), position + 1);
      }
    }
    auto finish_now = [&](v1::Run::Outcome outcome, std::string error) {
      run.set_outcome(outcome);
      run.set_error(std::move(error));
      *run.mutable_finish_time() = ToTimestamp(now);
    };
    if (loop_stopped) {
      finish_now(v1::Run::OUTCOME_LOOP_STOPPED,
                 absl::StrCat("more than ", options_.loop_max_depth,
                              " automated moves of this deal in a row"));
    } else if (rule->execution() == v1::EXECUTION_AFTER_PREVIOUS &&
               !previous_done) {
      record.set_waiting_for_rule_id(previous_rule);
      // A date or a fixed time comes from the deal as it entered; a delay
      // counts from the previous rule's end.
      if (rule->timing().kind() == v1::Timing::KIND_RELATIVE_TO_DATE ||
          rule->timing().kind() == v1::Timing::KIND_AT_TIME) {
        absl::StatusOr<absl::Time> due =
            DueTime(rule->timing(), event.deal(), now, options_.zone);
        if (due.ok()) {
          record.set_fixed_due_micros(absl::ToUnixMicros(*due));
        } else {
          record.set_skip_reason(std::string(due.status().message()));
        }
      }
    } else {
      absl::StatusOr<absl::Time> due =
          DueTime(rule->timing(), event.deal(), now, options_.zone);
      if (!due.ok()) {
        finish_now(v1::Run::OUTCOME_SKIPPED,
                   std::string(due.status().message()));
      } else {
        change->Schedule(&record, key, *due, now);
        if (*due <= now && queue_.HasRoomForSnapshot())
          change->KeepSnapshot(key, event.deal());
      }
    }
    change->batch().PutRun(key, record);
    previous_rule = rule->id();
    previous_done = IsTerminal(run.outcome());
  }
  return absl::OkStatus();
}

absl::Status Intake::CancelPending(int64_t deal_id, int64_t entry_seq,
                                   const std::string& reason, Change* change,
                                   const std::string& moved_by_run) {
  const absl::Time now = clock_.Now();
  AutomationStore::RunScan scan;
  // Runs already running are left to finish (read or not).
  scan.skip = [&](const std::string& key) {
    queue_.mu().AssertReaderHeld();  // (the caller holds it)
    return queue_.InFlight(key);
  };
  return store_.ForEachRunOfEntry(
      deal_id, entry_seq,
      [&](const std::string& key, storage::RunRecord& record) {
        const bool moved_the_deal =
            !moved_by_run.empty() && record.run().run_id() == moved_by_run;
        if (IsTerminal(record.run().outcome())) return true;
        if (!moved_the_deal &&
            record.run().outcome() != v1::Run::OUTCOME_SCHEDULED) {
          return true;  // retrying an outside call: it ran already
        }
        change->Unschedule(&record, key);
        record.set_waiting_for_rule_id(0);
        if (moved_the_deal) {
          // This very run moved the deal (its request id is on the event)
          // and was cut before it recorded that, e.g. by a crash: it
          // succeeded.
          record.mutable_run()->set_outcome(v1::Run::OUTCOME_SUCCEEDED);
          record.mutable_run()->set_error("");
          if (!record.run().has_start_time())
            *record.mutable_run()->mutable_start_time() = ToTimestamp(now);
        } else {
          record.mutable_run()->set_outcome(v1::Run::OUTCOME_CANCELLED);
          record.mutable_run()->set_error(reason);
        }
        *record.mutable_run()->mutable_finish_time() = ToTimestamp(now);
        change->batch().PutRun(key, record);
        change->DropSnapshot(key);
        return true;
      },
      scan);
}

absl::Status Intake::EventTriggers(const dv1::DealEvent& event,
                                   Change* change) {
  const dv1::Deal& deal = event.deal();
  const std::vector<Catalog::TriggerPtr> triggers =
      catalog_.PipelineTriggers(deal.pipeline_id());
  if (triggers.empty()) return absl::OkStatus();
  const bool assignee = event.type() == dv1::DEAL_EVENT_TYPE_ASSIGNEE_CHANGED;
  std::vector<const v1::Trigger*> candidates;
  for (const Catalog::TriggerPtr& trigger_ptr : triggers) {
    const v1::Trigger& trigger = *trigger_ptr;
    if (trigger.type() == v1::TRIGGER_TYPE_ASSIGNEE_CHANGED && assignee) {
      candidates.push_back(&trigger);
    } else if (trigger.type() == v1::TRIGGER_TYPE_FIELD_CHANGED) {
      if (assignee) {
        if (trigger.field().empty() || trigger.field() == "assignee_id")
          candidates.push_back(&trigger);
        continue;
      }
      for (const std::string& changed : event.changed_fields()) {
        if (trigger.field().empty() || changed == trigger.field() ||
            changed == "custom_fields." + trigger.field()) {
          candidates.push_back(&trigger);
          break;
        }
      }
    }
  }
  if (candidates.empty()) return absl::OkStatus();
  const v1::Trigger* chosen =
      ChooseTrigger(*config_.GetConfig(), deal, candidates);
  if (chosen == nullptr) return absl::OkStatus();
  // The move is an internal effect like a rule's: a durable job, run once
  // with the job's id as request id.
  const std::string key = RunKey(deal.id(), event.sequence(), -chosen->id());
  storage::RunRecord record;
  record.set_entry_seq(event.sequence());
  record.set_target_stage_id(chosen->stage_id());
  v1::Run& run = *record.mutable_run();
  run.set_run_id(RunIdOf({deal.id(), event.sequence(), -chosen->id()}));
  run.set_deal_id(deal.id());
  run.set_trigger_id(chosen->id());
  run.set_cause_event_id(event.event_id());
  run.set_pipeline_id(deal.pipeline_id());
  run.set_stage_id(chosen->stage_id());
  run.set_outcome(v1::Run::OUTCOME_SCHEDULED);
  storage::EntryRecord entry;
  CRM_ASSIGN_OR_RETURN(bool has_entry, store_.GetEntry(deal.id(), &entry));
  if (has_entry) record.set_entry_at_schedule(entry.entry_seq());
  const absl::Time now = clock_.Now();
  change->Schedule(&record, key, now, now);
  change->batch().PutRun(key, record);
  return absl::OkStatus();
}

}  // namespace crm::automation
