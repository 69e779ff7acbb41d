// A small thread-safe metrics registry rendered in the Prometheus text
// exposition format 0.0.4.
//
// RPC metrics (one series set per gRPC method):
//   crm_grpc_server_handled_total{grpc_service,grpc_method,grpc_code}  counter
//   crm_grpc_server_errors_total{grpc_service,grpc_method,grpc_code}   counter
//   (non-OK only) crm_grpc_server_handling_seconds{grpc_service,grpc_method}
//   histogram
//
// plus label-less counters and gauges registered by name on first use.
//
//   crm::common::MetricsRegistry metrics;
//   metrics.RecordRpc("/crm.pipelines.v1.PipelinesService/GetPipeline", 0,
//   0.0012); metrics.SetGauge("crm_outbox_lag", "Outbox entries not yet
//   published.", 3); std::string text = metrics.RenderPrometheus();
//
// RecordRpc is meant for the hot path: for a method already seen it takes a
// shared reader lock, does one hash lookup without allocating and three
// relaxed atomic increments.
#pragma once

#include <cstddef>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"

namespace crm::common {

class MetricsRegistry {
 public:
  // Distinct gRPC methods tracked; calls of further methods (and of method
  // names not shaped "/service/method") are counted under
  // grpc_service="unknown",grpc_method="unknown". This bounds memory when
  // clients send arbitrary method names.
  static constexpr size_t kMaxMethods = 1000;

  MetricsRegistry();
  ~MetricsRegistry();
  MetricsRegistry(const MetricsRegistry&) = delete;
  MetricsRegistry& operator=(const MetricsRegistry&) = delete;

  // Records one finished RPC. `method` is the full gRPC method
  // ("/crm.pipelines.v1.PipelinesService/GetPipeline"), `code` the
  // grpc::StatusCode as int (values outside 0..16 count as UNKNOWN) and
  // `latency_seconds` the handling time (negative or NaN counts as 0).
  void RecordRpc(std::string_view method, int code, double latency_seconds);

  // Label-less counter `name`, created with `help` on first use (later `help`
  // values are ignored). Negative or NaN deltas are ignored. Characters not
  // allowed in a metric name are replaced by '_'. A name already used as a
  // gauge, or one of the crm_grpc_server_* names, is ignored (logged once).
  void IncrementCounter(std::string_view name, std::string_view help,
                        double delta = 1);

  // Label-less gauge `name` set to `value`; same naming rules as counters.
  void SetGauge(std::string_view name, std::string_view help, double value);

  // Renders all families in the text exposition format 0.0.4, in a stable
  // order: the RPC families (methods sorted), then counters and gauges by name.
  std::string RenderPrometheus() const;

 private:
  struct MethodStats;
  struct Scalar;

  MethodStats* FindOrAddMethod(std::string_view method);
  Scalar* FindOrAddScalar(std::string_view name, std::string_view help,
                          bool counter);

  mutable absl::Mutex methods_mu_;
  // Full method name -> stats. Several names may share the "unknown" entry.
  absl::flat_hash_map<std::string, MethodStats*> method_index_
      ABSL_GUARDED_BY(methods_mu_);
  // One entry per distinct label set; never shrinks, so pointers are stable.
  std::vector<std::unique_ptr<MethodStats>> methods_
      ABSL_GUARDED_BY(methods_mu_);
  MethodStats* unknown_method_ ABSL_GUARDED_BY(methods_mu_) = nullptr;

  mutable absl::Mutex scalars_mu_;
  // Name as passed by the caller -> entry.
  absl::flat_hash_map<std::string, Scalar*> scalar_index_
      ABSL_GUARDED_BY(scalars_mu_);
  // Sanitized name -> entry, ordered for rendering.
  std::map<std::string, std::unique_ptr<Scalar>> scalars_
      ABSL_GUARDED_BY(scalars_mu_);
};

}  // namespace crm::common
