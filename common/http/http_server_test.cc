#include "common/http/http_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "common/metrics/metrics.h"
#include "common/status/status_matchers.h"
#include "httplib.h"

namespace crm::common {
namespace {

using ::crm::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::Pair;
using ::testing::UnorderedElementsAre;

constexpr char kHost[] = "127.0.0.1";

std::unique_ptr<httplib::Client> Connect(int port) {
  auto client = std::make_unique<httplib::Client>(kHost, port);
  client->set_connection_timeout(2, 0);
  client->set_read_timeout(5, 0);
  return client;
}

// Binds and listens on a free loopback port without SO_REUSEPORT; returns the
// fd and stores the port.
int ListenOnFreePort(int* port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::listen(fd, 4) != 0) {
    ::close(fd);
    return -1;
  }
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  *port = ntohs(addr.sin_port);
  return fd;
}

class HttpServerTest : public ::testing::Test {
 protected:
  void StartServer() {
    absl::StatusOr<int> port = server_.Start(kHost, 0);
    ASSERT_TRUE(port.ok()) << port.status();
    ASSERT_GT(*port, 0);
    port_ = *port;
    client_ = Connect(port_);
  }

  MetricsRegistry registry_;
  HttpServer server_{registry_};
  int port_ = 0;
  std::unique_ptr<httplib::Client> client_;
};

TEST_F(HttpServerTest, ServesMetrics) {
  registry_.RecordRpc("/crm.deals.v1.DealsService/GetDeal", 0, 0.002);
  registry_.SetGauge("crm_outbox_lag", "Outbox lag.", 3);
  ASSERT_NO_FATAL_FAILURE(StartServer());

  auto res = client_->Get("/metrics");
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->get_header_value("Content-Type"), "text/plain; version=0.0.4");
  EXPECT_EQ(res->body, registry_.RenderPrometheus());
  EXPECT_THAT(
      res->body,
      HasSubstr(
          "# TYPE crm_grpc_server_handled_total counter\n"
          "crm_grpc_server_handled_total{grpc_service=\"crm.deals.v1."
          "DealsService\",grpc_method=\"GetDeal\",grpc_code=\"OK\"} 1\n"));
  EXPECT_THAT(res->body,
              HasSubstr("# TYPE crm_grpc_server_handling_seconds histogram\n"));
  EXPECT_THAT(res->body, HasSubstr("\ncrm_outbox_lag 3\n"));

  // Rendered per scrape.
  registry_.RecordRpc("/crm.deals.v1.DealsService/GetDeal", 5, 0.002);
  res = client_->Get("/metrics");
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_THAT(
      res->body,
      HasSubstr("crm_grpc_server_errors_total{grpc_service=\"crm.deals.v1."
                "DealsService\",grpc_method=\"GetDeal\",grpc_code=\"NOT_"
                "FOUND\"} 1\n"));
  EXPECT_THAT(
      res->body,
      HasSubstr("crm_grpc_server_handling_seconds_count{grpc_service=\"crm."
                "deals.v1.DealsService\",grpc_method=\"GetDeal\"} 2\n"));
}

TEST_F(HttpServerTest, HealthzFollowsSetHealthy) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  auto res = client_->Get("/healthz");
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->body, "ok");

  server_.SetHealthy(false);
  res = client_->Get("/healthz");
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 503);
  EXPECT_EQ(res->body, "not serving");

  server_.SetHealthy(true);
  res = client_->Get("/healthz");
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 200);
}

TEST_F(HttpServerTest, UnknownPathsAre404) {
  server_.HandlePost("/hook", [](const HttpServer::Request&) {
    return HttpServer::Response{};
  });
  ASSERT_NO_FATAL_FAILURE(StartServer());
  for (const char* path : {"/nope", "/metricsx", "/healthz/x", "/hook"}) {
    auto res = client_->Get(path);
    ASSERT_TRUE(res) << httplib::to_string(res.error());
    EXPECT_EQ(res->status, 404) << path;
    EXPECT_EQ(res->body, "not found") << path;
  }
  for (const char* path : {"/nope", "/metrics", "/hook/x", "/hoo"}) {
    auto res = client_->Post(path, "x", "text/plain");
    ASSERT_TRUE(res) << httplib::to_string(res.error());
    EXPECT_EQ(res->status, 404) << path;
  }
}

