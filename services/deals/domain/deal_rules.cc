#include "services/deals/domain/deal_rules.h"

#include <cmath>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "google/protobuf/util/time_util.h"

#include "common/money/currency.h"
#include "common/money/decimal.h"
#include "common/status/status_macros.h"
#include "common/text/text.h"
#include "common/time/proto_time.h"

namespace crm::deals {
namespace {

namespace pv1 = ::crm::pipelines::v1;

using ::crm::common::ToTimestamp;

bool IsClosing(pv1::StageSemantics semantics) {
  return semantics == pv1::STAGE_SEMANTICS_SUCCESS ||
         semantics == pv1::STAGE_SEMANTICS_FAILURE;
}

absl::Status ValidateIds(std::string_view field,
                         const google::protobuf::RepeatedField<int64_t>& ids) {
  if (ids.size() > kMaxListItems) {
    return absl::InvalidArgumentError(
        absl::StrCat(std::string(field), ": at most ", kMaxListItems, " ids"));
  }
  std::set<int64_t> seen;
  for (int64_t id : ids) {
    if (id <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(std::string(field), ": ids are positive, got ", id));
    }
    if (!seen.insert(id).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(std::string(field), ": id ", id, " is listed twice"));
    }
  }
  return absl::OkStatus();
}

// Amount >= 0 with at most the currency's minor units; currency required
// unless the amount is zero. Normalises the amount's text.
absl::Status ValidateMoney(v1::Deal* deal) {
  common::Decimal amount;
  if (!deal->amount().empty()) {
    CRM_ASSIGN_OR_RETURN(amount,
                         common::Decimal::Parse(deal->amount(), "deal.amount"));
  }
  if (amount.IsNegative())
    return absl::InvalidArgumentError("deal.amount: must be >= 0");
  int places = 2;
  if (!deal->currency().empty()) {
    CRM_ASSIGN_OR_RETURN(places,
                         common::MinorUnits(deal->currency(), "deal.currency"));
  } else if (!amount.IsZero()) {
    return absl::InvalidArgumentError(
        "deal.currency: required when the amount is not zero");
  }
  CRM_ASSIGN_OR_RETURN(common::Decimal rounded, amount.RoundTo(places));
  if (rounded != amount) {
    return absl::InvalidArgumentError(
        absl::StrCat("deal.amount: at most ", places, " decimal places for ",
                     deal->currency()));
  }
  deal->set_amount(amount.ToString(places));
  if (!deal->tax_amount().empty()) {
    CRM_ASSIGN_OR_RETURN(
        common::Decimal tax,
        common::Decimal::Parse(deal->tax_amount(), "deal.tax_amount"));
    if (tax.IsNegative())
      return absl::InvalidArgumentError("deal.tax_amount: must be >= 0");
    deal->set_tax_amount(tax.ToString(places));
  }
  return absl::OkStatus();
}

absl::Status ValidateFieldValue(const pv1::FieldDefinition& definition,
                                const std::string& field,
                                const std::string& value) {
  auto bad = [&](std::string_view what) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": \"", value, "\" is not ", std::string(what)));
  };
  switch (definition.type()) {
    case pv1::FIELD_TYPE_STRING:
      return common::ValidateText(
          field, value, common::TextRules{kMaxFieldTextChars, true, true});
    case pv1::FIELD_TYPE_INTEGER: {
      int64_t parsed = 0;
      if (!absl::SimpleAtoi(value, &parsed)) return bad("an integer");
      return absl::OkStatus();
    }
    case pv1::FIELD_TYPE_DOUBLE: {
      double parsed = 0;
      if (!absl::SimpleAtod(value, &parsed) || !std::isfinite(parsed))
        return bad("a number");
      return absl::OkStatus();
    }
    case pv1::FIELD_TYPE_BOOLEAN:
      if (value != "true" && value != "false") return bad("true or false");
      return absl::OkStatus();
    case pv1::FIELD_TYPE_DATE:
      return ValidateDate(field, value);
    case pv1::FIELD_TYPE_DATETIME: {
      absl::Time parsed;
      std::string error;
      if (!absl::ParseTime(absl::RFC3339_full, value, &parsed, &error)) {
        return bad("an RFC 3339 date and time");
      }
      return absl::OkStatus();
    }
    case pv1::FIELD_TYPE_MONEY: {
      const std::vector<std::string> parts = absl::StrSplit(value, '|');
      if (parts.size() != 2) return bad("money as \"<amount>|<currency>\"");
      CRM_RETURN_IF_ERROR(common::Decimal::Parse(parts[0], field).status());
      return common::ValidateCurrency(parts[1], field);
    }
    case pv1::FIELD_TYPE_ENUMERATION: {
      int64_t id = 0;
      if (!absl::SimpleAtoi(value, &id)) return bad("an option id");
      for (const auto& option : definition.options()) {
        if (option.id() == id) return absl::OkStatus();
      }
      return absl::InvalidArgumentError(absl::StrCat(
          field, ": ", id, " is not an option of ", definition.code()));
    }
    case pv1::FIELD_TYPE_EMPLOYEE: {
      int64_t id = 0;
      if (!absl::SimpleAtoi(value, &id) || id <= 0) return bad("a user id");
      return absl::OkStatus();
    }
    case pv1::FIELD_TYPE_URL: {
      CRM_RETURN_IF_ERROR(common::ValidateText(
          field, value, common::TextRules{2000, false, false}));
      const bool scheme =
          value.rfind("http://", 0) == 0 || value.rfind("https://", 0) == 0;
      if (!scheme || value.find(' ') != std::string::npos)
        return bad("an http(s) URL");
      return absl::OkStatus();
    }
    default:
      return absl::InternalError(
          absl::StrCat("field ", definition.code(), " has no type"));
  }
}

}  // namespace

