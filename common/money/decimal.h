// Exact fixed-point decimal for money amounts, quantities and rates: never
// binary floating point.
//
//   CRM_ASSIGN_OR_RETURN(Decimal price, Decimal::Parse(req.price(), "price"));
//   CRM_ASSIGN_OR_RETURN(Decimal qty, Decimal::Parse(req.quantity(),
//                                                    "quantity"));
//   CRM_ASSIGN_OR_RETURN(Decimal sum, price.MultiplyBy(qty, /*places=*/2));
//   reply.set_amount(sum.ToString(/*min_places=*/2));      // "12.50"
//   record.set_amount_micros(sum.micro_units());           // storage, keys
//
// Representation: a signed 64-bit count of micro units (10^-6), so every value
// has at most 6 fractional digits and the range is
//   [-9223372036854.775808, 9223372036854.775807]
// (more than 10^12 with 6 fractional digits). micro_units() orders exactly
// like the value, so it can go into an order-preserving int64 index key.
//
// Arithmetic never wraps: anything whose exact result (after the documented
// rounding) does not fit returns OUT_OF_RANGE ("decimal overflow ..."). The
// intermediate products use 128-bit integers, so a*b/c is computed exactly
// and rounded once. Rounding is always half away from zero (0.5 -> 1,
// -0.5 -> -1, 0.125 -> 0.13 at 2 places).
//
// Text syntax accepted by Parse (and produced by ToString):
//   [+|-] digits [ . digits ]        at most 6 fractional digits
// Accepted: "12", "-12", "+3.10", "0.000001", "007.5" (leading zeros are
// fine), "-0" (zero). Rejected: "", "+", "1.", ".5", " 1", "1 ", "1,5",
// "1e5", "0x10", "1_000", "NaN", "inf", and "1.0000000" (a 7th fractional
// digit is rejected even when it is zero, so a value never silently loses
// digits). Parse errors are INVALID_ARGUMENT naming the caller's field:
//   "<field>: not a decimal number (digits, an optional sign and an optional
//    fraction like -12.5)"
//   "<field>: at most 6 decimal places"
//   "<field>: out of range (at most 9223372036854.775807 in magnitude)"
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <string_view>
#include <utility>

#include "absl/status/statusor.h"

namespace crm::common {

class Decimal {
 public:
  // Number of fractional digits kept: values are multiples of 10^-kScale.
  static constexpr int kScale = 6;
  static constexpr int64_t kUnitsPerOne = 1'000'000;

  // Zero.
  constexpr Decimal() = default;

  // Parses the syntax described at the top of this file.
  [[nodiscard]] static absl::StatusOr<Decimal> Parse(std::string_view text,
                                                     std::string_view field);

  // Exact value micro_units * 10^-6; every int64 is valid.
  static constexpr Decimal FromUnits(int64_t micro_units) {
    return Decimal(micro_units);
  }

  // The whole number `value`; OUT_OF_RANGE when |value| * 10^6 does not fit
  // (|value| > 9223372036854).
  [[nodiscard]] static absl::StatusOr<Decimal> FromInt(int64_t value);

  // The value in micro units (10^-6): for storage and sortable index keys.
  constexpr int64_t micro_units() const { return units_; }

  constexpr bool IsZero() const { return units_ == 0; }
  constexpr bool IsNegative() const { return units_ < 0; }

  // Exact sum / difference; OUT_OF_RANGE on overflow.
  [[nodiscard]] absl::StatusOr<Decimal> Add(const Decimal& other) const;
  [[nodiscard]] absl::StatusOr<Decimal> Sub(const Decimal& other) const;

  // this * other, rounded half away from zero to `places` (0..6) fractional
  // digits in one step (no double rounding). OUT_OF_RANGE on overflow;
  // INTERNAL if `places` is outside 0..6 (a caller bug).
  [[nodiscard]] absl::StatusOr<Decimal> MultiplyBy(const Decimal& other,
                                                   int places = kScale) const;

  // this / divisor, rounded half away from zero to `places` (0..6).
  // INVALID_ARGUMENT "decimal division by zero" on a zero divisor,
  // OUT_OF_RANGE on overflow, INTERNAL for `places` outside 0..6.
  [[nodiscard]] absl::StatusOr<Decimal> DivideBy(const Decimal& divisor,
                                                 int places = kScale) const;

  // a * b / c computed exactly (128-bit intermediate) and rounded half away
  // from zero once, to `places` (0..6). The building block for percentages
  // and tax: MulDiv(gross, rate, 100 + rate, 2). Errors as DivideBy.
  [[nodiscard]] static absl::StatusOr<Decimal> MulDiv(const Decimal& a,
                                                      const Decimal& b,
                                                      const Decimal& c,
                                                      int places = kScale);

  // Rounded half away from zero to `places` (0..6) fractional digits:
  // 2.345 -> 2.35, -2.345 -> -2.35, 0.5 -> 1 at 0 places. OUT_OF_RANGE when
  // rounding up leaves the range (only next to the limits); INTERNAL for
  // `places` outside 0..6.
  [[nodiscard]] absl::StatusOr<Decimal> RoundTo(int places) const;

  // Canonical text: no trailing fractional zeros and no "." for whole
  // numbers: "12.5", "-3", "0", "0.000001". Parse(ToString()) round-trips.
  std::string ToString() const;
  // Like ToString() but with at least `min_places` (clamped to 0..6)
  // fractional digits: ToString(2) gives "12.50", "3.00", "-0.05" and
  // "0.125" (more digits are kept, never rounded away; call RoundTo first
  // for a fixed number of places).
  std::string ToString(int min_places) const;

  friend constexpr bool operator==(const Decimal& a, const Decimal& b) {
    return a.units_ == b.units_;
  }
  friend constexpr bool operator!=(const Decimal& a, const Decimal& b) {
    return a.units_ != b.units_;
  }
  friend constexpr bool operator<(const Decimal& a, const Decimal& b) {
    return a.units_ < b.units_;
  }
  friend constexpr bool operator<=(const Decimal& a, const Decimal& b) {
    return a.units_ <= b.units_;
  }
  friend constexpr bool operator>(const Decimal& a, const Decimal& b) {
    return a.units_ > b.units_;
  }
  friend constexpr bool operator>=(const Decimal& a, const Decimal& b) {
    return a.units_ >= b.units_;
  }

  template <typename H>
  friend H AbslHashValue(H h, const Decimal& d) {
    return H::combine(std::move(h), d.units_);
  }

  // Prints ToString() (readable gtest failures, logs).
  friend std::ostream& operator<<(std::ostream& os, const Decimal& d) {
    return os << d.ToString();
  }

 private:
  explicit constexpr Decimal(int64_t units) : units_(units) {}

  int64_t units_ = 0;
};

}  // namespace crm::common
