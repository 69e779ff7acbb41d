// Demo configuration for a first local start: a second pipeline, a small
// department tree, two roles with assignments and two custom fields.
#pragma once

#include "absl/status/status.h"

#include "services/pipeline_config/domain/config_manager.h"

namespace crm::pipeline_config {

// Seeds the demo data when the store holds only what a first start creates
// (pipeline 0 and nothing else); otherwise does nothing. Returns whether it
// seeded.
[[nodiscard]] absl::StatusOr<bool> SeedDemoData(ConfigManager& manager);

}  // namespace crm::pipeline_config
