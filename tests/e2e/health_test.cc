// Health and operator endpoints of crm-pipeline-config: the standard gRPC
// health service, HTTP /healthz and /metrics with per-method counts.
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"

#include "tests/e2e/pipeline_config_fixture.h"

namespace crm::testing {
namespace {

using ::grpc::health::v1::Health;
using ::grpc::health::v1::HealthCheckRequest;
using ::grpc::health::v1::HealthCheckResponse;
using PipelinesStub = v1::PipelinesService::Stub;

class HealthTest : public PipelineConfigTest {};

TEST_F(HealthTest, GrpcHealthCheckServing) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  auto health = Health::NewStub(server->NewChannel());

  grpc::ClientContext context;  // No token: health needs none.
  HealthCheckRequest request;
  HealthCheckResponse response;
  ASSERT_TRUE(IsOk(health->Check(&context, request, &response)));
  EXPECT_EQ(response.status(), HealthCheckResponse::SERVING);

  grpc::ClientContext unknown_context;
  request.set_service("no.such.Service");
  EXPECT_EQ(health->Check(&unknown_context, request, &response).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

// The sample line of a crm_grpc_server_* family for one method and code.
std::string CountLine(const std::string& family, const std::string& service,
                      const std::string& method, const std::string& code,
                      int count) {
  return absl::StrCat(family, "{grpc_service=\"", service, "\",grpc_method=\"",
                      method, "\",grpc_code=\"", code, "\"} ", count, "\n");
}

TEST_F(HealthTest, HttpHealthzAndMetrics) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  ASSERT_GT(server->http_port(), 0);

  absl::StatusOr<HttpResponse> healthz =
      HttpGet(server->http_port(), "/healthz");
  ASSERT_TRUE(healthz.ok()) << healthz.status();
  EXPECT_EQ(healthz->status, 200);
  EXPECT_EQ(healthz->body, "ok");

  {  // The clients close their connections before the SIGTERM at the end.
    Client client(server->NewChannel());
    v1::GetPipelineRequest get;
    v1::Pipeline pipeline;
    for (int i = 0; i < 3; ++i) {
      ASSERT_TRUE(
          IsOk(client.Call(&PipelinesStub::GetPipeline, get, &pipeline)));
    }
    v1::ListStagesRequest list;
    v1::ListStagesResponse stages;
    for (int i = 0; i < 2; ++i) {
      ASSERT_TRUE(IsOk(client.Call(&PipelinesStub::ListStages, list, &stages)));
    }
    get.set_pipeline_id(424242);
    EXPECT_EQ(
        client.Call(&PipelinesStub::GetPipeline, get, &pipeline).error_code(),
        grpc::StatusCode::NOT_FOUND);
    Client bad_token(server->NewChannel(), "not-a-token");
    EXPECT_EQ(bad_token.Call(&PipelinesStub::GetPipeline, get, &pipeline)
                  .error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
  }

  absl::StatusOr<HttpResponse> metrics =
      HttpGet(server->http_port(), "/metrics");
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  EXPECT_EQ(metrics->status, 200);
  EXPECT_TRUE(absl::StrContains(metrics->headers, "text/plain"))
      << metrics->headers;
  const std::string& text = metrics->body;
  const std::string kService = "crm.pipelines.v1.PipelinesService";
  const std::string kHandled = "crm_grpc_server_handled_total";
  const std::string kErrors = "crm_grpc_server_errors_total";
  for (const std::string& line :
       {CountLine(kHandled, kService, "GetPipeline", "OK", 3),
        CountLine(kHandled, kService, "GetPipeline", "NOT_FOUND", 1),
        CountLine(kHandled, kService, "GetPipeline", "UNAUTHENTICATED", 1),
        CountLine(kHandled, kService, "ListStages", "OK", 2),
        CountLine(kErrors, kService, "GetPipeline", "NOT_FOUND", 1),
        CountLine(kErrors, kService, "GetPipeline", "UNAUTHENTICATED", 1),
        absl::StrCat("crm_grpc_server_handling_seconds_count{grpc_service=\"",
                     kService, "\",grpc_method=\"GetPipeline\"} 5\n"),
        absl::StrCat("crm_grpc_server_handling_seconds_count{grpc_service=\"",
                     kService, "\",grpc_method=\"ListStages\"} 2\n")}) {
    EXPECT_TRUE(absl::StrContains(text, line)) << "missing: " << line;
  }
  // The health checks of the start-up poll are counted too.
  EXPECT_TRUE(absl::StrContains(
      text, "grpc_service=\"grpc.health.v1.Health\",grpc_method=\"Check\""))
      << text;
  EXPECT_FALSE(absl::StrContains(
      text, "grpc_method=\"ListStages\",grpc_code=\"NOT_FOUND\""));

  absl::StatusOr<HttpResponse> missing =
      HttpGet(server->http_port(), "/no-such-page");
  ASSERT_TRUE(missing.ok()) << missing.status();
  EXPECT_EQ(missing->status, 404);

  absl::StatusOr<ExitInfo> exit = server->Terminate(SIGTERM, kShutdownTimeout);
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_TRUE(exit->Success()) << exit->ToString();
}

}  // namespace
}  // namespace crm::testing
