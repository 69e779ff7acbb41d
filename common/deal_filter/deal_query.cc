#include "common/deal_filter/deal_query.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <iterator>
#include <map>
#include <string_view>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/civil_time.h"
#include "absl/time/time.h"

#include "common/deal_filter/text_fold.h"
#include "common/money/currency.h"
#include "common/money/decimal.h"
#include "common/status/status_macros.h"

namespace crm::common {
namespace query_internal {

namespace v1 = ::crm::deals::v1;
namespace pv1 = ::crm::pipelines::v1;

// How the values of a field are typed, parsed and compared.
enum class Kind {
  kInteger,      // ids, counts, probability, employees
  kDecimal,      // amounts, money custom fields (exact micro units)
  kDouble,       // double custom fields
  kText,         // compared in FoldForSearch form
  kStageId,      // compared exactly
  kSemantics,    // crm.pipelines.v1.StageSemantics numbers
  kBoolean,      // "true" / "false"
  kDate,         // "YYYY-MM-DD"
  kTime,         // seconds and nanos since the epoch
  kEnumeration,  // option ids
};

// Every value is turned into a "comparable form": a byte string whose
// unsigned lexicographic order is the order of the values (std::string's
// operator< compares bytes as unsigned char). Conditions then compare byte
// strings whatever the field type, and ordering keys are built from the same
// forms.
using Comparables = std::vector<std::string>;
// Appends the comparable forms of a field's values in `deal`: none when the
// field has no value (or an unparsable one), several for repeated and
// multiple fields.
using Getter = std::function<void(const v1::Deal&, Comparables*)>;

struct FieldRef {
  std::string name;
  Kind kind = Kind::kInteger;
  // Repeated Deal fields and multiple custom fields.
  bool several = false;
  // contact_ids and observer_ids: only equality operators make sense.
  bool id_list = false;
  // Enumerations: option ids in the order of the field definition (sort,
  // then id), for parsing filter values and ordering.
  std::vector<int64_t> options;
  Getter get;
};

struct FilterNode {
  enum class Type { kAll, kAny, kCondition };
  Type type = Type::kAll;
  std::vector<FilterNode> children;  // kAll, kAny
  // kCondition: the field's getter, the operator and the comparable forms of
  // the values (sorted and unique for IN and NOT_IN).
  Getter get;
  v1::Condition::Operator op = v1::Condition::OPERATOR_UNSPECIFIED;
  std::vector<std::string> values;
};

struct OrderKey {
  Getter get;
  bool descending = false;
};

}  // namespace query_internal

namespace {

using query_internal::Comparables;
using query_internal::FieldRef;
using query_internal::FilterNode;
using query_internal::Getter;
using query_internal::Kind;
using query_internal::OrderKey;
namespace v1 = ::crm::deals::v1;
namespace pv1 = ::crm::pipelines::v1;
using Op = v1::Condition::Operator;

// ---- Comparable forms ----

// Big-endian with the sign bit flipped: byte order is numeric order.
std::string IntForm(int64_t value) {
  const uint64_t bits = static_cast<uint64_t>(value) ^ (uint64_t{1} << 63);
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) {
    out[i] = static_cast<char>((bits >> (56 - 8 * i)) & 0xff);
  }
  return out;
}

void AppendUint32(std::string* out, uint32_t value) {
  for (int i = 0; i < 4; ++i) {
    out->push_back(static_cast<char>((value >> (24 - 8 * i)) & 0xff));
  }
}

// IEEE 754 bits with negative numbers complemented and positive ones given
// the sign bit: byte order is numeric order for every finite double.
std::string DoubleForm(double value) {
  if (value == 0) value = 0;  // -0 equals 0
  uint64_t bits = 0;
  std::memcpy(&bits, &value, sizeof(bits));
  bits = (bits >> 63) != 0 ? ~bits : bits | (uint64_t{1} << 63);
  std::string out;
  AppendUint32(&out, static_cast<uint32_t>(bits >> 32));
  AppendUint32(&out, static_cast<uint32_t>(bits));
  return out;
}

std::string BoolForm(bool value) { return std::string(1, value ? '\1' : '\0'); }

std::string TimeForm(int64_t seconds, int32_t nanos) {
  std::string out = IntForm(seconds);
  AppendUint32(&out, static_cast<uint32_t>(std::max<int32_t>(nanos, 0)));
  return out;
}

std::string TimeForm(absl::Time time) {
  const int64_t seconds = absl::ToUnixSeconds(time);  // floor
  const int64_t nanos =
      absl::ToInt64Nanoseconds(time - absl::FromUnixSeconds(seconds));
  return TimeForm(seconds, static_cast<int32_t>(nanos));
}

// ---- Parsing ----

// "YYYY-MM-DD" of a real calendar day. ParseCivilTime normalises out-of-range
// days (02-30 -> 03-02), so the round trip refuses days that do not exist.
bool IsDate(std::string_view text) {
  if (text.size() != 10 || text[4] != '-' || text[7] != '-') return false;
  for (size_t i : {0, 1, 2, 3, 5, 6, 8, 9}) {
    if (text[i] < '0' || text[i] > '9') return false;
  }
  absl::CivilDay day;
  return absl::ParseCivilTime(std::string(text), &day) &&
         absl::FormatCivilTime(day) == text;
}

// The day `days` after `date` (a valid date), or nullopt when that day has
// no "YYYY-MM-DD" form (past year 9999).
std::optional<std::string> ShiftDay(const std::string& date, int days) {
  absl::CivilDay day;
  if (!absl::ParseCivilTime(date, &day)) return std::nullopt;
  std::string shifted = absl::FormatCivilTime(day + days);
  if (!IsDate(shifted)) return std::nullopt;
  return shifted;
}

// Decimal text, "" counting as zero (a deal's amount is "0" by default and
// tax_amount is empty until computed).
std::optional<int64_t> ParseDecimalUnits(std::string_view text) {
  if (text.empty()) return 0;
  absl::StatusOr<common::Decimal> parsed = common::Decimal::Parse(text, "");
  if (!parsed.ok()) return std::nullopt;
  return parsed->micro_units();
}

// A money custom value "12.50|EUR": the amount part.
std::optional<int64_t> ParseMoneyUnits(std::string_view text) {
  const size_t bar = text.find('|');
  const std::string_view amount = text.substr(0, bar);
  if (amount.empty()) return std::nullopt;
  return ParseDecimalUnits(amount);
}

std::optional<double> ParseDouble(std::string_view text) {
  double value = 0;
  if (!absl::SimpleAtod(std::string(text), &value) || !std::isfinite(value)) {
    return std::nullopt;
  }
  return value;
}

std::optional<int64_t> ParseInt(std::string_view text) {
  int64_t value = 0;
  if (!absl::SimpleAtoi(std::string(text), &value)) return std::nullopt;
  return value;
}

// RFC 3339, or "YYYY-MM-DD" for the start of that day in UTC.
std::optional<absl::Time> ParseTime(std::string_view text) {
  absl::Time time;
  std::string error;
  if (absl::ParseTime(absl::RFC3339_full, std::string(text), &time, &error)) {
    return time;
  }
  if (IsDate(text)) {
    absl::CivilDay day;
    if (absl::ParseCivilTime(std::string(text), &day)) {
      return absl::FromCivil(day, absl::UTCTimeZone());
    }
  }
  return std::nullopt;
}

std::optional<int> ParseSemantics(std::string_view text) {
  pv1::StageSemantics semantics = pv1::STAGE_SEMANTICS_UNSPECIFIED;
  std::string name(text);
  if (name.rfind("STAGE_SEMANTICS_", 0) != 0) {
    name = absl::StrCat("STAGE_SEMANTICS_", name);
  }
  if (!pv1::StageSemantics_Parse(name, &semantics) ||
      semantics == pv1::STAGE_SEMANTICS_UNSPECIFIED) {
    return std::nullopt;
  }
  return static_cast<int>(semantics);
}

// A value quoted for an error message: escaped, and cut when long.
std::string Quote(std::string_view value) {
  constexpr size_t kMax = 64;
  if (value.size() <= kMax) {
    return absl::StrCat("\"", absl::CHexEscape(std::string(value)), "\"");
  }
  return absl::StrCat(
      "\"", absl::CHexEscape(std::string(value.substr(0, kMax))), "...\"");
}

// ---- Fields ----

Getter IntGetter(int64_t (v1::Deal::*get)() const) {
  return [get](const v1::Deal& deal, Comparables* out) {
    out->push_back(IntForm((deal.*get)()));
  };
}

void AppendIds(const google::protobuf::RepeatedField<int64_t>& ids,
               Comparables* out) {
  for (int64_t id : ids) out->push_back(IntForm(id));
}

Getter TextGetter(const std::string& (v1::Deal::*get)() const) {
  return [get](const v1::Deal& deal, Comparables* out) {
    out->push_back(FoldForSearch((deal.*get)()));
  };
}

Getter DecimalGetter(const std::string& (v1::Deal::*get)() const) {
  return [get](const v1::Deal& deal, Comparables* out) {
    if (std::optional<int64_t> units = ParseDecimalUnits((deal.*get)())) {
      out->push_back(IntForm(*units));
    }
  };
}

Getter DateGetter(const std::string& (v1::Deal::*get)() const) {
  return [get](const v1::Deal& deal, Comparables* out) {
    const std::string& date = (deal.*get)();
    if (!date.empty()) out->push_back(date);
  };
}

Getter TimeGetter(bool (v1::Deal::*has)() const,
                  const google::protobuf::Timestamp& (v1::Deal::*get)() const) {
  return [has, get](const v1::Deal& deal, Comparables* out) {
    if (!(deal.*has)()) return;
    const google::protobuf::Timestamp& time = (deal.*get)();
    out->push_back(TimeForm(time.seconds(), time.nanos()));
  };
}

Getter BoolGetter(bool (v1::Deal::*get)() const) {
  return [get](const v1::Deal& deal, Comparables* out) {
    out->push_back(BoolForm((deal.*get)()));
  };
}

// The Deal fields a filter or an ordering may name, by proto name.
std::optional<FieldRef> BuiltInField(const std::string& name) {
  FieldRef field;
  field.name = name;
  auto make = [&](Kind kind, Getter get) {
    field.kind = kind;
    field.get = std::move(get);
    return field;
  };
  using D = v1::Deal;
  if (name == "id") return make(Kind::kInteger, IntGetter(&D::id));
  if (name == "title") return make(Kind::kText, TextGetter(&D::title));
  if (name == "pipeline_id") {
    return make(Kind::kInteger, IntGetter(&D::pipeline_id));
  }
  if (name == "stage_id") {
    return make(Kind::kStageId, [](const D& deal, Comparables* out) {
      out->push_back(deal.stage_id());
    });
  }
  if (name == "stage_semantics") {
    return make(Kind::kSemantics, [](const D& deal, Comparables* out) {
      out->push_back(IntForm(deal.stage_semantics()));
    });
  }
  if (name == "amount") return make(Kind::kDecimal, DecimalGetter(&D::amount));
  if (name == "currency") return make(Kind::kText, TextGetter(&D::currency));
  if (name == "manual_amount") {
    return make(Kind::kBoolean, BoolGetter(&D::manual_amount));
  }
  if (name == "tax_amount") {
    return make(Kind::kDecimal, DecimalGetter(&D::tax_amount));
  }
  if (name == "probability") {
    // Unset is no value: EQ never matches it, NE always does.
    return make(Kind::kInteger, [](const D& deal, Comparables* out) {
      if (deal.has_probability()) out->push_back(IntForm(deal.probability()));
    });
  }
  if (name == "assignee_id") {
    return make(Kind::kInteger, IntGetter(&D::assignee_id));
  }
  if (name == "company_id") {
    return make(Kind::kInteger, IntGetter(&D::company_id));
  }
  if (name == "contact_ids" || name == "observer_ids") {
    field.several = true;
    field.id_list = true;
    if (name == "contact_ids") {
      return make(Kind::kInteger, [](const D& deal, Comparables* out) {
        AppendIds(deal.contact_ids(), out);
      });
    }
    return make(Kind::kInteger, [](const D& deal, Comparables* out) {
      AppendIds(deal.observer_ids(), out);
    });
  }
  if (name == "source") return make(Kind::kText, TextGetter(&D::source));
  if (name == "begin_date") {
    return make(Kind::kDate, DateGetter(&D::begin_date));
  }
  if (name == "close_date") {
    return make(Kind::kDate, DateGetter(&D::close_date));
  }
  if (name == "opened") {
    // Unset counts as true, the default of a new deal.
    return make(Kind::kBoolean, [](const D& deal, Comparables* out) {
      out->push_back(BoolForm(!deal.has_opened() || deal.opened()));
    });
  }
  if (name == "closed") return make(Kind::kBoolean, BoolGetter(&D::closed));
  if (name == "comments") return make(Kind::kText, TextGetter(&D::comments));
  if (name == "lead_id") return make(Kind::kInteger, IntGetter(&D::lead_id));
  if (name == "created_by") {
    return make(Kind::kInteger, IntGetter(&D::created_by));
  }
  if (name == "updated_by") {
    return make(Kind::kInteger, IntGetter(&D::updated_by));
  }
  if (name == "moved_by") return make(Kind::kInteger, IntGetter(&D::moved_by));
  if (name == "create_time") {
    return make(Kind::kTime, TimeGetter(&D::has_create_time, &D::create_time));
  }
  if (name == "update_time") {
    return make(Kind::kTime, TimeGetter(&D::has_update_time, &D::update_time));
  }
  if (name == "move_time") {
    return make(Kind::kTime, TimeGetter(&D::has_move_time, &D::move_time));
  }
  return std::nullopt;
}

// The comparable form of one stored custom value; nullopt when it does not
// parse (stored values were validated on write, but a definition can change
// type only by being recreated, so be lenient rather than fail a list).
std::optional<std::string> CustomForm(Kind kind, const std::string& value) {
  switch (kind) {
    case Kind::kInteger:
    case Kind::kEnumeration:
      if (std::optional<int64_t> parsed = ParseInt(value)) {
        return IntForm(*parsed);
      }
      return std::nullopt;
    case Kind::kDecimal:
      if (std::optional<int64_t> units = ParseMoneyUnits(value)) {
        return IntForm(*units);
      }
      return std::nullopt;
    case Kind::kDouble:
      if (std::optional<double> parsed = ParseDouble(value)) {
        return DoubleForm(*parsed);
      }
      return std::nullopt;
    case Kind::kBoolean:
      if (value == "true" || value == "false") return BoolForm(value == "true");
      return std::nullopt;
    case Kind::kDate:
      if (value.empty()) return std::nullopt;
      return value;
    case Kind::kTime:
      if (std::optional<absl::Time> time = ParseTime(value)) {
        return TimeForm(*time);
      }
      return std::nullopt;
    case Kind::kText:
      return FoldForSearch(value);
    case Kind::kStageId:
    case Kind::kSemantics:
      break;
  }
  return std::nullopt;
}

std::optional<Kind> CustomKind(pv1::FieldType type) {
  switch (type) {
    case pv1::FIELD_TYPE_STRING:
    case pv1::FIELD_TYPE_URL:
      return Kind::kText;
    case pv1::FIELD_TYPE_INTEGER:
    case pv1::FIELD_TYPE_EMPLOYEE:
      return Kind::kInteger;
    case pv1::FIELD_TYPE_DOUBLE:
      return Kind::kDouble;
    case pv1::FIELD_TYPE_BOOLEAN:
      return Kind::kBoolean;
    case pv1::FIELD_TYPE_DATE:
      return Kind::kDate;
    case pv1::FIELD_TYPE_DATETIME:
      return Kind::kTime;
    case pv1::FIELD_TYPE_MONEY:
      return Kind::kDecimal;
    case pv1::FIELD_TYPE_ENUMERATION:
      return Kind::kEnumeration;
    default:
      return std::nullopt;
  }
}

// `location` is the path of the field name in the request ("filter.
// condition.field", "order_by[0].field").
absl::StatusOr<FieldRef> ResolveField(const std::string& name,
                                      const common::ConfigView& config,
                                      const std::string& location) {
  if (std::optional<FieldRef> field = BuiltInField(name)) return *field;
  const pv1::FieldDefinition* definition = config.FindField(name);
  if (definition == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(location, ": unknown field ", Quote(name)));
  }
  const std::optional<Kind> kind = CustomKind(definition->type());
  if (!kind) {
    return absl::InvalidArgumentError(absl::StrCat(
        location, ": custom field ", name, " has no type to compare by"));
  }
  FieldRef field;
  field.name = name;
  field.kind = *kind;
  field.several = definition->multiple();
  if (*kind == Kind::kEnumeration) {
    std::vector<const pv1::EnumOption*> options;
    for (const pv1::EnumOption& option : definition->options()) {
      options.push_back(&option);
    }
    std::sort(options.begin(), options.end(),
              [](const pv1::EnumOption* a, const pv1::EnumOption* b) {
                return std::make_pair(a->sort(), a->id()) <
                       std::make_pair(b->sort(), b->id());
              });
    for (const pv1::EnumOption* option : options) {
      field.options.push_back(option->id());
    }
  }
  field.get = [code = name, kind = *kind](const v1::Deal& deal,
                                          Comparables* out) {
    const auto it = deal.custom_fields().find(code);
    if (it == deal.custom_fields().end()) return;
    for (const std::string& value : it->second.values()) {
      if (std::optional<std::string> form = CustomForm(kind, value)) {
        out->push_back(*std::move(form));
      }
    }
  };
  return field;
}

