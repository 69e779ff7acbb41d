#include "services/automation/engine/engine.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "absl/random/random.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/util/json_util.h"
#include "nlohmann/json.hpp"

#include "common/grpc/message_limits.h"
#include "common/grpc/update_mask.h"
#include "common/log/log.h"
#include "common/rocks/key_codec.h"
#include "common/status/grpc_status.h"
#include "common/status/status_macros.h"
#include "common/text/etag.h"
#include "common/text/request_id.h"
#include "common/time/proto_time.h"
#include "openssl/rand.h"
#include "services/automation/domain/rules.h"
#include "services/automation/domain/template.h"
#include "services/automation/outbound/http_sender.h"
#include "services/automation/outbound/signing.h"

namespace crm::automation {
namespace {

namespace dv1 = ::crm::deals::v1;

constexpr size_t kMaxSnapshots = 20000;
constexpr size_t kMaxDispatch = 256;

using ::crm::common::ToTimestamp;

bool IsTerminal(v1::Run::Outcome outcome) {
  return outcome == v1::Run::OUTCOME_SUCCEEDED ||
         outcome == v1::Run::OUTCOME_SKIPPED ||
         outcome == v1::Run::OUTCOME_CANCELLED ||
         outcome == v1::Run::OUTCOME_FAILED ||
         outcome == v1::Run::OUTCOME_LOOP_STOPPED;
}

bool Enabled(const v1::Rule& rule) {
  return !rule.has_enabled() || rule.enabled();
}

// When a deal entered its stage: its last move, or its creation.
int64_t EnteredMicros(const dv1::Deal& deal) {
  const google::protobuf::Timestamp& time =
      deal.has_move_time() ? deal.move_time() : deal.create_time();
  return absl::ToUnixMicros(common::FromTimestamp(time));
}

bool Immediate(const v1::Timing& timing) {
  return timing.kind() == v1::Timing::KIND_UNSPECIFIED ||
         timing.kind() == v1::Timing::KIND_IMMEDIATE;
}

// Actions that change the deal: a retry after the deal left the stage
// would drag it back or edit it out of context.
bool ChangesDeal(const v1::Action& action) {
  return action.has_change_stage() || action.has_move_to_pipeline() ||
         action.has_change_assignee() || action.has_set_fields() ||
         action.has_add_comment();
}

// Failures of deals calls that mean "try again later" rather than "this
// cannot work".
bool DealsWillRecover(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
    case absl::StatusCode::kResourceExhausted:
    case absl::StatusCode::kAborted:
    case absl::StatusCode::kUnknown:
    case absl::StatusCode::kInternal:
    case absl::StatusCode::kCancelled:
      return true;
    default:
      return false;
  }
}

// Of those, the ones that say deals is down or busy: waited out without a
// limit. Others (an internal error that may repeat) count towards
// max_attempts.
bool DealsIsAway(const absl::Status& status) {
  return status.code() == absl::StatusCode::kUnavailable ||
         status.code() == absl::StatusCode::kDeadlineExceeded ||
         status.code() == absl::StatusCode::kResourceExhausted ||
         status.code() == absl::StatusCode::kAborted ||
         status.code() == absl::StatusCode::kCancelled;
}

// deals refuses a request id used before with another payload. A run's
// request id is its own (automation's namespace at deals, one run per id),
// so the refusal means an earlier attempt of this run made its change and
// its answer was lost (a crash, a deadline); the retry computed another
// payload from the deal as it is now (add_comment appends to the current
// comments, templates render the current deal). The change is made.
bool MadeByEarlierAttempt(const absl::Status& status) {
  return absl::IsAlreadyExists(status);
}

bool OutsideWillRecover(const absl::Status& status) {
  return status.code() != absl::StatusCode::kFailedPrecondition &&
         status.code() != absl::StatusCode::kInvalidArgument &&
         status.code() != absl::StatusCode::kPermissionDenied;
}

// Names the first part of an AND condition that fails, for the run log.
std::string WhyNotMatched(const dv1::Filter& filter,
                          const crm::common::ConfigView& config,
                          const dv1::Deal& deal) {
  if (filter.has_group() && filter.group().op() != dv1::FilterGroup::OP_OR) {
    for (int i = 0; i < filter.group().filters_size(); ++i) {
      auto part = crm::common::CompiledFilter::Compile(
          filter.group().filters(i), config);
      if (part.ok() && !part->Matches(deal)) {
        const dv1::Filter& failed = filter.group().filters(i);
        std::string detail;
        if (failed.has_condition()) {
          detail = absl::StrCat(
              " (", failed.condition().field(), " ",
              dv1::Condition::Operator_Name(failed.condition().op()), " ",
              absl::StrJoin(failed.condition().values(), ","), ")");
        }
        return absl::StrCat("condition not met: rule.condition.group.filters[",
                            i, "]", detail);
      }
    }
  }
  if (filter.has_condition()) {
    return absl::StrCat("condition not met: ", filter.condition().field(), " ",
                        dv1::Condition::Operator_Name(filter.condition().op()),
                        " ", absl::StrJoin(filter.condition().values(), ","));
  }
  return "condition not met";
}

}  // namespace

// ---------------------------------------------------------------- Lifecycle

struct AutomationEngine::RunResult {
  v1::Run::Outcome outcome = v1::Run::OUTCOME_SUCCEEDED;
  std::string error;
  // Try again later; `counts` = towards max_attempts (outside calls).
  bool retry = false;
  bool counts = true;
  std::optional<v1::Task> task;
  bool complete_stage_tasks = false;
  std::optional<v1::Notification> notification;
};

AutomationEngine::AutomationEngine(AutomationStore& store,
                                   crm::common::PipelineClient& config,
                                   DealsClient& deals, Clock& clock,
                                   EngineOptions options)
    : store_(store),
      config_(config),
      deals_(deals),
      clock_(clock),
      options_(std::move(options)),
      catalog_(store, config, clock) {}

AutomationEngine::~AutomationEngine() { Stop(); }

absl::Status AutomationEngine::Start() {
  CRM_RETURN_IF_ERROR(catalog_.Load());
  {
    absl::MutexLock lock(&mu_);
    CRM_RETURN_IF_ERROR(ReloadDueIndex());
  }
  common::WorkerPoolOptions pool;
  pool.threads = std::max(1, options_.workers);
  workers_ = std::make_unique<common::WorkerPool>(pool);
  scheduler_ = std::thread([this] { SchedulerLoop(); });
  return absl::OkStatus();
}

void AutomationEngine::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
    wake_ = true;
  }
  if (scheduler_.joinable()) scheduler_.join();
  if (workers_ != nullptr) workers_->Shutdown();
}

absl::Status AutomationEngine::ReloadDueIndex() {
  std::set<std::pair<int64_t, std::string>> due;
  auto it = store_.NewIterator(kDueCf);
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    int64_t micros = 0;
    std::string key;
    if (!ParseDueKey(it->key().ToString(), &micros, &key)) {
      return absl::DataLossError("unreadable due index key");
    }
    // Running ones are back in the index when they finish or retry.
    if (!in_flight_.contains(key)) due.insert({micros, std::move(key)});
  }
  CRM_RETURN_IF_ERROR(common::FromRocksStatus(it->status(), "due"));
  due_ = std::move(due);
  wake_ = true;
  return absl::OkStatus();
}

