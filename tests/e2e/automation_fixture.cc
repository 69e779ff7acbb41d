#include "tests/e2e/automation_fixture.h"

#include <sys/stat.h>

#include <cerrno>
#include <chrono>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"

#ifndef CRM_AUTOMATION_BINARY
#error "CRM_AUTOMATION_BINARY must name the crm-automation binary"
#endif
#ifndef CRM_SMTP_SINK_SCRIPT
#error \
    "CRM_SMTP_SINK_SCRIPT must name services/automation/outbound/smtp_sink.py"
#endif

namespace crm::testing {
namespace {

// Debian's interpreter, which has python3-aiosmtpd (a python3 earlier on
// PATH may not).
constexpr char kPython[] = "/usr/bin/python3";

// The value of header `name` in the header block `head` ("Name: value"
// lines), "" when absent. Folded lines are not joined (ours never fold).
std::string HeaderIn(const std::string& head, const std::string& name) {
  for (absl::string_view line : absl::StrSplit(head, "\r\n")) {
    const size_t colon = line.find(':');
    if (colon == absl::string_view::npos) continue;
    if (absl::EqualsIgnoreCase(line.substr(0, colon), name)) {
      return std::string(absl::StripAsciiWhitespace(line.substr(colon + 1)));
    }
  }
  return "";
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string FormUnescape(absl::string_view text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '+') {
      out.push_back(' ');
    } else if (text[i] == '%' && i + 2 < text.size() &&
               HexValue(text[i + 1]) >= 0 && HexValue(text[i + 2]) >= 0) {
      out.push_back(static_cast<char>(HexValue(text[i + 1]) * 16 +
                                      HexValue(text[i + 2])));
      i += 2;
    } else {
      out.push_back(text[i]);
    }
  }
  return out;
}

}  // namespace

bool WaitUntil(const std::function<bool()>& done, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    if (done()) return true;
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(kPollEvery);
  }
}

std::map<std::string, std::string> ParseForm(const std::string& body) {
  std::map<std::string, std::string> fields;
  for (absl::string_view pair : absl::StrSplit(body, '&', absl::SkipEmpty())) {
    const size_t eq = pair.find('=');
    const std::string key = FormUnescape(pair.substr(0, eq));
    const std::string value = eq == absl::string_view::npos
                                  ? std::string()
                                  : FormUnescape(pair.substr(eq + 1));
    fields.emplace(key, value);
  }
  return fields;
}

// ---------------------------------------------------------------- HTTP

std::string ReceivedRequest::Header(const std::string& name) const {
  auto it = headers.find(absl::AsciiStrToLower(name));
  return it == headers.end() ? "" : it->second;
}

HttpReceiver::HttpReceiver() {
  for (const char* path : {"/sms", "/webhook"}) {
    server_.HandlePost(path, [this](const common::HttpServer::Request& r) {
      return Handle(r);
    });
  }
}

HttpReceiver::~HttpReceiver() { server_.Stop(); }

absl::Status HttpReceiver::Start() {
  absl::StatusOr<int> port = server_.Start("127.0.0.1", 0);
  if (!port.ok()) return port.status();
  port_ = *port;
  return absl::OkStatus();
}

std::string HttpReceiver::Url(const std::string& path) const {
  return absl::StrCat("http://127.0.0.1:", port_, path);
}

void HttpReceiver::AnswerNext(const std::string& path,
                              std::vector<int> statuses) {
  absl::MutexLock lock(&mu_);
  planned_[path].insert(planned_[path].end(), statuses.begin(), statuses.end());
}

std::vector<ReceivedRequest> HttpReceiver::Received(
    const std::string& path) const {
  absl::MutexLock lock(&mu_);
  std::vector<ReceivedRequest> out;
  for (const ReceivedRequest& request : requests_) {
    if (request.path == path) out.push_back(request);
  }
  return out;
}

common::HttpServer::Response HttpReceiver::Handle(
    const common::HttpServer::Request& request) {
  common::HttpServer::Response response;
  response.content_type = "application/json";
  absl::MutexLock lock(&mu_);
  std::deque<int>& planned = planned_[request.path];
  if (!planned.empty()) {
    response.status = planned.front();
    planned.pop_front();
  }
  response.body = response.status == 200 ? R"({"ok":true})"
                                         : R"({"error":"planned failure"})";
  requests_.push_back(
      {request.path, request.headers, request.body, response.status});
  return response;
}

// ---------------------------------------------------------------- SMTP

std::string ReceivedMail::Header(const std::string& name) const {
  const size_t end = raw.find("\r\n\r\n");
  return HeaderIn(raw.substr(0, end), name);
}

