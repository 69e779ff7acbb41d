#include "services/reporting/domain/percent.h"

#include "absl/strings/str_format.h"

namespace crm::reporting {
namespace {

__extension__ typedef __int128 Int128;
__extension__ typedef unsigned __int128 UInt128;

UInt128 Magnitude(Int128 value) {
  return value < 0 ? static_cast<UInt128>(0) - static_cast<UInt128>(value)
                   : static_cast<UInt128>(value);
}

// part / whole in hundredths of a percent, rounded half up, printed.
std::optional<std::string> Ratio(Int128 part, Int128 whole) {
  if (whole == 0) return std::nullopt;
  const bool negative = (part < 0) != (whole < 0) && part != 0;
  UInt128 p = Magnitude(part);
  UInt128 w = Magnitude(whole);
  // Exact while both stay below 2^100 (10^24 in micro units of money, far
  // past any real sum); beyond, both are scaled down alike, which moves the
  // result by far less than the last printed digit.
  while (p >= (static_cast<UInt128>(1) << 100) ||
         w >= (static_cast<UInt128>(1) << 100)) {
    p >>= 1;
    w >>= 1;
  }
  if (w == 0) return std::nullopt;
  const UInt128 hundredths = p / w * 10000 + (p % w * 20000 + w) / (2 * w);
  return absl::StrFormat("%s%d.%02d", negative ? "-" : "",
                         static_cast<uint64_t>(hundredths / 100),
                         static_cast<int>(hundredths % 100));
}

Int128 UnitsOf(const common::DecimalSum& sum) {
  return static_cast<Int128>(
      (static_cast<UInt128>(static_cast<uint64_t>(sum.hi())) << 64) | sum.lo());
}

}  // namespace

std::optional<std::string> Percent(int64_t part, int64_t whole) {
  return Ratio(part, whole);
}

std::optional<std::string> PercentChange(const common::DecimalSum& now,
                                         const common::DecimalSum& before) {
  const Int128 b = UnitsOf(before);
  return Ratio(UnitsOf(now) - b, b);
}

}  // namespace crm::reporting
