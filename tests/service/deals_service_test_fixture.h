// Test-only: the deals service as production wires it, in the test's
// process: DealsServiceImpl over a real DealStore (RocksDB in a temporary
// directory) on a real gRPC server, reading its configuration and
// permissions through common::GrpcPipelineClient from the real pipeline-config
// service (also in process, on its own port). Tests change pipelines, roles
// and departments through pipeline-config's API and call deals as users,
// administrators or services.
//
//   TEST_F(DealsServiceTest, Example) {
//     ASSERT_OK_AND_ASSIGN(v1::Deal deal, CreateDeal(MakeDeal("Acme")));
//     EXPECT_THAT(CallAs(UserToken(7), &DealsStub::GetDeal, get),
//                 StatusIs(absl::StatusCode::kNotFound));
//   }
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "gtest/gtest.h"

#include "crm/deals/v1/deals_service.grpc.pb.h"
#include "crm/pipelines/v1/pipelines_service.grpc.pb.h"

#include "common/auth/auth.h"
#include "common/concurrency/worker_pool.h"
#include "common/grpc/server_runner.h"
#include "common/metrics/metrics.h"
#include "common/pagination/page_token.h"
#include "common/pipelines_client/grpc_pipeline_client.h"
#include "common/status/grpc_status.h"
#include "common/testing/temp_dir.h"
#include "common/testing/test_tokens.h"
#include "services/deals/api/deals_service_impl.h"
#include "services/deals/storage/deal_store.h"
#include "services/pipeline_config/testing/in_process_server.h"

namespace crm::deals {

namespace pv1 = ::crm::pipelines::v1;
using DealsStub = v1::DealsService::Stub;
using PipelinesStub = pv1::PipelinesService::Stub;
using FieldsStub = pv1::DealFieldsService::Stub;
using AccessStub = pv1::AccessService::Stub;

class DealsServiceTest : public ::testing::Test {
 protected:
  // An administrator of both services through their admin user lists.
  static constexpr int64_t kAdminUserId = 1;
  static constexpr char kSecret[] = "deals-api-test-secret";

  void SetUp() override;
  void TearDown() override;

  // Stops deals and reopens it on the same store (pipeline-config keeps
  // running).
  void RestartDeals();

  // --- Identities ----------------------------------------------------------
  const std::string& AdminToken() const { return admin_token_; }
  std::string UserToken(int64_t user_id, bool admin = false) const;
  std::string ServiceToken(const std::string& service = "automation") const;
  std::string ExpiredToken(int64_t user_id) const;
  std::string WrongSignatureToken(int64_t user_id) const;

  // Expects each call (name, call-with-token) to be UNAUTHENTICATED with no
  // token, a garbage token, an expired and a wrongly signed one.
  template <typename Rpcs>
  void ExpectBadTokensRefused(const Rpcs& rpcs) {
    crm::testing::ExpectBadTokensRefused(tokens_, kAdminUserId, rpcs);
  }

  // "authorization: Bearer <token>" (none when empty), 10 s deadline.
  static std::unique_ptr<grpc::ClientContext> MakeContext(
      const std::string& token);

  // --- Calls ---------------------------------------------------------------
  template <typename Stub, typename Request, typename Response>
  absl::StatusOr<Response> CallAs(
      const std::string& token,
      grpc::Status (Stub::*method)(grpc::ClientContext*, const Request&,
                                   Response*),
      const Request& request) {
    auto context = MakeContext(token);
    Response response;
    const grpc::Status status =
        (StubFor<Stub>().*method)(context.get(), request, &response);
    if (!status.ok()) return common::FromGrpcStatus(status, "");
    return response;
  }
  // As the administrator.
  template <typename Stub, typename Request, typename Response>
  absl::StatusOr<Response> Call(
      grpc::Status (Stub::*method)(grpc::ClientContext*, const Request&,
                                   Response*),
      const Request& request) {
    return CallAs(admin_token_, method, request);
  }

  DealsStub& deals() { return *deals_stub_; }
  PipelinesStub& pipelines() { return *pipelines_stub_; }
  FieldsStub& fields() { return *fields_stub_; }
  // The pool deals runs scans, batches and (with sync writes) writes on.
  common::WorkerPool& workers() { return *workers_; }
  AccessStub& access() { return *access_stub_; }

