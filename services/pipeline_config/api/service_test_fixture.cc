#include "services/pipeline_config/api/service_test_fixture.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"

#include "common/log/log.h"
#include "services/pipeline_config/domain/permissions.h"

namespace crm::pipeline_config {

// --- FakeDealCounter ---------------------------------------------------------

void FakeDealCounter::SetDealsInPipeline(int64_t count) {
  absl::MutexLock lock(&mu_);
  pipeline_deals_ = count;
}

void FakeDealCounter::SetDealsInStage(int64_t count) {
  absl::MutexLock lock(&mu_);
  stage_deals_ = count;
}

void FakeDealCounter::SetError(absl::Status status) {
  absl::MutexLock lock(&mu_);
  error_ = std::move(status);
}

absl::StatusOr<int64_t> FakeDealCounter::CountDealsInPipeline(
    int64_t pipeline_id, int64_t min_config_version) {
  absl::MutexLock lock(&mu_);
  if (!error_.ok()) return error_;
  if (pipeline_deals_.has_value()) return *pipeline_deals_;
  return empty_.CountDealsInPipeline(pipeline_id, min_config_version);
}

absl::StatusOr<int64_t> FakeDealCounter::CountDealsInStage(
    int64_t pipeline_id, const std::string& stage_id,
    int64_t min_config_version) {
  absl::MutexLock lock(&mu_);
  if (!error_.ok()) return error_;
  if (stage_deals_.has_value()) return *stage_deals_;
  return empty_.CountDealsInStage(pipeline_id, stage_id, min_config_version);
}

absl::Status FromGrpc(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      status.error_message());
}

google::protobuf::FieldMask Mask(std::initializer_list<const char*> paths) {
  google::protobuf::FieldMask mask;
  for (const char* path : paths) mask.add_paths(path);
  return mask;
}

v1::ActionLevels AllActions(v1::AccessLevel level) {
  return UniformLevels(level);
}

// --- Fixture -----------------------------------------------------------------

void PipelineConfigServiceTest::SetUp() {
  common::SetMinLogLevel(common::LogLevel::kWarning);
  admin_token_ = UserToken(kAdminUserId);
  StartService();
}

void PipelineConfigServiceTest::TearDown() { StopService(); }

void PipelineConfigServiceTest::Restart() {
  StopService();
  StartService();
}

void PipelineConfigServiceTest::StartService() {
  auto store =
      ConfigStore::Open(dir_.path() + "/config", common::RocksOptions{});
  ASSERT_TRUE(store.ok()) << store.status();
  store_ = std::move(store).value();
  notifier_ = std::make_unique<VersionNotifier>();
  auto manager = ConfigManager::Create(*store_, deal_counter_, *notifier_);
  ASSERT_TRUE(manager.ok()) << manager.status();
  manager_ = std::move(manager).value();
  deps_ = std::make_unique<ServiceDeps>(ServiceDeps{
      *manager_, *notifier_, authenticator_, page_tokens_, {kAdminUserId}});
  pipelines_service_ = std::make_unique<PipelinesServiceImpl>(*deps_);
  fields_service_ = std::make_unique<FieldsServiceImpl>(*deps_);
  access_service_ = std::make_unique<AccessServiceImpl>(*deps_);

  common::ServerOptions options;
  options.service_name = "pipeline-config-test";
  options.host = "127.0.0.1";
  options.grpc_port = 0;
  options.http_port = -1;
  options.shutdown_grace = absl::Seconds(2);
  runner_ = std::make_unique<common::ServerRunner>(options, metrics_);
  runner_->AddService(pipelines_service_.get(),
                      v1::PipelinesService::service_full_name());
  runner_->AddService(fields_service_.get(),
                      v1::DealFieldsService::service_full_name());
  runner_->AddService(access_service_.get(),
                      v1::AccessService::service_full_name());
  const absl::Status started = runner_->Start();
  ASSERT_TRUE(started.ok()) << started;

  channel_ =
      grpc::CreateChannel(absl::StrCat("127.0.0.1:", runner_->grpc_port()),
                          grpc::InsecureChannelCredentials());
  pipelines_stub_ = v1::PipelinesService::NewStub(channel_);
  fields_stub_ = v1::DealFieldsService::NewStub(channel_);
  access_stub_ = v1::AccessService::NewStub(channel_);
}

