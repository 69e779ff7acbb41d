#include "common/money/decimal.h"

#include <cstdint>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "common/status/status_matchers.h"

namespace crm::common {
namespace {

using ::crm::testing::StatusIs;
using ::testing::HasSubstr;

constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
constexpr int64_t kMin = std::numeric_limits<int64_t>::min();
const absl::StatusCode kInvalid = absl::StatusCode::kInvalidArgument;
const absl::StatusCode kOutOfRange = absl::StatusCode::kOutOfRange;

// Parses a literal that the test knows is valid.
Decimal D(const std::string& text) {
  absl::StatusOr<Decimal> d = Decimal::Parse(text, "test");
  EXPECT_TRUE(d.ok()) << text << ": " << d.status();
  return d.value_or(Decimal());
}

TEST(DecimalParseTest, AcceptsPlainDecimals) {
  struct Case {
    std::string text;
    int64_t units;
  };
  const std::vector<Case> cases = {
      {"0", 0},
      {"-0", 0},
      {"+0", 0},
      {"12", 12'000'000},
      {"-12", -12'000'000},
      {"12.5", 12'500'000},
      {"+3.10", 3'100'000},
      {"0.000001", 1},
      {"-0.000001", -1},
      {"0.000000", 0},
      {"007.50", 7'500'000},
      {"1.123456", 1'123'456},
      {"1000000000000", 1'000'000'000'000'000'000},
      {"9223372036854.775807", kMax},
      {"-9223372036854.775808", kMin},
  };
  for (const Case& c : cases) {
    ASSERT_OK_AND_ASSIGN(Decimal d, Decimal::Parse(c.text, "amount"));
    EXPECT_EQ(d.micro_units(), c.units) << c.text;
  }
}

TEST(DecimalParseTest, RejectsMalformedTextNamingTheField) {
  for (const std::string& text :
       std::vector<std::string>{"",
                                "+",
                                "-",
                                "1.",
                                ".5",
                                "-.5",
                                " 1",
                                "1 ",
                                "1,5",
                                "1e5",
                                "1E5",
                                "0x10",
                                "1_000",
                                "NaN",
                                "inf",
                                "--1",
                                "+-1",
                                "1.2.3",
                                "1..2",
                                "١",
                                "12a",
                                "a12",
                                std::string("1\0", 2)}) {
    EXPECT_THAT(Decimal::Parse(text, "deal.amount"),
                StatusIs(kInvalid, HasSubstr("deal.amount: not a decimal")))
        << "'" << text << "'";
  }
}

TEST(DecimalParseTest, RejectsMoreThanSixPlaces) {
  for (const std::string& text : std::vector<std::string>{
           "0.0000001", "1.1234567", "1.0000000", "-2.50000000000"}) {
    EXPECT_THAT(
        Decimal::Parse(text, "price"),
        StatusIs(kInvalid, HasSubstr("price: at most 6 decimal places")))
        << text;
  }
  // A bad character after many digits is a syntax error, not a places one.
  EXPECT_THAT(Decimal::Parse("1.0000000x", "price"),
              StatusIs(kInvalid, HasSubstr("not a decimal")));
}

TEST(DecimalParseTest, RejectsOutOfRange) {
  for (const std::string& text : std::vector<std::string>{
           "9223372036854.775808", "-9223372036854.775809", "9223372036855",
           "10000000000000", "99999999999999999999999999999999999999999999"}) {
    EXPECT_THAT(Decimal::Parse(text, "amount"),
                StatusIs(kInvalid, HasSubstr("amount: out of range")))
        << text;
  }
  // Leading zeros do not count against the range.
  ASSERT_OK_AND_ASSIGN(Decimal d,
                       Decimal::Parse("0000000000000000000000000001.5", "a"));
  EXPECT_EQ(d.micro_units(), 1'500'000);
}

TEST(DecimalToStringTest, CanonicalForm) {
  EXPECT_EQ(Decimal().ToString(), "0");
  EXPECT_EQ(D("12.500").ToString(), "12.5");
  EXPECT_EQ(D("-3").ToString(), "-3");
  EXPECT_EQ(D("-0").ToString(), "0");
  EXPECT_EQ(D("0.000001").ToString(), "0.000001");
  EXPECT_EQ(D("-0.05").ToString(), "-0.05");
  EXPECT_EQ(D("+3.10").ToString(), "3.1");
  EXPECT_EQ(Decimal::FromUnits(kMax).ToString(), "9223372036854.775807");
  EXPECT_EQ(Decimal::FromUnits(kMin).ToString(), "-9223372036854.775808");
}

TEST(DecimalToStringTest, MinPlaces) {
  EXPECT_EQ(D("12.5").ToString(2), "12.50");
  EXPECT_EQ(D("3").ToString(2), "3.00");
  EXPECT_EQ(D("0").ToString(2), "0.00");
  EXPECT_EQ(D("-0.05").ToString(2), "-0.05");
  EXPECT_EQ(D("0.125").ToString(2), "0.125");  // never rounds digits away
  EXPECT_EQ(D("7").ToString(0), "7");
  EXPECT_EQ(D("7").ToString(6), "7.000000");
  EXPECT_EQ(D("7").ToString(9), "7.000000");  // clamped
  EXPECT_EQ(D("7.25").ToString(-1), "7.25");  // clamped
}

TEST(DecimalToStringTest, RoundTripsThroughParse) {
  for (int64_t units : {int64_t{0}, int64_t{1}, int64_t{-1}, int64_t{999'999},
                        int64_t{1'000'000}, int64_t{-123'456'789}, kMax, kMin,
                        int64_t{10'000'000'000'000'000}}) {
    const Decimal d = Decimal::FromUnits(units);
    for (int places = 0; places <= 6; ++places) {
      ASSERT_OK_AND_ASSIGN(Decimal back,
                           Decimal::Parse(d.ToString(places), "x"));
      EXPECT_EQ(back, d) << d.ToString(places);
    }
  }
}

TEST(DecimalTest, ComparisonsFollowTheValue) {
  EXPECT_LT(D("-1"), D("-0.5"));
  EXPECT_LT(D("-0.5"), D("0"));
  EXPECT_LT(D("0.000001"), D("0.00001"));
  EXPECT_LE(D("2"), D("2.000"));
  EXPECT_GE(D("2"), D("2.000"));
  EXPECT_GT(D("10"), D("9.999999"));
  EXPECT_EQ(D("2.50"), D("2.5"));
  EXPECT_NE(D("2.5"), D("2.05"));
  EXPECT_TRUE(Decimal().IsZero());
  EXPECT_TRUE(D("-0").IsZero());
  EXPECT_FALSE(D("0.000001").IsZero());
  EXPECT_TRUE(D("-0.000001").IsNegative());
  EXPECT_FALSE(D("0").IsNegative());
  // micro_units orders like the value (for index keys).
  EXPECT_LT(D("-1").micro_units(), D("0.5").micro_units());
}

TEST(DecimalTest, HashAndStream) {
  absl::flat_hash_set<Decimal> set = {D("1.5"), D("1.50"), D("2")};
  EXPECT_EQ(set.size(), 2u);
  std::ostringstream os;
  os << D("-12.340");
  EXPECT_EQ(os.str(), "-12.34");
}

TEST(DecimalTest, FromInt) {
  ASSERT_OK_AND_ASSIGN(Decimal d, Decimal::FromInt(42));
  EXPECT_EQ(d, D("42"));
  ASSERT_OK_AND_ASSIGN(d, Decimal::FromInt(-9'223'372'036'854));
  EXPECT_EQ(d.micro_units(), -9'223'372'036'854'000'000);
  EXPECT_THAT(Decimal::FromInt(9'223'372'036'855), StatusIs(kOutOfRange));
  EXPECT_THAT(Decimal::FromInt(kMax), StatusIs(kOutOfRange));
  EXPECT_THAT(Decimal::FromInt(kMin), StatusIs(kOutOfRange));
}

TEST(DecimalTest, AddAndSub) {
  ASSERT_OK_AND_ASSIGN(Decimal sum, D("0.1").Add(D("0.2")));
  EXPECT_EQ(sum, D("0.3"));  // exact, unlike binary floating point
  ASSERT_OK_AND_ASSIGN(Decimal diff, D("1").Sub(D("1.000001")));
  EXPECT_EQ(diff, D("-0.000001"));
  ASSERT_OK_AND_ASSIGN(sum, Decimal::FromUnits(kMax).Add(D("-1")));
  EXPECT_EQ(sum.micro_units(), kMax - 1'000'000);
  ASSERT_OK_AND_ASSIGN(diff, Decimal::FromUnits(kMin).Sub(D("-0.000001")));
  EXPECT_EQ(diff.micro_units(), kMin + 1);
}

TEST(DecimalTest, AddAndSubDetectOverflow) {
  const Decimal max = Decimal::FromUnits(kMax);
  const Decimal min = Decimal::FromUnits(kMin);
  const Decimal tiny = Decimal::FromUnits(1);
  EXPECT_THAT(max.Add(tiny), StatusIs(kOutOfRange, HasSubstr("overflow")));
  EXPECT_THAT(min.Add(Decimal::FromUnits(-1)), StatusIs(kOutOfRange));
  EXPECT_THAT(max.Add(max), StatusIs(kOutOfRange));
  EXPECT_THAT(min.Add(min), StatusIs(kOutOfRange));
  EXPECT_THAT(min.Sub(tiny), StatusIs(kOutOfRange));
  EXPECT_THAT(max.Sub(Decimal::FromUnits(-1)), StatusIs(kOutOfRange));
  EXPECT_THAT(Decimal().Sub(min), StatusIs(kOutOfRange));  // -INT64_MIN
  EXPECT_THAT(max.Add(min), ::crm::testing::IsOk());
}

TEST(DecimalTest, MultiplyIsExact) {
  ASSERT_OK_AND_ASSIGN(Decimal p, D("19.99").MultiplyBy(D("3")));
  EXPECT_EQ(p, D("59.97"));
  ASSERT_OK_AND_ASSIGN(p, D("-1.5").MultiplyBy(D("-2")));
  EXPECT_EQ(p, D("3"));
  ASSERT_OK_AND_ASSIGN(p, D("-1.5").MultiplyBy(D("2")));
  EXPECT_EQ(p, D("-3"));
  ASSERT_OK_AND_ASSIGN(p, D("0.001").MultiplyBy(D("0.001")));
  EXPECT_EQ(p, D("0.000001"));
  ASSERT_OK_AND_ASSIGN(p, D("1000000000000").MultiplyBy(D("9.2")));
  EXPECT_EQ(p, D("9200000000000"));
  ASSERT_OK_AND_ASSIGN(p, D("0").MultiplyBy(Decimal::FromUnits(kMax)));
  EXPECT_TRUE(p.IsZero());
}

TEST(DecimalTest, MultiplyRoundsHalfAwayFromZero) {
  // 0.000001 * 0.5 = 0.0000005 -> 0.000001; negative -> -0.000001.
  ASSERT_OK_AND_ASSIGN(Decimal p, D("0.000001").MultiplyBy(D("0.5")));
  EXPECT_EQ(p, D("0.000001"));
  ASSERT_OK_AND_ASSIGN(p, D("-0.000001").MultiplyBy(D("0.5")));
  EXPECT_EQ(p, D("-0.000001"));
  // 0.0000004999... stays below half: 0.000001 * 0.499999 -> 0.
  ASSERT_OK_AND_ASSIGN(p, D("0.000001").MultiplyBy(D("0.499999")));
  EXPECT_TRUE(p.IsZero());
  ASSERT_OK_AND_ASSIGN(p, D("-0.000001").MultiplyBy(D("0.499999")));
  EXPECT_TRUE(p.IsZero());
  EXPECT_FALSE(p.IsNegative());  // no negative zero
  // Rounding straight to 2 places, in one step.
  ASSERT_OK_AND_ASSIGN(p, D("2.345").MultiplyBy(D("1"), 2));
  EXPECT_EQ(p, D("2.35"));
  ASSERT_OK_AND_ASSIGN(p, D("-2.345").MultiplyBy(D("1"), 2));
  EXPECT_EQ(p, D("-2.35"));
  // No double rounding: 0.0049995 * 1 at 2 places is 0.00 (rounding first to
  // 6 places would give 0.005 and then 0.01).
  ASSERT_OK_AND_ASSIGN(p, D("0.009999").MultiplyBy(D("0.5"), 2));
  EXPECT_EQ(p, D("0"));
}

TEST(DecimalTest, MultiplyDetectsOverflow) {
  EXPECT_THAT(D("10000000").MultiplyBy(D("10000000")),
              StatusIs(kOutOfRange, HasSubstr("overflow")));
  EXPECT_THAT(Decimal::FromUnits(kMax).MultiplyBy(Decimal::FromUnits(kMax)),
              StatusIs(kOutOfRange));
  EXPECT_THAT(Decimal::FromUnits(kMin).MultiplyBy(Decimal::FromUnits(kMin)),
              StatusIs(kOutOfRange));
  EXPECT_THAT(Decimal::FromUnits(kMin).MultiplyBy(D("-1")),
              StatusIs(kOutOfRange));
  EXPECT_THAT(Decimal::FromUnits(kMax).MultiplyBy(D("1.000001")),
              StatusIs(kOutOfRange));
  // The extremes times one are fine.
  ASSERT_OK_AND_ASSIGN(Decimal p, Decimal::FromUnits(kMin).MultiplyBy(D("1")));
  EXPECT_EQ(p.micro_units(), kMin);
  ASSERT_OK_AND_ASSIGN(p, Decimal::FromUnits(kMax).MultiplyBy(D("-1")));
  EXPECT_EQ(p.micro_units(), -kMax);
  // A huge exact product that divides back into range.
  ASSERT_OK_AND_ASSIGN(
      p, Decimal::MulDiv(Decimal::FromUnits(kMax), Decimal::FromUnits(kMax),
                         Decimal::FromUnits(kMax)));
  EXPECT_EQ(p.micro_units(), kMax);
}

TEST(DecimalTest, DivideAndMulDiv) {
  ASSERT_OK_AND_ASSIGN(Decimal q, D("1").DivideBy(D("3")));
  EXPECT_EQ(q, D("0.333333"));
  ASSERT_OK_AND_ASSIGN(q, D("2").DivideBy(D("3")));
  EXPECT_EQ(q, D("0.666667"));
  ASSERT_OK_AND_ASSIGN(q, D("-2").DivideBy(D("3"), 2));
  EXPECT_EQ(q, D("-0.67"));
  ASSERT_OK_AND_ASSIGN(q, D("10").DivideBy(D("-4"), 0));
  EXPECT_EQ(q, D("-3"));  // -2.5 -> -3
  // Tax included at 20%: 120 * 20 / 120 = 20 exactly.
  ASSERT_OK_AND_ASSIGN(q, Decimal::MulDiv(D("120"), D("20"), D("120"), 2));
  EXPECT_EQ(q, D("20"));
  // 30 * 18 / 118 = 4.57627... -> 4.58
  ASSERT_OK_AND_ASSIGN(q, Decimal::MulDiv(D("30"), D("18"), D("118"), 2));
  EXPECT_EQ(q, D("4.58"));
  EXPECT_THAT(D("1").DivideBy(Decimal()),
              StatusIs(kInvalid, HasSubstr("division by zero")));
  EXPECT_THAT(D("1000000000000").DivideBy(D("0.01")), StatusIs(kOutOfRange));
  EXPECT_THAT(D("1").MultiplyBy(D("1"), 7),
              StatusIs(absl::StatusCode::kInternal));
  EXPECT_THAT(D("1").MultiplyBy(D("1"), -1),
              StatusIs(absl::StatusCode::kInternal));
}

TEST(DecimalTest, RoundToHalfAwayFromZero) {
  struct Case {
    std::string in;
    int places;
    std::string out;
  };
  const std::vector<Case> cases = {
      {"0.5", 0, "1"},
      {"-0.5", 0, "-1"},
      {"0.499999", 0, "0"},
      {"-0.499999", 0, "0"},
      {"1.5", 0, "2"},
      {"2.5", 0, "3"},  // not banker's rounding
      {"-2.5", 0, "-3"},
      {"2.345", 2, "2.35"},
      {"-2.345", 2, "-2.35"},
      {"2.344999", 2, "2.34"},
      {"1.2345", 3, "1.235"},
      {"0.000001", 5, "0"},
      {"0.000005", 5, "0.00001"},
      {"-0.000005", 5, "-0.00001"},
      {"7.123456", 6, "7.123456"},
      {"99.995", 2, "100"},
      {"0", 0, "0"},
  };
  for (const Case& c : cases) {
    ASSERT_OK_AND_ASSIGN(Decimal r, D(c.in).RoundTo(c.places));
    EXPECT_EQ(r, D(c.out)) << c.in << " to " << c.places;
  }
  EXPECT_THAT(Decimal::FromUnits(kMax).RoundTo(0), StatusIs(kOutOfRange));
  EXPECT_THAT(Decimal::FromUnits(kMin).RoundTo(0), StatusIs(kOutOfRange));
  ASSERT_OK_AND_ASSIGN(Decimal r, Decimal::FromUnits(kMax).RoundTo(6));
  EXPECT_EQ(r.micro_units(), kMax);
  EXPECT_THAT(D("1").RoundTo(7), StatusIs(absl::StatusCode::kInternal));
}

}  // namespace
}  // namespace crm::common
