#include "services/reporting/domain/won_lost.h"

#include <algorithm>

namespace crm::reporting {

absl::StatusOr<std::vector<WonLostRow>> WonVsLost(
    const Period& period, BucketSize size,
    const std::vector<DayTallies>& days) {
  absl::StatusOr<std::vector<absl::CivilDay>> starts = Buckets(period, size);
  if (!starts.ok()) return starts.status();
  std::vector<WonLostRow> rows(starts->size());
  for (size_t i = 0; i < rows.size(); ++i) rows[i].bucket = (*starts)[i];
  for (const DayTallies& day : days) {
    const absl::CivilDay civil = FromDayNumber(day.day_number);
    if (!period.Contains(civil)) continue;
    // The bucket whose start is the last at or before the day.
    const absl::CivilDay start = BucketStart(civil, size);
    auto it = std::lower_bound(
        rows.begin(), rows.end(), start,
        [](const WonLostRow& row, absl::CivilDay s) { return row.bucket < s; });
    if (it == rows.end() || it->bucket != start) continue;  // cannot happen
    it->won.Add(day.won);
    it->lost.Add(day.lost);
  }
  return rows;
}

}  // namespace crm::reporting
