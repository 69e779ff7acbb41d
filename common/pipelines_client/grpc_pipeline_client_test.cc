// GrpcPipelineClient against the real pipeline-config service: its three
// gRPC services over a real RocksDB store in a temporary directory, served
// in process by common::ServerRunner on a port picked by the kernel, and
// restarted on the same port and directory to test reconnection.
#include "common/pipelines_client/grpc_pipeline_client.h"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "gtest/gtest.h"

#include "crm/pipelines/v1/pipelines_service.grpc.pb.h"
#include "crm/pipelines/v1/pipelines_service_mock.grpc.pb.h"

#include "common/auth/auth.h"
#include "common/grpc/deadline.h"
#include "common/grpc/server_runner.h"
#include "common/log/log.h"
#include "common/metrics/metrics.h"
#include "common/pagination/page_token.h"
#include "common/pipelines_client/pipeline_channel.h"
#include "common/status/grpc_status.h"
#include "common/status/status_matchers.h"
#include "common/testing/temp_dir.h"
#include "services/pipeline_config/testing/in_process_server.h"

namespace crm::common {
namespace {

namespace pipelines_v1 = ::crm::pipelines::v1;
using ::crm::testing::StatusIs;
using ::testing::_;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Invoke;

constexpr char kSecret[] = "deals-pipeline-client-test-secret";
constexpr int64_t kAdminUserId = 1;
// The spec's bound on how stale deals' view of the configuration may be.
constexpr absl::Duration kFreshness = absl::Seconds(1);

// pipeline-config in this process, as its main.cc wires it.
class PipelineConfigServer : public pipeline_config::InProcessPipelineConfig {
 public:
  explicit PipelineConfigServer(std::string data_dir)
      : InProcessPipelineConfig(std::move(data_dir), kSecret, {kAdminUserId}) {}
};

// Polls until `done` holds; false after `timeout`.
template <typename Predicate>
bool WaitFor(Predicate done, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!done()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(2));
  }
  return true;
}

// How long until `done` holds (polling, at most 5 s); InfiniteDuration if
// never.
template <typename Predicate>
absl::Duration TimeUntil(Predicate done) {
  const absl::Time start = absl::Now();
  if (!WaitFor(done, absl::Seconds(5))) return absl::InfiniteDuration();
  return absl::Now() - start;
}

class GrpcPipelineClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    common::SetMinLogLevel(common::LogLevel::kError);
    server_ = std::make_unique<PipelineConfigServer>(dir_.path() + "/config");
    ASSERT_OK(server_->Start(0));
    port_ = server_->port();
    address_ = absl::StrCat("127.0.0.1:", port_);
    admin_channel_ = CreatePipelineConfigChannel(address_);
    admin_pipelines_ = pipelines_v1::PipelinesService::NewStub(admin_channel_);
    admin_fields_ = pipelines_v1::DealFieldsService::NewStub(admin_channel_);
    admin_access_ = pipelines_v1::AccessService::NewStub(admin_channel_);
  }

  void TearDown() override {
    if (client_ != nullptr) client_->Stop();
    client_.reset();
    server_->Stop();
  }

  static GrpcPipelineClientOptions Options(std::string secret = kSecret) {
    GrpcPipelineClientOptions options;
    options.jwt_secret = std::move(secret);
    options.service_name = "deals";
    // Small pages, so that every snapshot load pages through the lists.
    options.page_size = 2;
    return options;
  }

  // The client under test over its own channel, with an AccessService stub
  // that counts GetEffectivePermissions calls before passing them on.
  std::unique_ptr<GrpcPipelineClient> MakeClient(
      GrpcPipelineClientOptions options = Options()) {
    std::shared_ptr<grpc::Channel> channel =
        CreatePipelineConfigChannel(address_);
    auto access = std::make_unique<
        ::testing::NiceMock<pipelines_v1::MockAccessServiceStub>>();
    std::shared_ptr<pipelines_v1::AccessService::Stub> real =
        pipelines_v1::AccessService::NewStub(channel);
    ON_CALL(*access, GetEffectivePermissions(_, _, _))
        .WillByDefault(Invoke(
            [this, real](grpc::ClientContext* context,
                         const pipelines_v1::GetEffectivePermissionsRequest& r,
                         pipelines_v1::EffectivePermissions* response) {
              ++permission_calls_;
              return real->GetEffectivePermissions(context, r, response);
            }));
    return std::make_unique<GrpcPipelineClient>(
        pipelines_v1::PipelinesService::NewStub(channel),
        pipelines_v1::DealFieldsService::NewStub(channel), std::move(access),
        std::move(options));
  }

  // Starts client_ and waits until its watch stream is open.
  void StartClient() {
    client_ = MakeClient();
    ASSERT_OK(client_->Start());
    ASSERT_TRUE(WaitFor([&] { return client_->watching(); }, absl::Seconds(5)));
  }

  // --- Changes through pipeline-config's API, as the administrator ---------

  template <typename Stub, typename Request, typename Response>
  static absl::StatusOr<Response> AdminCall(
      Stub& stub,
      grpc::Status (Stub::*method)(grpc::ClientContext*, const Request&,
                                   Response*),
      const Request& request) {
    grpc::ClientContext context;
    common::SetDeadlineFromNow(&context, absl::Seconds(10));
    context.set_wait_for_ready(true);
    context.AddMetadata(
        "authorization",
        "Bearer " + common::MakeUserToken(kSecret, kAdminUserId, false,
                                          absl::Hours(1), absl::Now()));
    Response response;
    const grpc::Status status = (stub.*method)(&context, request, &response);
    if (!status.ok()) return common::FromGrpcStatus(status, "admin");
    return response;
  }

  absl::StatusOr<pipelines_v1::Pipeline> CreatePipeline(
      const std::string& name) {
    pipelines_v1::CreatePipelineRequest request;
    request.mutable_pipeline()->set_name(name);
    return AdminCall(*admin_pipelines_,
                     &pipelines_v1::PipelinesService::Stub::CreatePipeline,
                     request);
  }

  absl::StatusOr<pipelines_v1::Stage> CreateStage(int64_t pipeline_id,
                                                  const std::string& stage_id,
                                                  int32_t sort) {
    pipelines_v1::CreateStageRequest request;
    request.set_pipeline_id(pipeline_id);
    request.mutable_stage()->set_stage_id(stage_id);
    request.mutable_stage()->set_name("Negotiation");
    request.mutable_stage()->set_semantics(
        pipelines_v1::STAGE_SEMANTICS_PROCESS);
    request.mutable_stage()->set_sort(sort);
    request.mutable_stage()->set_default_probability(40);
    return AdminCall(*admin_pipelines_,
                     &pipelines_v1::PipelinesService::Stub::CreateStage,
                     request);
  }

  absl::StatusOr<pipelines_v1::FieldDefinition> CreateField(
      const std::string& code) {
    pipelines_v1::CreateFieldRequest request;
    request.mutable_field()->set_code(code);
    request.mutable_field()->set_type(pipelines_v1::FIELD_TYPE_STRING);
    request.mutable_field()->set_label("Label");
    request.mutable_field()->set_mandatory(true);
    return AdminCall(*admin_fields_,
                     &pipelines_v1::DealFieldsService::Stub::CreateField,
                     request);
  }

  // A role reading pipeline 0 at `level`, assigned to `user_id`.
  absl::Status GrantRead(int64_t user_id, pipelines_v1::AccessLevel level) {
    pipelines_v1::CreateRoleRequest role_request;
    role_request.mutable_role()->set_name(absl::StrCat("Readers ", level));
    pipelines_v1::PipelinePermissions* permissions =
        role_request.mutable_role()->add_pipelines();
    permissions->set_pipeline_id(0);
    permissions->mutable_levels()->set_read(level);
    absl::StatusOr<pipelines_v1::Role> role =
        AdminCall(*admin_access_,
                  &pipelines_v1::AccessService::Stub::CreateRole, role_request);
    if (!role.ok()) return role.status();
    pipelines_v1::CreateRoleAssignmentRequest assignment;
    assignment.mutable_assignment()->set_role_id(role->id());
    assignment.mutable_assignment()->set_user_id(user_id);
    return AdminCall(*admin_access_,
                     &pipelines_v1::AccessService::Stub::CreateRoleAssignment,
                     assignment)
        .status();
  }

  // Time until the client's snapshot reaches the server's current version.
  absl::Duration TimeUntilCaughtUp() {
    const int64_t target = server_->version();
    return TimeUntil([&] { return client_->GetConfig()->version() >= target; });
  }

  crm::testing::TempDir dir_;
  std::unique_ptr<PipelineConfigServer> server_;
  int port_ = 0;
  std::string address_;
  std::shared_ptr<grpc::Channel> admin_channel_;
  std::unique_ptr<pipelines_v1::PipelinesService::Stub> admin_pipelines_;
  std::unique_ptr<pipelines_v1::DealFieldsService::Stub> admin_fields_;
  std::unique_ptr<pipelines_v1::AccessService::Stub> admin_access_;
  std::atomic<int> permission_calls_{0};
  std::unique_ptr<GrpcPipelineClient> client_;
};

