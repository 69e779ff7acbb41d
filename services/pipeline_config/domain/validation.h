// Pure validation rules of pipeline-config. Every error
// names the field it is about.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#include "crm/pipelines/v1/pipeline.pb.h"

#include "common/text/request_id.h"

namespace crm::pipeline_config {

inline constexpr int kMaxNameChars = 255;
inline constexpr int kMaxStageIdChars = 22;
inline constexpr int kMaxStagesPerPipeline = 100;
inline constexpr int kMaxPipelines = 1000;
inline constexpr int kMaxFields = 500;
inline constexpr int kMaxEnumOptions = 1000;
inline constexpr int kMaxSort = 1000000000;
inline constexpr int kMaxRottingDays = 3650;
inline constexpr int kMaxDepartmentMembers = 10000;

// A display name: valid UTF-8, 1..255 characters, not only whitespace.
// INVALID_ARGUMENT naming `field`.
[[nodiscard]] absl::Status ValidateName(std::string_view field,
                                        std::string_view value);
[[nodiscard]] absl::Status ValidateSort(std::string_view field, int64_t sort);
// "#RRGGBB" (hex digits in any case).
[[nodiscard]] absl::Status ValidateColor(std::string_view field,
                                         std::string_view color);
// Request ids follow the rule every service shares.
using ::crm::common::ValidateRequestId;

// "" for pipeline 0, "C<id>:" for the others.
std::string StagePrefix(int64_t pipeline_id);

// Turns the stage id given for `pipeline_id` (bare "NEW" or prefixed "C3:NEW")
// into the full id, checking [A-Z0-9_-]{1,22} after the prefix.
[[nodiscard]] absl::StatusOr<std::string> NormalizeStageId(
    int64_t pipeline_id, std::string_view stage_id);

// Checks the ordering invariant on stages already sorted by (sort, id):
// PROCESS stages first (at least one), then exactly one SUCCESS stage, then
// one or more FAILURE stages. FAILED_PRECONDITION saying which rule broke.
[[nodiscard]] absl::Status CheckStageOrder(
    const std::vector<crm::pipelines::v1::Stage>& stages);

// Checks the stage fields a caller may set (name, sort, color, probability,
// rotting days) plus semantics being known.
[[nodiscard]] absl::Status ValidateStageFields(
    const crm::pipelines::v1::Stage& stage);

// The default colour of a stage with these semantics.
std::string DefaultStageColor(crm::pipelines::v1::StageSemantics semantics);

// The default stage set of a new pipeline, ids prefixed.
std::vector<crm::pipelines::v1::Stage> DefaultStages(int64_t pipeline_id);

// Sorts stages by (sort, stage_id).
void SortStages(std::vector<crm::pipelines::v1::Stage>* stages);

// UF_CRM_[A-Z0-9_]{1,43}.
[[nodiscard]] absl::Status ValidateFieldCode(std::string_view code);
// Type known; label; enumeration options (only for enumerations, at least
// one, values valid and unique, at most one default).
[[nodiscard]] absl::Status ValidateFieldDefinition(
    const crm::pipelines::v1::FieldDefinition& field);

}  // namespace crm::pipeline_config
