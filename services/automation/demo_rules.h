// Demo automation for the local stack: what run.sh shows a new user.
#pragma once

#include <string>

#include "absl/status/statusor.h"

#include "services/automation/engine/engine.h"

namespace crm::automation {

// On an empty store: in the default pipeline, a deal entering NEW gets a
// welcome email to `demo_email` and a task for its assignee; entering
// PREPARATION notifies the assignee; a PAYMENT_RECEIVED trigger moves deals
// to WON. Returns how many rules and triggers were created (0 when the store
// had rules already).
[[nodiscard]] absl::StatusOr<int> SeedDemoAutomation(
    AutomationEngine& engine, const std::string& demo_email);

}  // namespace crm::automation