const char* KindDescription(const FieldRef& field) {
  if (field.id_list) return "a list of ids";
  switch (field.kind) {
    case Kind::kInteger:
      return "an integer field";
    case Kind::kDecimal:
      return "a decimal field";
    case Kind::kDouble:
      return "a number field";
    case Kind::kText:
      return "a text field";
    case Kind::kStageId:
      return "a stage id field";
    case Kind::kSemantics:
      return "a stage semantics field";
    case Kind::kBoolean:
      return "a boolean field";
    case Kind::kDate:
      return "a date field";
    case Kind::kTime:
      return "a time field";
    case Kind::kEnumeration:
      return "an enumeration field";
  }
  return "a field";
}

bool IsEquality(Op op) {
  return op == v1::Condition::OPERATOR_EQ || op == v1::Condition::OPERATOR_NE ||
         op == v1::Condition::OPERATOR_IN ||
         op == v1::Condition::OPERATOR_NOT_IN;
}

bool OperatorAllowed(const FieldRef& field, Op op) {
  if (op == v1::Condition::OPERATOR_CONTAINS) return field.kind == Kind::kText;
  if (field.kind == Kind::kBoolean) {
    return op == v1::Condition::OPERATOR_EQ || op == v1::Condition::OPERATOR_NE;
  }
  // Option ids and contact ids are labels: their numeric order means
  // nothing.
  if (field.kind == Kind::kEnumeration || field.id_list) return IsEquality(op);
  return true;
}

