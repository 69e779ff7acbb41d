#include "common/money/product_rows.h"

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

#include "common/money/decimal.h"

namespace crm::common {
namespace {

constexpr Decimal kZero = Decimal::FromUnits(0);
constexpr Decimal kHundred = Decimal::FromUnits(100 * Decimal::kUnitsPerOne);

absl::Status FieldError(std::string_view field, std::string_view suffix,
                        std::string_view message) {
  return absl::InvalidArgumentError(absl::StrCat(
      std::string(field), std::string(suffix), ": ", std::string(message)));
}

absl::Status ValidateRow(const ProductRowInput& row, std::string_view field) {
  if (row.price.IsNegative()) {
    return FieldError(field, ".price", "must not be negative");
  }
  if (row.quantity <= kZero) {
    return FieldError(field, ".quantity", "must be greater than 0");
  }
  switch (row.discount_type) {
    case ProductRowInput::DiscountType::kNone:
      if (!row.discount.IsZero()) {
        return FieldError(field, ".discount",
                          "must be 0 when there is no discount type");
      }
      break;
    case ProductRowInput::DiscountType::kPercent:
      if (row.discount.IsNegative() || row.discount > kHundred) {
        return FieldError(field, ".discount",
                          "percent must be between 0 and 100");
      }
      break;
    case ProductRowInput::DiscountType::kAbsolute:
      if (row.discount.IsNegative() || row.discount > row.price) {
        return FieldError(field, ".discount",
                          "must be between 0 and the price");
      }
      break;
    default:
      return FieldError(field, ".discount_type", "unknown discount type");
  }
  if (row.tax_rate.IsNegative() || row.tax_rate > kHundred) {
    return FieldError(field, ".tax_rate", "must be between 0 and 100");
  }
  return absl::OkStatus();
}

absl::StatusOr<ProductRowTotals> ComputeValidRow(const ProductRowInput& row,
                                                 int minor) {
  ProductRowTotals out;
  switch (row.discount_type) {
    case ProductRowInput::DiscountType::kPercent: {
      // 100 - discount cannot overflow: discount is within 0..100.
      absl::StatusOr<Decimal> keep = kHundred.Sub(row.discount);
      if (!keep.ok()) return keep.status();
      absl::StatusOr<Decimal> unit =
          Decimal::MulDiv(row.price, *keep, kHundred, Decimal::kScale);
      if (!unit.ok()) return unit.status();
      out.price_after_discount = *unit;
      break;
    }
    case ProductRowInput::DiscountType::kAbsolute: {
      absl::StatusOr<Decimal> unit = row.price.Sub(row.discount);
      if (!unit.ok()) return unit.status();
      out.price_after_discount = *unit;
      break;
    }
    case ProductRowInput::DiscountType::kNone:
      out.price_after_discount = row.price;
      break;
  }
  absl::StatusOr<Decimal> amount =
      out.price_after_discount.MultiplyBy(row.quantity, minor);
  if (!amount.ok()) return amount.status();
  if (row.tax_included) {
    out.total = *amount;
    absl::StatusOr<Decimal> divisor = kHundred.Add(row.tax_rate);
    if (!divisor.ok()) return divisor.status();
    absl::StatusOr<Decimal> tax =
        Decimal::MulDiv(out.total, row.tax_rate, *divisor, minor);
    if (!tax.ok()) return tax.status();
    out.tax = *tax;
    absl::StatusOr<Decimal> net = out.total.Sub(out.tax);
    if (!net.ok()) return net.status();
    out.net = *net;
  } else {
    out.net = *amount;
    absl::StatusOr<Decimal> tax =
        Decimal::MulDiv(out.net, row.tax_rate, kHundred, minor);
    if (!tax.ok()) return tax.status();
    out.tax = *tax;
    absl::StatusOr<Decimal> total = out.net.Add(out.tax);
    if (!total.ok()) return total.status();
    out.total = *total;
  }
  return out;
}

}  // namespace

absl::StatusOr<ProductRowTotals> ComputeRow(const ProductRowInput& row,
                                            int currency_minor_units,
                                            std::string_view field) {
  if (currency_minor_units < 0 || currency_minor_units > Decimal::kScale) {
    return absl::InternalError(
        absl::StrCat(std::string(field), ": currency minor units must be 0..",
                     Decimal::kScale, ", got ", currency_minor_units));
  }
  if (absl::Status s = ValidateRow(row, field); !s.ok()) return s;
  absl::StatusOr<ProductRowTotals> totals =
      ComputeValidRow(row, currency_minor_units);
  if (!totals.ok()) {
    // Only arithmetic overflow gets here: inputs were validated above.
    return FieldError(field, "", "row total out of range");
  }
  return totals;
}

absl::StatusOr<ProductRowTotals> SumRows(
    const std::vector<ProductRowTotals>& rows, std::string_view field) {
  ProductRowTotals sum;
  for (const ProductRowTotals& row : rows) {
    absl::StatusOr<Decimal> net = sum.net.Add(row.net);
    absl::StatusOr<Decimal> tax = sum.tax.Add(row.tax);
    absl::StatusOr<Decimal> total = sum.total.Add(row.total);
    if (!net.ok() || !tax.ok() || !total.ok()) {
      return FieldError(field, "", "total out of range");
    }
    sum.net = *net;
    sum.tax = *tax;
    sum.total = *total;
  }
  return sum;
}

}  // namespace crm::common
