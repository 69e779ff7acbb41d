#include "services/reporting/domain/performance.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "common/money/decimal.h"

namespace crm::reporting {
namespace {

using ::testing::Optional;

common::DecimalSum Sum(const char* amount) {
  common::DecimalSum sum;
  sum.Add(*common::Decimal::Parse(amount, "amount"));
  return sum;
}

Tally T(int64_t deals, const char* amount) {
  Tally tally;
  tally.deals = deals;
  tally.amount = Sum(amount);
  return tally;
}

TEST(PerformanceTest, RowFromTotals) {
  AssigneeTotals totals;
  totals.assignee_id = 7;
  totals.in_progress = T(4, "1000");
  totals.won = T(3, "1000.00");
  totals.lost = T(1, "50");
  totals.won_amount_before = Sum("800");
  // Won after 1, 2 and 6 days.
  totals.seconds_to_win = (1 + 2 + 6) * 86400;
  const PerformanceRow row = Performance(totals);
  EXPECT_EQ(row.assignee_id, 7);
  EXPECT_EQ(row.won_average.ToString(2), "333.333333");
  EXPECT_THAT(row.conversion_percent, Optional(std::string("75.00")));
  EXPECT_THAT(row.loss_percent, Optional(std::string("25.00")));
  EXPECT_THAT(row.won_change_percent, Optional(std::string("25.00")));
  EXPECT_EQ(row.average_time_to_win, absl::Hours(72));
  EXPECT_EQ(row.in_progress.deals, 4);
}

TEST(PerformanceTest, NothingClosedOrWonBeforeLeavesTheSharesOut) {
  AssigneeTotals totals;
  totals.in_progress = T(2, "10");
  const PerformanceRow row = Performance(totals);
  EXPECT_EQ(row.conversion_percent, std::nullopt);
  EXPECT_EQ(row.loss_percent, std::nullopt);
  EXPECT_EQ(row.won_change_percent, std::nullopt);
  EXPECT_TRUE(row.won_average.IsZero());
  EXPECT_EQ(row.average_time_to_win, absl::ZeroDuration());
}

TEST(PerformanceTest, ChangesAgainstThePreviousPeriod) {
  EXPECT_THAT(PercentChange(Sum("50"), Sum("200")),
              Optional(std::string("-75.00")));
  EXPECT_THAT(PercentChange(Sum("0"), Sum("200")),
              Optional(std::string("-100.00")));
  EXPECT_THAT(PercentChange(Sum("200"), Sum("200")),
              Optional(std::string("0.00")));
  EXPECT_THAT(PercentChange(Sum("1000"), Sum("3")),
              Optional(std::string("33233.33")));
  EXPECT_EQ(PercentChange(Sum("5"), Sum("0")), std::nullopt);
  // Sums past the int64 range of micro units.
  common::DecimalSum big_now, big_before;
  for (int i = 0; i < 3000; ++i) {
    big_now.Add(common::Decimal::FromUnits(INT64_MAX));
    if (i < 2000) big_before.Add(common::Decimal::FromUnits(INT64_MAX));
  }
  EXPECT_THAT(PercentChange(big_now, big_before),
              Optional(std::string("50.00")));
}

}  // namespace
}  // namespace crm::reporting