std::vector<std::string> StageIds(const PipelineView& pipeline) {
  std::vector<std::string> ids;
  for (const StageView& stage : pipeline.stages) ids.push_back(stage.stage_id);
  return ids;
}

TEST_F(GrpcPipelineClientTest, LoadsPipelineZeroWithItsEightStages) {
  ASSERT_NO_FATAL_FAILURE(StartClient());
  const std::shared_ptr<const ConfigView> config = client_->GetConfig();
  EXPECT_EQ(config->version(), server_->version());
  const PipelineView* zero = config->FindPipeline(0);
  ASSERT_NE(zero, nullptr);
  EXPECT_TRUE(zero->is_default);
  EXPECT_THAT(
      StageIds(*zero),
      ElementsAre("NEW", "PREPARATION", "PREPAYMENT_INVOICE", "EXECUTING",
                  "FINAL_INVOICE", "WON", "LOSE", "APOLOGY"));
  EXPECT_EQ(config->FirstStage(0)->stage_id, "NEW");
  EXPECT_EQ(
      config->FirstStageWithSemantics(0, pipelines_v1::STAGE_SEMANTICS_PROCESS)
          ->stage_id,
      "NEW");
  EXPECT_EQ(
      config->FirstStageWithSemantics(0, pipelines_v1::STAGE_SEMANTICS_SUCCESS)
          ->stage_id,
      "WON");
  EXPECT_EQ(
      config->FirstStageWithSemantics(0, pipelines_v1::STAGE_SEMANTICS_FAILURE)
          ->stage_id,
      "LOSE");
  EXPECT_EQ(config->StageIndex(0, "WON"), 5);
  EXPECT_EQ(config->FindStage(0, "WON")->sort, 60);
  EXPECT_TRUE(config->fields().empty());
}

TEST_F(GrpcPipelineClientTest, SeesNewPipelinesStagesAndFieldsWithinOneSecond) {
  ASSERT_NO_FATAL_FAILURE(StartClient());

  ASSERT_OK_AND_ASSIGN(pipelines_v1::Pipeline partners,
                       CreatePipeline("Partners"));
  const int64_t id = partners.id();
  EXPECT_LT(TimeUntil([&] {
              return client_->GetConfig()->FindPipeline(id) != nullptr;
            }),
            kFreshness);
  const auto with_pipeline = client_->GetConfig();
  EXPECT_EQ(with_pipeline->FindPipeline(id)->name, "Partners");
  EXPECT_EQ(
      with_pipeline
          ->FirstStageWithSemantics(id, pipelines_v1::STAGE_SEMANTICS_SUCCESS)
          ->stage_id,
      absl::StrCat("C", id, ":WON"));

  const std::string negotiation = absl::StrCat("C", id, ":NEGOTIATION");
  ASSERT_OK(CreateStage(id, "NEGOTIATION", 15));
  EXPECT_LT(TimeUntil([&] {
              return client_->GetConfig()->FindStage(id, negotiation) !=
                     nullptr;
            }),
            kFreshness);
  const auto with_stage = client_->GetConfig();
  EXPECT_EQ(with_stage->StageIndex(id, negotiation), 1);
  EXPECT_EQ(with_stage->FindStage(id, negotiation)->default_probability, 40);
  EXPECT_EQ(with_stage->FindPipeline(id)->stages.size(), 9u);

  ASSERT_OK(CreateField("UF_CRM_CONTRACT"));
  EXPECT_LT(TimeUntil([&] {
              return client_->GetConfig()->FindField("UF_CRM_CONTRACT") !=
                     nullptr;
            }),
            kFreshness);
  EXPECT_TRUE(client_->GetConfig()->FindField("UF_CRM_CONTRACT")->mandatory());

  // Several pages of each list (page_size 2 in this test).
  ASSERT_OK(CreatePipeline("Third"));
  ASSERT_OK(CreateField("UF_CRM_SECOND"));
  ASSERT_OK(CreateField("UF_CRM_THIRD"));
  EXPECT_LT(TimeUntilCaughtUp(), kFreshness);
  EXPECT_EQ(client_->GetConfig()->pipelines().size(), 3u);
  EXPECT_EQ(client_->GetConfig()->fields().size(), 3u);
  EXPECT_EQ(client_->GetConfig()->version(), server_->version());
}

