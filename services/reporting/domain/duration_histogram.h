// A mergeable histogram of durations (time in stage) whose quantiles are
// within 1% of the exact ones, with an exact count and mean.
//
//   DurationHistogram h;
//   h.Add(absl::Hours(26));
//   ...
//   absl::Duration p90 = h.Quantile(0.9);
//
// Durations are kept in milliseconds in logarithmic buckets: bucket i holds
// (g^(i-1), g^i] ms with g = 1.02, and a quantile answers the bucket's
// midpoint 2 g^i / (g + 1), which is within (g - 1) / (g + 1) < 1% of every
// value in the bucket. Zero (and anything under a millisecond) has a bucket
// of its own. Buckets are sparse: a histogram of real stage times holds a
// few hundred of them at most (a century is about 1,450 buckets).
//
// Histograms add (Merge) and subtract (Remove, Subtract) exactly, so a
// deal's contribution can be taken back out when it changes or is deleted,
// and per-day histograms sum to the histogram of any period. Not
// thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace crm::reporting {

class DurationHistogram {
 public:
  // The guaranteed bound on a quantile's relative error.
  static constexpr double kRelativeError = 0.01;

  // Negative durations count as zero.
  void Add(absl::Duration duration);
  // Takes back one Add of the same duration. FAILED_PRECONDITION (and no
  // change) when there is none to take back.
  absl::Status Remove(absl::Duration duration);
  void Merge(const DurationHistogram& other);
  // Takes back everything `other` added. FAILED_PRECONDITION (and no
  // change) unless `other` is contained in this one.
  absl::Status Subtract(const DurationHistogram& other);

  int64_t count() const { return count_; }
  bool empty() const { return count_ == 0; }
  // The exact mean (to the millisecond); zero when empty.
  absl::Duration Mean() const;
  // The nearest-rank quantile (the value at rank ceil(q * count), q in
  // [0, 1]) within kRelativeError; zero when empty.
  absl::Duration Quantile(double q) const;

  // A compact byte string (varints) and back. DATA_LOSS for bytes that are
  // not one.
  std::string Encode() const;
  static absl::StatusOr<DurationHistogram> Decode(std::string_view bytes);

  friend bool operator==(const DurationHistogram& a,
                         const DurationHistogram& b) {
    return a.count_ == b.count_ && a.total_ms_ == b.total_ms_ &&
           a.buckets_ == b.buckets_;
  }

 private:
  // Bucket 0: under a millisecond; bucket i >= 1: (g^(i-1), g^i] ms.
  static int BucketOf(int64_t ms);
  static absl::Duration Representative(int bucket);

  std::map<int, int64_t> buckets_;
  int64_t count_ = 0;
  // __extension__: GCC's 128-bit integers are not ISO C++ (-Wpedantic).
  __extension__ typedef __int128 Int128;
  // Exact: 2^63 durations of a century each still fit.
  Int128 total_ms_ = 0;
};

}  // namespace crm::reporting
