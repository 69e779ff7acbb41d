#include "services/automation/outbound/http_sender.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "common/http/http_server.h"
#include "common/metrics/metrics.h"
#include "common/status/status_matchers.h"
#include "services/automation/outbound/signing.h"

namespace crm::automation {
namespace {

using ::crm::common::HttpServer;
using ::crm::testing::StatusIs;
using ::testing::HasSubstr;

std::string Header(const HttpServer::Request& request,
                   const std::string& name) {
  auto it = request.headers.find(name);
  return it == request.headers.end() ? "" : it->second;
}

class HttpSenderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_.HandlePost("/*", [this](const HttpServer::Request& request) {
      absl::MutexLock lock(&mu_);
      requests_.push_back(request);
      HttpServer::Response response;
      if (request.path == "/fail") response.status = 500;
      if (request.path == "/gone") response.status = 410;
      if (request.path == "/slow") {
        std::this_thread::sleep_for(std::chrono::milliseconds(400));
      }
      response.body = "ack";
      return response;
    });
    ASSERT_OK_AND_ASSIGN(port_, server_.Start("127.0.0.1", 0));
  }

  std::string Url(const std::string& path) const {
    return absl::StrCat("http://127.0.0.1:", port_, path);
  }

  std::vector<HttpServer::Request> Requests() {
    absl::MutexLock lock(&mu_);
    return requests_;
  }

  crm::common::MetricsRegistry registry_;
  HttpServer server_{registry_};
  int port_ = 0;
  absl::Mutex mu_;
  std::vector<HttpServer::Request> requests_;
};

TEST_F(HttpSenderTest, PostsSignedJsonWithHeaders) {
  const std::string body = R"({"deal_id":1025,"title":"Fish & Chips"})";
  const std::string ts = "1700000000";
  HttpPost post;
  post.url = Url("/hooks/crm");
  post.body = body;
  post.headers = {{kTimestampHeader, ts},
                  {kSignatureHeader, SignWebhook("whsec", ts, body)},
                  {kIdempotencyKeyHeader, "run-42"}};
  post.timeout = absl::Seconds(2);
  ASSERT_OK_AND_ASSIGN(HttpResult result, SendHttpPost(post));
  EXPECT_EQ(result.status_code, 200);
  EXPECT_EQ(result.body, "ack");

  std::vector<HttpServer::Request> got = Requests();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].path, "/hooks/crm");
  EXPECT_EQ(got[0].body, body);
  EXPECT_EQ(Header(got[0], "content-type"), "application/json");
  EXPECT_EQ(Header(got[0], "idempotency-key"), "run-42");
  EXPECT_EQ(Header(got[0], "x-crm-timestamp"), ts);
  EXPECT_TRUE(VerifyWebhookSignature("whsec", Header(got[0], "x-crm-timestamp"),
                                     got[0].body,
                                     Header(got[0], "x-crm-signature")));
  EXPECT_EQ(Header(got[0], "expect"), "");
}

TEST_F(HttpSenderTest, PostsFormBody) {
  HttpPost post;
  post.url = Url("/sms");
  post.content_type = kFormContentType;
  post.body = FormEncode({{"to", "+49 151 0000"}, {"text", "Hi & bye"}});
  post.timeout = absl::Seconds(2);
  ASSERT_OK_AND_ASSIGN(HttpResult result, SendHttpPost(post));
  EXPECT_EQ(result.status_code, 200);
  std::vector<HttpServer::Request> got = Requests();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].body, "to=%2B49%20151%200000&text=Hi%20%26%20bye");
  EXPECT_EQ(Header(got[0], "content-type"),
            "application/x-www-form-urlencoded");
}

TEST_F(HttpSenderTest, ClientErrorsAreReturnedAsStatusCodes) {
  HttpPost post;
  post.url = Url("/gone");
  post.timeout = absl::Seconds(2);
  ASSERT_OK_AND_ASSIGN(HttpResult result, SendHttpPost(post));
  EXPECT_EQ(result.status_code, 410);
}

