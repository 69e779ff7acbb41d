#include "services/reporting/domain/performance.h"

#include "services/reporting/domain/percent.h"

namespace crm::reporting {
PerformanceRow Performance(const AssigneeTotals& totals) {
  PerformanceRow row;
  row.assignee_id = totals.assignee_id;
  row.in_progress = totals.in_progress;
  row.won = totals.won;
  row.lost = totals.lost;
  if (totals.won.deals > 0) {
    row.won_average = totals.won.amount.DividedBy(totals.won.deals);
    row.average_time_to_win =
        absl::Seconds(totals.seconds_to_win) / totals.won.deals;
  }
  const int64_t closed = totals.won.deals + totals.lost.deals;
  row.conversion_percent = Percent(totals.won.deals, closed);
  row.loss_percent = Percent(totals.lost.deals, closed);
  row.won_change_percent =
      PercentChange(totals.won.amount, totals.won_amount_before);
  return row;
}

}  // namespace crm::reporting