std::string DayOf(absl::Time time, absl::TimeZone zone, int days) {
  const absl::CivilDay day = absl::ToCivilDay(time, zone) + days;
  return absl::FormatCivilTime(day);
}

absl::Status ValidateDate(std::string_view field, std::string_view date) {
  absl::CivilDay day;
  // ParseCivilTime normalises out-of-range values (2026-02-30 -> 03-02), so
  // compare the round trip to refuse days that do not exist.
  if (date.size() != 10 || !absl::ParseCivilTime(std::string(date), &day) ||
      absl::FormatCivilTime(day) != date) {
    return absl::InvalidArgumentError(
        absl::StrCat(std::string(field), ": \"", std::string(date),
                     "\" is not a date (YYYY-MM-DD)"));
  }
  return absl::OkStatus();
}

absl::Status ValidateCustomField(const std::string& code,
                                 const v1::FieldValues& values,
                                 const common::ConfigView& config) {
  const std::string field = absl::StrCat("deal.custom_fields[", code, "]");
  const pv1::FieldDefinition* definition = config.FindField(code);
  if (definition == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": no such custom field"));
  }
  if (values.values_size() > kMaxListItems) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": at most ", kMaxListItems, " values"));
  }
  if (!definition->multiple() && values.values_size() > 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": holds a single value"));
  }
  for (const std::string& value : values.values()) {
    CRM_RETURN_IF_ERROR(ValidateFieldValue(*definition, field, value));
  }
  return absl::OkStatus();
}

bool DropDeletedCustomFields(v1::Deal* deal, const common::ConfigView& config) {
  bool dropped = false;
  auto* fields = deal->mutable_custom_fields();
  for (auto it = fields->begin(); it != fields->end();) {
    if (config.FindField(it->first) == nullptr) {
      it = fields->erase(it);
      dropped = true;
    } else {
      ++it;
    }
  }
  return dropped;
}

