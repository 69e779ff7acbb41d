// The seam through which pipeline-config asks the deals service how many
// deals a pipeline or stage holds before deleting it.
//
// GrpcDealCounter (grpc_deal_counter.h) asks deals; NoDealsCounter, wired
// when no --deals_addr is given, counts every pipeline and stage as empty.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace crm::pipeline_config {

class DealCounter {
 public:
  virtual ~DealCounter() = default;
  // Number of deals in the pipeline, counted once deals holds configuration
  // `min_config_version` or newer and no write that began on an older one
  // is running. UNAVAILABLE when the deals service cannot be asked
  // (deletion is then refused rather than risked).
  [[nodiscard]] virtual absl::StatusOr<int64_t> CountDealsInPipeline(
      int64_t pipeline_id, int64_t min_config_version) = 0;
  [[nodiscard]] virtual absl::StatusOr<int64_t> CountDealsInStage(
      int64_t pipeline_id, const std::string& stage_id,
      int64_t min_config_version) = 0;
};

// Treats every pipeline and stage as empty: no deals service is configured.
class NoDealsCounter final : public DealCounter {
 public:
  absl::StatusOr<int64_t> CountDealsInPipeline(
      int64_t /*pipeline_id*/, int64_t /*min_config_version*/) override {
    return 0;
  }
  absl::StatusOr<int64_t> CountDealsInStage(
      int64_t /*pipeline_id*/, const std::string& /*stage_id*/,
      int64_t /*min_config_version*/) override {
    return 0;
  }
};

}  // namespace crm::pipeline_config