// The comparable form of a filter value; `location` is its path.
absl::StatusOr<std::string> ParseFilterValue(const FieldRef& field,
                                             const std::string& value,
                                             const std::string& location) {
  auto bad = [&](const char* what) {
    return absl::InvalidArgumentError(
        absl::StrCat(location, ": ", Quote(value), " is not ", what));
  };
  switch (field.kind) {
    case Kind::kInteger: {
      std::optional<int64_t> parsed = ParseInt(value);
      if (!parsed) return bad("a number (an integer)");
      return IntForm(*parsed);
    }
    case Kind::kDecimal: {
      // Money values may come as stored ("12.50|EUR"); like the deal amount,
      // money compares by amount whatever the currency, so the currency is
      // only checked for being one.
      std::string_view amount = value;
      const size_t bar = amount.find('|');
      if (bar != std::string_view::npos) {
        CRM_RETURN_IF_ERROR(
            common::ValidateCurrency(amount.substr(bar + 1), location));
        amount = amount.substr(0, bar);
      }
      absl::StatusOr<common::Decimal> parsed =
          common::Decimal::Parse(amount, location);
      if (!parsed.ok()) {
        return bad("a number (a decimal like -12.5, at most 6 decimal places)");
      }
      return IntForm(parsed->micro_units());
    }
    case Kind::kDouble: {
      std::optional<double> parsed = ParseDouble(value);
      if (!parsed) return bad("a number");
      return DoubleForm(*parsed);
    }
    case Kind::kText:
      return FoldForSearch(value);
    case Kind::kStageId:
      if (value.empty()) return bad("a stage id");
      return value;
    case Kind::kSemantics: {
      std::optional<int> semantics = ParseSemantics(value);
      if (!semantics)
        return bad("a stage semantics (PROCESS, SUCCESS, FAILURE)");
      return IntForm(*semantics);
    }
    case Kind::kBoolean:
      if (value != "true" && value != "false") return bad("true or false");
      return BoolForm(value == "true");
    case Kind::kDate:
      if (!IsDate(value)) return bad("a date (YYYY-MM-DD)");
      return value;
    case Kind::kTime: {
      std::optional<absl::Time> time = ParseTime(value);
      if (!time) return bad("a time (RFC 3339, or YYYY-MM-DD for its start)");
      return TimeForm(*time);
    }
    case Kind::kEnumeration: {
      std::optional<int64_t> id = ParseInt(value);
      if (!id) return bad("an option id");
      if (std::find(field.options.begin(), field.options.end(), *id) ==
          field.options.end()) {
        return absl::InvalidArgumentError(absl::StrCat(
            location, ": ", *id, " is not an option of ", field.name));
      }
      return IntForm(*id);
    }
  }
  return absl::InternalError(absl::StrCat(location, ": field has no kind"));
}