absl::Status AutomationEngine::Commit(Change& change) {
  if (absl::Status written = store_.WriteDeferringSync(&change.batch);
      !written.ok()) {
    StoreFailed("write", written, /*reload=*/false);
    return written;
  }
  for (Change::DueEdit& edit : change.due) {
    if (edit.insert) {
      due_.insert(std::move(edit.entry));
    } else {
      due_.erase(edit.entry);
    }
  }
  for (auto& [key, deal] : change.snapshots) {
    if (deal.has_value()) {
      snapshots_[key] = std::move(*deal);
    } else {
      snapshots_.erase(key);
    }
  }
  if (!change.due.empty()) wake_ = true;
  hold_ = absl::ZeroDuration();
  return absl::OkStatus();
}

void AutomationEngine::StoreFailed(const char* what, const absl::Status& status,
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

const v1::Trigger* AutomationEngine::ChooseTrigger(
    const dv1::Deal& deal,
    const std::vector<const v1::Trigger*>& candidates) const {
  const auto config = config_.GetConfig();
  const std::optional<int> current =
      config->StageIndex(deal.pipeline_id(), deal.stage_id());
  const v1::Trigger* best = nullptr;
  int best_index = INT32_MAX;
  for (const v1::Trigger* trigger : candidates) {
    if (trigger->pipeline_id() != deal.pipeline_id() ||
        trigger->stage_id() == deal.stage_id()) {
      continue;
    }
    const std::optional<int> index =
        config->StageIndex(trigger->pipeline_id(), trigger->stage_id());
    if (!index.has_value()) continue;  // its stage was deleted
    if (!trigger->allow_backwards() && current.has_value() &&
        *index <= *current) {
      continue;
    }
    if (trigger->has_condition()) {
      auto condition =
          crm::common::CompiledFilter::Compile(trigger->condition(), *config);
      if (!condition.ok() || !condition->Matches(deal)) continue;
    }
    if (*index < best_index) {
      best = trigger;
      best_index = *index;
    }
  }
  return best;
}

absl::StatusOr<v1::FireTriggerResponse> AutomationEngine::FireTrigger(
    int64_t deal_id, v1::TriggerType type, const std::string& app_code,
    const std::string& request_id, int64_t only_trigger_id) {
  if (deal_id <= 0) {
    return absl::InvalidArgumentError("deal_id: must be a positive deal id");
  }
  if (type == v1::TRIGGER_TYPE_UNSPECIFIED || !v1::TriggerType_IsValid(type)) {
    return absl::InvalidArgumentError("type: required");
  }
  if (type == v1::TRIGGER_TYPE_FIELD_CHANGED ||
      type == v1::TRIGGER_TYPE_ASSIGNEE_CHANGED) {
    return absl::InvalidArgumentError(
        "type: field and assignee changes fire from deal events");
  }
  if (type == v1::TRIGGER_TYPE_APP && app_code.empty()) {
    return absl::InvalidArgumentError(
        "app_code: required for TRIGGER_TYPE_APP");
  }
  // Deals is called with "fire/<request_id>".
  CRM_RETURN_IF_ERROR(
      common::ValidateRequestId(request_id, kFireRequestIdReserved));
  // A repeated request answers what the first one did (the deal has moved
  // since, so choosing again would say "not moved"). The request id is bound
  // to the request it came with (kept under "fired-for/", beside the
  // answer): another deal, type or app under the id is refused as deals
  // refuses a reused request id. Answers kept before the request was have
  // none and answer any repeat.
  const std::string answer_key =
      request_id.empty() ? "" : absl::StrCat("fired/", request_id);
  const std::string request_key =
      request_id.empty() ? "" : absl::StrCat("fired-for/", request_id);
  v1::FireTriggerRequest fired;
  fired.set_deal_id(deal_id);
  fired.set_type(type);
  fired.set_app_code(app_code);
  if (!answer_key.empty()) {
    v1::FireTriggerResponse earlier;
    CRM_ASSIGN_OR_RETURN(bool answered,
                         store_.GetProto(kMetaCf, answer_key, &earlier));
    if (answered) {
      v1::FireTriggerRequest first;
      CRM_ASSIGN_OR_RETURN(bool bound,
                           store_.GetProto(kMetaCf, request_key, &first));
      if (bound && first.SerializeAsString() != fired.SerializeAsString()) {
        return absl::AlreadyExistsError(
            "request_id: used already for a different request");
      }
      return earlier;
    }
  }
  // Best effort: without it a retry still changes nothing (deals knows the
  // request id), it only answers "not moved".
  auto keep_answer = [&](const v1::FireTriggerResponse& response) {
    if (answer_key.empty()) return;
    rocksdb::WriteBatch batch;
    store_.Put(&batch, kMetaCf, answer_key, response);
    store_.Put(&batch, kMetaCf, request_key, fired);
    if (absl::Status kept = store_.Write(&batch); !kept.ok()) {
      CRM_LOG(kWarning, "cannot keep a trigger answer",
              {{"error", kept.ToString()}});
    }
  };
  CRM_ASSIGN_OR_RETURN(dv1::Deal deal, deals_.GetDeal(deal_id));
  v1::Trigger chosen;
  bool found = false;
  {
    const std::vector<Catalog::TriggerPtr> triggers =
        catalog_.PipelineTriggers(deal.pipeline_id());
    std::vector<const v1::Trigger*> candidates;
    for (const Catalog::TriggerPtr& trigger : triggers) {
      if (trigger->type() != type) continue;
      if (only_trigger_id != 0 && trigger->id() != only_trigger_id) continue;
      if (type == v1::TRIGGER_TYPE_APP && trigger->app_code() != app_code)
        continue;
      candidates.push_back(trigger.get());
    }
    if (const v1::Trigger* best = ChooseTrigger(deal, candidates)) {
      chosen = *best;
      found = true;
    }
  }
  v1::FireTriggerResponse response;
  if (!found) {
    // "Not moved" is an answer too: a repeat after the deal changed must
    // not move it then.
    keep_answer(response);
    return response;
  }
  absl::StatusOr<dv1::Deal> moved = deals_.MoveStage(
      deal_id, chosen.stage_id(),
      request_id.empty() ? "" : absl::StrCat("fire/", request_id),
      dv1::CHANNEL_TRIGGER);
  response.set_trigger_id(chosen.id());
  response.set_to_stage_id(chosen.stage_id());
  if (moved.ok()) {
    response.set_moved(moved->stage_id() == chosen.stage_id());
  } else if (!MadeByEarlierAttempt(moved.status())) {
    return moved.status();
  }
  // else: an earlier fire with this id moved the deal (its answer was not
  // kept) and the deal has changed since, so this one moved nothing.
  keep_answer(response);
  return response;
}

// ---------------------------------------------------------------- Intake

absl::StatusOr<int64_t> AutomationEngine::ApplyEvents(
    const google::protobuf::RepeatedPtrField<dv1::DealEvent>& events) {
  int64_t applied = 0;
  bool scheduled = false;
  {
    absl::MutexLock lock(&mu_);
    for (const dv1::DealEvent& event : events) {
      if (event.sequence() <= 0) {
        return absl::InvalidArgumentError("events.sequence: must be positive");
      }
      const std::string applied_key = AppliedKey(event.shard());
      CRM_ASSIGN_OR_RETURN(int64_t done, store_.GetInt(kMetaCf, applied_key));
      if (event.sequence() <= done) {
        applied = std::max(applied, done);
        continue;  // redelivered
      }
      // An error before the write or a failed write drops the change, and
      // the in-memory index with it: memory stays as the store is.
      Change change;
      CRM_RETURN_IF_ERROR(ApplyEvent(event, &change));
      store_.PutInt(&change.batch, kMetaCf, applied_key, event.sequence());
      // One fsync for the whole delivery (below), not one per event. An
      // event written but not yet synced is not acknowledged; lost in a
      // crash, it comes again and is applied then.
      CRM_RETURN_IF_ERROR(Commit(change));
      applied = event.sequence();
      scheduled = true;
      if (options_.metrics != nullptr) {
        options_.metrics->IncrementCounter(
            "crm_automation_events_applied_total",
            "Deal events taken in (redeliveries not counted).");
      }
    }
    if (scheduled) wake_ = true;
  }
  // Outside the lock: other writers go on while the WAL syncs.
  if (scheduled) {
    if (absl::Status synced = store_.SyncWal(); !synced.ok()) {
      absl::MutexLock lock(&mu_);
      StoreFailed("sync of applied events", synced, /*reload=*/false);
      return synced;
    }
  }
  return applied;
}

absl::Status AutomationEngine::ApplyEvent(const dv1::DealEvent& event,
                                          Change* change) {
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
      const std::string key = common::EncodeInt64(event.deal_id());
      CRM_ASSIGN_OR_RETURN(bool found,
                           store_.GetProto(kEntriesCf, key, &entry));
      if (found) {
        CRM_RETURN_IF_ERROR(CancelPending(event.deal_id(), entry.entry_seq(),
                                          "the deal was deleted", change));
        store_.Delete(&change->batch, kEntriesCf, key);
      }
      return absl::OkStatus();
    }
    default:
      return absl::OkStatus();
  }
}

