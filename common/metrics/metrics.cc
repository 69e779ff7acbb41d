#include "common/metrics/metrics.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <utility>

#include "absl/strings/string_view.h"

#include "common/log/log.h"

namespace crm::common {
namespace {

constexpr int kNumCodes =
    17;  // grpc::StatusCode OK (0) .. UNAUTHENTICATED (16).
constexpr int kUnknownCode = 2;

constexpr std::array<const char*, kNumCodes> kCodeNames = {
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
};

constexpr int kNumBounds = 16;
constexpr std::array<double, kNumBounds> kBucketBounds = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
    0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,    10};
// Same bounds as label values, exactly as Prometheus clients print them.
constexpr std::array<const char*, kNumBounds> kBucketLabels = {
    "0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025",
    "0.05",   "0.1",     "0.25",   "0.5",   "1",      "2.5",   "5",    "10"};

// Latencies above this are clamped for the sum (keeps nanoseconds in range).
constexpr double kMaxLatencySeconds = 1e9;

constexpr std::string_view kHandledName = "crm_grpc_server_handled_total";
constexpr std::string_view kErrorsName = "crm_grpc_server_errors_total";
constexpr std::string_view kHistogramName = "crm_grpc_server_handling_seconds";
constexpr std::string_view kReservedPrefix = "crm_grpc_server_";
constexpr std::string_view kUnknown = "unknown";

absl::string_view ToAbsl(std::string_view s) {
  return absl::string_view(s.data(), s.size());
}

void AppendEscaped(std::string* out, std::string_view value,
                   bool escape_quote) {
  for (char c : value) {
    switch (c) {
      case '\\':
        out->append("\\\\");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '"':
        if (escape_quote) {
          out->append("\\\"");
        } else {
          out->push_back(c);
        }
        break;
      default:
        out->push_back(c);
    }
  }
}

void AppendUint(std::string* out, uint64_t value) {
  char buf[24];
  const auto result = std::to_chars(buf, buf + sizeof(buf), value);
  out->append(buf, result.ptr);
}

void AppendDouble(std::string* out, double value) {
  if (std::isnan(value)) {
    out->append("NaN");
    return;
  }
  if (std::isinf(value)) {
    out->append(value > 0 ? "+Inf" : "-Inf");
    return;
  }
  char buf[32];
  // Shortest representation that round-trips.
  const auto result = std::to_chars(buf, buf + sizeof(buf), value);
  out->append(buf, result.ptr);
}

void AppendHeader(std::string* out, std::string_view name,
                  std::string_view escaped_help, std::string_view type) {
  out->append("# HELP ")
      .append(name)
      .append(" ")
      .append(escaped_help)
      .append("\n");
  out->append("# TYPE ").append(name).append(" ").append(type).append("\n");
}

// Splits "/package.Service/Method". Returns false for any other shape.
bool ParseMethod(std::string_view full, std::string_view* service,
                 std::string_view* method) {
  if (full.size() < 4 || full[0] != '/') return false;
  const size_t slash = full.find('/', 1);
  if (slash == std::string_view::npos || slash == 1 || slash + 1 == full.size())
    return false;
  *service = full.substr(1, slash - 1);
  *method = full.substr(slash + 1);
  return true;
}

bool IsNameChar(char c, bool first) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':')
    return true;
  return !first && c >= '0' && c <= '9';
}

std::string SanitizeName(std::string_view name) {
  std::string out(name);
  for (size_t i = 0; i < out.size(); ++i) {
    if (!IsNameChar(out[i], i == 0)) out[i] = '_';
  }
  return out;
}

void AtomicAdd(std::atomic<double>* target, double delta) {
  double current = target->load(std::memory_order_relaxed);
  while (!target->compare_exchange_weak(current, current + delta,
                                        std::memory_order_relaxed)) {
  }
}

}  // namespace

struct MetricsRegistry::MethodStats {
  // Pre-rendered and escaped: grpc_service="...",grpc_method="..."
  std::string labels;
  std::array<std::atomic<uint64_t>, kNumCodes> handled{};
  // Non-cumulative; index kNumBounds is the +Inf overflow bucket.
  std::array<std::atomic<uint64_t>, kNumBounds + 1> buckets{};
  std::atomic<uint64_t> sum_nanos{0};
};

struct MetricsRegistry::Scalar {
  enum class Kind { kCounter, kGauge, kRejected };

  Kind kind = Kind::kRejected;
  std::string name;  // sanitized
  std::string help;  // escaped
  std::atomic<double> value{0};
  std::atomic<bool> problem_logged{false};
};

MetricsRegistry::MetricsRegistry() = default;
MetricsRegistry::~MetricsRegistry() = default;

