// GrpcPipelineClient against the generated mock stubs: what it sends (token,
// deadline, paging), how it converts errors, the permission cache, and the
// polling safety net when the watch stream is not available. The real
// service is in grpc_pipeline_client_test.cc.
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "grpcpp/test/client_context_test_peer.h"
#include "grpcpp/test/mock_stream.h"
#include "gtest/gtest.h"

#include "crm/pipelines/v1/pipelines_service_mock.grpc.pb.h"

#include "common/auth/auth.h"
#include "common/log/log.h"
#include "common/pipelines_client/fake_pipeline_client.h"
#include "common/pipelines_client/grpc_pipeline_client.h"
#include "common/status/status_matchers.h"

namespace crm::common {
namespace {

namespace pipelines_v1 = ::crm::pipelines::v1;
using ::crm::testing::StatusIs;
using ::testing::_;
using ::testing::HasSubstr;
using ::testing::Invoke;
using ::testing::Return;
using ::testing::StrictMock;

constexpr char kSecret[] = "mock-test-secret";

// What the mocked pipeline-config serves. Thread-safe.
class FakeServerState {
 public:
  void Set(int64_t version, std::vector<pipelines_v1::Pipeline> pipelines,
           std::vector<pipelines_v1::FieldDefinition> fields) {
    absl::MutexLock lock(&mu_);
    version_ = version;
    pipelines_ = std::move(pipelines);
    fields_ = std::move(fields);
  }
  void FailNextLists(int count) {
    absl::MutexLock lock(&mu_);
    failures_left_ = count;
  }

  grpc::Status GetConfigVersion(pipelines_v1::ConfigVersion* response) {
    absl::MutexLock lock(&mu_);
    response->set_version(version_);
    return grpc::Status::OK;
  }
  // One item per page, so every list takes several pages.
  grpc::Status ListPipelines(const pipelines_v1::ListPipelinesRequest& request,
                             pipelines_v1::ListPipelinesResponse* response) {
    absl::MutexLock lock(&mu_);
    if (failures_left_ > 0) {
      --failures_left_;
      return grpc::Status(grpc::StatusCode::INTERNAL, "injected");
    }
    EXPECT_TRUE(request.include_stages());
    const size_t index = PageIndex(request.page_token());
    if (index < pipelines_.size()) {
      *response->add_pipelines() = pipelines_[index];
    }
    if (index + 1 < pipelines_.size()) {
      response->set_next_page_token(std::to_string(index + 1));
    }
    return grpc::Status::OK;
  }
  grpc::Status ListFields(const pipelines_v1::ListFieldsRequest& request,
                          pipelines_v1::ListFieldsResponse* response) {
    absl::MutexLock lock(&mu_);
    const size_t index = PageIndex(request.page_token());
    if (index < fields_.size()) *response->add_fields() = fields_[index];
    if (index + 1 < fields_.size()) {
      response->set_next_page_token(std::to_string(index + 1));
    }
    return grpc::Status::OK;
  }

 private:
  static size_t PageIndex(const std::string& token) {
    return token.empty() ? 0 : std::stoul(token);
  }

  absl::Mutex mu_;
  int64_t version_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<pipelines_v1::Pipeline> pipelines_ ABSL_GUARDED_BY(mu_);
  std::vector<pipelines_v1::FieldDefinition> fields_ ABSL_GUARDED_BY(mu_);
  int failures_left_ ABSL_GUARDED_BY(mu_) = 0;
};

pipelines_v1::FieldDefinition Field(const std::string& code) {
  pipelines_v1::FieldDefinition field;
  field.set_code(code);
  field.set_type(pipelines_v1::FIELD_TYPE_STRING);
  return field;
}

class GrpcPipelineClientMockTest : public ::testing::Test {
 protected:
  void SetUp() override { common::SetMinLogLevel(common::LogLevel::kError); }

  static GrpcPipelineClientOptions Options() {
    GrpcPipelineClientOptions options;
    options.jwt_secret = kSecret;
    options.service_name = "deals";
    options.poll_interval = absl::Milliseconds(100);
    options.start_timeout = absl::Seconds(1);
    options.page_size = 7;
    return options;
  }