  // --- Deal shortcuts (as the administrator unless a token is given) ------
  static v1::Deal MakeDeal(const std::string& title, int64_t assignee_id = 0,
                           const std::string& amount = "",
                           const std::string& currency = "");
  absl::StatusOr<v1::Deal> CreateDeal(const v1::Deal& deal,
                                      const std::string& token = "");
  absl::StatusOr<v1::Deal> GetDeal(int64_t deal_id,
                                   const std::string& token = "");
  absl::StatusOr<v1::Deal> MoveStage(int64_t deal_id,
                                     const std::string& stage_id,
                                     const std::string& token = "");

  // --- Configuration shortcuts, through pipeline-config as the admin ------
  // Each waits until deals sees the resulting configuration version.
  absl::StatusOr<pv1::Pipeline> CreatePipeline(const std::string& name);
  absl::StatusOr<pv1::FieldDefinition> CreateField(
      const std::string& code, pv1::FieldType type, bool multiple = false,
      bool mandatory = false, const std::vector<std::string>& options = {});
  absl::StatusOr<pv1::Department> CreateDepartment(
      const std::string& name, int64_t parent_id,
      const std::vector<int64_t>& members);
  absl::StatusOr<pv1::Role> CreateRole(const pv1::Role& role);
  absl::Status AssignToUser(int64_t role_id, int64_t user_id);
  absl::Status AssignToDepartment(int64_t role_id, int64_t department_id,
                                  bool include_subdepartments);
  // A role where every action on every stage of `pipeline_id` has `level`,
  // transitions ANY, assigned to `user_id`. Returns the role.
  absl::StatusOr<pv1::Role> GrantUniform(int64_t user_id, int64_t pipeline_id,
                                         pv1::AccessLevel level);
  // Waits (up to 5 s) until deals' cached configuration has pipeline-config's
  // current version.
  void WaitForConfigSync();

  // --- Internals -----------------------------------------------------------
  DealStore& store() { return *store_; }
  pipeline_config::InProcessPipelineConfig& pipeline_config() {
    return *pipeline_config_;
  }
  common::GrpcPipelineClient& pipeline_client() { return *pipeline_client_; }
  // Events in the outbox from `from`.
  std::vector<v1::DealEvent> Events(int64_t from = 1);

 private:
  template <typename Stub>
  Stub& StubFor();

  void StartDeals();
  void StopDeals();

  crm::testing::TempDir dir_;
  crm::testing::TestTokens tokens_{kSecret};
  std::string admin_token_;
  std::unique_ptr<pipeline_config::InProcessPipelineConfig> pipeline_config_;
  std::unique_ptr<DealStore> store_;
  std::unique_ptr<common::GrpcPipelineClient> pipeline_client_;
  std::unique_ptr<common::Authenticator> authenticator_;
  std::unique_ptr<common::PageTokenCodec> page_tokens_;
  std::unique_ptr<common::WorkerPool> workers_;
  std::unique_ptr<DealsServiceImpl> service_;
  common::MetricsRegistry metrics_;
  std::unique_ptr<common::ServerRunner> runner_;
  std::shared_ptr<grpc::Channel> deals_channel_;
  std::shared_ptr<grpc::Channel> config_channel_;
  std::unique_ptr<DealsStub> deals_stub_;
  std::unique_ptr<PipelinesStub> pipelines_stub_;
  std::unique_ptr<FieldsStub> fields_stub_;
  std::unique_ptr<AccessStub> access_stub_;
};

template <>
inline DealsStub& DealsServiceTest::StubFor<DealsStub>() {
  return *deals_stub_;
}
template <>
inline PipelinesStub& DealsServiceTest::StubFor<PipelinesStub>() {
  return *pipelines_stub_;
}
template <>
inline FieldsStub& DealsServiceTest::StubFor<FieldsStub>() {
  return *fields_stub_;
}
template <>
inline AccessStub& DealsServiceTest::StubFor<AccessStub>() {
  return *access_stub_;
}

}  // namespace crm::deals