std::string ReceivedMail::Body() const {
  const size_t end = raw.find("\r\n\r\n");
  return end == std::string::npos ? "" : raw.substr(end + 4);
}

absl::StatusOr<std::unique_ptr<SmtpSink>> SmtpSink::Start(
    const std::string& dir, const std::string& log_file) {
  if (mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return absl::InternalError(absl::StrCat("mkdir ", dir));
  }
  absl::Status last = absl::UnknownError("not started");
  // The port was free a moment ago; if something took it before the sink
  // bound it, the sink exits and another port is tried.
  for (int attempt = 0; attempt < 3; ++attempt) {
    absl::StatusOr<int> port = PickFreePort();
    if (!port.ok()) return port.status();
    ProcessOptions options;
    options.binary = kPython;
    options.args = {CRM_SMTP_SINK_SCRIPT, absl::StrCat(*port), dir};
    options.output_file = log_file;
    absl::StatusOr<std::unique_ptr<Process>> process = Process::Start(options);
    if (!process.ok()) return process.status();
    const std::string ready = dir + "/ready";
    const bool up = WaitUntil(
        [&] {
          return !ReadFileOrEmpty(ready).empty() || !(*process)->Running();
        },
        absl::Seconds(20));
    if (up && (*process)->Running()) {
      return std::unique_ptr<SmtpSink>(
          new SmtpSink(std::move(process).value(), dir, *port));
    }
    last = absl::UnavailableError(
        absl::StrCat("smtp_sink.py on port ", *port,
                     (*process)->Running() ? " did not get ready"
                                           : " exited before listening",
                     "; output:\n", ReadFileOrEmpty(log_file)));
  }
  return last;
}

std::vector<ReceivedMail> SmtpSink::Mails() const {
  // Files appear by rename, .env before .eml: a present .eml is complete.
  std::vector<ReceivedMail> mails;
  for (int n = 1;; ++n) {
    const std::string base = absl::StrCat(dir_, "/", n);
    struct stat info;
    if (stat((base + ".eml").c_str(), &info) != 0) break;
    mails.push_back(
        {ReadFileOrEmpty(base + ".eml"), ReadFileOrEmpty(base + ".env")});
  }
  return mails;
}

// ---------------------------------------------------------------- Clients

AutomationClient::AutomationClient(
    const std::shared_ptr<grpc::Channel>& channel, std::string token)
    : token_(std::move(token)),
      stub_(automation_v1::AutomationService::NewStub(channel)) {}

void AutomationClient::Prepare(grpc::ClientContext* context) const {
  context->AddMetadata("authorization", "Bearer " + token_);
  context->set_deadline(std::chrono::system_clock::now() +
                        absl::ToChronoMilliseconds(kCallTimeout));
}

grpc::Status AutomationClient::CreateRule(const automation_v1::Rule& rule,
                                          automation_v1::Rule* out) const {
  automation_v1::CreateRuleRequest request;
  *request.mutable_rule() = rule;
  grpc::ClientContext context;
  Prepare(&context);
  return stub_->CreateRule(&context, request, out);
}

grpc::Status AutomationClient::CreateTrigger(
    const automation_v1::Trigger& trigger, automation_v1::Trigger* out) const {
  automation_v1::CreateTriggerRequest request;
  *request.mutable_trigger() = trigger;
  grpc::ClientContext context;
  Prepare(&context);
  return stub_->CreateTrigger(&context, request, out);
}

grpc::Status AutomationClient::ListTasks(
    int64_t deal_id, std::vector<automation_v1::Task>* out) const {
  out->clear();
  automation_v1::ListTasksRequest request;
  request.set_deal_id(deal_id);
  request.set_page_size(100);
  do {
    automation_v1::ListTasksResponse response;
    grpc::ClientContext context;
    Prepare(&context);
    grpc::Status status = stub_->ListTasks(&context, request, &response);
    if (!status.ok()) return status;
    out->insert(out->end(), response.tasks().begin(), response.tasks().end());
    request.set_page_token(response.next_page_token());
  } while (!request.page_token().empty());
  return grpc::Status::OK;
}

grpc::Status AutomationClient::ListRuns(
    int64_t deal_id, std::vector<automation_v1::Run>* out) const {
  out->clear();
  automation_v1::ListRunsRequest request;
  request.set_deal_id(deal_id);
  request.set_page_size(100);
  do {
    automation_v1::ListRunsResponse response;
    grpc::ClientContext context;
    Prepare(&context);
    grpc::Status status = stub_->ListRuns(&context, request, &response);
    if (!status.ok()) return status;
    out->insert(out->end(), response.runs().begin(), response.runs().end());
    request.set_page_token(response.next_page_token());
  } while (!request.page_token().empty());
  return grpc::Status::OK;
}