// ---- Compiling filters ----

class FilterCompiler {
 public:
  explicit FilterCompiler(const common::ConfigView& config) : config_(config) {}

  // `depth` is the number of groups around `filter`.
  absl::StatusOr<FilterNode> Compile(const v1::Filter& filter,
                                     const std::string& path, int depth,
                                     std::string* fingerprint) {
    switch (filter.kind_case()) {
      case v1::Filter::kCondition:
        return CompileCondition(filter.condition(),
                                absl::StrCat(path, ".condition"), fingerprint);
      case v1::Filter::kGroup:
        return CompileGroup(filter.group(), absl::StrCat(path, ".group"),
                            depth + 1, fingerprint);
      case v1::Filter::KIND_NOT_SET:
        break;
    }
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": a filter needs a condition or a group"));
  }

 private:
  absl::StatusOr<FilterNode> CompileGroup(const v1::FilterGroup& group,
                                          const std::string& path, int depth,
                                          std::string* fingerprint) {
    if (depth > kMaxFilterDepth) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": groups nest at most ", kMaxFilterDepth, " deep"));
    }
    FilterNode node;
    switch (group.op()) {
      case v1::FilterGroup::OP_UNSPECIFIED:
      case v1::FilterGroup::OP_AND:
        node.type = FilterNode::Type::kAll;
        break;
      case v1::FilterGroup::OP_OR:
        node.type = FilterNode::Type::kAny;
        break;
      default:
        return absl::InvalidArgumentError(
            absl::StrCat(path, ".op: unknown group operator ",
                         static_cast<int>(group.op())));
    }
    absl::StrAppend(fingerprint,
                    node.type == FilterNode::Type::kAll ? "and(" : "or(");
    for (int i = 0; i < group.filters_size(); ++i) {
      if (i > 0) fingerprint->push_back(',');
      CRM_ASSIGN_OR_RETURN(
          FilterNode child,
          Compile(group.filters(i), absl::StrCat(path, ".filters[", i, "]"),
                  depth, fingerprint));
      node.children.push_back(std::move(child));
    }
    fingerprint->push_back(')');
    return node;
  }

  absl::StatusOr<FilterNode> CompileCondition(const v1::Condition& condition,
                                              const std::string& path,
                                              std::string* fingerprint) {
    if (++conditions_ > kMaxFilterConditions) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": a filter holds at most ", kMaxFilterConditions,
                       " conditions"));
    }
    CRM_ASSIGN_OR_RETURN(
        FieldRef field,
        ResolveField(condition.field(), config_, absl::StrCat(path, ".field")));
    const Op op = condition.op();
    if (op == v1::Condition::OPERATOR_UNSPECIFIED) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ".op: an operator is required"));
    }
    if (!v1::Condition::Operator_IsValid(op)) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ".op: unknown operator ", static_cast<int>(op)));
    }
    const std::string& op_name = v1::Condition::Operator_Name(op);
    if (!OperatorAllowed(field, op)) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ".op: ", op_name, " is not allowed on ",
                       field.name, " (", KindDescription(field), ")"));
    }
    const bool list = op == v1::Condition::OPERATOR_IN ||
                      op == v1::Condition::OPERATOR_NOT_IN;
    const int count = condition.values_size();
    if (!list && count != 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ".values: ", op_name, " takes exactly one value, got ", count));
    }
    if (list && count == 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ".values: ", op_name, " takes at least one value"));
    }
    if (count > kMaxConditionValues) {
      return absl::InvalidArgumentError(absl::StrCat(path, ".values: at most ",
                                                     kMaxConditionValues,
                                                     " values, got ", count));
    }
    FilterNode node;
    node.type = FilterNode::Type::kCondition;
    node.op = op;
    for (int i = 0; i < count; ++i) {
      CRM_ASSIGN_OR_RETURN(
          std::string value,
          ParseFilterValue(field, condition.values(i),
                           absl::StrCat(path, ".values[", i, "]")));
      node.values.push_back(std::move(value));
    }
    if (list) {
      std::sort(node.values.begin(), node.values.end());
      node.values.erase(std::unique(node.values.begin(), node.values.end()),
                        node.values.end());
    }
    node.get = std::move(field.get);
    std::vector<std::string> escaped;
    for (const std::string& value : node.values) {
      escaped.push_back(absl::StrCat("\"", absl::CHexEscape(value), "\""));
    }
    absl::StrAppend(fingerprint, "c(\"", absl::CHexEscape(field.name), "\",",
                    static_cast<int>(op), ",[", absl::StrJoin(escaped, ","),
                    "])");
    return node;
  }

  const common::ConfigView& config_;
  int conditions_ = 0;
};

