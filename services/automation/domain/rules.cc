#include "services/automation/domain/rules.h"

#include <algorithm>
#include <cstring>
#include <set>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

#include "common/deal_filter/deal_query.h"
#include "common/status/status_macros.h"
#include "common/text/text.h"
#include "services/automation/domain/template.h"

namespace crm::automation {
namespace {

namespace pv1 = ::crm::pipelines::v1;

// Deal fields SetFields may write (the UpdateDeal mask paths).
const std::set<std::string>& SettableFields() {
  static const auto* fields = new std::set<std::string>{
      "title",       "amount",     "currency",    "manual_amount", "tax_amount",
      "probability", "company_id", "contact_ids", "source",        "begin_date",
      "close_date",  "opened",     "comments",    "observer_ids",  "lead_id"};
  return *fields;
}

absl::StatusOr<absl::Duration> ToDuration(std::string_view field,
                                          const google::protobuf::Duration& d) {
  // The proto's own bounds: about 10,000 years, nanos within one second and
  // of the same sign as the seconds.
  constexpr int64_t kMaxSeconds = 315'576'000'000;
  if (d.seconds() > kMaxSeconds || d.seconds() < -kMaxSeconds ||
      d.nanos() >= 1'000'000'000 || d.nanos() <= -1'000'000'000 ||
      (d.seconds() < 0 && d.nanos() > 0) ||
      (d.seconds() > 0 && d.nanos() < 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat(std::string(field), ": not a valid duration"));
  }
  return absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
}

// Action texts are deal templates: plain text rules plus Mustache syntax.
absl::Status CheckText(std::string_view field, const std::string& text,
                       bool allow_empty) {
  CRM_RETURN_IF_ERROR(common::ValidateText(
      field, text, {kMaxTextChars, allow_empty, /*newlines=*/true}));
  return ValidateTemplate(field, text);
}

absl::Status CheckUrl(std::string_view field, const std::string& url) {
  if (!(absl::StartsWith(url, "http://") ||
        absl::StartsWith(url, "https://")) ||
      url.size() > 2048) {
    return absl::InvalidArgumentError(
        absl::StrCat(std::string(field),
                     ": an http:// or https:// URL of at most 2048 "
                     "characters"));
  }
  for (char c : url) {
    if (c <= 0x20 || c == 0x7f) {
      return absl::InvalidArgumentError(absl::StrCat(
          std::string(field), ": no spaces or control characters"));
    }
  }
  const size_t host_start = url.find("://") + 3;
  if (host_start >= url.size() || url[host_start] == '/' ||
      url[host_start] == ':') {
    return absl::InvalidArgumentError(
        absl::StrCat(std::string(field), ": the URL has no host"));
  }
  return absl::OkStatus();
}

absl::Status CheckAction(const v1::Rule& rule,
                         const crm::common::ConfigView& config) {
  const v1::Action& action = rule.action();
  switch (action.kind_case()) {
    case v1::Action::kSendEmail: {
      const auto& email = action.send_email();
      if (!email.to().empty() &&
          (email.to().find('@') == std::string::npos ||
           email.to().find_first_of(" \t\r\n<>,;") != std::string::npos)) {
        return absl::InvalidArgumentError(
            "rule.action.send_email.to: not an email address");
      }
      CRM_RETURN_IF_ERROR(
          CheckText("rule.action.send_email.subject", email.subject(), false));
      return CheckText("rule.action.send_email.body", email.body(), false);
    }
    case v1::Action::kSendSms: {
      const auto& sms = action.send_sms();
      for (char c : sms.to()) {
        if (!(c == '+' || (c >= '0' && c <= '9'))) {
          return absl::InvalidArgumentError(
              "rule.action.send_sms.to: digits with an optional leading +");
        }
      }
      return CheckText("rule.action.send_sms.text", sms.text(), false);
    }
    case v1::Action::kCreateTask: {
      const auto& task = action.create_task();
      CRM_RETURN_IF_ERROR(
          CheckText("rule.action.create_task.title", task.title(), false));
      CRM_RETURN_IF_ERROR(CheckText("rule.action.create_task.description",
                                    task.description(), true));
      if (task.responsible_id() < 0) {
        return absl::InvalidArgumentError(
            "rule.action.create_task.responsible_id: must be >= 0");
      }
      CRM_ASSIGN_OR_RETURN(absl::Duration deadline,
                           ToDuration("rule.action.create_task.deadline_after",
                                      task.deadline_after()));
      if (deadline < absl::ZeroDuration() || deadline > kMaxDelay) {
        return absl::InvalidArgumentError(
            "rule.action.create_task.deadline_after: 0 to 365 days");
      }
      return absl::OkStatus();
    }
    case v1::Action::kCompleteStageTasks:
      return absl::OkStatus();
    case v1::Action::kChangeStage:
      if (config.FindStage(rule.pipeline_id(),
                           action.change_stage().stage_id()) == nullptr) {
        return absl::InvalidArgumentError(
            absl::StrCat("rule.action.change_stage.stage_id: \"",
                         action.change_stage().stage_id(),
                         "\" is not a stage of pipeline ", rule.pipeline_id()));
      }
      if (action.change_stage().stage_id() == rule.stage_id()) {
        return absl::InvalidArgumentError(
            "rule.action.change_stage.stage_id: the rule's own stage");
      }
      return absl::OkStatus();
    case v1::Action::kMoveToPipeline: {
      const auto& move = action.move_to_pipeline();
      if (config.FindPipeline(move.pipeline_id()) == nullptr) {
        return absl::InvalidArgumentError(
            absl::StrCat("rule.action.move_to_pipeline.pipeline_id: pipeline ",
                         move.pipeline_id(), " does not exist"));
      }
      if (move.pipeline_id() == rule.pipeline_id()) {
        return absl::InvalidArgumentError(
            "rule.action.move_to_pipeline.pipeline_id: the rule's own "
            "pipeline (use change_stage)");
      }
      if (!move.stage_id().empty() &&
          config.FindStage(move.pipeline_id(), move.stage_id()) == nullptr) {
        return absl::InvalidArgumentError(absl::StrCat(
            "rule.action.move_to_pipeline.stage_id: \"", move.stage_id(),
            "\" is not a stage of pipeline ", move.pipeline_id()));
      }
      return absl::OkStatus();
    }
    case v1::Action::kChangeAssignee: {
      const auto& users = action.change_assignee().user_ids();
      if (users.empty() || users.size() > kMaxAssignees) {
        return absl::InvalidArgumentError(
            absl::StrCat("rule.action.change_assignee.user_ids: 1 to ",
                         kMaxAssignees, " users"));
      }
      std::set<int64_t> seen;
      for (int64_t user : users) {
        if (user <= 0 || !seen.insert(user).second) {
          return absl::InvalidArgumentError(
              "rule.action.change_assignee.user_ids: positive, distinct ids");
        }
      }
      return absl::OkStatus();
    }
    case v1::Action::kSetFields: {
      const auto& values = action.set_fields().values();
      if (values.empty()) {
        return absl::InvalidArgumentError(
            "rule.action.set_fields.values: name at least one field");
      }
      for (const auto& [name, value] : values) {
        if (SettableFields().count(name) == 0 &&
            config.FindField(name) == nullptr) {
          return absl::InvalidArgumentError(
              absl::StrCat("rule.action.set_fields.values: \"", name,
                           "\" is not a settable deal field"));
        }
        for (const std::string& text : value.values()) {
          CRM_RETURN_IF_ERROR(CheckText(
              absl::StrCat("rule.action.set_fields.values[", name, "]"), text,
              true));
        }
      }
      return absl::OkStatus();
    }
    case v1::Action::kAddComment:
      return CheckText("rule.action.add_comment.text",
                       action.add_comment().text(), false);
    case v1::Action::kNotifyEmployee:
      if (action.notify_employee().user_id() < 0) {
        return absl::InvalidArgumentError(
            "rule.action.notify_employee.user_id: must be >= 0");
      }
      return CheckText("rule.action.notify_employee.text",
                       action.notify_employee().text(), false);
    case v1::Action::kCallWebhook:
      CRM_RETURN_IF_ERROR(CheckUrl("rule.action.call_webhook.url",
                                   action.call_webhook().url()));
      if (action.call_webhook().secret().size() > 256) {
        return absl::InvalidArgumentError(
            "rule.action.call_webhook.secret: at most 256 bytes");
      }
      return absl::OkStatus();
    default:
      return absl::InvalidArgumentError("rule.action: required");
  }
}

// The calendar day "YYYY-MM-DD" at midnight in `zone`.
std::optional<absl::Time> DayStart(const std::string& day,
                                   absl::TimeZone zone) {
  absl::CivilDay civil;
  if (!absl::ParseCivilTime(day, &civil)) return std::nullopt;
  return absl::FromCivil(civil, zone);
}

}  // namespace

absl::Status ValidateTiming(std::string_view field, const v1::Timing& timing,
                            const crm::common::ConfigView& config) {
  const std::string f(field);
  switch (timing.kind()) {
    case v1::Timing::KIND_UNSPECIFIED:
    case v1::Timing::KIND_IMMEDIATE:
      return absl::OkStatus();
    case v1::Timing::KIND_DELAY: {
      CRM_ASSIGN_OR_RETURN(absl::Duration delay,
                           ToDuration(f + ".delay", timing.delay()));
      if (delay <= absl::ZeroDuration() || delay > kMaxDelay) {
        return absl::InvalidArgumentError(
            absl::StrCat(f, ".delay: more than 0 and at most 365 days"));
      }
      return absl::OkStatus();
    }
    case v1::Timing::KIND_RELATIVE_TO_DATE: {
      const std::string& date_field = timing.date_field();
      if (date_field != "close_date" && date_field != "begin_date") {
        const pv1::FieldDefinition* custom = config.FindField(date_field);
        if (custom == nullptr || custom->multiple() ||
            (custom->type() != pv1::FIELD_TYPE_DATE &&
             custom->type() != pv1::FIELD_TYPE_DATETIME)) {
          return absl::InvalidArgumentError(absl::StrCat(
              f,
              ".date_field: close_date, begin_date or a single date or "
              "datetime custom field, not \"",
              date_field, "\""));
        }
      }
      CRM_ASSIGN_OR_RETURN(absl::Duration offset,
                           ToDuration(f + ".offset", timing.offset()));
      if (absl::AbsDuration(offset) > kMaxDelay) {
        return absl::InvalidArgumentError(
            absl::StrCat(f, ".offset: at most 365 days either way"));
      }
      return absl::OkStatus();
    }
    case v1::Timing::KIND_AT_TIME:
      // 0001-01-01 .. 9999-12-31, as google.protobuf.Timestamp allows.
      if (!timing.has_at() || timing.at().seconds() < -62'135'596'800 ||
          timing.at().seconds() > 253'402'300'799 || timing.at().nanos() < 0 ||
          timing.at().nanos() >= 1'000'000'000 ||
          (timing.at().seconds() == 0 && timing.at().nanos() == 0)) {
        return absl::InvalidArgumentError(
            absl::StrCat(f, ".at: a valid time is required"));
      }
      return absl::OkStatus();
    default:
      return absl::InvalidArgumentError(absl::StrCat(f, ".kind: unknown"));
  }
}

absl::StatusOr<crm::common::CompiledFilter> CompileCondition(
    std::string_view field, const crm::deals::v1::Filter& filter,
    const crm::common::ConfigView& config) {
  absl::StatusOr<crm::common::CompiledFilter> condition =
      crm::common::CompiledFilter::Compile(filter, config);
  if (condition.ok()) return condition;
  // Filter errors name their place from "filter"; here it is `field`.
  std::string message(condition.status().message());
  if (absl::StartsWith(message, "filter")) {
    message = std::string(field) + message.substr(strlen("filter"));
  } else {
    message = absl::StrCat(std::string(field), ": ", message);
  }
  return absl::InvalidArgumentError(message);
}

absl::Status ValidateTrigger(const v1::Trigger& trigger,
                             const crm::common::ConfigView& config) {
  if (config.FindPipeline(trigger.pipeline_id()) == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("trigger.pipeline_id: pipeline ", trigger.pipeline_id(),
                     " does not exist"));
  }
  if (config.FindStage(trigger.pipeline_id(), trigger.stage_id()) == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("trigger.stage_id: \"", trigger.stage_id(),
                     "\" is not a stage of pipeline ", trigger.pipeline_id()));
  }
  CRM_RETURN_IF_ERROR(common::ValidateText("trigger.name", trigger.name(),
                                           {kMaxRuleNameChars, false, false}));
  if (trigger.type() == v1::TRIGGER_TYPE_UNSPECIFIED ||
      !v1::TriggerType_IsValid(trigger.type())) {
    return absl::InvalidArgumentError("trigger.type: required");
  }
  if (trigger.has_condition()) {
    CRM_RETURN_IF_ERROR(
        CompileCondition("trigger.condition", trigger.condition(), config)
            .status());
  }
  if (trigger.type() == v1::TRIGGER_TYPE_FIELD_CHANGED) {
    const std::string& field = trigger.field();
    if (!field.empty() && SettableFields().count(field) == 0 &&
        field != "assignee_id" && field != "product_rows" &&
        config.FindField(field) == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("trigger.field: \"", field,
                       "\" is neither a deal field nor a custom field code"));
    }
  } else if (!trigger.field().empty()) {
    return absl::InvalidArgumentError(
        "trigger.field: only for TRIGGER_TYPE_FIELD_CHANGED");
  }
  if (trigger.type() == v1::TRIGGER_TYPE_APP) {
    const std::string& code = trigger.app_code();
    if (code.empty() || code.size() > 64 ||
        !std::all_of(code.begin(), code.end(), [](char c) {
          return absl::ascii_isalnum(c) || c == '_' || c == '-' || c == '.';
        })) {
      return absl::InvalidArgumentError(
          "trigger.app_code: 1..64 letters, digits, '_', '-' or '.'");
    }
  } else if (!trigger.app_code().empty()) {
    return absl::InvalidArgumentError(
        "trigger.app_code: only for TRIGGER_TYPE_APP");
  }
  return absl::OkStatus();
}

