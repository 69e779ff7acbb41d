#include "services/reporting/domain/won_lost.h"

#include <vector>

#include "gtest/gtest.h"

#include "common/status/status_matchers.h"

namespace crm::reporting {
namespace {

using ::crm::testing::StatusIs;

DayTallies Day(int y, int m, int d, int64_t won, int64_t lost) {
  DayTallies day;
  day.day_number = DayNumber(absl::CivilDay(y, m, d));
  day.won.deals = won;
  day.lost.deals = lost;
  return day;
}

TEST(WonVsLostTest, WeeksSumTheirDaysInsideThePeriodOnly) {
  // Wednesday 2026-03-04 to Tuesday 2026-03-17: weeks of Mar 2, 9, 16.
  ASSERT_OK_AND_ASSIGN(Period period, ParsePeriod("2026-03-04", "2026-03-17"));
  const std::vector<DayTallies> days = {
      Day(2026, 3, 3, 5, 5),  // before the period, same week: left out
      Day(2026, 3, 4, 1, 0),  Day(2026, 3, 8, 2, 1),  // week of Mar 2
      Day(2026, 3, 17, 0, 3),                         // week of Mar 16
      Day(2026, 3, 18, 9, 9),  // after the period: left out
  };
  ASSERT_OK_AND_ASSIGN(std::vector<WonLostRow> rows,
                       WonVsLost(period, BucketSize::kWeek, days));
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].bucket, absl::CivilDay(2026, 3, 2));
  EXPECT_EQ(rows[0].won.deals, 3);
  EXPECT_EQ(rows[0].lost.deals, 1);
  // The empty week is answered too.
  EXPECT_EQ(rows[1].bucket, absl::CivilDay(2026, 3, 9));
  EXPECT_EQ(rows[1].won.deals, 0);
  EXPECT_EQ(rows[2].lost.deals, 3);
}

TEST(WonVsLostTest, MonthsAndDays) {
  ASSERT_OK_AND_ASSIGN(Period period, ParsePeriod("2026-01-31", "2026-03-01"));
  const std::vector<DayTallies> days = {
      Day(2026, 1, 31, 1, 0), Day(2026, 2, 14, 2, 0), Day(2026, 3, 1, 0, 4)};
  ASSERT_OK_AND_ASSIGN(std::vector<WonLostRow> months,
                       WonVsLost(period, BucketSize::kMonth, days));
  ASSERT_EQ(months.size(), 3u);
  EXPECT_EQ(months[0].won.deals, 1);
  EXPECT_EQ(months[1].won.deals, 2);
  EXPECT_EQ(months[2].lost.deals, 4);
  ASSERT_OK_AND_ASSIGN(std::vector<WonLostRow> each_day,
                       WonVsLost(period, BucketSize::kDay, days));
  ASSERT_EQ(each_day.size(), 30u);
  EXPECT_EQ(each_day[14].bucket, absl::CivilDay(2026, 2, 14));
  EXPECT_EQ(each_day[14].won.deals, 2);
}

TEST(WonVsLostTest, TooManyBuckets) {
  ASSERT_OK_AND_ASSIGN(Period period, ParsePeriod("2020-01-01", "2026-01-01"));
  EXPECT_THAT(WonVsLost(period, BucketSize::kDay, {}),
              StatusIs(absl::StatusCode::kResourceExhausted));
}

}  // namespace
}  // namespace crm::reporting
