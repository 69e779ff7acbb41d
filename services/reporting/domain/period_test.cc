#include "services/reporting/domain/period.h"

#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "common/status/status_matchers.h"

namespace crm::reporting {
namespace {

using ::crm::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(PeriodTest, BothEndsAreIncluded) {
  ASSERT_OK_AND_ASSIGN(Period march, ParsePeriod("2026-03-01", "2026-03-31"));
  EXPECT_EQ(march.days(), 31);
  EXPECT_TRUE(march.Contains(absl::CivilDay(2026, 3, 31)));
  EXPECT_FALSE(march.Contains(absl::CivilDay(2026, 4, 1)));
  ASSERT_OK_AND_ASSIGN(Period one, ParsePeriod("2026-03-05", "2026-03-05"));
  EXPECT_EQ(one.days(), 1);
}

TEST(PeriodTest, BadPeriodsNameTheField) {
  EXPECT_THAT(ParsePeriod("", "2026-03-31"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("period.from: required")));
  EXPECT_THAT(ParsePeriod("2026-03-01", ""),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("period.to: required")));
  EXPECT_THAT(
      ParsePeriod("2026-02-30", "2026-03-31"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("period.from")));
  EXPECT_THAT(
      ParsePeriod("2026-3-1", "2026-03-31"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("YYYY-MM-DD")));
  EXPECT_THAT(ParsePeriod("2026-03-31", "2026-03-01", "closed"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("closed: to (2026-03-01) is before from")));
  EXPECT_THAT(
      ParsePeriod("1900-01-01", "2026-03-01"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("longer than")));
}

TEST(PeriodTest, ThePreviousPeriodHasTheSameLengthAndEndsTheDayBefore) {
  ASSERT_OK_AND_ASSIGN(Period march, ParsePeriod("2026-03-01", "2026-03-31"));
  const Period before = PreviousPeriod(march);
  EXPECT_EQ(before.first, absl::CivilDay(2026, 1, 29));
  EXPECT_EQ(before.last, absl::CivilDay(2026, 2, 28));
  EXPECT_EQ(before.days(), 31);
}

TEST(PeriodTest, DaysFollowTheZoneAcrossDaylightSavingTime) {
  absl::TimeZone lisbon;
  ASSERT_TRUE(absl::LoadTimeZone("Europe/Lisbon", &lisbon));
  absl::TimeZone sao_paulo;
  ASSERT_TRUE(absl::LoadTimeZone("America/Sao_Paulo", &sao_paulo));
  // 23:30 UTC on March 31st is already April 1st in Lisbon (UTC+1 in
  // summer) and still March 31st in Sao Paulo (UTC-3).
  const absl::Time t = absl::FromCivil(
      absl::CivilSecond(2026, 3, 31, 23, 30, 0), absl::UTCTimeZone());
  EXPECT_EQ(DayOf(t, lisbon), absl::CivilDay(2026, 4, 1));
  EXPECT_EQ(DayOf(t, sao_paulo), absl::CivilDay(2026, 3, 31));
  EXPECT_EQ(DayNumber(absl::CivilDay(1970, 1, 1)), 0);
  EXPECT_EQ(DayNumber(absl::CivilDay(1969, 12, 31)), -1);
  EXPECT_EQ(FromDayNumber(DayNumber(absl::CivilDay(2026, 3, 29))),
            absl::CivilDay(2026, 3, 29));
}

TEST(PeriodTest, BucketsStartOnTheDayMondayOrFirstOfTheMonth) {
  // 2026-03-04 is a Wednesday.
  EXPECT_EQ(BucketStart(absl::CivilDay(2026, 3, 4), BucketSize::kWeek),
            absl::CivilDay(2026, 3, 2));
  EXPECT_EQ(BucketStart(absl::CivilDay(2026, 3, 2), BucketSize::kWeek),
            absl::CivilDay(2026, 3, 2));
  EXPECT_EQ(BucketStart(absl::CivilDay(2026, 3, 8), BucketSize::kWeek),
            absl::CivilDay(2026, 3, 2));  // Sunday
  EXPECT_EQ(BucketStart(absl::CivilDay(2026, 3, 31), BucketSize::kMonth),
            absl::CivilDay(2026, 3, 1));
  ASSERT_OK_AND_ASSIGN(Period period, ParsePeriod("2026-03-04", "2026-03-17"));
  ASSERT_OK_AND_ASSIGN(std::vector<absl::CivilDay> weeks,
                       Buckets(period, BucketSize::kWeek));
  EXPECT_THAT(
      weeks, ElementsAre(absl::CivilDay(2026, 3, 2), absl::CivilDay(2026, 3, 9),
                         absl::CivilDay(2026, 3, 16)));
  ASSERT_OK_AND_ASSIGN(Period quarter, ParsePeriod("2026-01-15", "2026-03-01"));
  ASSERT_OK_AND_ASSIGN(std::vector<absl::CivilDay> months,
                       Buckets(quarter, BucketSize::kMonth));
  EXPECT_THAT(months, ElementsAre(absl::CivilDay(2026, 1, 1),
                                  absl::CivilDay(2026, 2, 1),
                                  absl::CivilDay(2026, 3, 1)));
  ASSERT_OK_AND_ASSIGN(std::vector<absl::CivilDay> days,
                       Buckets(period, BucketSize::kDay));
  EXPECT_EQ(days.size(), 14u);
}

TEST(PeriodTest, TooManyBucketsIsResourceExhausted) {
  ASSERT_OK_AND_ASSIGN(Period decade, ParsePeriod("2016-01-01", "2025-12-31"));
  EXPECT_THAT(Buckets(decade, BucketSize::kDay),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("larger bucket")));
  ASSERT_OK_AND_ASSIGN(std::vector<absl::CivilDay> months,
                       Buckets(decade, BucketSize::kMonth));
  EXPECT_EQ(months.size(), 120u);
}

}  // namespace
}  // namespace crm::reporting
