#include "services/automation/domain/template.h"

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "google/protobuf/timestamp.pb.h"
#include "google/protobuf/util/time_util.h"

#include <kainjow/mustache.hpp>

namespace crm::automation {
namespace {

namespace mustache = kainjow::mustache;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

std::string ScalarText(const Message& message, const FieldDescriptor* field,
                       int index) {
  const Reflection* r = message.GetReflection();
  const bool repeated = field->is_repeated();
  switch (field->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32:
      return absl::StrCat(repeated ? r->GetRepeatedInt32(message, field, index)
                                   : r->GetInt32(message, field));
    case FieldDescriptor::CPPTYPE_INT64:
      return absl::StrCat(repeated ? r->GetRepeatedInt64(message, field, index)
                                   : r->GetInt64(message, field));
    case FieldDescriptor::CPPTYPE_UINT32:
      return absl::StrCat(repeated ? r->GetRepeatedUInt32(message, field, index)
                                   : r->GetUInt32(message, field));
    case FieldDescriptor::CPPTYPE_UINT64:
      return absl::StrCat(repeated ? r->GetRepeatedUInt64(message, field, index)
                                   : r->GetUInt64(message, field));
    case FieldDescriptor::CPPTYPE_DOUBLE:
      return absl::StrCat(repeated ? r->GetRepeatedDouble(message, field, index)
                                   : r->GetDouble(message, field));
    case FieldDescriptor::CPPTYPE_FLOAT:
      return absl::StrCat(repeated ? r->GetRepeatedFloat(message, field, index)
                                   : r->GetFloat(message, field));
    case FieldDescriptor::CPPTYPE_BOOL:
      return (repeated ? r->GetRepeatedBool(message, field, index)
                       : r->GetBool(message, field))
                 ? "true"
                 : "false";
    case FieldDescriptor::CPPTYPE_ENUM:
      return (repeated ? r->GetRepeatedEnum(message, field, index)
                       : r->GetEnum(message, field))
          ->name();
    case FieldDescriptor::CPPTYPE_STRING:
      return repeated ? r->GetRepeatedString(message, field, index)
                      : r->GetString(message, field);
    case FieldDescriptor::CPPTYPE_MESSAGE: {
      const Message& sub = repeated
                               ? r->GetRepeatedMessage(message, field, index)
                               : r->GetMessage(message, field);
      if (sub.GetDescriptor()->full_name() == "google.protobuf.Timestamp") {
        google::protobuf::Timestamp ts;
        ts.CopyFrom(sub);
        return google::protobuf::util::TimeUtil::ToString(ts);
      }
      return "";
    }
  }
  return "";
}

// The placeholders of a deal (see template.h).
mustache::data DealData(const crm::deals::v1::Deal& deal) {
  mustache::data data{mustache::data::type::object};
  const google::protobuf::Descriptor* descriptor = deal.GetDescriptor();
  const Reflection* r = deal.GetReflection();
  for (int i = 0; i < descriptor->field_count(); ++i) {
    const FieldDescriptor* field = descriptor->field(i);
    if (field->is_map()) continue;  // custom_fields, below.
    const bool nested_message =
        field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE &&
        field->message_type()->full_name() != "google.protobuf.Timestamp";
    if (nested_message) continue;  // product_rows: not a placeholder.
    std::string text;
    if (field->is_repeated()) {
      std::vector<std::string> parts;
      const int n = r->FieldSize(deal, field);
      parts.reserve(n);
      for (int j = 0; j < n; ++j) parts.push_back(ScalarText(deal, field, j));
      text = absl::StrJoin(parts, ", ");
    } else {
      if (field->has_presence() && !r->HasField(deal, field)) continue;
      text = ScalarText(deal, field, -1);
    }
    if (!text.empty()) data.set(field->name(), text);
  }
  mustache::data custom{mustache::data::type::object};
  for (const auto& [code, values] : deal.custom_fields()) {
    std::string text = absl::StrJoin(values.values(), ", ");
    if (!text.empty()) custom.set(code, text);
  }
  data.set("custom", custom);
  return data;
}

absl::string_view AbslView(std::string_view s) {
  return absl::string_view(s.data(), s.size());
}

}  // namespace

absl::Status ValidateTemplate(std::string_view field, std::string_view text) {
  if (text.size() > kMaxTemplateBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(AbslView(field), ": template is ", text.size(),
                     " bytes, more than the limit of ", kMaxTemplateBytes));
  }
  mustache::mustache tmpl{std::string(text)};
  if (!tmpl.is_valid()) {
    return absl::InvalidArgumentError(absl::StrCat(
        AbslView(field),
        ": not a valid Mustache template: ", tmpl.error_message()));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> RenderDealTemplate(std::string_view text,
                                               const crm::deals::v1::Deal& deal,
                                               bool html_escape) {
  const absl::Status valid = ValidateTemplate("template", text);
  if (!valid.ok()) return valid;
  mustache::mustache tmpl{std::string(text)};
  if (!html_escape) {
    tmpl.set_custom_escape([](const std::string& s) { return s; });
  }
  std::string out = tmpl.render(DealData(deal));
  if (!tmpl.is_valid()) {
    return absl::InvalidArgumentError(
        absl::StrCat("template: cannot render: ", tmpl.error_message()));
  }
  return out;
}

}  // namespace crm::automation