TEST_F(HttpServerTest, PostRoutesReceiveTheRequest) {
  absl::Mutex mu;
  std::vector<HttpServer::Request> seen;
  server_.HandlePost("/webhooks/stripe",
                     [&](const HttpServer::Request& request) {
                       absl::MutexLock lock(&mu);
                       seen.push_back(request);
                       return HttpServer::Response{202, R"({"accepted":true})",
                                                   "application/json"};
                     });
  ASSERT_NO_FATAL_FAILURE(StartServer());

  auto res =
      client_->Post("/webhooks/stripe?event=charge&event=other&id=7",
                    httplib::Headers{{"X-Signature", "t=1,v1=abc"}},
                    R"({"type":"charge.succeeded"})", "application/json");
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 202);
  EXPECT_EQ(res->body, R"({"accepted":true})");
  EXPECT_EQ(res->get_header_value("Content-Type"), "application/json");

  absl::MutexLock lock(&mu);
  ASSERT_EQ(seen.size(), 1u);
  const HttpServer::Request& request = seen[0];
  EXPECT_EQ(request.method, "POST");
  EXPECT_EQ(request.path, "/webhooks/stripe");
  EXPECT_EQ(request.body, R"({"type":"charge.succeeded"})");
  EXPECT_THAT(request.query,
              UnorderedElementsAre(Pair("event", "charge"), Pair("id", "7")));
  ASSERT_EQ(request.headers.count("x-signature"), 1u);
  EXPECT_EQ(request.headers.find("x-signature")->second, "t=1,v1=abc");
  ASSERT_EQ(request.headers.count("content-type"), 1u);
  EXPECT_EQ(request.headers.find("content-type")->second, "application/json");
  EXPECT_EQ(request.headers.count("X-Signature"), 0u);
}

TEST_F(HttpServerTest, ExactBeatsPrefixAndLongestPrefixWins) {
  const auto reply = [](std::string name) {
    return [name](const HttpServer::Request& request) {
      return HttpServer::Response{200, absl::StrCat(name, " ", request.path)};
    };
  };
  server_.HandlePost("/webhooks/*", reply("any"));
  server_.HandlePost("/webhooks/github/*", reply("github"));
  server_.HandlePost("/webhooks/github/ping", reply("ping"));
  ASSERT_NO_FATAL_FAILURE(StartServer());
  // Routes may be added and replaced while serving.
  server_.HandlePost("/late", reply("late"));
  server_.HandlePost("/webhooks/github/ping", reply("ping2"));

  const std::vector<std::pair<std::string, std::string>> cases = {
      {"/webhooks/", "any /webhooks/"},
      {"/webhooks/stripe", "any /webhooks/stripe"},
      {"/webhooks/github/push", "github /webhooks/github/push"},
      {"/webhooks/github/ping", "ping2 /webhooks/github/ping"},
      {"/late", "late /late"},
  };
  for (const auto& [path, want] : cases) {
    auto res = client_->Post(path, "", "text/plain");
    ASSERT_TRUE(res) << httplib::to_string(res.error());
    EXPECT_EQ(res->status, 200) << path;
    EXPECT_EQ(res->body, want);
    EXPECT_EQ(res->get_header_value("Content-Type"), "text/plain");
  }
  auto res = client_->Post("/webhooks", "", "text/plain");
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 404);
}

TEST_F(HttpServerTest, LimitsBodySize) {
  std::atomic<int> calls{0};
  std::atomic<size_t> last_size{0};
  server_.HandlePost("/upload", [&](const HttpServer::Request& request) {
    ++calls;
    last_size = request.body.size();
    return HttpServer::Response{};
  });
  ASSERT_NO_FATAL_FAILURE(StartServer());

  auto res = client_->Post(
      "/upload", std::string(HttpServer::kMaxBodyBytes, 'a'), "text/plain");
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(last_size.load(), HttpServer::kMaxBodyBytes);

  res = client_->Post(
      "/upload", std::string(HttpServer::kMaxBodyBytes + 1, 'a'), "text/plain");
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 413);
  EXPECT_EQ(calls.load(), 1);
}