absl::Status AutomationEngine::EnterStage(const dv1::DealEvent& event,
                                          Change* change) {
  rocksdb::WriteBatch* batch = &change->batch;
  const int64_t deal_id = event.deal_id();
  const absl::Time now = clock_.Now();
  const std::string entry_key = common::EncodeInt64(deal_id);
  storage::EntryRecord previous;
  CRM_ASSIGN_OR_RETURN(bool had_entry,
                       store_.GetProto(kEntriesCf, entry_key, &previous));
  // Only automation's own moves carry its run ids; anyone else's request id
  // naming a run proves nothing.
  const std::string moved_by_run =
      event.actor_service() == "automation" &&
              (event.channel() == dv1::CHANNEL_AUTOMATION ||
               event.channel() == dv1::CHANNEL_TRIGGER)
          ? event.request_id()
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
  const bool automated = event.channel() == dv1::CHANNEL_AUTOMATION ||
                         event.channel() == dv1::CHANNEL_TRIGGER;
  if (automated && had_entry && previous.chain_depth() > 0 &&
      now - absl::FromUnixMicros(previous.chain_start_micros()) <=
          options_.loop_window) {
    entry.set_chain_depth(previous.chain_depth() + 1);
    entry.set_chain_start_micros(previous.chain_start_micros());
  } else if (automated) {
    entry.set_chain_depth(1);
    entry.set_chain_start_micros(entry.enter_micros());
  }
  store_.Put(batch, kEntriesCf, entry_key, entry);
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
                             store_.GetInt(kMetaCf, RoundRobinKey(rule->id())));
        record.set_assignee_pick(
            users[static_cast<int>(position % users.size())]);
        store_.PutInt(batch, kMetaCf, RoundRobinKey(rule->id()), position + 1);
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
        Schedule(&record, key, *due, change);
        if (*due <= now && snapshots_.size() < kMaxSnapshots)
          change->snapshots.emplace_back(key, event.deal());
      }
    }
    store_.Put(batch, kRunsCf, key, record);
    previous_rule = rule->id();
    previous_done = IsTerminal(run.outcome());
  }
  return absl::OkStatus();
}

void AutomationEngine::Schedule(storage::RunRecord* record,
                                const std::string& key, absl::Time due,
                                Change* change) {
  // A time already past runs now; keeping every due key at or after the
  // moment it was written lets the scheduler skip the consumed head of the
  // index (see SchedulerLoop).
  due = std::max(due, clock_.Now());
  if (record->due_micros() != 0) {
    store_.Delete(&change->batch, kDueCf, DueKey(record->due_micros(), key));
    change->due.push_back({false, {record->due_micros(), key}});
  }
  record->set_due_micros(absl::ToUnixMicros(due));
  change->due.push_back({true, {record->due_micros(), key}});
  record->set_waiting_for_rule_id(0);
  *record->mutable_run()->mutable_scheduled_time() = ToTimestamp(due);
  static_cast<void>(change->batch.Put(store_.cf(kDueCf),
                                      DueKey(record->due_micros(), key), ""));
}

absl::Status AutomationEngine::CancelPending(int64_t deal_id, int64_t entry_seq,
                                             const std::string& reason,
                                             Change* change,
                                             const std::string& moved_by_run) {
  rocksdb::WriteBatch* batch = &change->batch;
  std::string prefix;
  common::AppendInt64(&prefix, deal_id);
  common::AppendInt64(&prefix, entry_seq);
  const absl::Time now = clock_.Now();
  auto it = store_.NewIterator(kRunsCf);
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix);
       it->Next()) {
    const std::string key = it->key().ToString();
    if (in_flight_.contains(key)) continue;  // already running
    storage::RunRecord record;
    if (!record.ParseFromArray(it->value().data(),
                               static_cast<int>(it->value().size()))) {
      return absl::DataLossError("unreadable run record");
    }
    const bool moved_the_deal =
        !moved_by_run.empty() && record.run().run_id() == moved_by_run;
    if (IsTerminal(record.run().outcome())) continue;
    if (!moved_the_deal &&
        record.run().outcome() != v1::Run::OUTCOME_SCHEDULED) {
      continue;  // retrying an outside call: it ran already
    }
    if (record.due_micros() != 0) {
      store_.Delete(batch, kDueCf, DueKey(record.due_micros(), key));
      change->due.push_back({false, {record.due_micros(), key}});
    }
    record.set_due_micros(0);
    record.set_waiting_for_rule_id(0);
    if (moved_the_deal) {
      // This very run moved the deal (its request id is on the event) and
      // was cut before it recorded that, e.g. by a crash: it succeeded.
      record.mutable_run()->set_outcome(v1::Run::OUTCOME_SUCCEEDED);
      record.mutable_run()->set_error("");
      if (!record.run().has_start_time())
        *record.mutable_run()->mutable_start_time() = ToTimestamp(now);
    } else {
      record.mutable_run()->set_outcome(v1::Run::OUTCOME_CANCELLED);
      record.mutable_run()->set_error(reason);
    }
    *record.mutable_run()->mutable_finish_time() = ToTimestamp(now);
    store_.Put(batch, kRunsCf, key, record);
    change->snapshots.emplace_back(key, std::nullopt);
  }
  return common::FromRocksStatus(it->status(), "runs");
}

