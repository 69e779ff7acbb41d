// What reporting keeps of one deal, how a deal event changes it, and what
// the deal contributes to the aggregate cells the reports sum.
//
// A report never reads deals: it sums cells. Each cell is keyed by what a
// report filters and groups on (pipeline, stage, assignee, opened flag,
// currency, and a day of one of three kinds: created, closed, last moved)
// and holds a count, an exact amount sum and the summed time to win. A
// deal's contribution is a function of its facts alone, so applying an
// event is: take the old contribution out, put the new one in. Nothing is
// counted twice, whatever changed (amount, currency, assignee, stage,
// pipeline), and a deleted deal leaves every cell, its finished stays in
// stages included.
//
// Days are calendar days in the service's time zone (period.h).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

#include "crm/deals/v1/deal_events.pb.h"

#include "common/money/decimal.h"
#include "common/money/decimal_sum.h"
#include "services/reporting/domain/funnel.h"

namespace crm::reporting {

// A finished stay of the deal in a stage, for time in stage.
struct StageStay {
  int64_t pipeline_id = 0;
  std::string stage_id;
  int64_t assignee_id = 0;  // who had the deal when it left
  bool opened = true;
  int64_t left_day = 0;  // DayNumber of leaving
  absl::Duration duration;

  friend bool operator==(const StageStay& a, const StageStay& b) {
    return std::tie(a.pipeline_id, a.stage_id, a.assignee_id, a.opened,
                    a.left_day, a.duration) ==
           std::tie(b.pipeline_id, b.stage_id, b.assignee_id, b.opened,
                    b.left_day, b.duration);
  }
};

struct DealFacts {
  int64_t deal_id = 0;
  int64_t pipeline_id = 0;
  std::string stage_id;
  StageKind kind = StageKind::kProcess;
  int64_t assignee_id = 0;
  bool opened = true;
  std::string currency;
  common::Decimal amount;
  absl::Time created;
  // When it entered its current stage, and its last stage change (or its
  // creation); the same moment, kept apart for clarity.
  absl::Time entered_stage;
  // When it entered the WON or failure stage it is in; unset in progress.
  std::optional<absl::Time> closed;
  // The furthest process stage reached in this pipeline, as its position
  // among the pipeline's stages; -1 for none (created closed).
  int furthest_process = -1;
  std::string furthest_process_stage;
  // Finished stays, oldest first.
  std::vector<StageStay> stays;
};

// What reporting needs to know of a stage: its kind and position.
struct StagePlace {
  StageKind kind = StageKind::kProcess;
  int index = 0;
};

// The facts after `event`, given the facts before it (nullopt for a deal
// not seen yet) and where the stage the deal is in after the event sits in
// its pipeline. nullopt after a deletion. A deal first seen by a later
// event (its creation no longer in deals' outbox) is taken as the event
// shows it. INVALID_ARGUMENT for a malformed amount.
absl::StatusOr<std::optional<DealFacts>> ApplyEvent(
    const std::optional<DealFacts>& before,
    const crm::deals::v1::DealEvent& event, const StagePlace& entered,
    absl::TimeZone zone);

enum class DayKind { kCreated = 1, kClosed = 2, kMoved = 3 };

// A cell of the aggregates. kStage cells: deals by their current stage.
// kReach cells: deals by the furthest process stage reached and the stage
// they ended in ("" in progress), for the conversion funnel.
struct CellKey {
  enum class Cube { kStage = 1, kReach = 2 };
  Cube cube = Cube::kStage;
  DayKind day_kind = DayKind::kCreated;
  int64_t day = 0;
  int64_t pipeline_id = 0;
  std::string stage_id;
  std::string end_stage_id;  // kReach only
  int64_t assignee_id = 0;
  bool opened = true;
  std::string currency;

  // Key order for maps: every field.
  auto Tuple() const {
    return std::tie(cube, day_kind, day, pipeline_id, stage_id, end_stage_id,
                    assignee_id, opened, currency);
  }
};

inline bool operator<(const CellKey& a, const CellKey& b) {
  return a.Tuple() < b.Tuple();
}
inline bool operator==(const CellKey& a, const CellKey& b) {
  return a.Tuple() == b.Tuple();
}

struct CellValue {
  int64_t deals = 0;
  common::DecimalSum amount;
  // Creation to win, summed over the won deals of the cell.
  int64_t seconds_to_win = 0;

  void Add(const CellValue& other, int sign);
  bool IsZero() const {
    return deals == 0 && amount.IsZero() && seconds_to_win == 0;
  }
};

// The cells the deal counts in, one value each (a deal counts once per
// cube and day kind; the closed day only once closed).
std::vector<std::pair<CellKey, CellValue>> Contribution(const DealFacts& facts,
                                                        absl::TimeZone zone);

}  // namespace crm::reporting
