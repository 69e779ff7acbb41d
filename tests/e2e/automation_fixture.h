// Shared pieces of the automation end-to-end tests: the deals fixture plus
// the real crm-automation binary, the python3-aiosmtpd SMTP sink
// (services/automation/outbound/smtp_sink.py) run as a child process, and an
// HTTP receiver inside the test process that stands in for the SMS gateway
// and webhook endpoints.
//
//   TEST_F(AutomationE2eTest, Something) {
//     ASSERT_NO_FATAL_FAILURE(StartStack());
//     AutomationClient automation(automation_->NewChannel());
//     ... create rules, move deals through DealsClient(deals_->NewChannel())
//     EXPECT_TRUE(WaitUntil([&] { return smtp_->Mails().size() == 1; }));
//   }
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/channel.h"
#include "grpcpp/support/status.h"

#include "crm/automation/v1/automation_service.grpc.pb.h"

#include "common/http/http_server.h"
#include "common/metrics/metrics.h"
#include "tests/e2e/deals_fixture.h"
#include "tests/e2e/process.h"
#include "tests/e2e/service_process.h"

namespace crm::testing {

namespace automation_v1 = ::crm::automation::v1;

// How long a test waits for automation to do what it expects: events go
// through deals' relay, runs through the scheduler and outside calls.
// Generous: ctest runs two tests at once on two cores.
inline constexpr absl::Duration kAutomationTimeout = absl::Seconds(30);
// Between two looks while waiting.
inline constexpr absl::Duration kPollEvery = absl::Milliseconds(25);
// The sender address automation is started with (its domain ends the
// Message-ID of every email).
inline constexpr char kMailFrom[] = "crm@crm.test";

// Polls `done` every kPollEvery until it holds or `timeout` passes; returns
// its last answer.
bool WaitUntil(const std::function<bool()>& done,
               absl::Duration timeout = kAutomationTimeout);

// Decodes an application/x-www-form-urlencoded body ('+' and %XX); the first
// value wins for a repeated key.
std::map<std::string, std::string> ParseForm(const std::string& body);

// One POST the HTTP receiver got.
struct ReceivedRequest {
  std::string path;
  // Names lower-cased.
  std::multimap<std::string, std::string> headers;
  std::string body;
  // The status it was answered with.
  int answered = 0;

  // The first value of header `name` (any case), "" when absent.
  std::string Header(const std::string& name) const;
};

// common::HttpServer on 127.0.0.1:0 in the test process: records every POST
// to /sms and /webhook and answers 200, or the statuses planned with
// AnswerNext first.
class HttpReceiver {
 public:
  HttpReceiver();
  ~HttpReceiver();
  HttpReceiver(const HttpReceiver&) = delete;
  HttpReceiver& operator=(const HttpReceiver&) = delete;

  [[nodiscard]] absl::Status Start();
  int port() const { return port_; }
  // "http://127.0.0.1:<port><path>".
  std::string Url(const std::string& path) const;

  // The next POSTs to `path` are answered with `statuses`, in turn.
  void AnswerNext(const std::string& path, std::vector<int> statuses);
  // What came to `path`, in arrival order.
  std::vector<ReceivedRequest> Received(const std::string& path) const;

 private:
  common::HttpServer::Response Handle(
      const common::HttpServer::Request& request);

  common::MetricsRegistry metrics_;
  common::HttpServer server_{metrics_};
  int port_ = 0;
  mutable absl::Mutex mu_;
  std::vector<ReceivedRequest> requests_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::deque<int>> planned_ ABSL_GUARDED_BY(mu_);
};

// One message the SMTP sink accepted.
struct ReceivedMail {
  // The DATA as received (CRLF line ends, dot-stuffing undone).
  std::string raw;
  // MAIL FROM, then one RCPT TO per line.
  std::string envelope;

  // The value of header `name` (any case), "" when absent.
  std::string Header(const std::string& name) const;
  // Everything after the blank line that ends the headers.
  std::string Body() const;
};

// smtp_sink.py under /usr/bin/python3 (Debian's python3-aiosmtpd) as a child
// process on a free loopback port; every accepted message is a pair of
// files in its directory.
class SmtpSink {
 public:
  // Starts the sink with its files under `dir` (created) and output in
  // `log_file`; waits until it listens.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<SmtpSink>> Start(
      const std::string& dir, const std::string& log_file);

  int port() const { return port_; }
  // Every accepted message in arrival order.
  std::vector<ReceivedMail> Mails() const;

 private:
  SmtpSink(std::unique_ptr<Process> process, std::string dir, int port)
      : process_(std::move(process)), dir_(std::move(dir)), port_(port) {}

  std::unique_ptr<Process> process_;
  std::string dir_;
  int port_;
};

// AutomationService and the read calls of DealsService the checks need,
// with `authorization: Bearer <token>` and a deadline.
class AutomationClient {
 public:
  // Default token: user 1, an administrator by --admin_users=1.
  explicit AutomationClient(const std::shared_ptr<grpc::Channel>& channel,
                            std::string token = UserToken(1));

  grpc::Status CreateRule(const automation_v1::Rule& rule,
                          automation_v1::Rule* out) const;
  grpc::Status CreateTrigger(const automation_v1::Trigger& trigger,
                             automation_v1::Trigger* out) const;
  // Every task of the deal (all pages).
  grpc::Status ListTasks(int64_t deal_id,
                         std::vector<automation_v1::Task>* out) const;
  // The deal's run log, newest first (all pages).
  grpc::Status ListRuns(int64_t deal_id,
                        std::vector<automation_v1::Run>* out) const;

  automation_v1::AutomationService::Stub& stub() const { return *stub_; }

 private:
  void Prepare(grpc::ClientContext* context) const;

  std::string token_;
  std::unique_ptr<automation_v1::AutomationService::Stub> stub_;
};

// Every stage history entry of a deal, oldest first (all pages).
grpc::Status ListAllStageHistory(const DealsClient& deals, int64_t deal_id,
                                 std::vector<deals_v1::StageHistoryEntry>* out);

// Fixture: the deals fixture's temp dir, plus the SMTP sink and the HTTP
// receiver (started by SetUp) and crm-automation. The logs of the sink and
// of automation are printed when a test fails.
class AutomationE2eTest : public DealsE2eTest {
 protected:
  void SetUp() override;

  // Starts crm-pipeline-config, crm-deals delivering its events to
  // automation_port_ (picked here), then crm-automation on that port.
  // Fails the test (fatally) when a process does not come up.
  void StartStack();
  // crm-automation on automation_port_, pointed at config_, deals_, the SMTP
  // sink and the HTTP receiver; its data dir survives restarts. Null (with a
  // test failure) when it does not start.
  std::unique_ptr<ServiceProcess> StartAutomation();

  // POST /test/clock?advance_seconds=N on automation's HTTP port; expects
  // 200.
  void AdvanceClock(int64_t seconds);

  // Declared first: the processes below go before the receiver they call.
  HttpReceiver receiver_;
  std::unique_ptr<SmtpSink> smtp_;
  std::unique_ptr<ServiceProcess> config_;
  std::unique_ptr<ServiceProcess> deals_;
  std::unique_ptr<ServiceProcess> automation_;
  int automation_port_ = 0;

 private:
  std::string automation_data_ = work_dir() + "/automation";
  std::string automation_log_ = work_dir() + "/automation.log";
  std::string smtp_log_ = work_dir() + "/smtp-sink.log";
};

}  // namespace crm::testing
