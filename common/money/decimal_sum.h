// An exact sum of Decimal values: a 128-bit count of micro units, so adding
// any number of amounts the API accepts (each at most ~9.2 * 10^12 in
// magnitude) never wraps. Kanban column totals, filtered board sums and
// reports accumulate with it.
//
//   DecimalSum sum;
//   for (const Deal& deal : deals) sum.Add(amount_of(deal));
//   column.set_amount(sum.ToString(/*min_places=*/2));
//
// Stored as two 64-bit halves (hi(), lo()); FromParts() restores it.
#pragma once

#include <cstdint>
#include <string>

#include "common/money/decimal.h"

namespace crm::common {

class DecimalSum {
 public:
  constexpr DecimalSum() = default;

  // Rebuilds a sum stored as its two halves (hi is the signed upper half).
  static DecimalSum FromParts(int64_t hi, uint64_t lo);

  void Add(Decimal value) { units_ += value.micro_units(); }
  void Subtract(Decimal value) { units_ -= value.micro_units(); }
  void AddUnits(int64_t micro_units) { units_ += micro_units; }
  void Add(const DecimalSum& other) { units_ += other.units_; }
  void Subtract(const DecimalSum& other) { units_ -= other.units_; }

  bool IsZero() const { return units_ == 0; }
  // The sum divided by `n` (> 0), rounded half away from zero to a micro
  // unit: an exact average.
  DecimalSum DividedBy(int64_t n) const;
  int64_t hi() const;
  uint64_t lo() const;

  // Like Decimal::ToString(min_places): "-12.5", at least `min_places`
  // (0..6) fractional digits, trailing zeros beyond them dropped.
  std::string ToString(int min_places) const;

  friend bool operator==(const DecimalSum& a, const DecimalSum& b) {
    return a.units_ == b.units_;
  }
  friend bool operator!=(const DecimalSum& a, const DecimalSum& b) {
    return !(a == b);
  }

 private:
  // __extension__: GCC's 128-bit integers are not ISO C++ (-Wpedantic).
  __extension__ typedef __int128 Int128;
  // Sums of up to 2^64 amounts of the full Decimal range fit: |units| stays
  // below 2^127.
  Int128 units_ = 0;
};

}  // namespace crm::common
