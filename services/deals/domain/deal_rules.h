// The field rules of a deal, as pure functions over the
// pipeline-config snapshot: defaults on create, validation of every field
// the caller may set, custom field values checked against their
// definitions, and what a stage change does to a deal. Errors are
// INVALID_ARGUMENT naming the field.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

#include "crm/deals/v1/deal.pb.h"

#include "common/pipelines_client/config_view.h"

namespace crm::deals {

inline constexpr int kMaxTitleChars = 255;
inline constexpr int kMaxCommentsChars = 20000;
inline constexpr int kMaxSourceChars = 255;
inline constexpr int kMaxListItems = 100;  // contacts, observers, field values
inline constexpr int kMaxFieldTextChars = 10000;

struct NewDealContext {
  int64_t deal_id = 0;
  int64_t creator_id = 0;
  absl::Time now;
  // Days (begin date, close date) are calendar days in this zone.
  absl::TimeZone zone = absl::UTCTimeZone();
};

// The deal as it will be stored: output-only fields cleared and derived ones
// set, defaults applied (pipeline 0, its first stage, title "Deal #<id>",
// probability of the stage, assignee = creator, begin today, close in 7
// days, opened), every field validated. A deal created straight into a
// SUCCESS or FAILURE stage is closed with today's close date.
[[nodiscard]] absl::StatusOr<crm::deals::v1::Deal> PrepareNewDeal(
    const crm::deals::v1::Deal& input, const common::ConfigView& config,
    const NewDealContext& context);

// Validates the fields a caller may set (not stage or pipeline) and
// normalises amounts. Used after an update mask was applied. Custom fields
// are not checked here: only values a request sets are (ValidateCustomField),
// so a definition changed or deleted since a value was stored never blocks
// an edit of something else.
[[nodiscard]] absl::Status ValidateDealFields(crm::deals::v1::Deal* deal);

// Checks the values of one custom field against its definition: known
// code, single or multiple, type, enumeration options.
[[nodiscard]] absl::Status ValidateCustomField(
    const std::string& code, const crm::deals::v1::FieldValues& values,
    const common::ConfigView& config);

// ValidateCustomField for every custom value of the deal; with
// `require_mandatory`, mandatory fields must have a value.
[[nodiscard]] absl::Status ValidateCustomFields(
    const crm::deals::v1::Deal& deal, const common::ConfigView& config,
    bool require_mandatory);

// Removes the values of custom fields `config` does not define (deleted
// since they were stored). True when it removed any.
bool DropDeletedCustomFields(crm::deals::v1::Deal* deal,
                             const common::ConfigView& config);

// "YYYY-MM-DD" of a real calendar day.
[[nodiscard]] absl::Status ValidateDate(std::string_view field,
                                        std::string_view date);
// The calendar day of `time` in `zone`, plus `days`.
std::string DayOf(absl::Time time, absl::TimeZone zone, int days = 0);

// FAILED_PRECONDITION naming `field` when a deal may not enter `to` because
// pipeline-config is deleting it, or (with `entering_pipeline`: a new deal,
// or a move from another pipeline) deleting its pipeline.
[[nodiscard]] absl::Status CheckMayEnter(const common::ConfigView& config,
                                         const common::StageView& to,
                                         bool entering_pipeline,
                                         std::string_view field);

// Puts the deal into `to` (a stage of deal->pipeline_id() after a pipeline
// change, or of the same pipeline): stage id and semantics, closed, and the
// close date set to today when the deal closes (kept when it reopens).
// Moved by/at are set by the caller.
void ApplyStage(crm::deals::v1::Deal* deal, const common::StageView& to,
                absl::Time now, absl::TimeZone zone);

}  // namespace crm::deals
