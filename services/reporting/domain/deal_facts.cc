#include "services/reporting/domain/deal_facts.h"

#include <algorithm>
#include <utility>

#include "absl/status/status.h"

#include "common/time/proto_time.h"
#include "services/reporting/domain/period.h"

namespace crm::reporting {
namespace {

namespace dv1 = ::crm::deals::v1;

absl::Time TimeOr(const google::protobuf::Timestamp& stamp, absl::Time other) {
  if (stamp.seconds() == 0 && stamp.nanos() == 0) return other;
  return common::FromTimestamp(stamp);
}

int64_t Day(absl::Time time, absl::TimeZone zone) {
  return DayNumber(DayOf(time, zone));
}

// Places the deal in the entered stage: kind, closing, furthest reached.
void Enter(DealFacts* facts, const std::string& stage_id,
           const StagePlace& place, absl::Time at, bool new_pipeline) {
  facts->stage_id = stage_id;
  facts->kind = place.kind;
  facts->entered_stage = at;
  // Closed when it enters a WON or failure stage (again: the latest
  // closing counts); reopened when it goes back to a process stage.
  facts->closed = place.kind == StageKind::kProcess
                      ? std::nullopt
                      : std::optional<absl::Time>(at);
  if (new_pipeline) {
    facts->furthest_process = -1;
    facts->furthest_process_stage.clear();
  }
  if (place.kind == StageKind::kProcess &&
      place.index > facts->furthest_process) {
    facts->furthest_process = place.index;
    facts->furthest_process_stage = stage_id;
  }
}

}  // namespace

void CellValue::Add(const CellValue& other, int sign) {
  deals += sign * other.deals;
  if (sign > 0) {
    amount.Add(other.amount);
  } else {
    amount.Subtract(other.amount);
  }
  seconds_to_win += sign * other.seconds_to_win;
}

absl::StatusOr<std::optional<DealFacts>> ApplyEvent(
    const std::optional<DealFacts>& before, const dv1::DealEvent& event,
    const StagePlace& entered, absl::TimeZone zone) {
  if (event.type() == dv1::DEAL_EVENT_TYPE_DELETED) return std::nullopt;
  const dv1::Deal& deal = event.deal();
  const absl::Time at = TimeOr(event.occur_time(), absl::UnixEpoch());
  common::Decimal amount;
  if (!deal.amount().empty()) {
    absl::StatusOr<common::Decimal> parsed =
        common::Decimal::Parse(deal.amount(), "deal.amount");
    if (!parsed.ok()) return parsed.status();
    amount = *parsed;
  }
  DealFacts facts;
  const bool moved = event.type() == dv1::DEAL_EVENT_TYPE_STAGE_CHANGED ||
                     event.type() == dv1::DEAL_EVENT_TYPE_PIPELINE_CHANGED;
  if (!before.has_value() || event.type() == dv1::DEAL_EVENT_TYPE_CREATED) {
    // A creation, or the first event seen of a deal (its creation was
    // trimmed from deals' outbox before we read it): the deal as the event
    // shows it, entered where it is now.
    facts.deal_id = deal.id() != 0 ? deal.id() : event.deal_id();
    facts.pipeline_id = deal.pipeline_id();
    facts.created = TimeOr(deal.create_time(), at);
    Enter(&facts, deal.stage_id(), entered,
          TimeOr(deal.move_time(), facts.created), /*new_pipeline=*/true);
  } else {
    facts = *before;
    if (moved) {
      StageStay stay;
      stay.pipeline_id = before->pipeline_id;
      stay.stage_id = before->stage_id;
      stay.assignee_id = before->assignee_id;
      stay.opened = before->opened;
      stay.left_day = Day(at, zone);
      stay.duration =
          std::max(at - before->entered_stage, absl::ZeroDuration());
      facts.stays.push_back(std::move(stay));
      const bool new_pipeline = event.to_pipeline_id() != before->pipeline_id;
      facts.pipeline_id = event.to_pipeline_id();
      Enter(&facts, event.to_stage_id(), entered, at, new_pipeline);
    }
  }
  facts.assignee_id = deal.assignee_id();
  facts.opened = !deal.has_opened() || deal.opened();
  facts.currency = deal.currency();
  facts.amount = amount;
  return facts;
}

std::vector<std::pair<CellKey, CellValue>> Contribution(const DealFacts& facts,
                                                        absl::TimeZone zone) {
  CellValue value;
  value.deals = 1;
  value.amount.Add(facts.amount);
  if (facts.kind == StageKind::kWon && facts.closed.has_value()) {
    value.seconds_to_win = absl::ToInt64Seconds(
        std::max(*facts.closed - facts.created, absl::ZeroDuration()));
  }
  std::vector<std::pair<DayKind, int64_t>> days = {
      {DayKind::kCreated, Day(facts.created, zone)},
      {DayKind::kMoved, Day(facts.entered_stage, zone)}};
  if (facts.closed.has_value())
    days.emplace_back(DayKind::kClosed, Day(*facts.closed, zone));
  std::vector<std::pair<CellKey, CellValue>> cells;
  for (CellKey::Cube cube : {CellKey::Cube::kStage, CellKey::Cube::kReach}) {
    for (const auto& [kind, day] : days) {
      CellKey key;
      key.cube = cube;
      key.day_kind = kind;
      key.day = day;
      key.pipeline_id = facts.pipeline_id;
      key.assignee_id = facts.assignee_id;
      key.opened = facts.opened;
      key.currency = facts.currency;
      if (cube == CellKey::Cube::kStage) {
        key.stage_id = facts.stage_id;
      } else {
        key.stage_id = facts.furthest_process_stage;
        if (facts.kind != StageKind::kProcess)
          key.end_stage_id = facts.stage_id;
      }
      cells.emplace_back(std::move(key), value);
    }
  }
  return cells;
}

}  // namespace crm::reporting
