#include "services/reporting/domain/performance.h"

#include "absl/strings/str_format.h"

namespace crm::reporting {
namespace {

__extension__ typedef __int128 Int128;
__extension__ typedef unsigned __int128 UInt128;

Int128 UnitsOf(const common::DecimalSum& sum) {
  return static_cast<Int128>(
      (static_cast<UInt128>(static_cast<uint64_t>(sum.hi())) << 64) | sum.lo());
}

UInt128 Magnitude(Int128 value) {
  return value < 0 ? static_cast<UInt128>(0) - static_cast<UInt128>(value)
                   : static_cast<UInt128>(value);
}

}  // namespace

std::optional<std::string> PercentChange(const common::DecimalSum& now,
                                         const common::DecimalSum& before) {
  const Int128 b = UnitsOf(before);
  if (b == 0) return std::nullopt;
  const Int128 delta = UnitsOf(now) - b;
  const bool negative = (delta < 0) != (b < 0) && delta != 0;
  UInt128 part = Magnitude(delta);
  UInt128 whole = Magnitude(b);
  // Exact while the magnitudes stay below 2^100 micro units (10^24 in
  // money, far past any real sum); beyond, both are scaled down alike,
  // which moves the result by far less than the last printed digit.
  while (part >= (static_cast<UInt128>(1) << 100) ||
         whole >= (static_cast<UInt128>(1) << 100)) {
    part >>= 1;
    whole >>= 1;
  }
  if (whole == 0) return std::nullopt;
  const UInt128 quotient = part / whole;
  const UInt128 rest = part % whole;
  const UInt128 hundredths =
      quotient * 10000 + (rest * 20000 + whole) / (2 * whole);
  return absl::StrFormat("%s%d.%02d", negative ? "-" : "",
                         static_cast<uint64_t>(hundredths / 100),
                         static_cast<int>(hundredths % 100));
}

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