absl::Status AutomationEngine::EventTriggers(const dv1::DealEvent& event,
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
  const v1::Trigger* chosen = ChooseTrigger(deal, candidates);
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
  CRM_ASSIGN_OR_RETURN(
      bool has_entry,
      store_.GetProto(kEntriesCf, common::EncodeInt64(deal.id()), &entry));
  if (has_entry) record.set_entry_at_schedule(entry.entry_seq());
  Schedule(&record, key, clock_.Now(), change);
  store_.Put(&change->batch, kRunsCf, key, record);
  return absl::OkStatus();
}

// ---------------------------------------------------------------- Scheduler

void AutomationEngine::Wake() {
  absl::MutexLock lock(&mu_);
  wake_ = true;
}

bool AutomationEngine::Idle(absl::Duration horizon) const {
  absl::ReaderMutexLock lock(&mu_);
  if (!in_flight_.empty() || reload_wanted_) return false;
  return due_.empty() ||
         absl::FromUnixMicros(due_.begin()->first) > clock_.Now() + horizon;
}

void AutomationEngine::SchedulerLoop() {
  absl::Duration wait = absl::ZeroDuration();
  while (true) {
    // Take what is due off the in-memory index (a mirror of the `due`
    // column family, which is only read at start): no RocksDB scan, so the
    // tombstones of consumed keys cost nothing here.
    std::vector<std::pair<int64_t, std::string>> due_keys;
    absl::Time now;
    absl::Time next;
    {
      absl::MutexLock lock(&mu_);
      // Stop sets wake_ too.
      if (wait > absl::ZeroDuration())
        mu_.AwaitWithTimeout(absl::Condition(&wake_), wait);
      if (stopping_) return;
      wake_ = false;
      now = clock_.Now();
      // After a store failure: nothing starts until the hold ends, then the
      // due index is rebuilt from the store if it was asked for.
      const absl::Duration held = hold_until_ - absl::Now();
      if (held > absl::ZeroDuration()) {
        wait = std::clamp(held, absl::Milliseconds(1), absl::Seconds(1));
        continue;
      }
      if (reload_wanted_) {
        if (absl::Status reloaded = ReloadDueIndex(); !reloaded.ok()) {
          StoreFailed("reload of the due index", reloaded, /*reload=*/true);
          wait = absl::Milliseconds(1);
          continue;
        }
        reload_wanted_ = false;
      }
      const int64_t now_micros = absl::ToUnixMicros(now);
      while (!due_.empty() && due_.begin()->first <= now_micros &&
             due_keys.size() < kMaxDispatch) {
        auto head = due_.extract(due_.begin());
        if (in_flight_.insert(head.value().second).second)
          due_keys.push_back(std::move(head.value()));
      }
      next = now + absl::Seconds(1);
      if (!due_.empty())
        next = std::min(next, absl::FromUnixMicros(due_.begin()->first));
    }
    for (size_t i = 0; i < due_keys.size(); ++i) {
      const std::string key = due_keys[i].second;
      if (!workers_->TrySubmit([this, key] { ExecuteRun(key); })) {
        // Pool full: put the rest back and come back soon.
        absl::MutexLock lock(&mu_);
        for (size_t j = i; j < due_keys.size(); ++j) {
          in_flight_.erase(due_keys[j].second);
          due_.insert(due_keys[j]);
        }
        next = now + absl::Milliseconds(50);
        break;
      }
    }
    wait = std::clamp(next - clock_.Now(), absl::Milliseconds(1),
                      absl::Seconds(1));
  }
}

void AutomationEngine::ExecuteRun(const std::string& key) {
  storage::RunRecord record;
  std::optional<v1::Rule> rule;
  std::optional<dv1::Deal> snapshot;
  std::string cancel_reason;
  bool already_done = false;
  {
    absl::MutexLock lock(&mu_);
    absl::StatusOr<bool> found = store_.GetProto(kRunsCf, key, &record);
    const bool runnable =
        found.ok() && *found && !IsTerminal(record.run().outcome()) &&
        record.due_micros() != 0 &&
        absl::FromUnixMicros(record.due_micros()) <= clock_.Now();
    if (!runnable) {
      in_flight_.erase(key);
      if (!found.ok()) {
        // The due index entry was taken off; it comes back from the store
        // with the reload, and the run is tried again.
        StoreFailed("read of a run", found.status(), /*reload=*/true);
      } else if (*found && !IsTerminal(record.run().outcome()) &&
                 record.due_micros() != 0) {
        // Not due after all (the wall clock stepped back): back in line.
        due_.insert({record.due_micros(), key});
        wake_ = true;
      }
      return;
    }
    if (record.run().rule_id() != 0) {
      if (Catalog::RulePtr found_rule =
              catalog_.FindRule(record.run().rule_id())) {
        rule = *found_rule;
      }
    }
    // The deal entered another stage (or this one again) since: runs that
    // have not started are cancelled, and so are retries of changes to the
    // deal and trigger moves, which would act on a deal that moved on.
    const int64_t expected_entry = record.run().trigger_id() != 0
                                       ? record.entry_at_schedule()
                                       : record.entry_seq();
    storage::EntryRecord entry;
    absl::StatusOr<bool> has_entry = store_.GetProto(
        kEntriesCf, common::EncodeInt64(record.run().deal_id()), &entry);
    if (!has_entry.ok()) {
      // Whether the deal moved on is unknown: not now.
      in_flight_.erase(key);
      due_.insert({record.due_micros(), key});
      StoreFailed("read of a stage entry", has_entry.status(),
                  /*reload=*/false);
      return;
    }
    const bool moved_on = expected_entry != 0 &&
                          (!*has_entry || entry.entry_seq() != expected_entry);
    const bool started = record.run().attempts() > 0;
    if (record.run().trigger_id() != 0 &&
        !catalog_.HasTrigger(record.run().trigger_id())) {
      cancel_reason = "the trigger was deleted before its move";
    }
    // The entry that replaced the run's own is the run's own move (made
    // before a crash; its event arrived while the run waited to go again).
    if (moved_on && *has_entry &&
        entry.entered_by_run() == record.run().run_id()) {
      already_done = true;
    }
    if (!already_done && cancel_reason.empty() && moved_on &&
        (!started || record.run().trigger_id() != 0 ||
         (rule.has_value() && ChangesDeal(rule->action())))) {
      cancel_reason = "the deal moved on before the run";
    }
    auto snap = snapshots_.find(key);
    if (snap != snapshots_.end()) {
      snapshot = std::move(snap->second);
      snapshots_.erase(snap);
    }
  }
  if (already_done) {
    Finish(key, RunResult());  // succeeded
    return;
  }
  if (!cancel_reason.empty()) {
    RunResult cancelled;
    cancelled.outcome = v1::Run::OUTCOME_CANCELLED;
    cancelled.error = cancel_reason;
    Finish(key, std::move(cancelled));
    return;
  }
  RunResult result =
      Perform(record, rule.has_value() ? &*rule : nullptr, std::move(snapshot));
  Finish(key, std::move(result));
}