TEST_F(HttpSenderTest, ServerErrorIsUnavailable) {
  HttpPost post;
  post.url = Url("/fail");
  post.timeout = absl::Seconds(2);
  EXPECT_THAT(SendHttpPost(post),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("500")));
}

TEST_F(HttpSenderTest, SlowServerIsDeadlineExceeded) {
  HttpPost post;
  post.url = Url("/slow");
  post.timeout = absl::Milliseconds(100);
  EXPECT_THAT(SendHttpPost(post),
              StatusIs(absl::StatusCode::kDeadlineExceeded));
}

TEST_F(HttpSenderTest, ConnectionRefusedIsUnavailable) {
  server_.Stop();
  HttpPost post;
  post.url = Url("/hooks");
  post.timeout = absl::Seconds(1);
  EXPECT_THAT(SendHttpPost(post), StatusIs(absl::StatusCode::kUnavailable));
}

TEST_F(HttpSenderTest, PublicOnlyRefusesLocalAddressesWithoutConnecting) {
  HttpPost post;
  post.timeout = absl::Seconds(2);
  post.public_addresses_only = true;
  for (const std::string& url :
       {Url("/hook"), absl::StrCat("http://localhost:", port_, "/hook")}) {
    post.url = url;
    EXPECT_THAT(
        SendHttpPost(post),
        StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("private")))
        << url;
  }
  EXPECT_TRUE(Requests().empty());
  post.public_addresses_only = false;
  post.url = Url("/hook");
  ASSERT_OK(SendHttpPost(post).status());
  EXPECT_EQ(Requests().size(), 1u);
}

TEST(HttpSenderAddressTest, ClassifiesAddressRanges) {
  auto v4 = [](const char* text) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    EXPECT_EQ(inet_pton(AF_INET, text, &a.sin_addr), 1) << text;
    return IsNonPublicAddress(reinterpret_cast<const sockaddr*>(&a));
  };
  auto v6 = [](const char* text) {
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    EXPECT_EQ(inet_pton(AF_INET6, text, &a.sin6_addr), 1) << text;
    return IsNonPublicAddress(reinterpret_cast<const sockaddr*>(&a));
  };
  for (const char* ip :
       {"127.0.0.1", "10.1.2.3", "172.16.0.1", "172.31.255.1", "192.168.1.1",
        "169.254.169.254", "100.64.0.1", "0.0.0.0", "224.0.0.1",
        "255.255.255.255", "198.18.0.1", "240.0.0.1", "192.0.0.8"}) {
    EXPECT_TRUE(v4(ip)) << ip;
  }
  for (const char* ip : {"8.8.8.8", "172.32.0.1", "192.169.0.1", "1.1.1.1"})
    EXPECT_FALSE(v4(ip)) << ip;
  for (const char* ip :
       {"::1", "::", "fe80::1", "fd00::1", "ff02::1", "::ffff:10.0.0.1",
        "64:ff9b::a00:1", "2002:a00:1::1"}) {
    EXPECT_TRUE(v6(ip)) << ip;
  }
  for (const char* ip : {"2001:4860:4860::8888", "::ffff:8.8.8.8"})
    EXPECT_FALSE(v6(ip)) << ip;
}

TEST(HttpSenderValidationTest, RejectsBadUrlsAndHeaders) {
  HttpPost post;
  post.timeout = absl::Milliseconds(200);
  for (const char* url : {"", "not a url", "ftp://127.0.0.1/x",
                          "file:///etc/passwd", "http://", "gopher://x"}) {
    post.url = url;
    EXPECT_THAT(SendHttpPost(post),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("url")))
        << url;
  }
  post.url = "http://127.0.0.1:1/x";
  post.headers = {{"X-Evil", "a\r\nInjected: 1"}};
  EXPECT_THAT(SendHttpPost(post), StatusIs(absl::StatusCode::kInvalidArgument,
                                           HasSubstr("header")));
  post.headers = {{"Bad:Name", "v"}};
  EXPECT_THAT(SendHttpPost(post), StatusIs(absl::StatusCode::kInvalidArgument));
  post.headers.clear();
  post.timeout = absl::ZeroDuration();
  EXPECT_THAT(SendHttpPost(post), StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace crm::automation
