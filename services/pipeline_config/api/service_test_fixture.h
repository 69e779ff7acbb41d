// Test-only: the three pipeline-config gRPC services (PipelinesService,
// DealFieldsService, AccessService) on a real in-process gRPC server over a
// real RocksDB store in a temporary directory, with stubs over a real channel
// and helpers to call them as a user, an administrator or a service.
//
//   TEST_F(PipelineConfigServiceTest, Example) {
//     v1::GetPipelineRequest request;
//     ASSERT_OK_AND_ASSIGN(v1::Pipeline p, Call(&PipelinesStub::GetPipeline,
//     request)); EXPECT_THAT(CallAs(UserToken(7),
//     &PipelinesStub::CreatePipeline, create),
//                 StatusIs(absl::StatusCode::kPermissionDenied));
//   }
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "gtest/gtest.h"

#include "crm/pipelines/v1/pipelines_service.grpc.pb.h"

#include "common/auth/auth.h"
#include "common/grpc/server_runner.h"
#include "common/metrics/metrics.h"
#include "common/pagination/page_token.h"
#include "common/testing/temp_dir.h"
#include "common/testing/test_tokens.h"
#include "services/pipeline_config/api/access_service_impl.h"
#include "services/pipeline_config/api/call_context.h"
#include "services/pipeline_config/api/fields_service_impl.h"
#include "services/pipeline_config/api/pipelines_service_impl.h"
#include "services/pipeline_config/clients/deal_counter.h"
#include "services/pipeline_config/domain/config_manager.h"
#include "services/pipeline_config/domain/version_notifier.h"
#include "services/pipeline_config/storage/config_store.h"

namespace crm::pipeline_config {

using PipelinesStub = v1::PipelinesService::Stub;
using FieldsStub = v1::DealFieldsService::Stub;
using AccessStub = v1::AccessService::Stub;

// A DealCounter whose answers a test sets. Until a count or an error is set
// it answers like NoDealsCounter (every pipeline and stage empty).
// Thread-safe.
class FakeDealCounter final : public DealCounter {
 public:
  void SetDealsInPipeline(int64_t count);
  void SetDealsInStage(int64_t count);
  // Every count fails with `status` (e.g. UNAVAILABLE); OK clears it.
  void SetError(absl::Status status);

  absl::StatusOr<int64_t> CountDealsInPipeline(
      int64_t pipeline_id, int64_t min_config_version) override;
  absl::StatusOr<int64_t> CountDealsInStage(
      int64_t pipeline_id, const std::string& stage_id,
      int64_t min_config_version) override;

 private:
  NoDealsCounter empty_;
  absl::Mutex mu_;
  std::optional<int64_t> pipeline_deals_ ABSL_GUARDED_BY(mu_);
  std::optional<int64_t> stage_deals_ ABSL_GUARDED_BY(mu_);
  absl::Status error_ ABSL_GUARDED_BY(mu_);
};

// Converts a status received by a client.
absl::Status FromGrpc(const grpc::Status& status);

class PipelineConfigServiceTest : public ::testing::Test {
 protected:
  // In ServiceDeps::admin_user_ids: an administrator without the admin claim.
  static constexpr int64_t kAdminUserId = 1;
  static constexpr char kSecret[] = "pipeline-config-api-test-secret";

  void SetUp() override;
  void TearDown() override;

  // Stops the server and reopens everything on the same RocksDB directory.
  void Restart();

  // --- Identities ----------------------------------------------------------
  // User kAdminUserId (an administrator through admin_user_ids).
  const std::string& AdminToken() const { return admin_token_; }
  // A user; `admin` sets the admin claim.
  std::string UserToken(int64_t user_id, bool admin = false) const;
  // A service identity.
  std::string ServiceToken(const std::string& service = "deals") const;
  // A user token that expired an hour ago.
  std::string ExpiredToken(int64_t user_id) const;
  // A user token signed with another secret.
  std::string WrongSignatureToken(int64_t user_id) const;

  // A client context with "authorization: Bearer <token>" (no header when
  // `token` is empty) and a 10 s deadline.
  static std::unique_ptr<grpc::ClientContext> MakeContext(
      const std::string& token);
  // The same with a raw authorization header value.
  static std::unique_ptr<grpc::ClientContext> MakeContextWithHeader(
      const std::string& authorization);

  // Expects every call, made with no token, a garbage token, an expired
  // token and a wrongly signed one, to be UNAUTHENTICATED. `rpcs` holds
  // (name, call-with-token) pairs.
  template <typename Rpcs>
  void ExpectBadTokensRefused(const Rpcs& rpcs) {
    crm::testing::ExpectBadTokensRefused(tokens_, kAdminUserId, rpcs);
  }

  // --- Stubs and calls -----------------------------------------------------
  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }
  PipelinesStub& pipelines() { return *pipelines_stub_; }
  FieldsStub& fields() { return *fields_stub_; }
  AccessStub& access() { return *access_stub_; }

  // Calls a unary RPC of one of the three stubs as `token`:
  //   CallAs(UserToken(5), &PipelinesStub::GetPipeline, request)
  template <typename Stub, typename Request, typename Response>
  absl::StatusOr<Response> CallAs(
      const std::string& token,
      grpc::Status (Stub::*method)(grpc::ClientContext*, const Request&,
                                   Response*),
      const Request& request) {
    auto context = MakeContext(token);
    return Invoke(context.get(), method, request);
  }