AutomationEngine::RunResult AutomationEngine::Perform(
    const storage::RunRecord& record, const v1::Rule* rule,
    std::optional<dv1::Deal> snapshot) {
  RunResult result;
  const v1::Run& run = record.run();
  auto deals_failed = [&](const absl::Status& status) {
    result.error = std::string(status.message());
    if (DealsWillRecover(status)) {
      result.outcome = v1::Run::OUTCOME_RETRYING;
      result.retry = true;
      result.counts = !DealsIsAway(status);
    } else {
      result.outcome = v1::Run::OUTCOME_FAILED;
      result.error = absl::StrCat(absl::StatusCodeToString(status.code()), ": ",
                                  status.message());
    }
    return result;
  };
  if (run.trigger_id() != 0) {
    auto moved = deals_.MoveStage(run.deal_id(), record.target_stage_id(),
                                  run.run_id(), dv1::CHANNEL_TRIGGER);
    if (!moved.ok() && !MadeByEarlierAttempt(moved.status()))
      return deals_failed(moved.status());
    return result;
  }
  if (rule == nullptr) {
    result.outcome = v1::Run::OUTCOME_CANCELLED;
    result.error = "the rule was deleted before the run was due";
    return result;
  }
  if (!Enabled(*rule)) {
    result.outcome = v1::Run::OUTCOME_CANCELLED;
    result.error = "the rule was disabled before the run was due";
    return result;
  }
  dv1::Deal deal;
  if (snapshot.has_value()) {
    deal = *std::move(snapshot);
  } else {
    auto fresh = deals_.GetDeal(run.deal_id());
    if (!fresh.ok()) return deals_failed(fresh.status());
    deal = *std::move(fresh);
    // A delayed run whose deal left the stage while the leave event was on
    // its way. Runs due at the entry count as run at the entry (after a
    // crash mid-run the deal may already show the run's own move).
    const bool left = deal.pipeline_id() != run.pipeline_id() ||
                      deal.stage_id() != run.stage_id() ||
                      (record.entry_move_micros() != 0 &&
                       EnteredMicros(deal) != record.entry_move_micros());
    if (!Immediate(rule->timing()) && left) {
      result.outcome = v1::Run::OUTCOME_CANCELLED;
      result.error = "the deal is no longer in the rule's stage";
      return result;
    }
  }
  if (rule->has_condition()) {
    const auto config = config_.GetConfig();
    auto condition =
        crm::common::CompiledFilter::Compile(rule->condition(), *config);
    if (!condition.ok()) {
      result.outcome = v1::Run::OUTCOME_FAILED;
      result.error = absl::StrCat("rule.condition no longer compiles: ",
                                  condition.status().message());
      return result;
    }
    if (!condition->Matches(deal)) {
      result.outcome = v1::Run::OUTCOME_SKIPPED;
      result.error = WhyNotMatched(rule->condition(), *config, deal);
      return result;
    }
  }
  return PerformRule(record, *rule, deal);
}