void PipelineConfigServiceTest::StopService() {
  pipelines_stub_.reset();
  fields_stub_.reset();
  access_stub_.reset();
  channel_.reset();
  // Ends WatchConfig streams so the shutdown need not wait for them.
  if (notifier_ != nullptr) notifier_->Close();
  if (runner_ != nullptr) runner_->Shutdown();
  runner_.reset();
  access_service_.reset();
  fields_service_.reset();
  pipelines_service_.reset();
  deps_.reset();
  manager_.reset();
  notifier_.reset();
  store_.reset();
}

std::string PipelineConfigServiceTest::UserToken(int64_t user_id,
                                                 bool admin) const {
  return tokens_.User(user_id, admin);
}

std::string PipelineConfigServiceTest::ServiceToken(
    const std::string& service) const {
  return tokens_.Service(service);
}

std::string PipelineConfigServiceTest::ExpiredToken(int64_t user_id) const {
  return tokens_.Expired(user_id);
}

std::string PipelineConfigServiceTest::WrongSignatureToken(
    int64_t user_id) const {
  return tokens_.WrongSignature(user_id);
}

std::unique_ptr<grpc::ClientContext> PipelineConfigServiceTest::MakeContext(
    const std::string& token) {
  return MakeContextWithHeader(token.empty() ? std::string()
                                             : "Bearer " + token);
}

std::unique_ptr<grpc::ClientContext>
PipelineConfigServiceTest::MakeContextWithHeader(
    const std::string& authorization) {
  auto context = std::make_unique<grpc::ClientContext>();
  if (!authorization.empty())
    context->AddMetadata("authorization", authorization);
  context->set_deadline(std::chrono::system_clock::now() +
                        std::chrono::seconds(10));
  return context;
}

absl::StatusOr<v1::Pipeline> PipelineConfigServiceTest::CreatePipeline(
    const std::string& name, int32_t sort) {
  v1::CreatePipelineRequest request;
  request.mutable_pipeline()->set_name(name);
  request.mutable_pipeline()->set_sort(sort);
  return Call(&PipelinesStub::CreatePipeline, request);
}

absl::StatusOr<v1::Pipeline> PipelineConfigServiceTest::GetPipeline(
    int64_t pipeline_id) {
  v1::GetPipelineRequest request;
  request.set_pipeline_id(pipeline_id);
  return Call(&PipelinesStub::GetPipeline, request);
}

absl::StatusOr<std::vector<v1::Stage>> PipelineConfigServiceTest::ListStages(
    int64_t pipeline_id) {
  v1::ListStagesRequest request;
  request.set_pipeline_id(pipeline_id);
  absl::StatusOr<v1::ListStagesResponse> response =
      Call(&PipelinesStub::ListStages, request);
  if (!response.ok()) return response.status();
  return std::vector<v1::Stage>(response->stages().begin(),
                                response->stages().end());
}

std::vector<std::string> PipelineConfigServiceTest::StageIds(
    int64_t pipeline_id) {
  std::vector<std::string> ids;
  absl::StatusOr<std::vector<v1::Stage>> stages = ListStages(pipeline_id);
  EXPECT_TRUE(stages.ok()) << stages.status();
  if (!stages.ok()) return ids;
  for (const auto& stage : *stages) ids.push_back(stage.stage_id());
  return ids;
}

absl::StatusOr<v1::Stage> PipelineConfigServiceTest::CreateStage(
    int64_t pipeline_id, const std::string& stage_id,
    v1::StageSemantics semantics, int32_t sort, const std::string& name) {
  v1::CreateStageRequest request;
  request.set_pipeline_id(pipeline_id);
  request.mutable_stage()->set_stage_id(stage_id);
  request.mutable_stage()->set_name(name);
  request.mutable_stage()->set_semantics(semantics);
  request.mutable_stage()->set_sort(sort);
  return Call(&PipelinesStub::CreateStage, request);
}

