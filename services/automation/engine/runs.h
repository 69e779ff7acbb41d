// Facts about runs, rules and failures that the parts of the engine
// (intake, executor, action runners, FireTrigger) share.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/status.h"

#include "crm/automation/v1/automation.pb.h"
#include "crm/deals/v1/deal.pb.h"

#include "common/pipelines_client/config_view.h"

namespace crm::automation {

// A run that has reached its outcome and will not go again.
bool IsTerminal(v1::Run::Outcome outcome);

bool Enabled(const v1::Rule& rule);

// Runs at once on entry (no delay, date or fixed time).
bool Immediate(const v1::Timing& timing);

// When a deal entered its stage: its last move, or its creation.
int64_t EnteredMicros(const crm::deals::v1::Deal& deal);

// Actions that change the deal: a retry after the deal left the stage
// would drag it back or edit it out of context.
bool ChangesDeal(const v1::Action& action);

// Failures of deals calls that mean "try again later" rather than "this
// cannot work".
bool DealsWillRecover(const absl::Status& status);

// Of those, the ones that say deals is down or busy: waited out without a
// limit. Others (an internal error that may repeat) count towards
// max_attempts.
bool DealsIsAway(const absl::Status& status);

// deals refuses a request id used before with another payload. A run's
// request id is its own (automation's namespace at deals, one run per id),
// so the refusal means an earlier attempt of this run made its change and
// its answer was lost (a crash, a deadline); the retry computed another
// payload from the deal as it is now (add_comment appends to the current
// comments, templates render the current deal). The change is made.
bool MadeByEarlierAttempt(const absl::Status& status);

// Failures of outside calls (mail, SMS, webhooks) worth another attempt.
bool OutsideWillRecover(const absl::Status& status);

// The trigger that wins for `deal` among `candidates` (the first stage
// ahead of the deal's that a trigger of its pipeline leads to, among those
// whose condition holds; behind it only for allow_backwards), or null.
const v1::Trigger* ChooseTrigger(
    const crm::common::ConfigView& config, const crm::deals::v1::Deal& deal,
    const std::vector<const v1::Trigger*>& candidates);

}  // namespace crm::automation