grpc::Status ListAllStageHistory(
    const DealsClient& deals, int64_t deal_id,
    std::vector<deals_v1::StageHistoryEntry>* out) {
  out->clear();
  deals_v1::ListStageHistoryRequest request;
  request.set_deal_id(deal_id);
  request.set_page_size(100);
  do {
    deals_v1::ListStageHistoryResponse response;
    grpc::ClientContext context;
    deals.Prepare(&context);
    grpc::Status status =
        deals.stub().ListStageHistory(&context, request, &response);
    if (!status.ok()) return status;
    out->insert(out->end(), response.entries().begin(),
                response.entries().end());
    request.set_page_token(response.next_page_token());
  } while (!request.page_token().empty());
  return grpc::Status::OK;
}

// ---------------------------------------------------------------- Fixture

void AutomationE2eTest::SetUp() {
  DealsE2eTest::SetUp();
  DumpOnFailure(automation_log_);
  DumpOnFailure(smtp_log_);
  ASSERT_TRUE(receiver_.Start().ok()) << "cannot start the HTTP receiver";
  absl::StatusOr<std::unique_ptr<SmtpSink>> smtp =
      SmtpSink::Start(work_dir() + "/mail", smtp_log_);
  ASSERT_TRUE(smtp.ok()) << "SMTP sink (python3-aiosmtpd): " << smtp.status();
  smtp_ = std::move(smtp).value();
}

void AutomationE2eTest::StartStack() {
  absl::StatusOr<int> port = PickFreePort();
  ASSERT_TRUE(port.ok()) << port.status();
  automation_port_ = *port;
  config_ = StartPipelineConfig();
  ASSERT_NE(config_, nullptr);
  DealsOptions options;
  options.pipeline_config_addr = config_->grpc_address();
  options.subscribers = absl::StrCat("automation=127.0.0.1:", automation_port_);
  deals_ = StartDeals(options);
  ASSERT_NE(deals_, nullptr);
  automation_ = StartAutomation();
  ASSERT_NE(automation_, nullptr);
}

std::unique_ptr<ServiceProcess> AutomationE2eTest::StartAutomation() {
  ServiceOptions options;
  options.binary = CRM_AUTOMATION_BINARY;
  options.work_dir = work_dir();
  options.grpc_port = automation_port_;
  options.output_file = automation_log_;
  options.start_timeout = kStartTimeout;
  // Every flag whose CRM_* environment fallback could change what the tests
  // see is given explicitly.
  options.args = {"--data_dir=" + automation_data_,
                  absl::StrCat("--jwt_secret=", kE2eJwtSecret),
                  "--admin_users=1",
                  "--listen_host=127.0.0.1",
                  "--insecure_dev_auth=false",
                  "--seed_demo=false",
                  "--sync_writes=false",
                  "--log_level=info",
                  "--shutdown_grace_seconds=10",
                  "--pipeline_config_addr=" + config_->grpc_address(),
                  "--deals_addr=" + deals_->grpc_address(),
                  "--smtp_host=127.0.0.1",
                  absl::StrCat("--smtp_port=", smtp_->port()),
                  absl::StrCat("--mail_from=", kMailFrom),
                  "--sms_gateway_url=" + receiver_.Url("/sms"),
                  "--time_zone=UTC",
                  "--allow_private_webhooks=true",
                  "--test_clock=true",
                  "--max_attempts=5",
                  "--retry_base_ms=50",
                  "--retry_max_ms=400",
                  "--loop_max_depth=10",
                  "--loop_window_seconds=60",
                  "--workers=4"};
  absl::StatusOr<std::unique_ptr<ServiceProcess>> automation =
      ServiceProcess::Start(options);
  if (!automation.ok()) {
    ADD_FAILURE() << "cannot start crm-automation: " << automation.status();
    return nullptr;
  }
  return std::move(automation).value();
}

void AutomationE2eTest::AdvanceClock(int64_t seconds) {
  ASSERT_NE(automation_, nullptr);
  absl::StatusOr<HttpResponse> response =
      HttpPost(automation_->http_port(),
               absl::StrCat("/test/clock?advance_seconds=", seconds), "");
  ASSERT_TRUE(response.ok()) << response.status();
  ASSERT_EQ(response->status, 200) << response->body;
}

}  // namespace crm::testing