AutomationEngine::RunResult AutomationEngine::PerformRule(
    const storage::RunRecord& record, const v1::Rule& rule,
    const dv1::Deal& deal) {
  RunResult result;
  const v1::Run& run = record.run();
  const std::string& request_id = run.run_id();
  const absl::Time now = clock_.Now();
  auto fail = [&](const absl::Status& status, bool outside) {
    const bool recover =
        outside ? OutsideWillRecover(status) : DealsWillRecover(status);
    result.error = std::string(status.message());
    if (recover) {
      result.outcome = v1::Run::OUTCOME_RETRYING;
      result.retry = true;
      result.counts = outside || !DealsIsAway(status);
    } else {
      result.outcome = v1::Run::OUTCOME_FAILED;
    }
    return result;
  };
  auto render = [&](const std::string& text) {
    return RenderDealTemplate(text, deal);
  };
  const v1::Action& action = rule.action();
  switch (action.kind_case()) {
    case v1::Action::kSendEmail: {
      const v1::SendEmail& email = action.send_email();
      if (email.to().empty()) {
        return fail(absl::FailedPreconditionError(
                        "send_email: the deal's contact email is not "
                        "available (contacts are not supported yet); set "
                        "send_email.to"),
                    true);
      }
      auto subject = render(email.subject());
      if (!subject.ok()) return fail(subject.status(), true);
      auto body = render(email.body());
      if (!body.ok()) return fail(body.status(), true);
      SmtpMail mail;
      mail.from = options_.mail_from;
      mail.to = email.to();
      mail.subject = *subject;
      mail.text_body = *body;
      const size_t at = options_.mail_from.find('@');
      mail.message_id =
          MakeMessageId(request_id, at == std::string::npos
                                        ? "localhost"
                                        : options_.mail_from.substr(at + 1));
      SmtpServer server = options_.smtp;
      server.timeout = options_.outbound_timeout;
      if (absl::Status sent = SendSmtpMail(server, mail); !sent.ok())
        return fail(sent, true);
      return result;
    }
    case v1::Action::kSendSms: {
      const v1::SendSms& sms = action.send_sms();
      if (sms.to().empty()) {
        return fail(absl::FailedPreconditionError(
                        "send_sms: the deal's contact phone is not available "
                        "(contacts are not supported yet); set send_sms.to"),
                    true);
      }
      if (options_.sms_gateway_url.empty()) {
        return fail(absl::FailedPreconditionError(
                        "send_sms: no SMS gateway is configured "
                        "(--sms_gateway_url)"),
                    true);
      }
      auto text = render(sms.text());
      if (!text.ok()) return fail(text.status(), true);
      HttpPost post;
      post.url = options_.sms_gateway_url;
      post.content_type = kFormContentType;
      post.body = FormEncode(
          {{"to", sms.to()}, {"text", *text}, {"message_id", request_id}});
      post.headers.emplace_back(kIdempotencyKeyHeader, request_id);
      post.timeout = options_.outbound_timeout;
      auto sent = SendHttpPost(post);
      if (!sent.ok()) return fail(sent.status(), true);
      if (sent->status_code / 100 != 2) {
        const bool again = sent->status_code == 408 || sent->status_code == 429;
        return fail(again
                        ? absl::UnavailableError(absl::StrCat(
                              "SMS gateway answered HTTP ", sent->status_code))
                        : absl::FailedPreconditionError(absl::StrCat(
                              "SMS gateway answered HTTP ", sent->status_code)),
                    true);
      }
      return result;
    }
    case v1::Action::kCallWebhook: {
      const v1::CallWebhook& hook = action.call_webhook();
      std::string deal_json;
      google::protobuf::util::JsonPrintOptions print;
      print.preserve_proto_field_names = true;
      static_cast<void>(
          google::protobuf::util::MessageToJsonString(deal, &deal_json, print));
      nlohmann::json body = {
          {"event", "automation.rule_run"},
          {"run_id", request_id},
          {"rule_id", rule.id()},
          {"deal_id", deal.id()},
          {"pipeline_id", run.pipeline_id()},
          {"stage_id", run.stage_id()},
          {"cause_event_id", run.cause_event_id()},
          {"deal", nlohmann::json::parse(deal_json, nullptr, false)}};
      HttpPost post;
      post.url = hook.url();
      post.body = body.dump();
      const std::string timestamp =
          absl::StrCat(absl::ToUnixSeconds(absl::Now()));
      post.headers.emplace_back(kTimestampHeader, timestamp);
      post.headers.emplace_back(
          kSignatureHeader, SignWebhook(hook.secret(), timestamp, post.body));
      post.headers.emplace_back(kIdempotencyKeyHeader, request_id);
      post.timeout = options_.outbound_timeout;
      post.public_addresses_only = !options_.allow_private_webhooks;
      auto sent = SendHttpPost(post);
      if (!sent.ok()) return fail(sent.status(), true);
      if (sent->status_code / 100 != 2) {
        const bool again = sent->status_code == 408 || sent->status_code == 429;
        const std::string message =
            absl::StrCat("webhook answered HTTP ", sent->status_code);
        return fail(again ? absl::UnavailableError(message)
                          : absl::FailedPreconditionError(message),
                    true);
      }
      return result;
    }
    case v1::Action::kCreateTask: {
      const v1::CreateTask& spec = action.create_task();
      auto title = render(spec.title());
      if (!title.ok()) return fail(title.status(), true);
      auto description = render(spec.description());
      if (!description.ok()) return fail(description.status(), true);
      v1::Task task;
      task.set_deal_id(deal.id());
      task.set_title(*title);
      task.set_description(*description);
      task.set_responsible_id(spec.responsible_id() != 0 ? spec.responsible_id()
                                                         : deal.assignee_id());
      if (task.responsible_id() <= 0) {
        return fail(absl::FailedPreconditionError(
                        "create_task: the deal has no assignee to give the "
                        "task to; set create_task.responsible_id"),
                    true);
      }
      if (spec.has_deadline_after() && (spec.deadline_after().seconds() != 0 ||
                                        spec.deadline_after().nanos() != 0)) {
        *task.mutable_deadline() =
            ToTimestamp(now + absl::Seconds(spec.deadline_after().seconds()));
      }
      task.set_status(v1::Task::STATUS_OPEN);
      task.set_rule_id(rule.id());
      task.set_pipeline_id(run.pipeline_id());
      task.set_stage_id(run.stage_id());
      *task.mutable_create_time() = ToTimestamp(now);
      result.task = std::move(task);
      return result;
    }
    case v1::Action::kCompleteStageTasks:
      result.complete_stage_tasks = true;
      return result;
    case v1::Action::kNotifyEmployee: {
      auto text = render(action.notify_employee().text());
      if (!text.ok()) return fail(text.status(), true);
      v1::Notification note;
      note.set_user_id(action.notify_employee().user_id() != 0
                           ? action.notify_employee().user_id()
                           : deal.assignee_id());
      if (note.user_id() <= 0) {
        return fail(absl::FailedPreconditionError(
                        "notify_employee: the deal has no assignee to notify; "
                        "set notify_employee.user_id"),
                    true);
      }
      note.set_deal_id(deal.id());
      note.set_text(*text);
      note.set_rule_id(rule.id());
      *note.mutable_create_time() = ToTimestamp(now);
      result.notification = std::move(note);
      return result;
    }
    case v1::Action::kChangeStage: {
      auto moved = deals_.MoveStage(deal.id(), action.change_stage().stage_id(),
                                    request_id, dv1::CHANNEL_AUTOMATION);
      if (!moved.ok() && !MadeByEarlierAttempt(moved.status()))
        return fail(moved.status(), false);
      return result;
    }
    case v1::Action::kMoveToPipeline: {
      auto moved = deals_.MoveToPipeline(
          deal.id(), action.move_to_pipeline().pipeline_id(),
          action.move_to_pipeline().stage_id(), request_id);
      if (!moved.ok() && !MadeByEarlierAttempt(moved.status()))
        return fail(moved.status(), false);
      return result;
    }
    case v1::Action::kChangeAssignee: {
      dv1::Deal change;
      change.set_id(deal.id());
      change.set_assignee_id(record.assignee_pick());
      google::protobuf::FieldMask mask;
      mask.add_paths("assignee_id");
      auto updated = deals_.UpdateDeal(change, mask, request_id, "");
      if (!updated.ok() && !MadeByEarlierAttempt(updated.status()))
        return fail(updated.status(), false);
      return result;
    }
    case v1::Action::kSetFields: {
      const auto config = config_.GetConfig();
      nlohmann::json fields = nlohmann::json::object();
      dv1::Deal change;
      google::protobuf::FieldMask mask;
      for (const auto& [name, values] : action.set_fields().values()) {
        std::vector<std::string> rendered;
        for (const std::string& value : values.values()) {
          auto text = render(value);
          if (!text.ok()) return fail(text.status(), true);
          rendered.push_back(*std::move(text));
        }
        if (config->FindField(name) != nullptr) {
          auto& target = (*change.mutable_custom_fields())[name];
          for (auto& value : rendered) target.add_values(std::move(value));
          mask.add_paths("custom_fields." + name);
          continue;
        }
        mask.add_paths(name);
        if (name == "contact_ids" || name == "observer_ids") {
          fields[name] = rendered;
        } else if (name == "opened" || name == "manual_amount") {
          const std::string value = rendered.empty() ? "" : rendered[0];
          if (value != "true" && value != "false") {
            return fail(absl::InvalidArgumentError(
                            absl::StrCat("set_fields.", name, ": \"", value,
                                         "\" is not true or false")),
                        false);
          }
          fields[name] = value == "true";
        } else if (!rendered.empty()) {
          fields[name] = rendered[0];
        }
      }
      if (!fields.empty()) {
        dv1::Deal parsed;
        google::protobuf::util::JsonParseOptions parse;
        auto status = google::protobuf::util::JsonStringToMessage(
            fields.dump(), &parsed, parse);
        if (!status.ok()) {
          return fail(absl::InvalidArgumentError(absl::StrCat(
                          "set_fields: ", status.message().as_string())),
                      false);
        }
        parsed.MergeFrom(change);
        change = std::move(parsed);
      }
      change.set_id(deal.id());
      auto updated = deals_.UpdateDeal(change, mask, request_id, "");
      if (!updated.ok() && !MadeByEarlierAttempt(updated.status()))
        return fail(updated.status(), false);
      return result;
    }
    case v1::Action::kAddComment: {
      auto text = render(action.add_comment().text());
      if (!text.ok()) return fail(text.status(), true);
      // Appended to the current comments (fresh copy, guarded by its etag).
      auto current = deals_.GetDeal(deal.id());
      if (!current.ok()) return fail(current.status(), false);
      dv1::Deal change;
      change.set_id(deal.id());
      change.set_comments(
          current->comments().empty()
              ? *text
              : absl::StrCat(current->comments(), "\n\n", *text));
      google::protobuf::FieldMask mask;
      mask.add_paths("comments");
      auto updated =
          deals_.UpdateDeal(change, mask, request_id, current->etag());
      if (!updated.ok() && !MadeByEarlierAttempt(updated.status()))
        return fail(updated.status(), false);
      return result;
    }
    case v1::Action::KIND_NOT_SET:
      break;
  }
  result.outcome = v1::Run::OUTCOME_FAILED;
  result.error = "the rule has no action";
  return result;
}

