// Product row totals for deals (and the quotes and invoices made from them):
// pure computation, no I/O.
//
//   CRM_ASSIGN_OR_RETURN(int minor, MinorUnits(deal.currency(), "currency"));
//   std::vector<ProductRowTotals> rows;
//   for (int i = 0; i < req.rows_size(); ++i) {
//     CRM_ASSIGN_OR_RETURN(ProductRowInput in, ToInput(req.rows(i)));
//     CRM_ASSIGN_OR_RETURN(
//         ProductRowTotals t,
//         ComputeRow(in, minor, absl::StrCat("product_rows[", i, "]")));
//     rows.push_back(t);
//   }
//   CRM_ASSIGN_OR_RETURN(ProductRowTotals sum, SumRows(rows, "product_rows"));
//   deal.amount = sum.total;  deal.tax_amount = sum.tax;
//
// Rules (Bitrix24-like), for one row:
//   price     >= 0, per unit, as entered: it includes tax when tax_included.
//   quantity  > 0, may be fractional (up to 6 places like every Decimal).
//   discount  per unit, applied to the entered price:
//               kNone      discount must be 0;
//               kPercent   0..100: unit = price * (100 - discount) / 100,
//                          rounded to 6 places;
//               kAbsolute  0..price: unit = price - discount.
//   tax_rate  percent, 0..100 (20 means 20%).
//
//   price_after_discount = unit, NOT rounded to the currency (prices such as
//                          0.0125 USD per screw stay exact); same tax basis as
//                          price (gross when tax_included, else net).
//   amount = unit * quantity, rounded once to the currency's minor units.
//   tax_included:  total = amount
//                  tax   = total * rate / (100 + rate), rounded to minor units
//                  net   = total - tax
//   otherwise:     net   = amount
//                  tax   = net * rate / 100, rounded to minor units
//                  total = net + tax
// So net, tax and total are always whole multiples of the currency's minor
// unit and net + tax == total exactly, for every row and for the sum.
// Rounding is half away from zero (2.345 -> 2.35; JPY 277.5 -> 278).
//
// The deal amount is SumRows(...).total ("after discount, with tax") and the
// deal tax amount is SumRows(...).tax: per-row rounding, then an exact sum,
// as an invoice prints it.
//
// Errors: INVALID_ARGUMENT naming the field, e.g.
//   "product_rows[2].quantity: must be greater than 0"
//   "product_rows[2].discount: percent must be between 0 and 100"
//   "product_rows[2]: row total out of range"       (arithmetic overflow)
// and INTERNAL for a currency_minor_units outside 0..6 (a caller bug: take it
// from MinorUnits()).
#pragma once

#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

#include "common/money/decimal.h"

namespace crm::common {

struct ProductRowInput {
  enum class DiscountType { kNone, kPercent, kAbsolute };

  Decimal price;     // per unit; includes tax when tax_included
  Decimal quantity;  // > 0
  DiscountType discount_type = DiscountType::kNone;
  Decimal discount;  // percent (0..100) or per-unit amount (0..price)
  Decimal tax_rate;  // percent, 0..100
  bool tax_included = false;
};

struct ProductRowTotals {
  // Per unit after discount, same tax basis as the entered price, at full
  // 6-place precision. Zero in a SumRows result (meaningless for a sum).
  Decimal price_after_discount;
  Decimal net;    // row total without tax, rounded to minor units
  Decimal tax;    // row tax, rounded to minor units
  Decimal total;  // net + tax
};

[[nodiscard]] absl::StatusOr<ProductRowTotals> ComputeRow(
    const ProductRowInput& row, int currency_minor_units,
    std::string_view field);

// Exact sums of net, tax and total over `rows` (all zero for no rows);
// INVALID_ARGUMENT "<field>: total out of range" on overflow.
[[nodiscard]] absl::StatusOr<ProductRowTotals> SumRows(
    const std::vector<ProductRowTotals>& rows, std::string_view field);

}  // namespace crm::common