TEST_F(GrpcPipelineClientTest, PermissionsAreCachedUntilTheConfigChanges) {
  ASSERT_NO_FATAL_FAILURE(StartClient());

  ASSERT_OK_AND_ASSIGN(auto before, client_->GetPermissions(7));
  EXPECT_EQ(before->user_id(), 7);
  EXPECT_FALSE(before->is_admin());
  EXPECT_TRUE(before->pipelines().empty());  // no role yet
  EXPECT_EQ(before->config_version(), client_->GetConfig()->version());
  ASSERT_OK_AND_ASSIGN(auto again, client_->GetPermissions(7));
  EXPECT_EQ(again.get(), before.get());
  EXPECT_EQ(permission_calls_.load(), 1);  // the second came from the cache

  // Another user is fetched and cached on its own.
  ASSERT_OK(client_->GetPermissions(8));
  ASSERT_OK(client_->GetPermissions(8));
  EXPECT_EQ(permission_calls_.load(), 2);

  // A role change bumps the config version, which drops the cache.
  ASSERT_OK(GrantRead(7, pipelines_v1::ACCESS_LEVEL_ALL));
  EXPECT_LT(TimeUntilCaughtUp(), kFreshness);
  ASSERT_OK_AND_ASSIGN(auto after, client_->GetPermissions(7));
  EXPECT_EQ(permission_calls_.load(), 3);
  ASSERT_EQ(after->pipelines_size(), 1);
  EXPECT_EQ(after->pipelines(0).pipeline_id(), 0);
  EXPECT_EQ(after->pipelines(0).stage_levels().at("NEW").read(),
            pipelines_v1::ACCESS_LEVEL_ALL);
  ASSERT_OK(client_->GetPermissions(7));
  EXPECT_EQ(permission_calls_.load(), 3);
  EXPECT_EQ(client_->stats().permission_fetches, 3);
}

TEST_F(GrpcPipelineClientTest, ReconnectsAfterARestartOnTheSamePort) {
  ASSERT_NO_FATAL_FAILURE(StartClient());
  ASSERT_OK(CreatePipeline("Before restart"));
  EXPECT_LT(TimeUntilCaughtUp(), kFreshness);
  const int64_t streams = client_->stats().watch_streams;

  server_->Stop();
  ASSERT_TRUE(WaitFor([&] { return !client_->watching(); }, absl::Seconds(5)));
  // Handlers keep reading the cached snapshot while pipeline-config is down.
  const absl::Time read = absl::Now();
  const auto cached = client_->GetConfig();
  EXPECT_LT(absl::Now() - read, absl::Milliseconds(100));
  EXPECT_EQ(cached->pipelines().size(), 2u);
  EXPECT_THAT(
      client_->GetPermissions(7),
      StatusIs(absl::StatusCode::kUnavailable, HasSubstr("pipeline-config")));

  ASSERT_OK(server_->Start(port_));
  ASSERT_EQ(server_->port(), port_);
  ASSERT_TRUE(WaitFor(
      [&] {
        return client_->watching() && client_->stats().watch_streams > streams;
      },
      absl::Seconds(10)));

  ASSERT_OK_AND_ASSIGN(pipelines_v1::Pipeline later,
                       CreatePipeline("After restart"));
  EXPECT_LT(TimeUntil([&] {
              return client_->GetConfig()->FindPipeline(later.id()) != nullptr;
            }),
            kFreshness);
  EXPECT_EQ(client_->GetConfig()->version(), server_->version());
  EXPECT_OK(client_->GetPermissions(7));
}