void MetricsRegistry::RecordRpc(std::string_view method, int code,
                                double latency_seconds) {
  MethodStats* stats = nullptr;
  {
    absl::ReaderMutexLock lock(&methods_mu_);
    const auto it = method_index_.find(ToAbsl(method));
    if (it != method_index_.end()) stats = it->second;
  }
  if (stats == nullptr) stats = FindOrAddMethod(method);

  if (code < 0 || code >= kNumCodes) code = kUnknownCode;
  stats->handled[code].fetch_add(1, std::memory_order_relaxed);

  if (!(latency_seconds >= 0)) latency_seconds = 0;  // negative or NaN
  const size_t bucket = std::lower_bound(kBucketBounds.begin(),
                                         kBucketBounds.end(), latency_seconds) -
                        kBucketBounds.begin();
  stats->buckets[bucket].fetch_add(1, std::memory_order_relaxed);
  const double clamped = std::min(latency_seconds, kMaxLatencySeconds);
  stats->sum_nanos.fetch_add(static_cast<uint64_t>(std::llround(clamped * 1e9)),
                             std::memory_order_relaxed);
}

MetricsRegistry::MethodStats* MetricsRegistry::FindOrAddMethod(
    std::string_view method) {
  absl::MutexLock lock(&methods_mu_);
  const auto it = method_index_.find(ToAbsl(method));
  if (it != method_index_.end()) return it->second;

  const auto make_stats = [this](std::string_view service,
                                 std::string_view name) {
    methods_mu_.AssertHeld();  // (called below, under the lock)
    auto stats = std::make_unique<MethodStats>();
    stats->labels.append("grpc_service=\"");
    AppendEscaped(&stats->labels, service, /*escape_quote=*/true);
    stats->labels.append("\",grpc_method=\"");
    AppendEscaped(&stats->labels, name, /*escape_quote=*/true);
    stats->labels.append("\"");
    methods_.push_back(std::move(stats));
    return methods_.back().get();
  };

  std::string_view service;
  std::string_view name;
  MethodStats* stats = nullptr;
  if (ParseMethod(method, &service, &name) &&
      !(service == kUnknown && name == kUnknown) &&
      methods_.size() < kMaxMethods) {
    stats = make_stats(service, name);
  } else {
    if (unknown_method_ == nullptr)
      unknown_method_ = make_stats(kUnknown, kUnknown);
    stats = unknown_method_;
  }
  // Bounded so that a flood of distinct bogus names cannot grow the index;
  // beyond it such names take this slow path on every call.
  if (method_index_.size() < 2 * kMaxMethods)
    method_index_.emplace(std::string(method), stats);
  return stats;
}

MetricsRegistry::Scalar* MetricsRegistry::FindOrAddScalar(std::string_view name,
                                                          std::string_view help,
                                                          bool counter) {
  {
    absl::ReaderMutexLock lock(&scalars_mu_);
    const auto it = scalar_index_.find(ToAbsl(name));
    if (it != scalar_index_.end()) return it->second;
  }
  absl::MutexLock lock(&scalars_mu_);
  const auto it = scalar_index_.find(ToAbsl(name));
  if (it != scalar_index_.end()) return it->second;

  std::string sanitized = SanitizeName(name);
  auto& slot = scalars_[sanitized];
  if (slot == nullptr) {
    slot = std::make_unique<Scalar>();
    slot->name = std::move(sanitized);
    AppendEscaped(&slot->help, help, /*escape_quote=*/false);
    if (slot->name.empty() ||
        slot->name.compare(0, kReservedPrefix.size(), kReservedPrefix) == 0) {
      slot->kind = Scalar::Kind::kRejected;
    } else {
      slot->kind = counter ? Scalar::Kind::kCounter : Scalar::Kind::kGauge;
    }
  }
  scalar_index_.emplace(std::string(name), slot.get());
  return slot.get();
}

namespace {

// Logs the first misuse of a name only, so a bad call on a hot path does not
// flood the log.
template <typename ScalarT>
void ReportRejected(ScalarT* scalar, std::string_view wanted) {
  if (scalar->problem_logged.exchange(true, std::memory_order_relaxed)) return;
  std::string_view reason = "reserved or empty name";
  if (scalar->kind == ScalarT::Kind::kCounter)
    reason = "name is registered as a counter";
  if (scalar->kind == ScalarT::Kind::kGauge)
    reason = "name is registered as a gauge";
  CRM_LOG(kError, "metric update ignored",
          {{"name", scalar->name}, {"wanted", wanted}, {"reason", reason}});
}

}  // namespace