bool MatchCondition(const FilterNode& node, const v1::Deal& deal) {
  Comparables got;
  node.get(deal, &got);
  const std::vector<std::string>& values = node.values;
  auto any = [&](auto predicate) {
    return std::any_of(got.begin(), got.end(), predicate);
  };
  auto in_values = [&](const std::string& value) {
    return std::binary_search(values.begin(), values.end(), value);
  };
  switch (node.op) {
    case v1::Condition::OPERATOR_EQ:
      return any([&](const std::string& v) { return v == values[0]; });
    case v1::Condition::OPERATOR_NE:
      return !any([&](const std::string& v) { return v == values[0]; });
    case v1::Condition::OPERATOR_GT:
      return any([&](const std::string& v) { return v > values[0]; });
    case v1::Condition::OPERATOR_GE:
      return any([&](const std::string& v) { return v >= values[0]; });
    case v1::Condition::OPERATOR_LT:
      return any([&](const std::string& v) { return v < values[0]; });
    case v1::Condition::OPERATOR_LE:
      return any([&](const std::string& v) { return v <= values[0]; });
    case v1::Condition::OPERATOR_IN:
      return any(in_values);
    case v1::Condition::OPERATOR_NOT_IN:
      return !any(in_values);
    case v1::Condition::OPERATOR_CONTAINS:
      return any([&](const std::string& v) {
        return v.find(values[0]) != std::string::npos;
      });
    default:
      return false;
  }
}

