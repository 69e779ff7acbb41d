#include "services/automation/outbound/smtp_sender.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "common/status/status_matchers.h"
#include "common/testing/temp_dir.h"

#ifndef CRM_SMTP_SINK_SCRIPT
#error "CRM_SMTP_SINK_SCRIPT must name smtp_sink.py"
#endif

namespace crm::automation {
namespace {

using ::crm::testing::IsOk;
using ::crm::testing::StatusIs;
using ::testing::HasSubstr;

// A port that was free a moment ago (the sink binds it right after).
int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  close(fd);
  return port;
}

bool ReadFile(const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::ostringstream ss;
  ss << in.rdbuf();
  *out = ss.str();
  return true;
}

// The Python SMTP sink as a child process, for the whole suite.
class SmtpSenderTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new crm::testing::TempDir();
    // The port was free a moment ago; if something took it before the sink
    // bound it, the sink exits and another port is tried.
    for (int attempt = 0; attempt < 3 && !started_; ++attempt) {
      port_ = FreePort();
      const std::string port_text = std::to_string(port_);
      pid_ = fork();
      if (pid_ == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        execl("/usr/bin/python3", "python3", CRM_SMTP_SINK_SCRIPT,
              port_text.c_str(), dir_->path().c_str(),
              static_cast<char*>(nullptr));
        _exit(127);
      }
      const auto deadline =
          std::chrono::steady_clock::now() + std::chrono::seconds(10);
      std::string ready;
      while (!ReadFile(dir_->path() + "/ready", &ready) &&
             std::chrono::steady_clock::now() < deadline) {
        int status = 0;
        if (waitpid(pid_, &status, WNOHANG) == pid_) {
          pid_ = -1;
          break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
      started_ = !ready.empty();
    }
  }

  static void TearDownTestSuite() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      int status = 0;
      for (int i = 0; i < 200 && waitpid(pid_, &status, WNOHANG) == 0; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
      if (waitpid(pid_, &status, WNOHANG) == 0) {
        kill(pid_, SIGKILL);
        waitpid(pid_, &status, 0);
      }
    }
    delete dir_;
    dir_ = nullptr;
  }

  void SetUp() override {
    ASSERT_TRUE(started_) << "SMTP sink (python3-aiosmtpd) did not start";
  }

  static SmtpServer Server() {
    return SmtpServer{"127.0.0.1", port_, absl::Seconds(2)};
  }

  // The n-th received message (1-based) and its envelope.
  static std::string Message(int n) {
    std::string text;
    EXPECT_TRUE(ReadFile(absl::StrCat(dir_->path(), "/", n, ".eml"), &text));
    return text;
  }
  static std::string Envelope(int n) {
    std::string text;
    EXPECT_TRUE(ReadFile(absl::StrCat(dir_->path(), "/", n, ".env"), &text));
    return text;
  }
  static int Received() {
    int n = 0;
    std::string ignored;
    while (ReadFile(absl::StrCat(dir_->path(), "/", n + 1, ".eml"), &ignored)) {
      ++n;
    }
    return n;
  }

  static SmtpMail Mail() {
    SmtpMail mail;
    mail.from = "crm@crm.local";
    mail.to = "anna@example.com";
    mail.subject = "Deal Fish & Chips won";
    mail.text_body = "Hello Anna,\nthe deal is won.\n.\nBye";
    mail.message_id = MakeMessageId("rule-7/run-42", "crm.local");
    return mail;
  }

  static crm::testing::TempDir* dir_;
  static int port_;
  static pid_t pid_;
  static bool started_;
};

crm::testing::TempDir* SmtpSenderTest::dir_ = nullptr;
int SmtpSenderTest::port_ = 0;
pid_t SmtpSenderTest::pid_ = -1;
bool SmtpSenderTest::started_ = false;

TEST(MakeMessageIdTest, IsStableAndSafe) {
  EXPECT_EQ(MakeMessageId("rule-7/run-42", "crm.local"),
            "<rule-7-run-42@crm.local>");
  EXPECT_EQ(MakeMessageId("a b<c>", "x.y"), "<a-b-c-@x.y>");
}

TEST_F(SmtpSenderTest, DeliversSubjectBodyAndMessageId) {
  const int before = Received();
  ASSERT_THAT(SendSmtpMail(Server(), Mail()), IsOk());
  ASSERT_EQ(Received(), before + 1);
  const std::string message = Message(before + 1);
  EXPECT_THAT(message, HasSubstr("Subject: Deal Fish & Chips won\r\n"));
  EXPECT_THAT(message, HasSubstr("Message-ID: <rule-7-run-42@crm.local>\r\n"));
  EXPECT_THAT(message, HasSubstr("From: <crm@crm.local>\r\n"));
  EXPECT_THAT(message, HasSubstr("To: <anna@example.com>\r\n"));
  // Dot-stuffing is undone by the server: the lone "." line survives.
  EXPECT_THAT(message,
              HasSubstr("\r\n\r\nHello Anna,\r\nthe deal is won.\r\n.\r\nBye"));
  EXPECT_EQ(Envelope(before + 1), "crm@crm.local\nanna@example.com");
}

TEST_F(SmtpSenderTest, EncodesNonAsciiSubject) {
  const int before = Received();
  SmtpMail mail = Mail();
  mail.subject = "Сделка выиграна";
  ASSERT_THAT(SendSmtpMail(Server(), mail), IsOk());
  EXPECT_THAT(
      Message(before + 1),
      HasSubstr(
          "Subject: =?UTF-8?B?0KHQtNC10LvQutCwINCy0YvQuNCz0YDQsNC90LA=?="));
}

TEST_F(SmtpSenderTest, RejectedRecipientIsFailedPrecondition) {
  SmtpMail mail = Mail();
  mail.to = "reject@example.com";
  EXPECT_THAT(
      SendSmtpMail(Server(), mail),
      StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("550")));
}

TEST_F(SmtpSenderTest, ConnectionRefusedIsUnavailable) {
  SmtpServer server = Server();
  server.port = FreePort();
  EXPECT_THAT(SendSmtpMail(server, Mail()),
              StatusIs(absl::StatusCode::kUnavailable));
}

TEST(SmtpSenderValidationTest, RejectsMalformedInput) {
  const SmtpServer server{"127.0.0.1", 1, absl::Milliseconds(200)};
  SmtpMail mail;
  mail.from = "crm@crm.local";
  mail.to = "anna@example.com";
  mail.message_id = "<x@crm.local>";
  SmtpMail bad = mail;
  bad.to = "anna@example.com>\r\nRCPT TO:<eve@evil.com";
  EXPECT_THAT(SendSmtpMail(server, bad),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("to")));
  bad = mail;
  bad.from = "no-at-sign";
  EXPECT_THAT(SendSmtpMail(server, bad),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("from")));
  bad = mail;
  bad.message_id = "x@crm.local";
  EXPECT_THAT(
      SendSmtpMail(server, bad),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("message_id")));
  EXPECT_THAT(SendSmtpMail({"", 25, absl::Seconds(1)}, mail),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("host")));
  EXPECT_THAT(SendSmtpMail({"127.0.0.1", 70000, absl::Seconds(1)}, mail),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("port")));
}

}  // namespace
}  // namespace crm::automation
