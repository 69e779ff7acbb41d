// Mustache templates over a deal, for the texts of automation actions (email
// subject and body, SMS text, webhook payload).
//
//   CRM_RETURN_IF_ERROR(ValidateTemplate("email.subject", rule.subject()));
//   CRM_ASSIGN_OR_RETURN(std::string subject,
//                        RenderDealTemplate(rule.subject(), deal));
//
// Placeholders are the deal's fields by their proto names:
//   {{id}} {{title}} {{pipeline_id}} {{stage_id}} {{stage_semantics}}
//   {{amount}} {{currency}} {{tax_amount}} {{probability}} {{assignee_id}}
//   {{company_id}} {{contact_ids}} {{source}} {{begin_date}} {{close_date}}
//   {{opened}} {{closed}} {{comments}} {{observer_ids}} {{lead_id}}
//   {{created_by}} {{create_time}} ... (every scalar field of the message)
// and custom fields as {{custom.UF_CRM_X}}.
//
// Values are text: numbers in decimal, bools "true"/"false", enums by value
// name, timestamps in RFC 3339, repeated scalars and multi-value custom fields
// joined with ", ". Fields whose text is empty (unset strings, an unset
// optional, an absent custom field) are left out, so
// {{#close_date}}...{{/close_date}} and {{^currency}}...{{/currency}} test
// whether a value is present. Unknown placeholders and partials render as
// nothing.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#include "crm/deals/v1/deal.pb.h"

namespace crm::automation {

// Longest accepted template, in bytes.
inline constexpr size_t kMaxTemplateBytes = 20000;

// OK when `text` is a well-formed Mustache template of at most
// kMaxTemplateBytes. Otherwise INVALID_ARGUMENT whose message starts with
// `field` (e.g. an unclosed section, an unterminated tag, too long).
[[nodiscard]] absl::Status ValidateTemplate(std::string_view field,
                                            std::string_view text);

// Renders `text` with the deal's fields. With `html_escape` the values are
// HTML-escaped (for HTML email bodies); plain text (subjects, SMS, JSON that
// the caller escapes itself) leaves it off. {{{x}}} and {{&x}} never escape.
// INVALID_ARGUMENT (field "template") for a template ValidateTemplate rejects.
[[nodiscard]] absl::StatusOr<std::string> RenderDealTemplate(
    std::string_view text, const crm::deals::v1::Deal& deal,
    bool html_escape = false);

}  // namespace crm::automation