  void MakeClient(const GrpcPipelineClientOptions& options = Options()) {
    auto pipelines =
        std::make_unique<StrictMock<pipelines_v1::MockPipelinesServiceStub>>();
    auto fields =
        std::make_unique<StrictMock<pipelines_v1::MockDealFieldsServiceStub>>();
    auto access =
        std::make_unique<StrictMock<pipelines_v1::MockAccessServiceStub>>();
    pipelines_ = pipelines.get();
    fields_ = fields.get();
    access_ = access.get();
    client_ = std::make_unique<GrpcPipelineClient>(
        std::move(pipelines), std::move(fields), std::move(access), options);
  }

  // Routes the config RPCs to `server_`; the watch stream is unavailable
  // (every attempt ends at once with UNIMPLEMENTED) when `watch_versions`
  // is false, else each stream reports the current version once and ends.
  void ServeConfig(bool watch_versions) {
    EXPECT_CALL(*pipelines_, GetConfigVersion(_, _, _))
        .WillRepeatedly(
            Invoke([this](grpc::ClientContext*,
                          const pipelines_v1::GetConfigVersionRequest&,
                          pipelines_v1::ConfigVersion* response) {
              return server_.GetConfigVersion(response);
            }));
    EXPECT_CALL(*pipelines_, ListPipelines(_, _, _))
        .WillRepeatedly(
            Invoke([this](grpc::ClientContext*,
                          const pipelines_v1::ListPipelinesRequest& request,
                          pipelines_v1::ListPipelinesResponse* response) {
              EXPECT_EQ(request.page_size(), 7);
              return server_.ListPipelines(request, response);
            }));
    EXPECT_CALL(*fields_, ListFields(_, _, _))
        .WillRepeatedly(
            Invoke([this](grpc::ClientContext*,
                          const pipelines_v1::ListFieldsRequest& request,
                          pipelines_v1::ListFieldsResponse* response) {
              return server_.ListFields(request, response);
            }));
    EXPECT_CALL(*pipelines_, WatchConfigRaw(_, _))
        .WillRepeatedly(Invoke([this, watch_versions](
                                   grpc::ClientContext*,
                                   const pipelines_v1::WatchConfigRequest&) {
          auto* reader = new grpc::testing::MockClientReader<
              pipelines_v1::ConfigVersion>();
          if (watch_versions) {
            pipelines_v1::ConfigVersion current;
            static_cast<void>(server_.GetConfigVersion(&current));
            EXPECT_CALL(*reader, Read(_))
                .WillOnce(Invoke([current](pipelines_v1::ConfigVersion* out) {
                  *out = current;
                  return true;
                }))
                .WillRepeatedly(Return(false));
            EXPECT_CALL(*reader, Finish())
                .WillOnce(Return(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                              "server shutting down")));
          } else {
            EXPECT_CALL(*reader, Read(_)).WillRepeatedly(Return(false));
            EXPECT_CALL(*reader, Finish())
                .WillOnce(Return(
                    grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "no watch")));
          }
          return reader;
        }));
  }

  // Polls until `done` holds; false after `timeout`.
  template <typename Predicate>
  static bool WaitFor(Predicate done, absl::Duration timeout) {
    const absl::Time deadline = absl::Now() + timeout;
    while (!done()) {
      if (absl::Now() > deadline) return false;
      absl::SleepFor(absl::Milliseconds(5));
    }
    return true;
  }

  FakeServerState server_;
  StrictMock<pipelines_v1::MockPipelinesServiceStub>* pipelines_ = nullptr;
  StrictMock<pipelines_v1::MockDealFieldsServiceStub>* fields_ = nullptr;
  StrictMock<pipelines_v1::MockAccessServiceStub>* access_ = nullptr;
  std::unique_ptr<GrpcPipelineClient> client_;
};

// No default identity: a service that forgets to name itself is refused
// before any call, rather than calling as another service.
TEST(GrpcPipelineClientConnectTest, RequiresTheCallingServicesName) {
  EXPECT_THAT(
      GrpcPipelineClient::Connect("127.0.0.1:1", "", "secret",
                                  absl::Milliseconds(10)),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("service_name")));
}

TEST_F(GrpcPipelineClientMockTest, GetConfigBeforeStartIsEmptyNotNull) {
  MakeClient();
  ASSERT_NE(client_->GetConfig(), nullptr);
  EXPECT_EQ(client_->GetConfig()->version(), 0);
  EXPECT_TRUE(client_->GetConfig()->pipelines().empty());
}

