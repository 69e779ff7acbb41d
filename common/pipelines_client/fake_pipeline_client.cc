#include "common/pipelines_client/fake_pipeline_client.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

namespace crm::common {

namespace pipelines_v1 = ::crm::pipelines::v1;

pipelines_v1::FieldDefinition FieldDefinitionProto(const std::string& code,
                                                   pipelines_v1::FieldType type,
                                                   bool multiple,
                                                   bool mandatory) {
  pipelines_v1::FieldDefinition field;
  field.set_code(code);
  field.set_type(type);
  field.set_multiple(multiple);
  field.set_mandatory(mandatory);
  field.set_label(code);
  return field;
}

pipelines_v1::Pipeline DefaultPipelineProto(int64_t pipeline_id,
                                            const std::string& name) {
  struct DefaultStage {
    const char* id;
    const char* name;
    pipelines_v1::StageSemantics semantics;
  };
  static constexpr DefaultStage kStages[] = {
      {"NEW", "New", pipelines_v1::STAGE_SEMANTICS_PROCESS},
      {"PREPARATION", "Preparation", pipelines_v1::STAGE_SEMANTICS_PROCESS},
      {"PREPAYMENT_INVOICE", "Prepayment invoice",
       pipelines_v1::STAGE_SEMANTICS_PROCESS},
      {"EXECUTING", "Executing", pipelines_v1::STAGE_SEMANTICS_PROCESS},
      {"FINAL_INVOICE", "Final invoice", pipelines_v1::STAGE_SEMANTICS_PROCESS},
      {"WON", "Won", pipelines_v1::STAGE_SEMANTICS_SUCCESS},
      {"LOSE", "Lost", pipelines_v1::STAGE_SEMANTICS_FAILURE},
      {"APOLOGY", "Analysis of failure", pipelines_v1::STAGE_SEMANTICS_FAILURE},
  };
  pipelines_v1::Pipeline pipeline;
  pipeline.set_id(pipeline_id);
  pipeline.set_name(name);
  pipeline.set_is_default(pipeline_id == 0);
  const std::string prefix =
      pipeline_id == 0 ? "" : absl::StrCat("C", pipeline_id, ":");
  int32_t sort = 10;
  for (const DefaultStage& stage : kStages) {
    pipelines_v1::Stage* added = pipeline.add_stages();
    added->set_stage_id(absl::StrCat(prefix, stage.id));
    added->set_pipeline_id(pipeline_id);
    added->set_name(stage.name);
    added->set_sort(sort);
    added->set_semantics(stage.semantics);
    sort += 10;
  }
  return pipeline;
}

FakePipelineClient::FakePipelineClient()
    : config_(std::make_shared<const ConfigView>(
          ConfigView::FromProtos(1, {DefaultPipelineProto(0)}, {}))) {}

void FakePipelineClient::SetConfig(ConfigView config) {
  auto shared = std::make_shared<const ConfigView>(std::move(config));
  absl::MutexLock lock(&mu_);
  config_ = std::move(shared);
}

void FakePipelineClient::SetPermissions(
    int64_t user_id, pipelines_v1::EffectivePermissions permissions) {
  absl::MutexLock lock(&mu_);
  permissions.set_user_id(user_id);
  permissions_[user_id] = std::move(permissions);
}

void FakePipelineClient::SetPermissionsError(absl::Status status) {
  absl::MutexLock lock(&mu_);
  error_ = std::move(status);
}

int64_t FakePipelineClient::permission_calls() const {
  absl::MutexLock lock(&mu_);
  return permission_calls_;
}

std::shared_ptr<const ConfigView> FakePipelineClient::GetConfig() const {
  absl::MutexLock lock(&mu_);
  return config_;
}

absl::StatusOr<std::shared_ptr<const pipelines_v1::EffectivePermissions>>
FakePipelineClient::GetPermissions(int64_t user_id) {
  absl::MutexLock lock(&mu_);
  ++permission_calls_;
  if (user_id <= 0) return absl::InvalidArgumentError("user_id: must be > 0");
  if (!error_.ok()) return error_;
  auto permissions = std::make_shared<pipelines_v1::EffectivePermissions>();
  if (auto it = permissions_.find(user_id); it != permissions_.end()) {
    *permissions = it->second;
  } else {
    permissions->set_user_id(user_id);
  }
  permissions->set_config_version(config_->version());
  return permissions;
}

std::shared_ptr<const pipelines_v1::EffectivePermissions>
FakePipelineClient::CachedPermissions(int64_t user_id) {
  {
    absl::MutexLock lock(&mu_);
    if (!cache_hits_ || !error_.ok()) return nullptr;
  }
  auto permissions = GetPermissions(user_id);
  return permissions.ok() ? *permissions : nullptr;
}

void FakePipelineClient::SetCacheHits(bool hits) {
  absl::MutexLock lock(&mu_);
  cache_hits_ = hits;
}

}  // namespace crm::common
