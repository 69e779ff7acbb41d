#include "common/money/decimal_sum.h"

#include <algorithm>

namespace crm::common {
namespace {
__extension__ typedef unsigned __int128 UInt128;
__extension__ typedef __int128 SignedInt128;

// |value|; the magnitude of the most negative value still fits unsigned.
UInt128 Magnitude(SignedInt128 value) {
  return value < 0 ? static_cast<UInt128>(0) - static_cast<UInt128>(value)
                   : static_cast<UInt128>(value);
}
}  // namespace

DecimalSum DecimalSum::FromParts(int64_t hi, uint64_t lo) {
  DecimalSum sum;
  const UInt128 bits =
      (static_cast<UInt128>(static_cast<uint64_t>(hi)) << 64) | lo;
  sum.units_ = static_cast<Int128>(bits);
  return sum;
}

DecimalSum DecimalSum::DividedBy(int64_t n) const {
  DecimalSum result;
  if (n <= 0) return result;
  const bool negative = units_ < 0;
  const UInt128 magnitude = Magnitude(units_);
  const UInt128 divisor = static_cast<UInt128>(n);
  UInt128 quotient = magnitude / divisor;
  // Half or more of the divisor left over rounds up (away from zero).
  if ((magnitude % divisor) * 2 >= divisor) ++quotient;
  result.units_ =
      negative ? -static_cast<Int128>(quotient) : static_cast<Int128>(quotient);
  return result;
}

int64_t DecimalSum::hi() const {
  return static_cast<int64_t>(
      static_cast<uint64_t>(static_cast<UInt128>(units_) >> 64));
}

uint64_t DecimalSum::lo() const {
  return static_cast<uint64_t>(static_cast<UInt128>(units_));
}

std::string DecimalSum::ToString(int min_places) const {
  min_places = std::clamp(min_places, 0, Decimal::kScale);
  const bool negative = units_ < 0;
  const UInt128 magnitude = Magnitude(units_);
  UInt128 whole = magnitude / Decimal::kUnitsPerOne;
  uint64_t fraction = static_cast<uint64_t>(magnitude % Decimal::kUnitsPerOne);
  std::string digits;
  do {
    digits.push_back(static_cast<char>('0' + static_cast<int>(whole % 10)));
    whole /= 10;
  } while (whole != 0);
  std::string out;
  if (negative) out.push_back('-');
  out.append(digits.rbegin(), digits.rend());
  int places = Decimal::kScale;
  while (places > min_places && fraction % 10 == 0) {
    fraction /= 10;
    --places;
  }
  if (places > 0) {
    const std::string tail = std::to_string(fraction);
    out.push_back('.');
    out.append(static_cast<size_t>(places) - tail.size(), '0');
    out += tail;
  }
  return out;
}

}  // namespace crm::common