absl::Status ValidateCustomFields(const v1::Deal& deal,
                                  const common::ConfigView& config,
                                  bool require_mandatory) {
  for (const auto& [code, values] : deal.custom_fields()) {
    CRM_RETURN_IF_ERROR(ValidateCustomField(code, values, config));
  }
  if (require_mandatory) {
    for (const auto& definition : config.fields()) {
      if (!definition.mandatory()) continue;
      auto it = deal.custom_fields().find(definition.code());
      if (it == deal.custom_fields().end() || it->second.values_size() == 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("deal.custom_fields[", definition.code(),
                         "]: required (mandatory field)"));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateDealFields(v1::Deal* deal) {
  CRM_RETURN_IF_ERROR(common::ValidateText("deal.title", deal->title(),
                                           {kMaxTitleChars, false, false}));
  CRM_RETURN_IF_ERROR(ValidateMoney(deal));
  if (deal->has_probability() &&
      (deal->probability() < 0 || deal->probability() > 100)) {
    return absl::InvalidArgumentError(
        "deal.probability: must be between 0 and 100");
  }
  if (deal->assignee_id() <= 0)
    return absl::InvalidArgumentError("deal.assignee_id: required");
  if (deal->company_id() < 0)
    return absl::InvalidArgumentError("deal.company_id: must be >= 0");
  if (deal->lead_id() < 0)
    return absl::InvalidArgumentError("deal.lead_id: must be >= 0");
  CRM_RETURN_IF_ERROR(ValidateIds("deal.contact_ids", deal->contact_ids()));
  CRM_RETURN_IF_ERROR(ValidateIds("deal.observer_ids", deal->observer_ids()));
  CRM_RETURN_IF_ERROR(common::ValidateText("deal.source", deal->source(),
                                           {kMaxSourceChars, true, false}));
  CRM_RETURN_IF_ERROR(common::ValidateText("deal.comments", deal->comments(),
                                           {kMaxCommentsChars, true, true}));
  CRM_RETURN_IF_ERROR(ValidateDate("deal.begin_date", deal->begin_date()));
  return ValidateDate("deal.close_date", deal->close_date());
}

void ApplyStage(v1::Deal* deal, const common::StageView& to, absl::Time now,
                absl::TimeZone zone) {
  const bool was_closed = deal->closed();
  deal->set_stage_id(to.stage_id);
  deal->set_stage_semantics(to.semantics);
  deal->set_closed(IsClosing(to.semantics));
  if (deal->closed() && !was_closed) deal->set_close_date(DayOf(now, zone));
}

absl::Status CheckMayEnter(const common::ConfigView& config,
                           const common::StageView& to, bool entering_pipeline,
                           std::string_view field) {
  if (to.deleting) {
    return absl::FailedPreconditionError(
        absl::StrCat(std::string(field), ": stage ", to.stage_id,
                     " is being deleted; choose another stage"));
  }
  if (entering_pipeline) {
    const common::PipelineView* pipeline = config.FindPipeline(to.pipeline_id);
    if (pipeline != nullptr && pipeline->deleting) {
      return absl::FailedPreconditionError(
          absl::StrCat(std::string(field), ": pipeline ", to.pipeline_id,
                       " is being deleted; choose another pipeline"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::Deal> PrepareNewDeal(const v1::Deal& input,
                                        const common::ConfigView& config,
                                        const NewDealContext& context) {
  v1::Deal deal = input;
  // Output-only fields are ignored, as AIP-203 asks.
  deal.set_id(context.deal_id);
  deal.clear_stage_semantics();
  deal.clear_closed();
  deal.clear_product_rows();
  deal.clear_etag();
  const common::PipelineView* pipeline =
      config.FindPipeline(deal.pipeline_id());
  if (pipeline == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "deal.pipeline_id: pipeline ", deal.pipeline_id(), " does not exist"));
  }
  const common::StageView* stage =
      deal.stage_id().empty()
          ? config.FirstStage(deal.pipeline_id())
          : config.ResolveStage(deal.pipeline_id(), deal.stage_id());
  if (stage == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("deal.stage_id: stage \"", deal.stage_id(),
                     "\" is not a stage of pipeline ", deal.pipeline_id()));
  }
  CRM_RETURN_IF_ERROR(CheckMayEnter(
      config, *stage, /*entering_pipeline=*/true,
      deal.stage_id().empty() ? "deal.pipeline_id" : "deal.stage_id"));
  if (deal.title().empty())
    deal.set_title(absl::StrCat("Deal #", context.deal_id));
  if (deal.assignee_id() == 0) deal.set_assignee_id(context.creator_id);
  if (!deal.has_probability()) deal.set_probability(stage->default_probability);
  if (deal.begin_date().empty())
    deal.set_begin_date(DayOf(context.now, context.zone));
  if (deal.close_date().empty())
    deal.set_close_date(DayOf(context.now, context.zone, 7));
  if (!deal.has_opened()) deal.set_opened(true);
  if (deal.amount().empty()) deal.set_amount("0");
  ApplyStage(&deal, *stage, context.now, context.zone);
  CRM_RETURN_IF_ERROR(ValidateDealFields(&deal));
  CRM_RETURN_IF_ERROR(
      ValidateCustomFields(deal, config, /*require_mandatory=*/true));
  const google::protobuf::Timestamp now = ToTimestamp(context.now);
  deal.set_created_by(context.creator_id);
  *deal.mutable_create_time() = now;
  deal.set_updated_by(context.creator_id);
  *deal.mutable_update_time() = now;
  deal.set_moved_by(context.creator_id);
  *deal.mutable_move_time() = now;
  return deal;
}

}  // namespace crm::deals