absl::StatusOr<v1::FieldDefinition> PipelineConfigServiceTest::CreateField(
    const std::string& code, v1::FieldType type,
    const std::vector<std::string>& options) {
  v1::CreateFieldRequest request;
  request.mutable_field()->set_code(code);
  request.mutable_field()->set_type(type);
  request.mutable_field()->set_label(absl::StrCat("Label of ", code));
  for (size_t i = 0; i < options.size(); ++i) {
    auto* option = request.mutable_field()->add_options();
    option->set_value(options[i]);
    option->set_sort(static_cast<int32_t>((i + 1) * 10));
  }
  return Call(&FieldsStub::CreateField, request);
}

absl::StatusOr<v1::Department> PipelineConfigServiceTest::CreateDepartment(
    const std::string& name, int64_t parent_id, int64_t head_user_id,
    const std::vector<int64_t>& members) {
  v1::CreateDepartmentRequest request;
  request.mutable_department()->set_name(name);
  request.mutable_department()->set_parent_id(parent_id);
  request.mutable_department()->set_head_user_id(head_user_id);
  for (int64_t member : members)
    request.mutable_department()->add_member_user_ids(member);
  return Call(&AccessStub::CreateDepartment, request);
}

absl::StatusOr<v1::Role> PipelineConfigServiceTest::CreateRole(
    const v1::Role& role) {
  v1::CreateRoleRequest request;
  *request.mutable_role() = role;
  return Call(&AccessStub::CreateRole, request);
}

absl::StatusOr<v1::RoleAssignment> PipelineConfigServiceTest::AssignToUser(
    int64_t role_id, int64_t user_id) {
  v1::CreateRoleAssignmentRequest request;
  request.mutable_assignment()->set_role_id(role_id);
  request.mutable_assignment()->set_user_id(user_id);
  return Call(&AccessStub::CreateRoleAssignment, request);
}

absl::StatusOr<v1::RoleAssignment>
PipelineConfigServiceTest::AssignToDepartment(int64_t role_id,
                                              int64_t department_id,
                                              bool include_subdepartments) {
  v1::CreateRoleAssignmentRequest request;
  request.mutable_assignment()->set_role_id(role_id);
  request.mutable_assignment()->set_department_id(department_id);
  request.mutable_assignment()->set_include_subdepartments(
      include_subdepartments);
  return Call(&AccessStub::CreateRoleAssignment, request);
}

int64_t PipelineConfigServiceTest::GrantConfig(int64_t user_id) {
  v1::Role role;
  role.set_name(absl::StrCat("Config for ", user_id));
  role.set_config(true);
  absl::StatusOr<v1::Role> created = CreateRole(role);
  EXPECT_TRUE(created.ok()) << created.status();
  if (!created.ok()) return 0;
  absl::StatusOr<v1::RoleAssignment> assigned =
      AssignToUser(created->id(), user_id);
  EXPECT_TRUE(assigned.ok()) << assigned.status();
  return assigned.ok() ? created->id() : 0;
}

absl::StatusOr<v1::EffectivePermissions>
PipelineConfigServiceTest::EffectivePermissionsOf(int64_t user_id) {
  v1::GetEffectivePermissionsRequest request;
  request.set_user_id(user_id);
  return Call(&AccessStub::GetEffectivePermissions, request);
}

int64_t PipelineConfigServiceTest::ConfigVersion() {
  absl::StatusOr<v1::ConfigVersion> version =
      Call(&PipelinesStub::GetConfigVersion, v1::GetConfigVersionRequest());
  EXPECT_TRUE(version.ok()) << version.status();
  return version.ok() ? version->version() : -1;
}

}  // namespace crm::pipeline_config
