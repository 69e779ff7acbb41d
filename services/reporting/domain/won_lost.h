// Won vs lost by day, week or month: per-day tallies (as the store keeps
// them) summed into the buckets of a period. Every bucket of the period
// is answered, empty ones included, so a chart needs no gap filling; days
// outside the period are left out, also where a week or month bucket
// reaches past it.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/civil_time.h"

#include "services/reporting/domain/funnel.h"
#include "services/reporting/domain/period.h"

namespace crm::reporting {

struct DayTallies {
  int64_t day_number = 0;  // DayNumber() of the day of closing
  Tally won;
  Tally lost;
};

struct WonLostRow {
  absl::CivilDay bucket;  // its first day
  Tally won;
  Tally lost;
};

// RESOURCE_EXHAUSTED as Buckets() past kMaxBuckets.
absl::StatusOr<std::vector<WonLostRow>> WonVsLost(
    const Period& period, BucketSize size, const std::vector<DayTallies>& days);

}  // namespace crm::reporting