void MetricsRegistry::IncrementCounter(std::string_view name,
                                       std::string_view help, double delta) {
  Scalar* scalar = FindOrAddScalar(name, help, /*counter=*/true);
  if (scalar->kind != Scalar::Kind::kCounter) {
    ReportRejected(scalar, "counter");
    return;
  }
  if (!std::isfinite(delta) || delta < 0) return;  // counters only go up
  AtomicAdd(&scalar->value, delta);
}

void MetricsRegistry::SetGauge(std::string_view name, std::string_view help,
                               double value) {
  Scalar* scalar = FindOrAddScalar(name, help, /*counter=*/false);
  if (scalar->kind != Scalar::Kind::kGauge) {
    ReportRejected(scalar, "gauge");
    return;
  }
  scalar->value.store(value, std::memory_order_relaxed);
}

std::string MetricsRegistry::RenderPrometheus() const {
  struct Snapshot {
    const std::string* labels;
    std::array<uint64_t, kNumCodes> handled;
    std::array<uint64_t, kNumBounds + 1> buckets;
    uint64_t sum_nanos;
  };
  std::string out;
  {
    absl::ReaderMutexLock lock(&methods_mu_);
    std::vector<Snapshot> snapshots;
    snapshots.reserve(methods_.size());
    for (const auto& stats : methods_) {
      Snapshot& s = snapshots.emplace_back();
      s.labels = &stats->labels;
      for (int i = 0; i < kNumCodes; ++i) {
        s.handled[i] = stats->handled[i].load(std::memory_order_relaxed);
      }
      for (int i = 0; i <= kNumBounds; ++i) {
        s.buckets[i] = stats->buckets[i].load(std::memory_order_relaxed);
      }
      s.sum_nanos = stats->sum_nanos.load(std::memory_order_relaxed);
    }
    std::sort(snapshots.begin(), snapshots.end(),
              [](const Snapshot& a, const Snapshot& b) {
                return *a.labels < *b.labels;
              });
    out.reserve(256 + snapshots.size() * 2600);

    AppendHeader(&out, kHandledName,
                 "Total number of RPCs completed on the server, regardless of "
                 "success or "
                 "failure.",
                 "counter");
    for (const Snapshot& s : snapshots) {
      for (int code = 0; code < kNumCodes; ++code) {
        if (s.handled[code] == 0) continue;
        out.append(kHandledName).append("{").append(*s.labels);
        out.append(",grpc_code=\"").append(kCodeNames[code]).append("\"} ");
        AppendUint(&out, s.handled[code]);
        out.push_back('\n');
      }
    }

    AppendHeader(
        &out, kErrorsName,
        "Total number of RPCs completed on the server with a non-OK status.",
        "counter");
    for (const Snapshot& s : snapshots) {
      for (int code = 1; code < kNumCodes; ++code) {
        if (s.handled[code] == 0) continue;
        out.append(kErrorsName).append("{").append(*s.labels);
        out.append(",grpc_code=\"").append(kCodeNames[code]).append("\"} ");
        AppendUint(&out, s.handled[code]);
        out.push_back('\n');
      }
    }

    AppendHeader(&out, kHistogramName,
                 "Histogram of response latency (seconds) of RPCs handled by "
                 "the server.",
                 "histogram");
    for (const Snapshot& s : snapshots) {
      uint64_t cumulative = 0;
      for (int i = 0; i <= kNumBounds; ++i) {
        cumulative += s.buckets[i];
        out.append(kHistogramName)
            .append("_bucket{")
            .append(*s.labels)
            .append(",le=\"");
        out.append(i < kNumBounds ? kBucketLabels[i] : "+Inf").append("\"} ");
        AppendUint(&out, cumulative);
        out.push_back('\n');
      }
      out.append(kHistogramName).append("_sum{").append(*s.labels).append("} ");
      AppendDouble(&out, static_cast<double>(s.sum_nanos) / 1e9);
      out.push_back('\n');
      // The count is the +Inf bucket, so the two always agree.
      out.append(kHistogramName)
          .append("_count{")
          .append(*s.labels)
          .append("} ");
      AppendUint(&out, cumulative);
      out.push_back('\n');
    }
  }

  absl::ReaderMutexLock lock(&scalars_mu_);
  for (const auto& [name, scalar] : scalars_) {
    if (scalar->kind == Scalar::Kind::kRejected) continue;
    AppendHeader(&out, name, scalar->help,
                 scalar->kind == Scalar::Kind::kCounter ? "counter" : "gauge");
    out.append(name).push_back(' ');
    AppendDouble(&out, scalar->value.load(std::memory_order_relaxed));
    out.push_back('\n');
  }
  return out;
}

}  // namespace crm::common
