#include "common/money/decimal_sum.h"

#include <cstdint>

#include "gtest/gtest.h"

namespace crm::common {
namespace {

Decimal D(const char* text) { return *Decimal::Parse(text, "x"); }

TEST(DecimalSumTest, SumsBeyondTheInt64RangeExactly) {
  DecimalSum sum;
  sum.Add(D("5000000000000.00"));
  sum.Add(D("5000000000000.00"));
  sum.Add(D("0.01"));
  EXPECT_EQ(sum.ToString(2), "10000000000000.01");
}

TEST(DecimalSumTest, ManyMaximalAmountsAndBackDown) {
  DecimalSum sum;
  const Decimal max = Decimal::FromUnits(INT64_MAX);
  for (int i = 0; i < 1000; ++i) sum.Add(max);
  EXPECT_EQ(sum.ToString(0), "9223372036854775.807");
  for (int i = 0; i < 1000; ++i) sum.Subtract(max);
  EXPECT_TRUE(sum.IsZero());
  EXPECT_EQ(sum.ToString(2), "0.00");
}

TEST(DecimalSumTest, NegativeSumsAndFormatting) {
  DecimalSum sum;
  const Decimal min = Decimal::FromUnits(INT64_MIN);
  sum.Add(min);
  sum.Add(min);
  EXPECT_EQ(sum.ToString(2), "-18446744073709.551616");
  DecimalSum small;
  small.Add(D("-0.5"));
  EXPECT_EQ(small.ToString(2), "-0.50");
  EXPECT_EQ(small.ToString(0), "-0.5");
}

TEST(DecimalSumTest, AveragesRoundHalfAwayFromZeroToAMicroUnit) {
  DecimalSum sum;
  sum.Add(D("10"));
  EXPECT_EQ(sum.DividedBy(3).ToString(2), "3.333333");
  EXPECT_EQ(sum.DividedBy(4).ToString(2), "2.50");
  DecimalSum two_micros;
  two_micros.AddUnits(2);
  EXPECT_EQ(two_micros.DividedBy(3).ToString(0), "0.000001");  // 0.67 up
  EXPECT_EQ(two_micros.DividedBy(4).ToString(0), "0.000001");  // 0.5 up
  EXPECT_EQ(two_micros.DividedBy(5).ToString(0), "0");         // 0.4 down
  DecimalSum negative;
  negative.AddUnits(-3);
  EXPECT_EQ(negative.DividedBy(2).ToString(0), "-0.000002");  // -1.5 away
  // Beyond int64: 1000 maximal amounts averaged back to one.
  DecimalSum big;
  for (int i = 0; i < 1000; ++i) big.Add(Decimal::FromUnits(INT64_MAX));
  EXPECT_EQ(big.DividedBy(1000), DecimalSum::FromParts(0, INT64_MAX));
  EXPECT_TRUE(sum.DividedBy(0).IsZero());
}

TEST(DecimalSumTest, PartsRoundTrip) {
  DecimalSum sum;
  for (int i = 0; i < 3; ++i) sum.Add(Decimal::FromUnits(INT64_MIN));
  const DecimalSum back = DecimalSum::FromParts(sum.hi(), sum.lo());
  EXPECT_EQ(back, sum);
  EXPECT_EQ(back.ToString(0), sum.ToString(0));
  DecimalSum positive;
  positive.AddUnits(42);
  EXPECT_EQ(DecimalSum::FromParts(positive.hi(), positive.lo()), positive);
  EXPECT_EQ(positive.hi(), 0);
  EXPECT_EQ(positive.lo(), 42u);
}

}  // namespace
}  // namespace crm::common