TEST_F(GrpcPipelineClientMockTest,
       GetPermissionsSendsServiceTokenAndDeadlineThenServesFromCache) {
  MakeClient();
  EXPECT_CALL(*access_, GetEffectivePermissions(_, _, _))
      .WillOnce(
          Invoke([](grpc::ClientContext* context,
                    const pipelines_v1::GetEffectivePermissionsRequest& request,
                    pipelines_v1::EffectivePermissions* response) {
            EXPECT_EQ(request.user_id(), 7);
            const auto metadata = grpc::testing::ClientContextTestPeer(context)
                                      .GetSendInitialMetadata();
            auto it = metadata.find("authorization");
            EXPECT_NE(it, metadata.end());
            if (it != metadata.end()) {
              EXPECT_EQ(it->second.rfind("Bearer ", 0), 0u);
              absl::StatusOr<common::Principal> principal =
                  common::JwtVerifier(kSecret).Verify(it->second.substr(7),
                                                      absl::Now());
              EXPECT_TRUE(principal.ok()) << principal.status();
              if (principal.ok()) {
                EXPECT_EQ(principal->service, "deals");
              }
            }
            const auto left =
                context->deadline() - std::chrono::system_clock::now();
            EXPECT_GT(left, std::chrono::milliseconds(1500));
            EXPECT_LE(left, std::chrono::milliseconds(2000));
            response->set_user_id(7);
            response->set_config(true);
            response->set_config_version(0);  // the (empty) snapshot's version
            return grpc::Status::OK;
          }));

  ASSERT_OK_AND_ASSIGN(auto first, client_->GetPermissions(7));
  EXPECT_EQ(first->user_id(), 7);
  EXPECT_TRUE(first->config());
  ASSERT_OK_AND_ASSIGN(auto second, client_->GetPermissions(7));
  EXPECT_EQ(second.get(), first.get());
  EXPECT_EQ(client_->stats().permission_fetches, 1);
  EXPECT_EQ(client_->stats().permission_cache_hits, 1);
}

TEST_F(GrpcPipelineClientMockTest, GetPermissionsKeepsTheCodeAndNamesThePeer) {
  MakeClient();
  EXPECT_CALL(*access_, GetEffectivePermissions(_, _, _))
      .Times(2)
      .WillRepeatedly(Return(
          grpc::Status(grpc::StatusCode::UNAVAILABLE, "connection refused")));
  EXPECT_THAT(client_->GetPermissions(7),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr("pipeline-config: connection refused")));
  // A failure is not cached.
  EXPECT_THAT(client_->GetPermissions(7),
              StatusIs(absl::StatusCode::kUnavailable));
}

TEST_F(GrpcPipelineClientMockTest, GetPermissionsRejectsNonPositiveUsers) {
  MakeClient();
  EXPECT_THAT(
      client_->GetPermissions(0),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("user_id")));
  EXPECT_THAT(client_->GetPermissions(-3),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(GrpcPipelineClientMockTest, PermissionCacheDropsTheLeastRecentlyUsed) {
  GrpcPipelineClientOptions options = Options();
  options.max_cached_users = 2;
  MakeClient(options);
  std::vector<int64_t> fetched;
  EXPECT_CALL(*access_, GetEffectivePermissions(_, _, _))
      .WillRepeatedly(Invoke(
          [&fetched](
              grpc::ClientContext*,
              const pipelines_v1::GetEffectivePermissionsRequest& request,
              pipelines_v1::EffectivePermissions* response) {
            fetched.push_back(request.user_id());
            response->set_user_id(request.user_id());
            return grpc::Status::OK;
          }));
  for (int64_t user : {1, 2, 1, 3, 1, 3, 2}) {
    ASSERT_OK(client_->GetPermissions(user));
  }
  // 2 was the least recently used when 3 came in.
  EXPECT_THAT(fetched, ::testing::ElementsAre(1, 2, 3, 2));
}

TEST_F(GrpcPipelineClientMockTest,
       PermissionsOfAnotherConfigVersionAreNotCached) {
  MakeClient();
  EXPECT_CALL(*access_, GetEffectivePermissions(_, _, _))
      .Times(2)
      .WillRepeatedly(
          Invoke([](grpc::ClientContext*,
                    const pipelines_v1::GetEffectivePermissionsRequest&,
                    pipelines_v1::EffectivePermissions* response) {
            response->set_config_version(9);  // newer than the snapshot (0)
            return grpc::Status::OK;
          }));
  ASSERT_OK(client_->GetPermissions(7));
  ASSERT_OK(client_->GetPermissions(7));
}

TEST_F(GrpcPipelineClientMockTest, StartFailsWithUnavailableWhenUnreachable) {
  MakeClient();
  EXPECT_CALL(*pipelines_, GetConfigVersion(_, _, _))
      .WillOnce(Invoke([](grpc::ClientContext* context,
                          const pipelines_v1::GetConfigVersionRequest&,
                          pipelines_v1::ConfigVersion*) {
        const auto left =
            context->deadline() - std::chrono::system_clock::now();
        EXPECT_GT(left, std::chrono::milliseconds(500));  // start_timeout 1 s
        return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                            "Deadline Exceeded");
      }));
  EXPECT_THAT(client_->Start(),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr("pipeline-config: not reachable within 1s")));
  EXPECT_EQ(client_->GetConfig()->version(), 0);
}