bool MatchNode(const FilterNode& node, const v1::Deal& deal) {
  switch (node.type) {
    case FilterNode::Type::kAll:
      for (const FilterNode& child : node.children) {
        if (!MatchNode(child, deal)) return false;
      }
      return true;
    case FilterNode::Type::kAny:
      for (const FilterNode& child : node.children) {
        if (MatchNode(child, deal)) return true;
      }
      return false;
    case FilterNode::Type::kCondition:
      return MatchCondition(node, deal);
  }
  return false;
}

// ---- Index hints ----

// The conditions every matching deal satisfies: a lone condition, the
// members of AND groups, and the only member of any one-member group.
void CollectConjuncts(const v1::Filter& filter,
                      std::vector<const v1::Condition*>* out) {
  if (filter.has_condition()) {
    out->push_back(&filter.condition());
    return;
  }
  if (!filter.has_group()) return;
  const v1::FilterGroup& group = filter.group();
  if (group.filters_size() == 1) {
    CollectConjuncts(group.filters(0), out);
    return;
  }
  if (group.op() == v1::FilterGroup::OP_OR) return;
  for (const v1::Filter& child : group.filters()) {
    CollectConjuncts(child, out);
  }
}

template <typename T>
std::vector<T> SortedUnique(std::vector<T> values) {
  std::sort(values.begin(), values.end());
  values.erase(std::unique(values.begin(), values.end()), values.end());
  return values;
}

