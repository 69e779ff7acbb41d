#include "services/reporting/domain/duration_histogram.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"

#include "common/status/status_matchers.h"

namespace crm::reporting {
namespace {

using ::crm::testing::StatusIs;

// The exact nearest-rank quantile of `ms`.
int64_t ExactQuantile(std::vector<int64_t> ms, double q) {
  std::sort(ms.begin(), ms.end());
  const int64_t n = static_cast<int64_t>(ms.size());
  const int64_t rank = std::clamp<int64_t>(
      static_cast<int64_t>(std::ceil(q * static_cast<double>(n))), 1, n);
  return ms[rank - 1];
}

void ExpectWithinOnePercent(absl::Duration got, int64_t want_ms) {
  const double got_ms = absl::ToDoubleMilliseconds(got);
  if (want_ms == 0) {
    EXPECT_EQ(got_ms, 0);
    return;
  }
  EXPECT_LE(std::abs(got_ms - static_cast<double>(want_ms)) /
                static_cast<double>(want_ms),
            DurationHistogram::kRelativeError)
      << "got " << got_ms << " ms, want " << want_ms << " ms";
}

TEST(DurationHistogramTest, EmptyAnswersZero) {
  DurationHistogram h;
  EXPECT_TRUE(h.empty());
  EXPECT_EQ(h.Mean(), absl::ZeroDuration());
  EXPECT_EQ(h.Quantile(0.5), absl::ZeroDuration());
}

TEST(DurationHistogramTest, QuantilesAreWithinOnePercentOfTheExactOnes) {
  // Stage times from seconds to years, spread over orders of magnitude.
  std::mt19937_64 random(42);
  std::uniform_real_distribution<double> exponent(0, 11.5);  // 1 ms .. ~10 y
  std::vector<int64_t> ms;
  DurationHistogram h;
  for (int i = 0; i < 20000; ++i) {
    const int64_t value =
        i % 100 == 0 ? 0 : static_cast<int64_t>(std::pow(10, exponent(random)));
    ms.push_back(value);
    h.Add(absl::Milliseconds(value));
  }
  EXPECT_EQ(h.count(), 20000);
  for (double q : {0.0, 0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0}) {
    SCOPED_TRACE(q);
    ExpectWithinOnePercent(h.Quantile(q), ExactQuantile(ms, q));
  }
}

TEST(DurationHistogramTest, EveryDurationLandsWithinOnePercent) {
  // Each value alone: its bucket's midpoint is within 1% of it, at bucket
  // edges too.
  for (int64_t value = 1; value < 5'000'000'000'000; value = value * 3 + 1) {
    for (int64_t v : {value, value + 1}) {
      DurationHistogram h;
      h.Add(absl::Milliseconds(v));
      ExpectWithinOnePercent(h.Quantile(0.5), v);
    }
  }
}

TEST(DurationHistogramTest, TheMeanIsExact) {
  DurationHistogram h;
  h.Add(absl::Hours(1));
  h.Add(absl::Hours(2));
  h.Add(absl::Milliseconds(3));
  EXPECT_EQ(h.Mean(), absl::Milliseconds((3'600'000 + 7'200'000 + 3) / 3));
  // Sub-millisecond and negative durations count as zero.
  h.Add(absl::Microseconds(300));
  h.Add(-absl::Seconds(5));
  EXPECT_EQ(h.count(), 5);
  EXPECT_EQ(h.Quantile(0), absl::ZeroDuration());
}

TEST(DurationHistogramTest, MergedPartsEqualTheWhole) {
  DurationHistogram whole, monday, tuesday;
  for (int i = 1; i <= 500; ++i) {
    const absl::Duration d = absl::Minutes(i * 7);
    whole.Add(d);
    (i % 2 == 0 ? monday : tuesday).Add(d);
  }
  DurationHistogram merged = monday;
  merged.Merge(tuesday);
  EXPECT_EQ(merged, whole);
  EXPECT_EQ(merged.Quantile(0.9), whole.Quantile(0.9));
  ASSERT_OK(merged.Subtract(tuesday));
  EXPECT_EQ(merged, monday);
}

TEST(DurationHistogramTest, RemovingTakesBackExactlyOneAdd) {
  DurationHistogram h, expected;
  h.Add(absl::Hours(5));
  h.Add(absl::Hours(7));
  expected.Add(absl::Hours(7));
  ASSERT_OK(h.Remove(absl::Hours(5)));
  EXPECT_EQ(h, expected);
  // Nothing of that size is left: refused, nothing changes.
  EXPECT_THAT(h.Remove(absl::Hours(5)),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_EQ(h, expected);
  DurationHistogram bigger;
  bigger.Add(absl::Hours(7));
  bigger.Add(absl::Hours(7));
  EXPECT_THAT(h.Subtract(bigger),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_EQ(h, expected);
}

TEST(DurationHistogramTest, EncodesAndDecodes) {
  DurationHistogram h;
  for (int i = 0; i < 300; ++i) h.Add(absl::Seconds(i * i));
  h.Add(absl::Hours(24 * 365 * 90));
  ASSERT_OK_AND_ASSIGN(DurationHistogram back,
                       DurationHistogram::Decode(h.Encode()));
  EXPECT_EQ(back, h);
  ASSERT_OK_AND_ASSIGN(DurationHistogram empty,
                       DurationHistogram::Decode(DurationHistogram().Encode()));
  EXPECT_TRUE(empty.empty());
}

TEST(DurationHistogramTest, GarbageDoesNotDecode) {
  DurationHistogram h;
  h.Add(absl::Hours(3));
  const std::string bytes = h.Encode();
  EXPECT_THAT(DurationHistogram::Decode(bytes.substr(0, bytes.size() - 1)),
              StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_THAT(DurationHistogram::Decode(bytes + "x"),
              StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_THAT(DurationHistogram::Decode("\xff\xff\xff"),
              StatusIs(absl::StatusCode::kDataLoss));
  // A bucket with a count of zero is never written.
  EXPECT_THAT(DurationHistogram::Decode(std::string("\x00\x00\x01\x05\x00", 5)),
              StatusIs(absl::StatusCode::kDataLoss));
}

}  // namespace
}  // namespace crm::reporting
