// The seam through which pipeline-config asks the deals service how many
// deals a pipeline or stage holds before deleting it.
//
// Until the deals service exists, NoDealsCounter is wired in main.cc: every
// pipeline and stage counts as empty (written down in the README). The deals
// service will provide a gRPC implementation of this interface.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace crm::pipeline_config {

class DealCounter {
 public:
  virtual ~DealCounter() = default;
  // Number of deals in the pipeline. UNAVAILABLE when the deals service
  // cannot be asked (deletion is then refused rather than risked).
  [[nodiscard]] virtual absl::StatusOr<int64_t> CountDealsInPipeline(
      int64_t pipeline_id) = 0;
  [[nodiscard]] virtual absl::StatusOr<int64_t> CountDealsInStage(
      int64_t pipeline_id, const std::string& stage_id) = 0;
};

// Treats every pipeline and stage as empty: no deals service is configured.
class NoDealsCounter final : public DealCounter {
 public:
  absl::StatusOr<int64_t> CountDealsInPipeline(
      int64_t /*pipeline_id*/) override {
    return 0;
  }
  absl::StatusOr<int64_t> CountDealsInStage(
      int64_t /*pipeline_id*/, const std::string& /*stage_id*/) override {
    return 0;
  }
};

}  // namespace crm::pipeline_config