void AutomationEngine::Finish(const std::string& key, RunResult result) {
  bool written = false;
  {
    absl::MutexLock lock(&mu_);
    written = FinishLocked(key, std::move(result));
  }
  // Group commit: the outcome was written without waiting for its fsync
  // (under the lock, writes only queue behind each other, not behind the
  // disk); runs finishing together share this one. Nothing is acknowledged
  // before it: a later synced write (any user's) makes it durable too, and
  // an outcome lost in a crash means the run goes again (internal effects
  // once by run id, outside ones at least once).
  if (written) {
    if (absl::Status synced = store_.SyncWal(); !synced.ok()) {
      absl::MutexLock lock(&mu_);
      StoreFailed("sync of a run's outcome", synced, /*reload=*/false);
    }
  }
}

bool AutomationEngine::FinishLocked(const std::string& key, RunResult result) {
  const absl::Time now = clock_.Now();
  storage::RunRecord record;
  absl::StatusOr<bool> found = store_.GetProto(kRunsCf, key, &record);
  if (!found.ok() || !*found) {
    in_flight_.erase(key);
    if (!found.ok()) StoreFailed("read of a run", found.status(), true);
    return false;
  }
  // Nothing of this finish is kept unless all of it is: on any failure the
  // run stays due as stored (its due key back in the index) and goes again
  // once the store answers.
  const int64_t stored_due = record.due_micros();
  auto put_back = [&](const absl::Status& status) {
    CRM_LOG(kError, "cannot record a run",
            {{"run_id", record.run().run_id()}, {"error", status.ToString()}});
    in_flight_.erase(key);
    if (stored_due != 0) due_.insert({stored_due, key});
    return false;
  };
  auto abandon = [&](const char* what, const absl::Status& status) {
    StoreFailed(what, status, /*reload=*/false);
    return put_back(status);
  };
  v1::Run& run = *record.mutable_run();
  Change change;
  rocksdb::WriteBatch& batch = change.batch;
  if (!run.has_start_time()) *run.mutable_start_time() = ToTimestamp(now);
  run.set_attempts(run.attempts() + 1);
  if (result.retry && result.counts)
    record.set_outside_attempts(record.outside_attempts() + 1);
  run.set_error(result.error);
  if (result.retry &&
      (!result.counts || record.outside_attempts() < options_.max_attempts)) {
    // Doubling backoff with +-20% jitter; deals outages retry forever but
    // no slower than deals_retry_max.
    const int exponent = std::min(
        (result.counts ? record.outside_attempts() : run.attempts()) - 1, 20);
    absl::Duration backoff = options_.retry_base * std::pow(2.0, exponent);
    backoff = std::min(
        backoff, result.counts ? options_.retry_max : options_.deals_retry_max);
    static thread_local absl::BitGen gen;
    backoff *= absl::Uniform(gen, 0.8, 1.2);
    run.set_outcome(v1::Run::OUTCOME_RETRYING);
    Schedule(&record, key, now + backoff, &change);
    store_.Put(&batch, kRunsCf, key, record);
  } else {
    if (result.retry) {
      result.outcome = v1::Run::OUTCOME_FAILED;
      run.set_error(absl::StrCat("gave up after ", record.outside_attempts(),
                                 " attempts: ", result.error));
    }
    run.set_outcome(result.outcome);
    *run.mutable_finish_time() = ToTimestamp(now);
    if (record.due_micros() != 0) {
      store_.Delete(&batch, kDueCf, DueKey(record.due_micros(), key));
      change.due.push_back({false, {record.due_micros(), key}});
    }
    record.set_due_micros(0);
    if (result.task.has_value()) {
      v1::Task& task = *result.task;
      task.set_id(store_.NewTaskId());
      std::string by_deal, by_user;
      common::AppendInt64(&by_deal, task.deal_id());
      common::AppendInt64(&by_deal, task.id());
      common::AppendInt64(&by_user, task.responsible_id());
      common::AppendInt64(&by_user, task.id());
      store_.Put(&batch, kTasksCf, common::EncodeInt64(task.id()), task);
      static_cast<void>(batch.Put(store_.cf(kTasksByDealCf), by_deal, ""));
      static_cast<void>(batch.Put(store_.cf(kTasksByUserCf), by_user, ""));
    }
    if (result.complete_stage_tasks) {
      std::string prefix;
      common::AppendInt64(&prefix, run.deal_id());
      auto it = store_.NewIterator(kTasksByDealCf);
      for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix);
           it->Next()) {
        const std::string index_key = it->key().ToString();
        common::KeyReader reader(index_key);
        int64_t deal_id = 0, task_id = 0;
        if (!reader.ReadInt64(&deal_id) || !reader.ReadInt64(&task_id))
          continue;
        v1::Task task;
        absl::StatusOr<bool> got =
            store_.GetProto(kTasksCf, common::EncodeInt64(task_id), &task);
        if (!got.ok()) return abandon("read of a task", got.status());
        if (!*got) continue;
        if (task.status() != v1::Task::STATUS_OPEN ||
            task.pipeline_id() != run.pipeline_id() ||
            task.stage_id() != run.stage_id()) {
          continue;
        }
        task.set_status(v1::Task::STATUS_COMPLETED);
        *task.mutable_complete_time() = ToTimestamp(now);
        store_.Put(&batch, kTasksCf, common::EncodeInt64(task_id), task);
      }
      if (absl::Status listed = common::FromRocksStatus(it->status(), "tasks");
          !listed.ok()) {
        return abandon("listing of a deal's tasks", listed);
      }
    }
    if (result.notification.has_value()) {
      v1::Notification& note = *result.notification;
      note.set_id(store_.NewNotificationId());
      std::string nkey;
      common::AppendInt64(&nkey, note.user_id());
      common::AppendInt64(&nkey, note.id());
      store_.Put(&batch, kNotificationsCf, nkey, note);
    }
    store_.Put(&batch, kRunsCf, key, record);
    // The next rule of the stage that waits for this one (and past it, any
    // that is skipped at once).
    int64_t finished_rule = run.rule_id();
    while (finished_rule != 0) {
      std::string prefix;
      common::AppendInt64(&prefix, run.deal_id());
      common::AppendInt64(&prefix, record.entry_seq());
      std::optional<std::pair<std::string, storage::RunRecord>> waiting;
      auto it = store_.NewIterator(kRunsCf);
      for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix);
           it->Next()) {
        storage::RunRecord next;
        if (!next.ParseFromArray(it->value().data(),
                                 static_cast<int>(it->value().size()))) {
          // Not retried: it would not read better next time.
          CRM_LOG(kError, "unreadable run record skipped",
                  {{"key", absl::CHexEscape(it->key().ToString())}});
          continue;
        }
        if (next.waiting_for_rule_id() == finished_rule &&
            next.run().outcome() == v1::Run::OUTCOME_SCHEDULED) {
          waiting.emplace(it->key().ToString(), std::move(next));
          break;
        }
      }
      if (absl::Status listed = common::FromRocksStatus(it->status(), "runs");
          !listed.ok()) {
        return abandon("listing of the stage's waiting runs", listed);
      }
      finished_rule = 0;
      if (!waiting.has_value()) break;
      auto& [next_key, next] = *waiting;
      if (!next.skip_reason().empty()) {
        next.set_waiting_for_rule_id(0);
        next.mutable_run()->set_outcome(v1::Run::OUTCOME_SKIPPED);
        next.mutable_run()->set_error(next.skip_reason());
        *next.mutable_run()->mutable_finish_time() = ToTimestamp(now);
        store_.Put(&batch, kRunsCf, next_key, next);
        finished_rule = next.run().rule_id();
        continue;
      }
      absl::Time due = now;
      const Catalog::RulePtr rule = catalog_.FindRule(next.run().rule_id());
      if (next.fixed_due_micros() != 0) {
        due = absl::FromUnixMicros(next.fixed_due_micros());
      } else if (rule != nullptr) {
        // A delay (or nothing): from now.
        due = DueTime(rule->timing(), dv1::Deal(), now, options_.zone)
                  .value_or(now);
      }
      Schedule(&next, next_key, due, &change);
      store_.Put(&batch, kRunsCf, next_key, next);
    }
  }
  // (Commit counts a failed write itself.)
  if (absl::Status written = Commit(change); !written.ok()) {
    return put_back(written);
  }
  if (options_.metrics != nullptr) {
    std::string outcome = v1::Run::Outcome_Name(run.outcome());
    absl::AsciiStrToLower(&outcome);
    options_.metrics->IncrementCounter(
        absl::StrCat("crm_automation_runs_", outcome.substr(strlen("outcome_")),
                     "_total"),
        "Rule runs and trigger moves that reached this outcome (retries "
        "count each attempt).");
  }
  if (run.outcome() == v1::Run::OUTCOME_FAILED) {
    CRM_LOG(kWarning, "rule run failed",
            {{"run_id", run.run_id()}, {"error", run.error()}});
  }
  in_flight_.erase(key);
  return true;
}