  // The same with a raw authorization header value (e.g. "Basic abc").
  template <typename Stub, typename Request, typename Response>
  absl::StatusOr<Response> CallWithHeader(
      const std::string& authorization,
      grpc::Status (Stub::*method)(grpc::ClientContext*, const Request&,
                                   Response*),
      const Request& request) {
    auto context = MakeContextWithHeader(authorization);
    return Invoke(context.get(), method, request);
  }

  // CallAs(AdminToken(), ...).
  template <typename Stub, typename Request, typename Response>
  absl::StatusOr<Response> Call(
      grpc::Status (Stub::*method)(grpc::ClientContext*, const Request&,
                                   Response*),
      const Request& request) {
    return CallAs(admin_token_, method, request);
  }

  // --- Shortcuts (as the administrator unless a token is given) -----------
  absl::StatusOr<v1::Pipeline> CreatePipeline(const std::string& name,
                                              int32_t sort = 0);
  absl::StatusOr<v1::Pipeline> GetPipeline(int64_t pipeline_id);
  absl::StatusOr<std::vector<v1::Stage>> ListStages(int64_t pipeline_id);
  // Just the ids, in order.
  std::vector<std::string> StageIds(int64_t pipeline_id);
  absl::StatusOr<v1::Stage> CreateStage(int64_t pipeline_id,
                                        const std::string& stage_id,
                                        v1::StageSemantics semantics,
                                        int32_t sort,
                                        const std::string& name = "Stage");
  absl::StatusOr<v1::FieldDefinition> CreateField(
      const std::string& code, v1::FieldType type,
      const std::vector<std::string>& options = {});
  absl::StatusOr<v1::Department> CreateDepartment(
      const std::string& name, int64_t parent_id = 0, int64_t head_user_id = 0,
      const std::vector<int64_t>& members = {});
  absl::StatusOr<v1::Role> CreateRole(const v1::Role& role);
  absl::StatusOr<v1::RoleAssignment> AssignToUser(int64_t role_id,
                                                  int64_t user_id);
  absl::StatusOr<v1::RoleAssignment> AssignToDepartment(
      int64_t role_id, int64_t department_id, bool include_subdepartments);
  // Creates a role with config = true and assigns it to the user. Returns
  // the role id (0 after a failure, which is also recorded).
  int64_t GrantConfig(int64_t user_id);
  absl::StatusOr<v1::EffectivePermissions> EffectivePermissionsOf(
      int64_t user_id);
  // GetConfigVersion as the administrator; -1 (and a failure) on error.
  int64_t ConfigVersion();

  // --- Internals tests may look at -----------------------------------------
  FakeDealCounter& deal_counter() { return deal_counter_; }
  VersionNotifier& notifier() { return *notifier_; }
  ConfigManager& manager() { return *manager_; }

 private:
  template <typename Stub>
  Stub& StubFor() {
    if constexpr (std::is_same_v<Stub, PipelinesStub>) {
      return *pipelines_stub_;
    } else if constexpr (std::is_same_v<Stub, FieldsStub>) {
      return *fields_stub_;
    } else {
      static_assert(std::is_same_v<Stub, AccessStub>,
                    "not a pipeline-config stub");
      return *access_stub_;
    }
  }

  template <typename Stub, typename Request, typename Response>
  absl::StatusOr<Response> Invoke(
      grpc::ClientContext* context,
      grpc::Status (Stub::*method)(grpc::ClientContext*, const Request&,
                                   Response*),
      const Request& request) {
    Response response;
    const grpc::Status status =
        (StubFor<Stub>().*method)(context, request, &response);
    if (!status.ok()) return FromGrpc(status);
    return response;
  }

  void StartService();
  void StopService();

  crm::testing::TempDir dir_;
  crm::testing::TestTokens tokens_{kSecret};
  std::string admin_token_;
  FakeDealCounter deal_counter_;
  common::Authenticator authenticator_{kSecret, /*insecure_dev_auth=*/false};
  common::PageTokenCodec page_tokens_{kSecret};
  common::MetricsRegistry metrics_;

  // Rebuilt by StartService().
  std::unique_ptr<ConfigStore> store_;
  std::unique_ptr<VersionNotifier> notifier_;
  std::unique_ptr<ConfigManager> manager_;
  std::unique_ptr<ServiceDeps> deps_;
  std::unique_ptr<PipelinesServiceImpl> pipelines_service_;
  std::unique_ptr<FieldsServiceImpl> fields_service_;
  std::unique_ptr<AccessServiceImpl> access_service_;
  std::unique_ptr<common::ServerRunner> runner_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<PipelinesStub> pipelines_stub_;
  std::unique_ptr<FieldsStub> fields_stub_;
  std::unique_ptr<AccessStub> access_stub_;
};

// Field mask from paths.
google::protobuf::FieldMask Mask(std::initializer_list<const char*> paths);

// Levels with every action at `level`.
v1::ActionLevels AllActions(v1::AccessLevel level);

}  // namespace crm::pipeline_config