// Narrows `*current` to the values also in `values` (both sorted, unique).
template <typename T>
void Intersect(std::optional<std::vector<T>>* current, std::vector<T> values) {
  if (!current->has_value()) {
    *current = std::move(values);
    return;
  }
  std::vector<T> both;
  std::set_intersection((*current)->begin(), (*current)->end(), values.begin(),
                        values.end(), std::back_inserter(both));
  *current = std::move(both);
}

}  // namespace

// ---- CompiledFilter ----

CompiledFilter::CompiledFilter() = default;

absl::StatusOr<CompiledFilter> CompiledFilter::Compile(
    const v1::Filter& filter, const common::ConfigView& config) {
  CompiledFilter compiled;
  if (filter.kind_case() == v1::Filter::KIND_NOT_SET) return compiled;
  FilterCompiler compiler(config);
  std::string fingerprint;
  CRM_ASSIGN_OR_RETURN(FilterNode root,
                       compiler.Compile(filter, "filter", 0, &fingerprint));
  compiled.root_ = std::make_shared<const FilterNode>(std::move(root));
  compiled.fingerprint_ = std::move(fingerprint);

  // Values were validated above, so they parse here.
  std::vector<const v1::Condition*> conjuncts;
  CollectConjuncts(filter, &conjuncts);
  std::string lo;
  std::string hi;
  bool dated = false;
  bool no_day = false;
  for (const v1::Condition* condition : conjuncts) {
    const std::string& field = condition->field();
    const Op op = condition->op();
    const bool eq_or_in =
        op == v1::Condition::OPERATOR_EQ || op == v1::Condition::OPERATOR_IN;
    if (field == "pipeline_id" && eq_or_in) {
      std::vector<int64_t> ids;
      for (const std::string& value : condition->values()) {
        ids.push_back(ParseInt(value).value_or(0));
      }
      ids = SortedUnique(std::move(ids));
      // Two different pipelines match nothing, but the first one is still a
      // correct (if loose) constraint.
      if (ids.size() == 1 && !compiled.pipeline_id_) {
        compiled.pipeline_id_ = ids[0];
      }
    } else if (field == "stage_id" && eq_or_in) {
      Intersect(&compiled.stage_ids_,
                SortedUnique(std::vector<std::string>(
                    condition->values().begin(), condition->values().end())));
    } else if (field == "assignee_id" && eq_or_in) {
      std::vector<int64_t> ids;
      for (const std::string& value : condition->values()) {
        ids.push_back(ParseInt(value).value_or(0));
      }
      Intersect(&compiled.assignee_ids_, SortedUnique(std::move(ids)));
    } else if (field == "close_date") {
      std::string from;  // "" = no bound from this condition
      std::string to;
      const std::vector<std::string> values(condition->values().begin(),
                                            condition->values().end());
      switch (op) {
        case v1::Condition::OPERATOR_EQ:
        case v1::Condition::OPERATOR_IN:
          from = *std::min_element(values.begin(), values.end());
          to = *std::max_element(values.begin(), values.end());
          break;
        case v1::Condition::OPERATOR_GE:
          from = values[0];
          break;
        case v1::Condition::OPERATOR_LE:
          to = values[0];
          break;
        case v1::Condition::OPERATOR_GT:
        case v1::Condition::OPERATOR_LT: {
          const bool gt = op == v1::Condition::OPERATOR_GT;
          std::optional<std::string> next = ShiftDay(values[0], gt ? 1 : -1);
          if (!next) {
            no_day = true;
          } else {
            (gt ? from : to) = *next;
          }
          break;
        }
        default:
          continue;
      }
      dated = true;
      if (!from.empty() && (lo.empty() || from > lo)) lo = from;
      if (!to.empty() && (hi.empty() || to < hi)) hi = to;
    }
  }
  if (no_day) {
    // No "YYYY-MM-DD" day satisfies the bound: an empty range.
    compiled.close_date_range_.emplace("9999-12-31", "0001-01-01");
  } else if (dated) {
    compiled.close_date_range_.emplace(lo, hi);
  }
  return compiled;
}

bool CompiledFilter::empty() const { return root_ == nullptr; }

bool CompiledFilter::Matches(const v1::Deal& deal) const {
  return root_ == nullptr || MatchNode(*root_, deal);
}