// ---------------------------------------------------------------- Queries

absl::StatusOr<Page<v1::Task>> AutomationEngine::ListTasks(
    const TaskQuery& query, const std::string& after_key, int limit) const {
  if (query.deal_id <= 0 && query.responsible_id <= 0) {
    return absl::InvalidArgumentError(
        "deal_id: name a deal or a responsible_id");
  }
  const bool by_deal = query.deal_id > 0;
  std::string prefix;
  common::AppendInt64(&prefix, by_deal ? query.deal_id : query.responsible_id);
  Page<v1::Task> page;
  common::ReplyBudget budget;  // a page also ends at the reply budget
  auto it = store_.NewIterator(by_deal ? kTasksByDealCf : kTasksByUserCf);
  if (after_key.empty()) {
    it->Seek(prefix);
  } else {
    it->Seek(after_key);
    if (it->Valid() && it->key().ToString() == after_key) it->Next();
  }
  for (; it->Valid() && it->key().starts_with(prefix); it->Next()) {
    const std::string index_key = it->key().ToString();
    common::KeyReader reader(index_key);
    int64_t owner = 0, task_id = 0;
    if (!reader.ReadInt64(&owner) || !reader.ReadInt64(&task_id)) continue;
    v1::Task task;
    CRM_ASSIGN_OR_RETURN(
        bool found,
        store_.GetProto(kTasksCf, common::EncodeInt64(task_id), &task));
    if (!found) continue;
    if (query.responsible_id > 0 &&
        task.responsible_id() != query.responsible_id)
      continue;
    if (query.status != v1::Task::STATUS_UNSPECIFIED &&
        task.status() != query.status)
      continue;
    if (static_cast<int>(page.items.size()) >= limit || budget.spent()) {
      page.more = true;
      break;
    }
    budget.Spend(task.ByteSizeLong());
    page.items.push_back(std::move(task));
    page.last_key = it->key().ToString();
  }
  CRM_RETURN_IF_ERROR(common::FromRocksStatus(it->status(), "tasks"));
  return page;
}

absl::StatusOr<v1::Task> AutomationEngine::GetTask(int64_t task_id) const {
  v1::Task task;
  CRM_ASSIGN_OR_RETURN(
      bool found,
      store_.GetProto(kTasksCf, common::EncodeInt64(task_id), &task));
  if (!found) {
    return absl::NotFoundError(absl::StrCat("task ", task_id, " not found"));
  }
  return task;
}

absl::StatusOr<v1::Task> AutomationEngine::CompleteTask(int64_t task_id) {
  absl::MutexLock lock(&mu_);
  CRM_ASSIGN_OR_RETURN(v1::Task task, GetTask(task_id));
  if (task.status() == v1::Task::STATUS_COMPLETED) return task;
  task.set_status(v1::Task::STATUS_COMPLETED);
  *task.mutable_complete_time() = ToTimestamp(clock_.Now());
  rocksdb::WriteBatch batch;
  store_.Put(&batch, kTasksCf, common::EncodeInt64(task_id), task);
  CRM_RETURN_IF_ERROR(store_.Write(&batch));
  return task;
}

namespace {

// Newest-first page over keys starting with `prefix`.
template <typename Record, typename Emit>
absl::Status ReversePage(const AutomationStore& store, std::string_view cf,
                         const std::string& prefix,
                         const std::string& after_key, int limit, Emit emit,
                         std::string* last_key, bool* more) {
  auto it = store.NewIterator(cf);
  if (after_key.empty()) {
    it->SeekForPrev(common::PrefixSuccessor(prefix));
    if (it->Valid() && !it->key().starts_with(prefix)) it->Prev();
  } else {
    it->SeekForPrev(after_key);
    if (it->Valid() && it->key().ToString() == after_key) it->Prev();
  }
  int count = 0;
  common::ReplyBudget budget;  // a page also ends at the reply budget
  for (; it->Valid() && it->key().starts_with(prefix); it->Prev()) {
    if (count >= limit || budget.spent()) {
      *more = true;
      break;
    }
    Record record;
    if (!record.ParseFromArray(it->value().data(),
                               static_cast<int>(it->value().size()))) {
      return absl::DataLossError(
          absl::StrCat("unreadable ", std::string(cf), " record"));
    }
    budget.Spend(it->value().size());
    emit(std::move(record));
    *last_key = it->key().ToString();
    ++count;
  }
  return common::FromRocksStatus(it->status(), cf);
}

}  // namespace

absl::StatusOr<Page<v1::Run>> AutomationEngine::ListRuns(
    int64_t deal_id, const std::string& after_key, int limit) const {
  if (deal_id <= 0)
    return absl::InvalidArgumentError("deal_id: must be a positive deal id");
  Page<v1::Run> page;
  CRM_RETURN_IF_ERROR(ReversePage<storage::RunRecord>(
      store_, kRunsCf, common::EncodeInt64(deal_id), after_key, limit,
      [&](storage::RunRecord record) {
        page.items.push_back(std::move(*record.mutable_run()));
      },
      &page.last_key, &page.more));
  return page;
}

absl::StatusOr<Page<v1::Notification>> AutomationEngine::ListNotifications(
    int64_t user_id, const std::string& after_key, int limit) const {
  if (user_id <= 0)
    return absl::InvalidArgumentError("user_id: must be a positive user id");
  Page<v1::Notification> page;
  CRM_RETURN_IF_ERROR(ReversePage<v1::Notification>(
      store_, kNotificationsCf, common::EncodeInt64(user_id), after_key, limit,
      [&](v1::Notification note) { page.items.push_back(std::move(note)); },
      &page.last_key, &page.more));
  return page;
}

}  // namespace crm::automation
