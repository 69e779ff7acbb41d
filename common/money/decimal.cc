#include "common/money/decimal.h"

#include <cstdint>
#include <limits>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace crm::common {
namespace {

// GCC/Clang extension; __extension__ keeps -Wpedantic quiet.
__extension__ typedef __int128 Int128;
__extension__ typedef unsigned __int128 UInt128;

constexpr int64_t kMaxUnits = std::numeric_limits<int64_t>::max();
constexpr int64_t kMinUnits = std::numeric_limits<int64_t>::min();

constexpr int64_t kPow10[] = {1, 10, 100, 1'000, 10'000, 100'000, 1'000'000};

bool FitsInt64(Int128 v) { return v >= kMinUnits && v <= kMaxUnits; }

UInt128 Magnitude(Int128 v) {
  // Well defined for every value reachable here (|v| < 2^127).
  return v < 0 ? static_cast<UInt128>(-v) : static_cast<UInt128>(v);
}

absl::Status Overflow(std::string_view what) {
  return absl::OutOfRangeError(
      absl::StrCat("decimal overflow in ", std::string(what)));
}

absl::Status CheckPlaces(int places) {
  if (places < 0 || places > Decimal::kScale) {
    // A caller bug, not bad input.
    return absl::InternalError(absl::StrCat("decimal places must be 0..",
                                            Decimal::kScale, ", got ", places));
  }
  return absl::OkStatus();
}

// numerator / denominator (denominator > 0, both magnitudes) rounded half
// away from zero.
UInt128 DivRoundHalfUp(UInt128 numerator, UInt128 denominator) {
  UInt128 quotient = numerator / denominator;
  const UInt128 remainder = numerator % denominator;
  // remainder < denominator < 2^127, so doubling cannot overflow.
  if (remainder * 2 >= denominator) ++quotient;
  return quotient;
}

}  // namespace

absl::StatusOr<Decimal> Decimal::Parse(std::string_view text,
                                       std::string_view field) {
  const auto syntax_error = [&] {
    return absl::InvalidArgumentError(
        absl::StrCat(std::string(field),
                     ": not a decimal number (digits, an optional sign and an "
                     "optional fraction like -12.5)"));
  };
  const auto range_error = [&] {
    return absl::InvalidArgumentError(
        absl::StrCat(std::string(field),
                     ": out of range (at most 9223372036854.775807 in "
                     "magnitude)"));
  };
  size_t i = 0;
  bool negative = false;
  if (i < text.size() && (text[i] == '+' || text[i] == '-')) {
    negative = text[i] == '-';
    ++i;
  }
  const auto is_digit = [](char c) { return c >= '0' && c <= '9'; };
  // Magnitude in micro units; the limit is |INT64_MIN| for negatives.
  const UInt128 limit =
      negative ? static_cast<UInt128>(kMaxUnits) + 1 : kMaxUnits;
  UInt128 whole = 0;
  const size_t whole_begin = i;
  for (; i < text.size() && is_digit(text[i]); ++i) {
    whole = whole * 10 + static_cast<unsigned>(text[i] - '0');
    // Checked per digit so that arbitrarily long inputs cannot overflow.
    if (whole * kUnitsPerOne > limit) return range_error();
  }
  if (i == whole_begin) return syntax_error();
  UInt128 fraction = 0;
  int fraction_digits = 0;
  if (i < text.size() && text[i] == '.') {
    ++i;
    const size_t fraction_begin = i;
    for (; i < text.size() && is_digit(text[i]); ++i) {
      if (fraction_digits == kScale) {
        // Keep scanning so that "1.0000000x" is a syntax error, not a
        // places error.
        continue;
      }
      fraction = fraction * 10 + static_cast<unsigned>(text[i] - '0');
      ++fraction_digits;
    }
    if (i == fraction_begin) return syntax_error();
    if (i != text.size()) return syntax_error();
    if (i - fraction_begin > static_cast<size_t>(kScale)) {
      return absl::InvalidArgumentError(absl::StrCat(
          std::string(field), ": at most ", kScale, " decimal places"));
    }
  }
  if (i != text.size()) return syntax_error();
  const UInt128 magnitude =
      whole * kUnitsPerOne + fraction * kPow10[kScale - fraction_digits];
  if (magnitude > limit) return range_error();
  const Int128 value = negative ? -static_cast<Int128>(magnitude)
                                : static_cast<Int128>(magnitude);
  return Decimal(static_cast<int64_t>(value));
}

absl::StatusOr<Decimal> Decimal::FromInt(int64_t value) {
  const Int128 units = static_cast<Int128>(value) * kUnitsPerOne;
  if (!FitsInt64(units)) {
    return absl::OutOfRangeError(
        absl::StrCat("decimal overflow: ", value, " is too large"));
  }
  return Decimal(static_cast<int64_t>(units));
}

absl::StatusOr<Decimal> Decimal::Add(const Decimal& other) const {
  const Int128 sum = static_cast<Int128>(units_) + other.units_;
  if (!FitsInt64(sum)) return Overflow("addition");
  return Decimal(static_cast<int64_t>(sum));
}

absl::StatusOr<Decimal> Decimal::Sub(const Decimal& other) const {
  const Int128 difference = static_cast<Int128>(units_) - other.units_;
  if (!FitsInt64(difference)) return Overflow("subtraction");
  return Decimal(static_cast<int64_t>(difference));
}

absl::StatusOr<Decimal> Decimal::MulDiv(const Decimal& a, const Decimal& b,
                                        const Decimal& c, int places) {
  if (absl::Status s = CheckPlaces(places); !s.ok()) return s;
  if (c.units_ == 0) {
    return absl::InvalidArgumentError("decimal division by zero");
  }
  // Value a*b/c in micro units is a.units * b.units / c.units. Rounding to
  // `places` digits divides by a further 10^(6 - places).
  // |a.units * b.units| <= 2^126 and |c.units| * 10^6 < 2^84: both fit.
  const Int128 product = static_cast<Int128>(a.units_) * b.units_;
  const bool negative = (product < 0) != (c.units_ < 0) && product != 0;
  const int64_t step = kPow10[kScale - places];
  const UInt128 steps = DivRoundHalfUp(
      Magnitude(product), Magnitude(static_cast<Int128>(c.units_)) * step);
  // Checked before scaling back so the multiplication cannot overflow.
  if (steps > static_cast<UInt128>(kMaxUnits) + 1)
    return Overflow("multiplication or division");
  const Int128 magnitude = static_cast<Int128>(steps) * step;
  const Int128 result = negative ? -magnitude : magnitude;
  if (!FitsInt64(result)) return Overflow("multiplication or division");
  return Decimal(static_cast<int64_t>(result));
}

absl::StatusOr<Decimal> Decimal::MultiplyBy(const Decimal& other,
                                            int places) const {
  return MulDiv(*this, other, Decimal(kUnitsPerOne), places);
}

absl::StatusOr<Decimal> Decimal::DivideBy(const Decimal& divisor,
                                          int places) const {
  return MulDiv(*this, Decimal(kUnitsPerOne), divisor, places);
}

absl::StatusOr<Decimal> Decimal::RoundTo(int places) const {
  return MulDiv(*this, Decimal(kUnitsPerOne), Decimal(kUnitsPerOne), places);
}

std::string Decimal::ToString() const { return ToString(0); }

std::string Decimal::ToString(int min_places) const {
  if (min_places < 0) min_places = 0;
  if (min_places > kScale) min_places = kScale;
  const UInt128 magnitude = Magnitude(units_);
  const uint64_t whole = static_cast<uint64_t>(magnitude / kUnitsPerOne);
  uint64_t fraction = static_cast<uint64_t>(magnitude % kUnitsPerOne);
  std::string out;
  if (units_ < 0) out.push_back('-');
  out += std::to_string(whole);
  int places = kScale;
  while (places > min_places && fraction % 10 == 0) {
    fraction /= 10;
    --places;
  }
  if (places > 0) {
    std::string digits = std::to_string(fraction);
    out.push_back('.');
    out.append(static_cast<size_t>(places) - digits.size(), '0');
    out += digits;
  }
  return out;
}

}  // namespace crm::common
