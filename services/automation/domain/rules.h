// Pure rules of the automation service: validation of
// rules against the pipeline-config snapshot, and when a rule run is due.
// Errors are INVALID_ARGUMENT naming the field ("rule.timing.delay: ...").
#pragma once

#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

#include "crm/automation/v1/automation.pb.h"
#include "crm/deals/v1/deal.pb.h"

#include "common/deal_filter/deal_query.h"
#include "common/pipelines_client/config_view.h"

namespace crm::automation {

inline constexpr int kMaxRuleNameChars = 255;
inline constexpr int kMaxTextChars = 20000;
inline constexpr int kMaxAssignees = 100;
// Delays and date offsets are bounded so that a typo cannot park a run for
// centuries.
inline constexpr absl::Duration kMaxDelay = absl::Hours(24 * 365);

// Checks a rule as it would be stored: its pipeline and stage exist, name,
// timing, execution, condition (same language as ListDeals filters) and the
// action's own fields.
[[nodiscard]] absl::Status ValidateRule(const v1::Rule& rule,
                                        const crm::common::ConfigView& config);

// Checks the timing alone ("<field>.kind", "<field>.delay", ...).
// Compiles a rule or trigger condition; errors name their place from
// `field` ("rule.condition.group.filters[1].values").
[[nodiscard]] absl::StatusOr<crm::common::CompiledFilter> CompileCondition(
    std::string_view field, const crm::deals::v1::Filter& filter,
    const crm::common::ConfigView& config);

// A trigger's pipeline and stage exist, name 1..255 characters, a type,
// a compilable condition, `field` only for FIELD_CHANGED (a deal field or a
// custom field code), `app_code` only and always for APP.
[[nodiscard]] absl::Status ValidateTrigger(
    const v1::Trigger& trigger, const crm::common::ConfigView& config);

[[nodiscard]] absl::Status ValidateTiming(
    std::string_view field, const v1::Timing& timing,
    const crm::common::ConfigView& config);

// When a run of a rule with `timing` is due for `deal`, which entered the
// rule's stage at `entered`. Dates ("YYYY-MM-DD") are midnight in `zone`. A
// due time in the past is returned as is: the scheduler runs it at once.
// FAILED_PRECONDITION "deal has no <field>" when a date-relative timing
// finds no date on the deal (the run is skipped and logged).
[[nodiscard]] absl::StatusOr<absl::Time> DueTime(
    const v1::Timing& timing, const crm::deals::v1::Deal& deal,
    absl::Time entered, absl::TimeZone zone);

}  // namespace crm::automation
