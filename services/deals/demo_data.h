// Demo deals for a local run (deploy/local/run.sh): a dozen deals spread
// over the stages of pipeline 0, in two currencies, assigned to users 1..4,
// with Portuguese and French titles to try accent-insensitive search.
#pragma once

#include <cstdint>

#include "absl/status/statusor.h"

#include "common/pipelines_client/config_view.h"
#include "services/deals/api/deal_operations.h"
#include "services/deals/storage/deal_store.h"

namespace crm::deals {

// Creates the demo deals when the store has never held an event; returns how
// many were created (0 when the store was not empty).
[[nodiscard]] absl::StatusOr<int> SeedDemoDeals(
    DealStore& store, const common::ConfigView& config,
    const DealOperationsOptions& options);

}  // namespace crm::deals
