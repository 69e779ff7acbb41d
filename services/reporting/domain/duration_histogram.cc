#include "services/reporting/domain/duration_histogram.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"

namespace crm::reporting {
namespace {

constexpr double kGrowth = 1.02;  // (g - 1) / (g + 1) = 0.0099 < 1%

// Bucket numbers stay far below this (a century in ms is bucket ~1,450).
constexpr uint32_t kMaxBucket = 1 << 20;

}  // namespace

int DurationHistogram::BucketOf(int64_t ms) {
  if (ms < 1) return 0;
  return 1 + static_cast<int>(std::ceil(std::log(static_cast<double>(ms)) /
                                        std::log(kGrowth)));
}

absl::Duration DurationHistogram::Representative(int bucket) {
  if (bucket == 0) return absl::ZeroDuration();
  const double upper = std::pow(kGrowth, bucket - 1);
  return absl::Milliseconds(2 * upper / (kGrowth + 1));
}

void DurationHistogram::Add(absl::Duration duration) {
  const int64_t ms = std::max<int64_t>(0, absl::ToInt64Milliseconds(duration));
  ++buckets_[BucketOf(ms)];
  ++count_;
  total_ms_ += ms;
}

absl::Status DurationHistogram::Remove(absl::Duration duration) {
  const int64_t ms = std::max<int64_t>(0, absl::ToInt64Milliseconds(duration));
  auto it = buckets_.find(BucketOf(ms));
  if (it == buckets_.end()) {
    return absl::FailedPreconditionError(
        "the histogram holds no such duration to remove");
  }
  if (--it->second == 0) buckets_.erase(it);
  --count_;
  total_ms_ -= ms;
  return absl::OkStatus();
}

void DurationHistogram::Merge(const DurationHistogram& other) {
  for (const auto& [bucket, n] : other.buckets_) buckets_[bucket] += n;
  count_ += other.count_;
  total_ms_ += other.total_ms_;
}

absl::Status DurationHistogram::Subtract(const DurationHistogram& other) {
  if (other.count_ > count_ || other.total_ms_ > total_ms_) {
    return absl::FailedPreconditionError(
        "the histogram does not hold what is subtracted");
  }
  for (const auto& [bucket, n] : other.buckets_) {
    auto it = buckets_.find(bucket);
    if (it == buckets_.end() || it->second < n) {
      return absl::FailedPreconditionError(
          "the histogram does not hold what is subtracted");
    }
  }
  for (const auto& [bucket, n] : other.buckets_) {
    auto it = buckets_.find(bucket);
    if ((it->second -= n) == 0) buckets_.erase(it);
  }
  count_ -= other.count_;
  total_ms_ -= other.total_ms_;
  return absl::OkStatus();
}

absl::Duration DurationHistogram::Mean() const {
  if (count_ == 0) return absl::ZeroDuration();
  return absl::Milliseconds(static_cast<int64_t>(total_ms_ / count_));
}

absl::Duration DurationHistogram::Quantile(double q) const {
  if (count_ == 0) return absl::ZeroDuration();
  q = std::clamp(q, 0.0, 1.0);
  const int64_t rank = std::clamp<int64_t>(
      static_cast<int64_t>(std::ceil(q * static_cast<double>(count_))), 1,
      count_);
  int64_t seen = 0;
  for (const auto& [bucket, n] : buckets_) {
    seen += n;
    if (seen >= rank) return Representative(bucket);
  }
  return Representative(buckets_.rbegin()->first);
}

std::string DurationHistogram::Encode() const {
  std::string bytes;
  {
    google::protobuf::io::StringOutputStream stream(&bytes);
    google::protobuf::io::CodedOutputStream out(&stream);
    out.WriteVarint64(static_cast<uint64_t>(total_ms_ >> 64));
    out.WriteVarint64(static_cast<uint64_t>(total_ms_));
    out.WriteVarint32(static_cast<uint32_t>(buckets_.size()));
    int previous = 0;
    for (const auto& [bucket, n] : buckets_) {
      out.WriteVarint32(static_cast<uint32_t>(bucket - previous));
      out.WriteVarint64(static_cast<uint64_t>(n));
      previous = bucket;
    }
  }
  return bytes;
}

absl::StatusOr<DurationHistogram> DurationHistogram::Decode(
    std::string_view bytes) {
  const auto unreadable = [] {
    return absl::DataLossError("unreadable duration histogram");
  };
  google::protobuf::io::CodedInputStream in(
      reinterpret_cast<const uint8_t*>(bytes.data()),
      static_cast<int>(bytes.size()));
  DurationHistogram histogram;
  uint64_t hi = 0, lo = 0;
  uint32_t size = 0;
  if (!in.ReadVarint64(&hi) || !in.ReadVarint64(&lo) ||
      !in.ReadVarint32(&size) || size > kMaxBucket) {
    return unreadable();
  }
  histogram.total_ms_ = (static_cast<Int128>(hi) << 64) | lo;
  uint32_t bucket = 0;
  for (uint32_t i = 0; i < size; ++i) {
    uint32_t delta = 0;
    uint64_t n = 0;
    if (!in.ReadVarint32(&delta) || !in.ReadVarint64(&n) || n == 0 ||
        n > static_cast<uint64_t>(INT64_MAX) || (i > 0 && delta == 0) ||
        delta > kMaxBucket - bucket) {
      return unreadable();
    }
    bucket += delta;
    histogram.buckets_[static_cast<int>(bucket)] = static_cast<int64_t>(n);
    if (__builtin_add_overflow(histogram.count_, static_cast<int64_t>(n),
                               &histogram.count_)) {
      return unreadable();
    }
  }
  if (in.CurrentPosition() != static_cast<int>(bytes.size())) {
    return unreadable();
  }
  return histogram;
}

}  // namespace crm::reporting
