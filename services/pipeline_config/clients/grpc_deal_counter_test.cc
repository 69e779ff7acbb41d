#include "services/pipeline_config/clients/grpc_deal_counter.h"

#include "absl/strings/str_cat.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "gtest/gtest.h"

#include "common/auth/auth.h"
#include "common/status/status_matchers.h"

namespace crm::pipeline_config {
namespace {

namespace dv1 = ::crm::deals::v1;
using ::crm::testing::StatusIs;
using ::testing::HasSubstr;

constexpr char kSecret[] = "counter-test-secret";

// A deals stand-in on a real loopback port: answers CountDeals from a fixed
// table and records the caller's identity.
class FakeDeals final : public dv1::DealsService::CallbackService {
 public:
  grpc::ServerUnaryReactor* CountDeals(
      grpc::CallbackServerContext* context,
      const dv1::CountDealsRequest* request,
      dv1::CountDealsResponse* response) override {
    auto* reactor = context->DefaultReactor();
    common::Authenticator auth(kSecret, /*insecure_dev_auth=*/false);
    auto principal = auth.Authenticate(*context);
    if (!principal.ok()) {
      reactor->Finish(grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "no"));
      return reactor;
    }
    last_service = principal->service;
    last_stage = request->stage_id();
    last_min_version = request->min_config_version();
    response->set_count(request->stage_id().empty() ? 12 : 3);
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
  std::string last_service;
  std::string last_stage;
  int64_t last_min_version = 0;
};

class GrpcDealCounterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                             &port_);
    builder.RegisterService(&fake_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
  }
  void TearDown() override {
    if (server_ != nullptr) server_->Shutdown();
  }
  GrpcDealCounter Counter(const std::string& secret) {
    auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", port_),
                                       grpc::InsecureChannelCredentials());
    return GrpcDealCounter(dv1::DealsService::NewStub(channel), secret,
                           absl::Seconds(2));
  }

  FakeDeals fake_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
};

TEST_F(GrpcDealCounterTest, CountsAsTheServiceIdentity) {
  GrpcDealCounter counter = Counter(kSecret);
  EXPECT_EQ(counter.CountDealsInPipeline(3, 41).value(), 12);
  EXPECT_EQ(fake_.last_service, "pipeline-config");
  EXPECT_EQ(fake_.last_min_version, 41);
  EXPECT_EQ(counter.CountDealsInStage(3, "C3:NEW", 42).value(), 3);
  EXPECT_EQ(fake_.last_stage, "C3:NEW");
  EXPECT_EQ(fake_.last_min_version, 42);
}

TEST_F(GrpcDealCounterTest, FailuresRefuseTheCountAndSayWhose) {
  // Deals refusing our token is about this service, not the caller.
  EXPECT_THAT(Counter("wrong-secret").CountDealsInPipeline(3, 1),
              StatusIs(absl::StatusCode::kInternal,
                       HasSubstr("deals refused this service's credentials "
                                 "(UNAUTHENTICATED")));
  GrpcDealCounter counter = Counter(kSecret);
  server_->Shutdown();
  server_.reset();
  EXPECT_THAT(
      counter.CountDealsInStage(3, "C3:NEW", 1),
      StatusIs(absl::StatusCode::kUnavailable, HasSubstr("cannot count")));
}

}  // namespace
}  // namespace crm::pipeline_config
