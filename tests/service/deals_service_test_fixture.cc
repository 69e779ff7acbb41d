#include "tests/service/deals_service_test_fixture.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"

#include "common/grpc/deadline.h"
#include "common/log/log.h"
#include "common/pipelines_client/pipeline_channel.h"
#include "common/status/status_matchers.h"

namespace crm::deals {

void DealsServiceTest::SetUp() {
  common::SetMinLogLevel(common::LogLevel::kError);
  admin_token_ = UserToken(kAdminUserId);
  pipeline_config_ = std::make_unique<pipeline_config::InProcessPipelineConfig>(
      dir_.path() + "/config", kSecret, std::set<int64_t>{kAdminUserId});
  ASSERT_OK(pipeline_config_->Start(0));
  config_channel_ = common::CreatePipelineConfigChannel(
      absl::StrCat("127.0.0.1:", pipeline_config_->port()));
  pipelines_stub_ = pv1::PipelinesService::NewStub(config_channel_);
  fields_stub_ = pv1::DealFieldsService::NewStub(config_channel_);
  access_stub_ = pv1::AccessService::NewStub(config_channel_);
  authenticator_ = std::make_unique<common::Authenticator>(kSecret, false);
  page_tokens_ = std::make_unique<common::PageTokenCodec>(kSecret);
  StartDeals();
}

void DealsServiceTest::TearDown() {
  StopDeals();
  pipeline_config_->Stop();
}

void DealsServiceTest::StartDeals() {
  ASSERT_OK_AND_ASSIGN(
      store_, DealStore::Open(dir_.path() + "/deals", common::RocksOptions{},
                              /*shard=*/3));
  common::GrpcPipelineClientOptions client_options;
  client_options.jwt_secret = kSecret;
  client_options.service_name = "deals";
  pipeline_client_ = common::GrpcPipelineClient::Create(
      config_channel_, std::move(client_options));
  ASSERT_OK(pipeline_client_->Start());
  common::WorkerPoolOptions pool;
  pool.threads = 4;
  workers_ = std::make_unique<common::WorkerPool>(pool);
  service_ =
      std::make_unique<DealsServiceImpl>(DealsServiceDeps{*store_,
                                                          *pipeline_client_,
                                                          *authenticator_,
                                                          *page_tokens_,
                                                          *workers_,
                                                          {kAdminUserId},
                                                          {}});
  common::ServerOptions options;
  options.service_name = "deals-test";
  options.host = "127.0.0.1";
  options.grpc_port = 0;
  options.http_port = -1;
  options.shutdown_grace = absl::Seconds(2);
  runner_ = std::make_unique<common::ServerRunner>(options, metrics_);
  runner_->AddService(service_.get(),
                      crm::deals::v1::DealsService::service_full_name());
  ASSERT_OK(runner_->Start());
  grpc::ChannelArguments args;
  args.SetInt("grpc.use_local_subchannel_pool", 1);
  deals_channel_ = grpc::CreateCustomChannel(
      absl::StrCat("127.0.0.1:", runner_->grpc_port()),
      grpc::InsecureChannelCredentials(), args);
  deals_stub_ = v1::DealsService::NewStub(deals_channel_);
}

void DealsServiceTest::StopDeals() {
  deals_stub_.reset();
  deals_channel_.reset();
  if (runner_ != nullptr) runner_->Shutdown();
  runner_.reset();
  if (workers_ != nullptr) workers_->Shutdown();
  service_.reset();
  workers_.reset();
  if (pipeline_client_ != nullptr) pipeline_client_->Stop();
  pipeline_client_.reset();
  store_.reset();
}

void DealsServiceTest::RestartDeals() {
  StopDeals();
  StartDeals();
}

std::string DealsServiceTest::UserToken(int64_t user_id, bool admin) const {
  return tokens_.User(user_id, admin);
}

std::string DealsServiceTest::ServiceToken(const std::string& service) const {
  return tokens_.Service(service);
}

std::string DealsServiceTest::ExpiredToken(int64_t user_id) const {
  return tokens_.Expired(user_id);
}

std::string DealsServiceTest::WrongSignatureToken(int64_t user_id) const {
  return tokens_.WrongSignature(user_id);
}

std::unique_ptr<grpc::ClientContext> DealsServiceTest::MakeContext(
    const std::string& token) {
  auto context = std::make_unique<grpc::ClientContext>();
  common::SetDeadlineFromNow(context.get(), absl::Seconds(10));
  if (!token.empty()) context->AddMetadata("authorization", "Bearer " + token);
  return context;
}

v1::Deal DealsServiceTest::MakeDeal(const std::string& title,
                                    int64_t assignee_id,
                                    const std::string& amount,
                                    const std::string& currency) {
  v1::Deal deal;
  deal.set_title(title);
  deal.set_assignee_id(assignee_id);
  deal.set_amount(amount);
  deal.set_currency(currency);
  return deal;
}

absl::StatusOr<v1::Deal> DealsServiceTest::CreateDeal(
    const v1::Deal& deal, const std::string& token) {
  v1::CreateDealRequest request;
  *request.mutable_deal() = deal;
  return CallAs(token.empty() ? admin_token_ : token, &DealsStub::CreateDeal,
                request);
}

absl::StatusOr<v1::Deal> DealsServiceTest::GetDeal(int64_t deal_id,
                                                   const std::string& token) {
  v1::GetDealRequest request;
  request.set_deal_id(deal_id);
  return CallAs(token.empty() ? admin_token_ : token, &DealsStub::GetDeal,
                request);
}

absl::StatusOr<v1::Deal> DealsServiceTest::MoveStage(
    int64_t deal_id, const std::string& stage_id, const std::string& token) {
  v1::MoveDealStageRequest request;
  request.set_deal_id(deal_id);
  request.set_stage_id(stage_id);
  return CallAs(token.empty() ? admin_token_ : token, &DealsStub::MoveDealStage,
                request);
}

void DealsServiceTest::WaitForConfigSync() {
  const int64_t target = pipeline_config_->version();
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (pipeline_client_->GetConfig()->version() != target) {
    ASSERT_LT(absl::Now(), deadline)
        << "deals did not see config version " << target;
    absl::SleepFor(absl::Milliseconds(2));
  }
}

absl::StatusOr<pv1::Pipeline> DealsServiceTest::CreatePipeline(
    const std::string& name) {
  pv1::CreatePipelineRequest request;
  request.mutable_pipeline()->set_name(name);
  auto pipeline = Call(&PipelinesStub::CreatePipeline, request);
  WaitForConfigSync();
  return pipeline;
}

absl::StatusOr<pv1::FieldDefinition> DealsServiceTest::CreateField(
    const std::string& code, pv1::FieldType type, bool multiple, bool mandatory,
    const std::vector<std::string>& options) {
  pv1::CreateFieldRequest request;
  request.mutable_field()->set_code(code);
  request.mutable_field()->set_type(type);
  request.mutable_field()->set_multiple(multiple);
  request.mutable_field()->set_mandatory(mandatory);
  request.mutable_field()->set_label(code);
  for (const std::string& option : options)
    request.mutable_field()->add_options()->set_value(option);
  auto field = Call(&FieldsStub::CreateField, request);
  WaitForConfigSync();
  return field;
}

absl::StatusOr<pv1::Department> DealsServiceTest::CreateDepartment(
    const std::string& name, int64_t parent_id,
    const std::vector<int64_t>& members) {
  pv1::CreateDepartmentRequest request;
  request.mutable_department()->set_name(name);
  request.mutable_department()->set_parent_id(parent_id);
  for (int64_t member : members)
    request.mutable_department()->add_member_user_ids(member);
  auto department = Call(&AccessStub::CreateDepartment, request);
  WaitForConfigSync();
  return department;
}

absl::StatusOr<pv1::Role> DealsServiceTest::CreateRole(const pv1::Role& role) {
  pv1::CreateRoleRequest request;
  *request.mutable_role() = role;
  auto created = Call(&AccessStub::CreateRole, request);
  WaitForConfigSync();
  return created;
}

absl::Status DealsServiceTest::AssignToUser(int64_t role_id, int64_t user_id) {
  pv1::CreateRoleAssignmentRequest request;
  request.mutable_assignment()->set_role_id(role_id);
  request.mutable_assignment()->set_user_id(user_id);
  absl::Status status =
      Call(&AccessStub::CreateRoleAssignment, request).status();
  WaitForConfigSync();
  return status;
}

absl::Status DealsServiceTest::AssignToDepartment(int64_t role_id,
                                                  int64_t department_id,
                                                  bool include_subdepartments) {
  pv1::CreateRoleAssignmentRequest request;
  request.mutable_assignment()->set_role_id(role_id);
  request.mutable_assignment()->set_department_id(department_id);
  request.mutable_assignment()->set_include_subdepartments(
      include_subdepartments);
  absl::Status status =
      Call(&AccessStub::CreateRoleAssignment, request).status();
  WaitForConfigSync();
  return status;
}

absl::StatusOr<pv1::Role> DealsServiceTest::GrantUniform(
    int64_t user_id, int64_t pipeline_id, pv1::AccessLevel level) {
  pv1::Role role;
  role.set_name(absl::StrCat("uniform ", user_id, " ", pipeline_id, " ",
                             pv1::AccessLevel_Name(level)));
  pv1::PipelinePermissions* p = role.add_pipelines();
  p->set_pipeline_id(pipeline_id);
  pv1::ActionLevels* levels = p->mutable_levels();
  levels->set_read(level);
  levels->set_add(level);
  levels->set_write(level);
  levels->set_delete_(level);
  levels->set_export_(level);
  levels->set_import(level);
  absl::StatusOr<pv1::Role> created = CreateRole(role);
  if (!created.ok()) return created.status();
  absl::Status assigned = AssignToUser(created->id(), user_id);
  if (!assigned.ok()) return assigned;
  return created;
}

std::vector<v1::DealEvent> DealsServiceTest::Events(int64_t from) {
  absl::StatusOr<std::vector<v1::DealEvent>> events =
      store_->ReadOutbox(from, 100000);
  EXPECT_TRUE(events.ok()) << events.status();
  return events.ok() ? *events : std::vector<v1::DealEvent>();
}

}  // namespace crm::deals
