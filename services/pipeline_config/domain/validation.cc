#include "services/pipeline_config/domain/validation.h"

#include <algorithm>
#include <set>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

#include "common/text/request_id.h"
#include "common/text/text.h"

namespace crm::pipeline_config {
namespace {

namespace v1 = ::crm::pipelines::v1;

bool IsStageIdChar(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-';
}

}  // namespace

absl::Status ValidateName(std::string_view field, std::string_view value) {
  return common::ValidateText(field, value,
                              common::TextRules{kMaxNameChars, false, false});
}

absl::Status ValidateSort(std::string_view field, int64_t sort) {
  if (sort < 0 || sort > kMaxSort) {
    return absl::InvalidArgumentError(
        absl::StrCat(std::string(field), ": must be between 0 and ", kMaxSort));
  }
  return absl::OkStatus();
}

absl::Status ValidateColor(std::string_view field, std::string_view color) {
  bool ok = color.size() == 7 && color[0] == '#';
  for (size_t i = 1; ok && i < color.size(); ++i) {
    ok = absl::ascii_isxdigit(static_cast<unsigned char>(color[i]));
  }
  if (!ok) {
    return absl::InvalidArgumentError(
        absl::StrCat(std::string(field), ": must look like #RRGGBB, got \"",
                     std::string(color), "\""));
  }
  return absl::OkStatus();
}

std::string StagePrefix(int64_t pipeline_id) {
  return pipeline_id == 0 ? std::string() : absl::StrCat("C", pipeline_id, ":");
}

absl::StatusOr<std::string> NormalizeStageId(int64_t pipeline_id,
                                             std::string_view stage_id) {
  const std::string prefix = StagePrefix(pipeline_id);
  std::string_view bare = stage_id;
  if (!prefix.empty() && absl::StartsWith(std::string(bare), prefix)) {
    bare.remove_prefix(prefix.size());
  }
  if (bare.empty()) return absl::InvalidArgumentError("stage_id: required");
  if (bare.size() > static_cast<size_t>(kMaxStageIdChars)) {
    return absl::InvalidArgumentError(
        absl::StrCat("stage_id: longer than ", kMaxStageIdChars,
                     " characters (without the prefix)"));
  }
  for (char c : bare) {
    if (!IsStageIdChar(c)) {
      if (c == ':') {
        return absl::InvalidArgumentError(
            absl::StrCat("stage_id: \"", std::string(stage_id),
                         "\" has a prefix that is not \"", prefix,
                         "\" of pipeline ", pipeline_id));
      }
      return absl::InvalidArgumentError(
          absl::StrCat("stage_id: \"", std::string(stage_id),
                       "\" may only hold A-Z, 0-9, _ and -"));
    }
  }
  return absl::StrCat(prefix, std::string(bare));
}

absl::Status CheckStageOrder(const std::vector<v1::Stage>& stages) {
  int success = 0;
  int failure = 0;
  int process = 0;
  for (const auto& stage : stages) {
    switch (stage.semantics()) {
      case v1::STAGE_SEMANTICS_PROCESS:
        if (success > 0 || failure > 0) {
          return absl::FailedPreconditionError(
              absl::StrCat("stage order: PROCESS stage ", stage.stage_id(),
                           " must come before the SUCCESS and FAILURE stages"));
        }
        ++process;
        break;
      case v1::STAGE_SEMANTICS_SUCCESS:
        if (process == 0) {
          return absl::FailedPreconditionError(
              "stage order: the pipeline must start with at least one PROCESS "
              "stage");
        }
        if (failure > 0) {
          return absl::FailedPreconditionError(
              absl::StrCat("stage order: SUCCESS stage ", stage.stage_id(),
                           " must come before every FAILURE stage"));
        }
        ++success;
        break;
      case v1::STAGE_SEMANTICS_FAILURE:
        if (process == 0) {
          return absl::FailedPreconditionError(
              "stage order: the pipeline must start with at least one PROCESS "
              "stage");
        }
        ++failure;
        break;
      default:
        return absl::FailedPreconditionError(absl::StrCat(
            "stage order: stage ", stage.stage_id(), " has no semantics"));
    }
  }
  if (process == 0) {
    return absl::FailedPreconditionError(
        "stage order: the pipeline must have at least one PROCESS stage");
  }
  if (success != 1) {
    return absl::FailedPreconditionError(absl::StrCat(
        "stage order: exactly one SUCCESS stage is required, found ", success));
  }
  if (failure == 0) {
    return absl::FailedPreconditionError(
        "stage order: at least one FAILURE stage is required after the SUCCESS "
        "stage");
  }
  return absl::OkStatus();
}

absl::Status ValidateStageFields(const v1::Stage& stage) {
  if (!v1::StageSemantics_IsValid(stage.semantics()) ||
      stage.semantics() == v1::STAGE_SEMANTICS_UNSPECIFIED) {
    return absl::InvalidArgumentError(
        "stage.semantics: must be PROCESS, SUCCESS or FAILURE");
  }
  if (absl::Status s = ValidateName("stage.name", stage.name()); !s.ok())
    return s;
  if (absl::Status s = ValidateSort("stage.sort", stage.sort()); !s.ok())
    return s;
  if (absl::Status s = ValidateColor("stage.color", stage.color()); !s.ok())
    return s;
  if (stage.default_probability() < 0 || stage.default_probability() > 100) {
    return absl::InvalidArgumentError(
        "stage.default_probability: must be between 0 and 100");
  }
  if (stage.rotting_days() < 0 || stage.rotting_days() > kMaxRottingDays) {
    return absl::InvalidArgumentError(absl::StrCat(
        "stage.rotting_days: must be between 0 and ", kMaxRottingDays));
  }
  return absl::OkStatus();
}

std::string DefaultStageColor(v1::StageSemantics semantics) {
  switch (semantics) {
    case v1::STAGE_SEMANTICS_SUCCESS:
      return "#7BD500";
    case v1::STAGE_SEMANTICS_FAILURE:
      return "#FF5752";
    default:
      return "#39A8EF";
  }
}

std::vector<v1::Stage> DefaultStages(int64_t pipeline_id) {
  struct Seed {
    const char* id;
    const char* name;
    int sort;
    v1::StageSemantics semantics;
    const char* color;
    int probability;
  };
  static constexpr Seed kSeeds[] = {
      {"NEW", "New", 10, v1::STAGE_SEMANTICS_PROCESS, "#39A8EF", 10},
      {"PREPARATION", "Preparing documents", 20, v1::STAGE_SEMANTICS_PROCESS,
       "#2FC6F6", 20},
      {"PREPAYMENT_INVOICE", "Prepayment invoice", 30,
       v1::STAGE_SEMANTICS_PROCESS, "#55D0E0", 40},
      {"EXECUTING", "In progress", 40, v1::STAGE_SEMANTICS_PROCESS, "#47E4C2",
       60},
      {"FINAL_INVOICE", "Final invoice", 50, v1::STAGE_SEMANTICS_PROCESS,
       "#FFA900", 80},
      {"WON", "Deal won", 60, v1::STAGE_SEMANTICS_SUCCESS, "#7BD500", 100},
      {"LOSE", "Deal lost", 70, v1::STAGE_SEMANTICS_FAILURE, "#FF5752", 0},
      {"APOLOGY", "Analyze failure", 80, v1::STAGE_SEMANTICS_FAILURE, "#FF5752",
       0},
  };
  std::vector<v1::Stage> stages;
  const std::string prefix = StagePrefix(pipeline_id);
  for (const auto& seed : kSeeds) {
    v1::Stage stage;
    stage.set_stage_id(absl::StrCat(prefix, seed.id));
    stage.set_pipeline_id(pipeline_id);
    stage.set_name(seed.name);
    stage.set_sort(seed.sort);
    stage.set_semantics(seed.semantics);
    stage.set_color(seed.color);
    stage.set_default_probability(seed.probability);
    stages.push_back(std::move(stage));
  }
  return stages;
}

void SortStages(std::vector<v1::Stage>* stages) {
  std::sort(stages->begin(), stages->end(),
            [](const v1::Stage& a, const v1::Stage& b) {
              if (a.sort() != b.sort()) return a.sort() < b.sort();
              return a.stage_id() < b.stage_id();
            });
}

absl::Status ValidateFieldCode(std::string_view code) {
  constexpr std::string_view kPrefix = "UF_CRM_";
  const size_t rest = code.size() - std::min(code.size(), kPrefix.size());
  bool ok =
      code.substr(0, kPrefix.size()) == kPrefix && rest >= 1 && rest <= 43;
  for (size_t i = kPrefix.size(); ok && i < code.size(); ++i) {
    const char c = code[i];
    ok = (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
  }
  if (!ok) {
    return absl::InvalidArgumentError(
        absl::StrCat("field.code: must match UF_CRM_[A-Z0-9_]{1,43}, got \"",
                     std::string(code), "\""));
  }
  return absl::OkStatus();
}

absl::Status ValidateFieldDefinition(const v1::FieldDefinition& field) {
  if (absl::Status s = ValidateFieldCode(field.code()); !s.ok()) return s;
  if (!v1::FieldType_IsValid(field.type()) ||
      field.type() == v1::FIELD_TYPE_UNSPECIFIED) {
    return absl::InvalidArgumentError(
        "field.type: required (STRING, INTEGER, ...)");
  }
  if (absl::Status s = ValidateName("field.label", field.label()); !s.ok())
    return s;
  if (absl::Status s = ValidateSort("field.sort", field.sort()); !s.ok())
    return s;
  if (field.type() != v1::FIELD_TYPE_ENUMERATION) {
    if (field.options_size() > 0) {
      return absl::InvalidArgumentError(
          "field.options: only enumeration fields have options");
    }
    return absl::OkStatus();
  }
  if (field.options_size() == 0) {
    return absl::InvalidArgumentError(
        "field.options: an enumeration needs at least one option");
  }
  if (field.options_size() > kMaxEnumOptions) {
    return absl::InvalidArgumentError(
        absl::StrCat("field.options: at most ", kMaxEnumOptions, " options"));
  }
  std::set<std::string> values;
  int defaults = 0;
  for (int i = 0; i < field.options_size(); ++i) {
    const auto& option = field.options(i);
    const std::string name = absl::StrCat("field.options[", i, "].value");
    if (absl::Status s = ValidateName(name, option.value()); !s.ok()) return s;
    if (!values.insert(option.value()).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, ": \"", option.value(), "\" appears twice"));
    }
    if (absl::Status s = ValidateSort(
            absl::StrCat("field.options[", i, "].sort"), option.sort());
        !s.ok()) {
      return s;
    }
    if (option.is_default()) ++defaults;
  }
  if (defaults > 1 && !field.multiple()) {
    return absl::InvalidArgumentError(
        "field.options: a single-value enumeration has at most one default "
        "option");
  }
  return absl::OkStatus();
}

}  // namespace crm::pipeline_config
