#include "common/grpc/server_runner.h"

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"

#include "common/status/status_matchers.h"
#include "common/testing/temp_dir.h"
#include "httplib.h"

namespace crm::common {
namespace {

using ::testing::HasSubstr;

TEST(ServerRunnerTest, ServesHealthMetricsAndWritesPortFile) {
  crm::testing::TempDir dir;
  MetricsRegistry metrics;
  ServerOptions options;
  options.service_name = "test";
  options.port_file = dir.path() + "/ports";
  ServerRunner runner(options, metrics);
  ASSERT_OK(runner.Start());
  ASSERT_GT(runner.grpc_port(), 0);
  ASSERT_GT(runner.http_port(), 0);

  std::ifstream ports(options.port_file);
  int grpc_port = 0;
  int http_port = 0;
  ports >> grpc_port >> http_port;
  EXPECT_EQ(grpc_port, runner.grpc_port());
  EXPECT_EQ(http_port, runner.http_port());

  auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", grpc_port),
                                     grpc::InsecureChannelCredentials());
  auto health = grpc::health::v1::Health::NewStub(channel);
  grpc::ClientContext context;
  grpc::health::v1::HealthCheckRequest request;
  grpc::health::v1::HealthCheckResponse response;
  ASSERT_TRUE(health->Check(&context, request, &response).ok());
  EXPECT_EQ(response.status(), grpc::health::v1::HealthCheckResponse::SERVING);

  httplib::Client http("127.0.0.1", http_port);
  auto metrics_page = http.Get("/metrics");
  ASSERT_TRUE(metrics_page);
  EXPECT_EQ(metrics_page->status, 200);
  EXPECT_THAT(metrics_page->body, HasSubstr("grpc_method=\"Check\""));
  auto healthz = http.Get("/healthz");
  ASSERT_TRUE(healthz);
  EXPECT_EQ(healthz->status, 200);

  runner.Shutdown();
  grpc::ClientContext after_context;
  after_context.set_deadline(std::chrono::system_clock::now() +
                             std::chrono::seconds(2));
  EXPECT_FALSE(health->Check(&after_context, request, &response).ok());
}

TEST(ServerRunnerTest, BusyPortIsUnavailable) {
  MetricsRegistry metrics;
  ServerOptions first_options;
  first_options.http_port = -1;
  ServerRunner first(first_options, metrics);
  ASSERT_OK(first.Start());
  ServerOptions second_options;
  second_options.grpc_port = first.grpc_port();
  second_options.http_port = -1;
  ServerRunner second(second_options, metrics);
  EXPECT_THAT(second.Start(),
              crm::testing::StatusIs(absl::StatusCode::kUnavailable));
}

}  // namespace
}  // namespace crm::common