TEST_F(GrpcPipelineClientMockTest, StartReturnsOtherErrorsAsReceived) {
  MakeClient();
  EXPECT_CALL(*pipelines_, GetConfigVersion(_, _, _))
      .WillOnce(Return(
          grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "bad signature")));
  // About this service's credentials, so not the caller's UNAUTHENTICATED.
  EXPECT_THAT(client_->Start(),
              StatusIs(absl::StatusCode::kInternal,
                       HasSubstr("pipeline-config refused this service's "
                                 "credentials (UNAUTHENTICATED: bad "
                                 "signature)")));
}

TEST_F(GrpcPipelineClientMockTest, StartLoadsEveryPage) {
  server_.Set(5, {DefaultPipelineProto(0), DefaultPipelineProto(3, "Partners")},
              {Field("UF_CRM_A"), Field("UF_CRM_B"), Field("UF_CRM_C")});
  MakeClient();
  ServeConfig(/*watch_versions=*/true);
  ASSERT_OK(client_->Start());
  const auto config = client_->GetConfig();
  EXPECT_EQ(config->version(), 5);
  EXPECT_EQ(config->pipelines().size(), 2u);
  ASSERT_NE(config->FindStage(3, "C3:WON"), nullptr);
  EXPECT_EQ(config->fields().size(), 3u);
  EXPECT_NE(config->FindField("UF_CRM_C"), nullptr);
  EXPECT_THAT(client_->Start(),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  client_->Stop();
}

TEST_F(GrpcPipelineClientMockTest, PollsTheVersionWhileTheWatchIsUnavailable) {
  server_.Set(5, {DefaultPipelineProto(0)}, {});
  MakeClient();
  ServeConfig(/*watch_versions=*/false);
  ASSERT_OK(client_->Start());
  EXPECT_EQ(client_->GetConfig()->version(), 5);

  server_.Set(6, {DefaultPipelineProto(0), DefaultPipelineProto(4, "New")}, {});
  const absl::Time changed = absl::Now();
  ASSERT_TRUE(WaitFor([&] { return client_->GetConfig()->version() == 6; },
                      absl::Seconds(5)));
  // poll_interval is 100 ms here.
  EXPECT_LT(absl::Now() - changed, absl::Seconds(1));
  EXPECT_NE(client_->GetConfig()->FindPipeline(4), nullptr);
  EXPECT_FALSE(client_->watching());
  EXPECT_GT(client_->stats().version_polls, 0);

  const absl::Time stop = absl::Now();
  client_->Stop();
  EXPECT_LT(absl::Now() - stop, absl::Seconds(1));
}

TEST_F(GrpcPipelineClientMockTest, AFailedReloadIsRetried) {
  server_.Set(5, {DefaultPipelineProto(0)}, {});
  MakeClient();
  ServeConfig(/*watch_versions=*/true);
  ASSERT_OK(client_->Start());

  server_.FailNextLists(2);
  server_.Set(6, {DefaultPipelineProto(0), DefaultPipelineProto(4, "New")}, {});
  ASSERT_TRUE(WaitFor([&] { return client_->GetConfig()->version() == 6; },
                      absl::Seconds(5)));
  EXPECT_GE(client_->stats().reload_failures, 1);
  EXPECT_NE(client_->GetConfig()->FindPipeline(4), nullptr);
  client_->Stop();
}

}  // namespace
}  // namespace crm::common
