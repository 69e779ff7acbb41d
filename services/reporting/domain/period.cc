#include "services/reporting/domain/period.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace crm::reporting {
namespace {

constexpr absl::CivilDay kEpoch(1970, 1, 1);

absl::StatusOr<absl::CivilDay> ParseDay(std::string_view text,
                                        const std::string& field) {
  if (text.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": required (a date, YYYY-MM-DD)"));
  }
  absl::CivilDay day;
  // ParseCivilTime takes "2026-3-1" and normalises "2026-02-30" to
  // March 2nd; a date is taken only in its one canonical spelling.
  if (text.size() != 10 ||
      !absl::ParseCivilTime(absl::string_view(text.data(), text.size()),
                            &day) ||
      FormatDay(day) != text) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": \"", std::string(text),
                     "\" is not a date of the form YYYY-MM-DD"));
  }
  return day;
}

}  // namespace

absl::StatusOr<Period> ParsePeriod(std::string_view from, std::string_view to,
                                   std::string_view field) {
  const std::string name(field);
  absl::StatusOr<absl::CivilDay> first = ParseDay(from, name + ".from");
  if (!first.ok()) return first.status();
  absl::StatusOr<absl::CivilDay> last = ParseDay(to, name + ".to");
  if (!last.ok()) return last.status();
  if (*last < *first) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": to (", FormatDay(*last), ") is before from (",
                     FormatDay(*first), ")"));
  }
  Period period{*first, *last};
  if (period.days() > kMaxPeriodDays) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": ", period.days(), " days is longer than the ",
                     kMaxPeriodDays, " a report covers"));
  }
  return period;
}

Period PreviousPeriod(const Period& period) {
  const int64_t length = period.days();
  return Period{period.first - length, period.first - 1};
}

absl::CivilDay DayOf(absl::Time time, absl::TimeZone zone) {
  return absl::ToCivilDay(time, zone);
}

int64_t DayNumber(absl::CivilDay day) { return day - kEpoch; }

absl::CivilDay FromDayNumber(int64_t day_number) { return kEpoch + day_number; }

absl::CivilDay BucketStart(absl::CivilDay day, BucketSize size) {
  switch (size) {
    case BucketSize::kDay:
      return day;
    case BucketSize::kWeek:
      return absl::PrevWeekday(day + 1, absl::Weekday::monday);
    case BucketSize::kMonth:
      return absl::CivilDay(absl::CivilMonth(day));
  }
  return day;
}

absl::StatusOr<std::vector<absl::CivilDay>> Buckets(const Period& period,
                                                    BucketSize size) {
  std::vector<absl::CivilDay> starts;
  for (absl::CivilDay start = BucketStart(period.first, size);
       start <= period.last;) {
    if (static_cast<int64_t>(starts.size()) >= kMaxBuckets) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "bucket: more than ", kMaxBuckets,
          " buckets in the period; use a larger bucket or a shorter period"));
    }
    starts.push_back(start);
    switch (size) {
      case BucketSize::kDay:
        start += 1;
        break;
      case BucketSize::kWeek:
        start += 7;
        break;
      case BucketSize::kMonth:
        start = absl::CivilDay(absl::CivilMonth(start) + 1);
        break;
    }
  }
  return starts;
}

std::string FormatDay(absl::CivilDay day) {
  return absl::StrFormat("%04d-%02d-%02d", day.year(), day.month(), day.day());
}

}  // namespace crm::reporting