const std::optional<int64_t>& CompiledFilter::pipeline_id() const {
  return pipeline_id_;
}

const std::optional<std::vector<std::string>>& CompiledFilter::stage_ids()
    const {
  return stage_ids_;
}

const std::optional<std::vector<int64_t>>& CompiledFilter::assignee_ids()
    const {
  return assignee_ids_;
}

const std::optional<std::pair<std::string, std::string>>&
CompiledFilter::close_date_range() const {
  return close_date_range_;
}

const std::string& CompiledFilter::fingerprint() const { return fingerprint_; }

// ---- DealOrdering ----

namespace {

constexpr char kDefaultOrderFingerprint[] = "id asc";

// Appends one key's segment: 0x00 for no value, else 0x01 and the value with
// every 0x00 byte written as 0x00 0xff, ended by 0x00 0x01. No segment is a
// prefix of another, so comparing two keys decides at the first segment that
// differs, inside both segments; that also makes complementing a descending
// segment's bytes reverse exactly its order.
void AppendSegment(std::string* key, const Comparables& values,
                   bool descending) {
  const size_t start = key->size();
  if (values.empty()) {
    key->push_back('\0');
  } else {
    key->push_back('\1');
    for (char c : values.front()) {
      key->push_back(c);
      if (c == '\0') key->push_back('\xff');
    }
    key->push_back('\0');
    key->push_back('\1');
  }
  if (descending) {
    for (size_t i = start; i < key->size(); ++i) {
      (*key)[i] = static_cast<char>(~static_cast<unsigned char>((*key)[i]));
    }
  }
}

}  // namespace

DealOrdering::DealOrdering()
    : keys_(std::make_shared<const std::vector<OrderKey>>()),
      fingerprint_(kDefaultOrderFingerprint) {}

absl::StatusOr<DealOrdering> DealOrdering::Compile(
    const google::protobuf::RepeatedPtrField<v1::OrderBy>& order_by,
    const common::ConfigView& config) {
  if (order_by.size() > kMaxOrderByEntries) {
    return absl::InvalidArgumentError(
        absl::StrCat("order_by: at most ", kMaxOrderByEntries, " entries, got ",
                     order_by.size()));
  }
  std::vector<OrderKey> keys;
  std::vector<std::string> parts;
  std::vector<std::string> seen;
  bool ended = false;  // an id entry makes every later entry irrelevant
  for (int i = 0; i < order_by.size(); ++i) {
    const v1::OrderBy& entry = order_by[i];
    const std::string location = absl::StrCat("order_by[", i, "].field");
    // Later entries are still validated so a typo is reported, not ignored.
    CRM_ASSIGN_OR_RETURN(FieldRef field,
                         ResolveField(entry.field(), config, location));
    if (field.several) {
      return absl::InvalidArgumentError(
          absl::StrCat(location, ": cannot order by ", field.name,
                       " (it holds several values)"));
    }
    if (ended ||
        std::find(seen.begin(), seen.end(), field.name) != seen.end()) {
      continue;
    }
    seen.push_back(field.name);
    parts.push_back(
        absl::StrCat(field.name, entry.descending() ? " desc" : " asc"));
    if (field.name == "id") {
      ended = true;
      // id ascending is the tie-breaker every key ends with anyway.
      if (!entry.descending()) continue;
    }
    OrderKey key;
    key.descending = entry.descending();
    if (field.kind == Kind::kEnumeration) {
      // By the option's place in the definition, not its numeric id.
      std::map<std::string, std::string> rank;
      for (size_t r = 0; r < field.options.size(); ++r) {
        rank.emplace(IntForm(field.options[r]),
                     IntForm(static_cast<int64_t>(r)));
      }
      key.get = [get = std::move(field.get), rank = std::move(rank)](
                    const v1::Deal& deal, Comparables* out) {
        Comparables ids;
        get(deal, &ids);
        for (const std::string& id : ids) {
          const auto it = rank.find(id);
          if (it != rank.end()) out->push_back(it->second);
        }
      };
    } else {
      key.get = std::move(field.get);
    }
    keys.push_back(std::move(key));
  }
  if (!ended) parts.push_back(kDefaultOrderFingerprint);
  DealOrdering ordering;
  ordering.keys_ =
      std::make_shared<const std::vector<OrderKey>>(std::move(keys));
  ordering.fingerprint_ = absl::StrJoin(parts, ",");
  return ordering;
}

bool DealOrdering::by_id() const { return keys_->empty(); }

std::string DealOrdering::SortKey(const v1::Deal& deal) const {
  std::string key;
  Comparables values;
  for (const OrderKey& order_key : *keys_) {
    values.clear();
    order_key.get(deal, &values);
    AppendSegment(&key, values, order_key.descending);
  }
  key += IntForm(deal.id());
  return key;
}

const std::string& DealOrdering::fingerprint() const { return fingerprint_; }

}  // namespace crm::common