TEST_F(HttpServerTest, ThrowingHandlerGives500) {
  server_.HandlePost("/boom",
                     [](const HttpServer::Request&) -> HttpServer::Response {
                       throw std::runtime_error("secret detail");
                     });
  ASSERT_NO_FATAL_FAILURE(StartServer());
  auto res = client_->Post("/boom", "", "text/plain");
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 500);
  EXPECT_EQ(res->body, "internal error");
  for (const auto& [name, value] : res->headers) {
    EXPECT_THAT(value, ::testing::Not(HasSubstr("secret"))) << name;
  }
}

TEST_F(HttpServerTest, ConcurrentScrapes) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      auto client = Connect(port_);
      for (int i = 0; i < 25; ++i) {
        registry_.RecordRpc("/crm.a.v1.A/B", 0, 0.001);
        auto res = client->Get(i % 2 == 0 ? "/metrics" : "/healthz");
        if (res && res->status == 200) ++ok;
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(ok.load(), 100);
}

TEST(HttpServerLifecycleTest, StopIsIdempotentAndAnotherInstanceCanStart) {
  MetricsRegistry registry;
  HttpServer first(registry);
  absl::StatusOr<int> first_port = first.Start(kHost, 0);
  ASSERT_TRUE(first_port.ok()) << first_port.status();
  ASSERT_TRUE(Connect(*first_port)->Get("/healthz"));
  first.Stop();
  first.Stop();
  auto res = Connect(*first_port)->Get("/healthz");
  EXPECT_FALSE(res);

  // Another instance can take over the very same port right away.
  HttpServer second(registry);
  absl::StatusOr<int> second_port = second.Start(kHost, *first_port);
  ASSERT_TRUE(second_port.ok()) << second_port.status();
  EXPECT_EQ(*second_port, *first_port);
  res = Connect(*second_port)->Get("/healthz");
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 200);

  // And a stopped server can be started again.
  absl::StatusOr<int> again = first.Start(kHost, 0);
  ASSERT_TRUE(again.ok()) << again.status();
  res = Connect(*again)->Get("/metrics");
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 200);
}

TEST(HttpServerLifecycleTest, PortInUseIsUnavailable) {
  MetricsRegistry registry;
  HttpServer first(registry);
  absl::StatusOr<int> port = first.Start(kHost, 0);
  ASSERT_TRUE(port.ok()) << port.status();

  HttpServer second(registry);
  EXPECT_THAT(second.Start(kHost, *port),
              StatusIs(absl::StatusCode::kUnavailable));
  // The failed instance is still usable.
  absl::StatusOr<int> other = second.Start(kHost, 0);
  ASSERT_TRUE(other.ok()) << other.status();
  EXPECT_NE(*other, *port);

  int raw_port = 0;
  const int fd = ListenOnFreePort(&raw_port);
  ASSERT_GE(fd, 0);
  HttpServer third(registry);
  EXPECT_THAT(third.Start(kHost, raw_port),
              StatusIs(absl::StatusCode::kUnavailable));
  ::close(fd);

  // The first server kept serving.
  auto res = Connect(*port)->Get("/healthz");
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 200);
}

TEST(HttpServerLifecycleTest, RejectsDoubleStartAndBadPorts) {
  MetricsRegistry registry;
  HttpServer server(registry);
  EXPECT_THAT(server.Start(kHost, -1),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(server.Start(kHost, 65536),
              StatusIs(absl::StatusCode::kInvalidArgument));
  ASSERT_TRUE(server.Start(kHost, 0).ok());
  EXPECT_THAT(server.Start(kHost, 0),
              StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST(HttpServerLifecycleTest,
     DestructorStopsAndStopRightAfterStartDoesNotHang) {
  MetricsRegistry registry;
  int port = 0;
  {
    HttpServer server(registry);
    absl::StatusOr<int> bound = server.Start(kHost, 0);
    ASSERT_TRUE(bound.ok()) << bound.status();
    port = *bound;
  }
  EXPECT_FALSE(Connect(port)->Get("/healthz"));

  for (int i = 0; i < 20; ++i) {
    HttpServer server(registry);
    ASSERT_TRUE(server.Start(kHost, 0).ok());
    server.Stop();
  }
}

}  // namespace
}  // namespace crm::common