absl::Status ValidateRule(const v1::Rule& rule,
                          const crm::common::ConfigView& config) {
  if (config.FindPipeline(rule.pipeline_id()) == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "rule.pipeline_id: pipeline ", rule.pipeline_id(), " does not exist"));
  }
  if (config.FindStage(rule.pipeline_id(), rule.stage_id()) == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("rule.stage_id: \"", rule.stage_id(),
                     "\" is not a stage of pipeline ", rule.pipeline_id()));
  }
  CRM_RETURN_IF_ERROR(common::ValidateText("rule.name", rule.name(),
                                           {kMaxRuleNameChars, false, false}));
  CRM_RETURN_IF_ERROR(ValidateTiming("rule.timing", rule.timing(), config));
  if (!v1::Execution_IsValid(rule.execution())) {
    return absl::InvalidArgumentError("rule.execution: unknown");
  }
  if (rule.has_condition()) {
    CRM_RETURN_IF_ERROR(
        CompileCondition("rule.condition", rule.condition(), config).status());
  }
  return CheckAction(rule, config);
}

absl::StatusOr<absl::Time> DueTime(const v1::Timing& timing,
                                   const crm::deals::v1::Deal& deal,
                                   absl::Time entered, absl::TimeZone zone) {
  switch (timing.kind()) {
    case v1::Timing::KIND_DELAY:
      return entered + absl::Seconds(timing.delay().seconds()) +
             absl::Nanoseconds(timing.delay().nanos());
    case v1::Timing::KIND_AT_TIME:
      return absl::FromUnixSeconds(timing.at().seconds()) +
             absl::Nanoseconds(timing.at().nanos());
    case v1::Timing::KIND_RELATIVE_TO_DATE: {
      const absl::Duration offset = absl::Seconds(timing.offset().seconds()) +
                                    absl::Nanoseconds(timing.offset().nanos());
      std::string value;
      if (timing.date_field() == "close_date") {
        value = deal.close_date();
      } else if (timing.date_field() == "begin_date") {
        value = deal.begin_date();
      } else {
        auto it = deal.custom_fields().find(timing.date_field());
        if (it != deal.custom_fields().end() && it->second.values_size() > 0)
          value = it->second.values(0);
      }
      if (value.empty()) {
        return absl::FailedPreconditionError(
            absl::StrCat("deal has no ", timing.date_field()));
      }
      if (std::optional<absl::Time> day = DayStart(value, zone)) {
        return *day + offset;
      }
      absl::Time time;
      std::string error;
      if (absl::ParseTime(absl::RFC3339_full, value, &time, &error)) {
        return time + offset;
      }
      return absl::FailedPreconditionError(absl::StrCat(
          "deal's ", timing.date_field(), " \"", value, "\" is not a date"));
    }
    default:
      return entered;
  }
}

}  // namespace crm::automation
