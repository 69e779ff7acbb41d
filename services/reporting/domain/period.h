// Report periods and time buckets, in the report's time zone.
//
// A period is a range of whole calendar days, both ends included: from
// 2026-03-01 to 2026-03-31 is every moment from 2026-03-01 00:00 to
// 2026-04-01 00:00 (exclusive) in the zone, so "closed in March" means the
// same thing in Lisbon as the user sees it on the calendar, daylight
// saving time included. Buckets (day, ISO week starting Monday, month)
// are named by their first day; a bucket only partly inside the period
// counts only its days inside.
//
// Aggregates are kept per day (DayNumber: days since 1970-01-01 in the
// zone), so any period and bucket size is a sum over whole days.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/civil_time.h"
#include "absl/time/time.h"

namespace crm::reporting {

enum class BucketSize { kDay, kWeek, kMonth };

// Days [first, last], both included.
struct Period {
  absl::CivilDay first;
  absl::CivilDay last;

  int64_t days() const { return last - first + 1; }
  bool Contains(absl::CivilDay day) const {
    return day >= first && day <= last;
  }
  friend bool operator==(const Period& a, const Period& b) {
    return a.first == b.first && a.last == b.last;
  }
};

// The longest period a report takes (about 20 years).
inline constexpr int64_t kMaxPeriodDays = 20 * 366;
// The most buckets one report answers.
inline constexpr int64_t kMaxBuckets = 1000;

// Parses "YYYY-MM-DD" dates into a period. INVALID_ARGUMENT naming
// `field`.from or `field`.to when one is missing or not a date, and `field`
// when the end comes before the start (an inverted period) or the period
// is longer than kMaxPeriodDays (an unbounded one).
absl::StatusOr<Period> ParsePeriod(std::string_view from, std::string_view to,
                                   std::string_view field = "period");

// The period of the same length that ends the day before `period` starts
// (the "previous period" that performance compares against).
Period PreviousPeriod(const Period& period);

// The calendar day of `time` in `zone`.
absl::CivilDay DayOf(absl::Time time, absl::TimeZone zone);
// Days since 1970-01-01 (negative before), and back.
int64_t DayNumber(absl::CivilDay day);
absl::CivilDay FromDayNumber(int64_t day_number);

// The first day of the bucket holding `day`: the day itself, the Monday of
// its week, or the first of its month.
absl::CivilDay BucketStart(absl::CivilDay day, BucketSize size);

// The buckets covering `period`, each named by its start (the first may
// start before the period). RESOURCE_EXHAUSTED past kMaxBuckets, naming
// the bucket size to use instead.
absl::StatusOr<std::vector<absl::CivilDay>> Buckets(const Period& period,
                                                    BucketSize size);

// "2026-03-01".
std::string FormatDay(absl::CivilDay day);

}  // namespace crm::reporting
