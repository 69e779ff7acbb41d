#include "common/money/product_rows.h"

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "common/money/decimal.h"
#include "common/status/status_matchers.h"

namespace crm::common {
namespace {

using ::crm::testing::StatusIs;
using ::testing::HasSubstr;
using Type = ProductRowInput::DiscountType;

const absl::StatusCode kInvalid = absl::StatusCode::kInvalidArgument;

Decimal D(const std::string& text) {
  absl::StatusOr<Decimal> d = Decimal::Parse(text, "test");
  EXPECT_TRUE(d.ok()) << text << ": " << d.status();
  return d.value_or(Decimal());
}

ProductRowInput Row(const std::string& price, const std::string& quantity,
                    Type discount_type, const std::string& discount,
                    const std::string& tax_rate, bool tax_included) {
  ProductRowInput row;
  row.price = D(price);
  row.quantity = D(quantity);
  row.discount_type = discount_type;
  row.discount = D(discount);
  row.tax_rate = D(tax_rate);
  row.tax_included = tax_included;
  return row;
}

struct Expected {
  std::string price_after_discount;
  std::string net;
  std::string tax;
  std::string total;
};

void ExpectTotals(const ProductRowTotals& t, const Expected& e) {
  EXPECT_EQ(t.price_after_discount, D(e.price_after_discount));
  EXPECT_EQ(t.net, D(e.net));
  EXPECT_EQ(t.tax, D(e.tax));
  EXPECT_EQ(t.total, D(e.total));
}

TEST(ComputeRowTest, NoDiscountTaxExcluded) {
  ASSERT_OK_AND_ASSIGN(
      ProductRowTotals t,
      ComputeRow(Row("100", "2", Type::kNone, "0", "20", false), 2, "row"));
  ExpectTotals(t, {"100", "200", "40", "240"});
}

TEST(ComputeRowTest, NoTax) {
  ASSERT_OK_AND_ASSIGN(
      ProductRowTotals t,
      ComputeRow(Row("19.99", "3", Type::kNone, "0", "0", false), 2, "row"));
  ExpectTotals(t, {"19.99", "59.97", "0", "59.97"});
  ASSERT_OK_AND_ASSIGN(
      t, ComputeRow(Row("19.99", "3", Type::kNone, "0", "0", true), 2, "row"));
  ExpectTotals(t, {"19.99", "59.97", "0", "59.97"});
}

TEST(ComputeRowTest, PercentDiscountTaxExcluded) {
  ASSERT_OK_AND_ASSIGN(
      ProductRowTotals t,
      ComputeRow(Row("100", "2", Type::kPercent, "10", "20", false), 2, "row"));
  ExpectTotals(t, {"90", "180", "36", "216"});
}

TEST(ComputeRowTest, TaxIncluded) {
  ASSERT_OK_AND_ASSIGN(
      ProductRowTotals t,
      ComputeRow(Row("120", "1", Type::kNone, "0", "20", true), 2, "row"));
  ExpectTotals(t, {"120", "100", "20", "120"});
  // 30 * 18 / 118 = 4.576271... -> 4.58; net is the rest.
  ASSERT_OK_AND_ASSIGN(
      t, ComputeRow(Row("10", "3", Type::kNone, "0", "18", true), 2, "row"));
  ExpectTotals(t, {"10", "25.42", "4.58", "30"});
  // 100% tax included: half of the gross is tax.
  ASSERT_OK_AND_ASSIGN(
      t, ComputeRow(Row("200", "1", Type::kNone, "0", "100", true), 2, "row"));
  ExpectTotals(t, {"200", "100", "100", "200"});
}

TEST(ComputeRowTest, PercentDiscountTaxIncluded) {
  // Gross 118 less 10% = 106.2 per unit, x2 = 212.4; tax 212.4*18/118 = 32.4.
  ASSERT_OK_AND_ASSIGN(
      ProductRowTotals t,
      ComputeRow(Row("118", "2", Type::kPercent, "10", "18", true), 2, "row"));
  ExpectTotals(t, {"106.2", "180", "32.4", "212.4"});
}

TEST(ComputeRowTest, AbsoluteDiscountIsPerUnit) {
  // 99.99 - 15.50 = 84.49; x2 = 168.98; tax 10% = 16.898 -> 16.90.
  ASSERT_OK_AND_ASSIGN(
      ProductRowTotals t,
      ComputeRow(Row("99.99", "2", Type::kAbsolute, "15.50", "10", false), 2,
                 "row"));
  ExpectTotals(t, {"84.49", "168.98", "16.9", "185.88"});
}

TEST(ComputeRowTest, FullDiscountGivesZero) {
  ASSERT_OK_AND_ASSIGN(
      ProductRowTotals t,
      ComputeRow(Row("50", "3", Type::kPercent, "100", "20", false), 2, "r"));
  ExpectTotals(t, {"0", "0", "0", "0"});
  ASSERT_OK_AND_ASSIGN(
      t, ComputeRow(Row("50", "3", Type::kAbsolute, "50", "20", true), 2, "r"));
  ExpectTotals(t, {"0", "0", "0", "0"});
}

TEST(ComputeRowTest, UnitPriceIsNotRoundedToTheCurrency) {
  // 9.99 less 15% = 8.4915 per unit; x7 = 59.4405 -> 59.44 (rounding the unit
  // price first would give 8.49 * 7 = 59.43).
  ASSERT_OK_AND_ASSIGN(
      ProductRowTotals t,
      ComputeRow(Row("9.99", "7", Type::kPercent, "15", "0", false), 2, "r"));
  ExpectTotals(t, {"8.4915", "59.44", "0", "59.44"});
  // Sub-cent unit prices.
  ASSERT_OK_AND_ASSIGN(
      t,
      ComputeRow(Row("0.0125", "10000", Type::kNone, "0", "0", false), 2, "r"));
  ExpectTotals(t, {"0.0125", "125", "0", "125"});
  // A percent that is not exact at 6 places: 10 * 66.666667 / 100 =
  // 6.6666667 -> 6.666667 per unit; x3 = 20.000001 -> 20.00.
  ASSERT_OK_AND_ASSIGN(
      t, ComputeRow(Row("10", "3", Type::kPercent, "33.333333", "0", false), 2,
                    "r"));
  ExpectTotals(t, {"6.666667", "20", "0", "20"});
}

TEST(ComputeRowTest, FractionalQuantityAndRate) {
  // 12.99 * 0.5 = 6.495 -> 6.50; tax 20% = 1.30.
  ASSERT_OK_AND_ASSIGN(
      ProductRowTotals t,
      ComputeRow(Row("12.99", "0.5", Type::kNone, "0", "20", false), 2, "r"));
  ExpectTotals(t, {"12.99", "6.5", "1.3", "7.8"});
  // 8.875% of 100 = 8.875 -> 8.88 (half away from zero).
  ASSERT_OK_AND_ASSIGN(
      t, ComputeRow(Row("100", "1", Type::kNone, "0", "8.875", false), 2, "r"));
  ExpectTotals(t, {"100", "100", "8.88", "108.88"});
  // 1.234567 kg at 3.33 = 4.11110811 -> 4.11.
  ASSERT_OK_AND_ASSIGN(
      t, ComputeRow(Row("3.33", "1.234567", Type::kNone, "0", "0", false), 2,
                    "r"));
  ExpectTotals(t, {"3.33", "4.11", "0", "4.11"});
}

TEST(ComputeRowTest, JpyHasNoMinorUnits) {
  // 1000 less 7.5% = 925; x3 = 2775; tax 10% = 277.5 -> 278.
  ASSERT_OK_AND_ASSIGN(
      ProductRowTotals t,
      ComputeRow(Row("1000", "3", Type::kPercent, "7.5", "10", false), 0, "r"));
  ExpectTotals(t, {"925", "2775", "278", "3053"});
  // Tax included 8%: 1000 * 8 / 108 = 74.07 -> 74.
  ASSERT_OK_AND_ASSIGN(
      t, ComputeRow(Row("1000", "1", Type::kNone, "0", "8", true), 0, "r"));
  ExpectTotals(t, {"1000", "926", "74", "1000"});
  // A fractional price is rounded at the row: 99.5 * 1 -> 100.
  ASSERT_OK_AND_ASSIGN(
      t, ComputeRow(Row("99.5", "1", Type::kNone, "0", "0", false), 0, "r"));
  ExpectTotals(t, {"99.5", "100", "0", "100"});
}

TEST(ComputeRowTest, BhdHasThreeMinorUnits) {
  // 1.2345 -> 1.235; tax 5% = 0.06175 -> 0.062.
  ASSERT_OK_AND_ASSIGN(
      ProductRowTotals t,
      ComputeRow(Row("1.2345", "1", Type::kNone, "0", "5", false), 3, "r"));
  ExpectTotals(t, {"1.2345", "1.235", "0.062", "1.297"});
  // Tax included 10%: 5.5 * 10 / 110 = 0.5.
  ASSERT_OK_AND_ASSIGN(
      t, ComputeRow(Row("5.5", "1", Type::kNone, "0", "10", true), 3, "r"));
  ExpectTotals(t, {"5.5", "5", "0.5", "5.5"});
}

TEST(ComputeRowTest, RejectsBadInputsNamingTheField) {
  const std::string f = "product_rows[2]";
  const auto expect_error = [&](const ProductRowInput& row,
                                const std::string& message) {
    EXPECT_THAT(ComputeRow(row, 2, f), StatusIs(kInvalid, HasSubstr(message)));
  };
  expect_error(Row("-0.01", "1", Type::kNone, "0", "0", false),
               f + ".price: must not be negative");
  expect_error(Row("1", "0", Type::kNone, "0", "0", false),
               f + ".quantity: must be greater than 0");
  expect_error(Row("1", "-1", Type::kNone, "0", "0", false),
               f + ".quantity: must be greater than 0");
  expect_error(Row("1", "1", Type::kNone, "5", "0", false),
               f + ".discount: must be 0");
  expect_error(Row("1", "1", Type::kPercent, "-1", "0", false),
               f + ".discount: percent must be between 0 and 100");
  expect_error(Row("1", "1", Type::kPercent, "100.000001", "0", false),
               f + ".discount: percent must be between 0 and 100");
  expect_error(Row("10", "1", Type::kAbsolute, "10.01", "0", false),
               f + ".discount: must be between 0 and the price");
  expect_error(Row("10", "1", Type::kAbsolute, "-1", "0", false),
               f + ".discount: must be between 0 and the price");
  expect_error(Row("1", "1", Type::kNone, "0", "-1", false),
               f + ".tax_rate: must be between 0 and 100");
  expect_error(Row("1", "1", Type::kNone, "0", "100.5", true),
               f + ".tax_rate: must be between 0 and 100");
  ProductRowInput bad_type = Row("1", "1", Type::kNone, "0", "0", false);
  bad_type.discount_type = static_cast<Type>(7);
  expect_error(bad_type, f + ".discount_type");
}

TEST(ComputeRowTest, RejectsBadMinorUnitsAsInternal) {
  const ProductRowInput row = Row("1", "1", Type::kNone, "0", "0", false);
  EXPECT_THAT(ComputeRow(row, -1, "r"), StatusIs(absl::StatusCode::kInternal));
  EXPECT_THAT(ComputeRow(row, 7, "r"), StatusIs(absl::StatusCode::kInternal));
}

TEST(ComputeRowTest, OverflowIsAnErrorNamingTheRow) {
  EXPECT_THAT(
      ComputeRow(Row("9000000000000", "2", Type::kNone, "0", "0", false), 2,
                 "product_rows[0]"),
      StatusIs(kInvalid, HasSubstr("product_rows[0]: row total out of range")));
  // Net fits, net + tax does not.
  EXPECT_THAT(
      ComputeRow(Row("9000000000000", "1", Type::kNone, "0", "20", false), 2,
                 "product_rows[1]"),
      StatusIs(kInvalid, HasSubstr("product_rows[1]: row total out of range")));
  // The largest tax-included row is fine: tax never exceeds the gross.
  ASSERT_OK_AND_ASSIGN(
      ProductRowTotals t,
      ComputeRow(Row("9000000000000", "1", Type::kNone, "0", "100", true), 2,
                 "r"));
  ExpectTotals(
      t, {"9000000000000", "4500000000000", "4500000000000", "9000000000000"});
}

TEST(SumRowsTest, SumsExactly) {
  std::vector<ProductRowTotals> rows;
  for (const ProductRowInput& in :
       {Row("100", "2", Type::kPercent, "10", "20", false),
        Row("10", "3", Type::kNone, "0", "18", true),
        Row("99.99", "2", Type::kAbsolute, "15.50", "10", false)}) {
    ASSERT_OK_AND_ASSIGN(ProductRowTotals t, ComputeRow(in, 2, "r"));
    rows.push_back(t);
  }
  ASSERT_OK_AND_ASSIGN(ProductRowTotals sum, SumRows(rows, "product_rows"));
  // 180 + 25.42 + 168.98; 36 + 4.58 + 16.90; 216 + 30 + 185.88.
  ExpectTotals(sum, {"0", "374.4", "57.48", "431.88"});
}

TEST(SumRowsTest, EmptyIsZero) {
  ASSERT_OK_AND_ASSIGN(ProductRowTotals sum, SumRows({}, "product_rows"));
  ExpectTotals(sum, {"0", "0", "0", "0"});
}

TEST(SumRowsTest, OverflowNamesTheField) {
  ProductRowTotals big;
  big.net = D("5000000000000");
  big.total = big.net;
  EXPECT_THAT(
      SumRows({big, big}, "product_rows"),
      StatusIs(kInvalid, HasSubstr("product_rows: total out of range")));
}

// For random valid rows: net + tax == total, every money result is a whole
// multiple of the currency's minor unit, and 0 <= tax <= total.
TEST(ComputeRowTest, InvariantsHoldForRandomRows) {
  std::mt19937_64 rng(20261127);
  const auto random_units = [&](int64_t max) {
    return std::uniform_int_distribution<int64_t>(0, max)(rng);
  };
  for (int i = 0; i < 20000; ++i) {
    const int minor = static_cast<int>(random_units(4));
    ProductRowInput row;
    row.price = Decimal::FromUnits(random_units(1'000'000'000'000));
    row.quantity = Decimal::FromUnits(1 + random_units(100'000'000));
    switch (random_units(2)) {
      case 0:
        row.discount_type = Type::kNone;
        break;
      case 1:
        row.discount_type = Type::kPercent;
        row.discount = Decimal::FromUnits(random_units(100'000'000));
        break;
      default:
        row.discount_type = Type::kAbsolute;
        row.discount =
            Decimal::FromUnits(random_units(row.price.micro_units()));
        break;
    }
    row.tax_rate = Decimal::FromUnits(random_units(100'000'000));
    row.tax_included = random_units(1) == 1;
    ASSERT_OK_AND_ASSIGN(ProductRowTotals t,
                         ComputeRow(row, minor, absl::StrCat("row", i)));
    ASSERT_OK_AND_ASSIGN(Decimal sum, t.net.Add(t.tax));
    EXPECT_EQ(sum, t.total);
    int64_t step = 1;
    for (int k = minor; k < Decimal::kScale; ++k) step *= 10;
    EXPECT_EQ(t.net.micro_units() % step, 0);
    EXPECT_EQ(t.tax.micro_units() % step, 0);
    EXPECT_EQ(t.total.micro_units() % step, 0);
    EXPECT_FALSE(t.tax.IsNegative());
    EXPECT_FALSE(t.net.IsNegative());
    EXPECT_LE(t.tax, t.total);
    EXPECT_LE(t.price_after_discount, row.price);
  }
}

}  // namespace
}  // namespace crm::common
