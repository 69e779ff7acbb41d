#include "services/automation/engine/runs.h"

#include <climits>
#include <optional>

#include "common/deal_filter/deal_query.h"
#include "common/time/proto_time.h"

namespace crm::automation {

namespace dv1 = ::crm::deals::v1;

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

bool Immediate(const v1::Timing& timing) {
  return timing.kind() == v1::Timing::KIND_UNSPECIFIED ||
         timing.kind() == v1::Timing::KIND_IMMEDIATE;
}

int64_t EnteredMicros(const dv1::Deal& deal) {
  const google::protobuf::Timestamp& time =
      deal.has_move_time() ? deal.move_time() : deal.create_time();
  return absl::ToUnixMicros(common::FromTimestamp(time));
}

bool ChangesDeal(const v1::Action& action) {
  return action.has_change_stage() || action.has_move_to_pipeline() ||
         action.has_change_assignee() || action.has_set_fields() ||
         action.has_add_comment();
}

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

bool DealsIsAway(const absl::Status& status) {
  return status.code() == absl::StatusCode::kUnavailable ||
         status.code() == absl::StatusCode::kDeadlineExceeded ||
         status.code() == absl::StatusCode::kResourceExhausted ||
         status.code() == absl::StatusCode::kAborted ||
         status.code() == absl::StatusCode::kCancelled;
}

bool MadeByEarlierAttempt(const absl::Status& status) {
  return absl::IsAlreadyExists(status);
}

bool OutsideWillRecover(const absl::Status& status) {
  return status.code() != absl::StatusCode::kFailedPrecondition &&
         status.code() != absl::StatusCode::kInvalidArgument &&
         status.code() != absl::StatusCode::kPermissionDenied;
}

const v1::Trigger* ChooseTrigger(
    const crm::common::ConfigView& config, const dv1::Deal& deal,
    const std::vector<const v1::Trigger*>& candidates) {
  const std::optional<int> current =
      config.StageIndex(deal.pipeline_id(), deal.stage_id());
  const v1::Trigger* best = nullptr;
  int best_index = INT_MAX;
  for (const v1::Trigger* trigger : candidates) {
    if (trigger->pipeline_id() != deal.pipeline_id() ||
        trigger->stage_id() == deal.stage_id()) {
      continue;
    }
    const std::optional<int> index =
        config.StageIndex(trigger->pipeline_id(), trigger->stage_id());
    if (!index.has_value()) continue;  // its stage was deleted
    if (!trigger->allow_backwards() && current.has_value() &&
        *index <= *current) {
      continue;
    }
    if (trigger->has_condition()) {
      auto condition =
          crm::common::CompiledFilter::Compile(trigger->condition(), config);
      if (!condition.ok() || !condition->Matches(deal)) continue;
    }
    if (*index < best_index) {
      best = trigger;
      best_index = *index;
    }
  }
  return best;
}

}  // namespace crm::automation
