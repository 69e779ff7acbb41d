// Employee performance rows from per-assignee totals of one pipeline and
// currency: deals in progress, won and lost in the period (count, amount),
// the average won amount, conversion (won / closed) and losses (lost /
// closed), the change of the won amount against the previous period of the
// same length, and the average time from creation to win.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "absl/time/time.h"

#include "common/money/decimal_sum.h"
#include "services/reporting/domain/funnel.h"
#include "services/reporting/domain/percent.h"

namespace crm::reporting {

struct AssigneeTotals {
  int64_t assignee_id = 0;
  Tally in_progress;
  Tally won;
  Tally lost;
  // Won in the previous period.
  common::DecimalSum won_amount_before;
  // Summed over the won deals: creation to win, in whole seconds.
  int64_t seconds_to_win = 0;
};

struct PerformanceRow {
  int64_t assignee_id = 0;
  Tally in_progress;
  Tally won;
  Tally lost;
  // Exact to a micro unit; zero when nothing was won.
  common::DecimalSum won_average;
  // Percent strings as Percent(); absent when their base is zero (no
  // closed deals; nothing won before).
  std::optional<std::string> conversion_percent;
  std::optional<std::string> loss_percent;
  std::optional<std::string> won_change_percent;
  absl::Duration average_time_to_win;
};

PerformanceRow Performance(const AssigneeTotals& totals);

}  // namespace crm::reporting