TEST_F(GrpcPipelineClientTest, ChangesWhileDisconnectedAreSeenAfterReconnect) {
  ASSERT_NO_FATAL_FAILURE(StartClient());
  // Stop the server, change the store behind the client's back (a second
  // server on another port and the same directory), then serve again.
  server_->Stop();
  ASSERT_TRUE(WaitFor([&] { return !client_->watching(); }, absl::Seconds(5)));
  {
    PipelineConfigServer other(dir_.path() + "/config");
    ASSERT_OK(other.Start(0));
    auto channel =
        CreatePipelineConfigChannel(absl::StrCat("127.0.0.1:", other.port()));
    auto stub = pipelines_v1::PipelinesService::NewStub(channel);
    pipelines_v1::CreatePipelineRequest request;
    request.mutable_pipeline()->set_name("Offline change");
    ASSERT_OK(AdminCall(
        *stub, &pipelines_v1::PipelinesService::Stub::CreatePipeline, request));
    other.Stop();
  }
  ASSERT_OK(server_->Start(port_));
  ASSERT_TRUE(WaitFor(
      [&] { return client_->GetConfig()->version() == server_->version(); },
      absl::Seconds(10)));
  EXPECT_EQ(client_->GetConfig()->pipelines().size(), 2u);
}

TEST_F(GrpcPipelineClientTest, AWrongSecretIsOursNotTheCallers) {
  // A user whose permissions cannot be fetched must not be told that they
  // are unauthenticated: the refused credentials are this service's.
  client_ = MakeClient(Options("not-the-shared-secret"));
  EXPECT_THAT(client_->Start(),
              StatusIs(absl::StatusCode::kInternal,
                       HasSubstr("pipeline-config refused this service's "
                                 "credentials (UNAUTHENTICATED")));
  EXPECT_THAT(client_->GetPermissions(7),
              StatusIs(absl::StatusCode::kInternal,
                       HasSubstr("pipeline-config refused this service's "
                                 "credentials")));
}

TEST_F(GrpcPipelineClientTest, StartFailsWithUnavailableWhenNobodyListens) {
  GrpcPipelineClientOptions options = Options();
  options.start_timeout = absl::Milliseconds(300);
  GrpcPipelineClient client(
      pipelines_v1::PipelinesService::NewStub(CreatePipelineConfigChannel(
          absl::StrCat("unix:", dir_.path(), "/nobody.sock"))),
      pipelines_v1::DealFieldsService::NewStub(admin_channel_),
      pipelines_v1::AccessService::NewStub(admin_channel_), options);
  const absl::Time start = absl::Now();
  EXPECT_THAT(client.Start(), StatusIs(absl::StatusCode::kUnavailable,
                                       HasSubstr("not reachable")));
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
}

TEST_F(GrpcPipelineClientTest, StopReturnsPromptlyWhileTheStreamIsOpen) {
  ASSERT_NO_FATAL_FAILURE(StartClient());
  ASSERT_TRUE(client_->watching());
  const absl::Time start = absl::Now();
  client_->Stop();
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
  EXPECT_FALSE(client_->watching());
  // The last snapshot stays readable.
  EXPECT_NE(client_->GetConfig()->FindPipeline(0), nullptr);
  client_->Stop();  // idempotent
}

TEST_F(GrpcPipelineClientTest, StopReturnsPromptlyWhilePipelineConfigIsDown) {
  ASSERT_NO_FATAL_FAILURE(StartClient());
  server_->Stop();
  ASSERT_TRUE(WaitFor([&] { return !client_->watching(); }, absl::Seconds(5)));
  const absl::Time start = absl::Now();
  client_->Stop();
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
}

}  // namespace
}  // namespace crm::common
