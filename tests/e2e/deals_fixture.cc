#include "tests/e2e/deals_fixture.h"

#include <algorithm>
#include <chrono>
#include <iostream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "google/protobuf/empty.pb.h"

#ifndef CRM_DEALS_BINARY
#error "CRM_DEALS_BINARY must name the crm-deals binary"
#endif
#ifndef CRM_PIPELINE_CONFIG_BINARY
#error "CRM_PIPELINE_CONFIG_BINARY must name the crm-pipeline-config binary"
#endif
#ifndef CRM_EVENT_SINK_BINARY
#error "CRM_EVENT_SINK_BINARY must name the crm-test-event-sink binary"
#endif

namespace crm::testing {
namespace {

// The last `lines` lines of a file.
std::string Tail(const std::string& path, size_t lines) {
  const std::vector<std::string> all = ReadLines(path);
  const size_t from = all.size() > lines ? all.size() - lines : 0;
  return absl::StrJoin(all.begin() + static_cast<std::ptrdiff_t>(from),
                       all.end(), "\n");
}

std::unique_ptr<ServiceProcess> StartOrFail(const ServiceOptions& options,
                                            const std::string& log) {
  absl::StatusOr<std::unique_ptr<ServiceProcess>> service =
      ServiceProcess::Start(options);
  if (!service.ok()) {
    ADD_FAILURE() << "cannot start " << options.binary << ": "
                  << service.status() << "\n--- " << log << " (tail)\n"
                  << Tail(log, 40);
    return nullptr;
  }
  return std::move(service).value();
}

}  // namespace

DealsClient::DealsClient(const std::shared_ptr<grpc::Channel>& channel,
                         std::string token)
    : token_(std::move(token)),
      stub_(deals_v1::DealsService::NewStub(channel)) {}

void DealsClient::Prepare(grpc::ClientContext* context,
                          absl::Duration timeout) const {
  context->AddMetadata("authorization", "Bearer " + token_);
  context->set_deadline(std::chrono::system_clock::now() +
                        absl::ToChronoMilliseconds(timeout));
}

grpc::Status DealsClient::Create(const deals_v1::Deal& deal,
                                 deals_v1::Deal* out,
                                 const std::string& request_id) const {
  deals_v1::CreateDealRequest request;
  *request.mutable_deal() = deal;
  request.set_request_id(request_id);
  grpc::ClientContext context;
  Prepare(&context);
  return stub_->CreateDeal(&context, request, out);
}

grpc::Status DealsClient::Get(int64_t deal_id, deals_v1::Deal* out) const {
  deals_v1::GetDealRequest request;
  request.set_deal_id(deal_id);
  grpc::ClientContext context;
  Prepare(&context);
  return stub_->GetDeal(&context, request, out);
}

grpc::Status DealsClient::Move(int64_t deal_id, const std::string& stage_id,
                               deals_v1::Deal* out) const {
  deals_v1::MoveDealStageRequest request;
  request.set_deal_id(deal_id);
  request.set_stage_id(stage_id);
  grpc::ClientContext context;
  Prepare(&context);
  return stub_->MoveDealStage(&context, request, out);
}

grpc::Status DealsClient::UpdateTitle(int64_t deal_id, const std::string& title,
                                      deals_v1::Deal* out) const {
  deals_v1::UpdateDealRequest request;
  request.mutable_deal()->set_id(deal_id);
  request.mutable_deal()->set_title(title);
  request.mutable_update_mask()->add_paths("title");
  grpc::ClientContext context;
  Prepare(&context);
  return stub_->UpdateDeal(&context, request, out);
}

grpc::Status DealsClient::Delete(int64_t deal_id) const {
  deals_v1::DeleteDealRequest request;
  request.set_deal_id(deal_id);
  google::protobuf::Empty empty;
  grpc::ClientContext context;
  Prepare(&context);
  return stub_->DeleteDeal(&context, request, &empty);
}

void DealsE2eTest::TearDown() {
  if (!HasFailure()) return;
  // What the services said is usually the quickest way to the cause.
  std::vector<std::string> logs = {deals_log_, pipeline_config_log_};
  if (sink_started_) logs.push_back(sink_files_.log_file);
  logs.insert(logs.end(), extra_logs_.begin(), extra_logs_.end());
  for (const std::string& log : logs) {
    std::cerr << "--- " << log << " (tail)\n" << Tail(log, 60) << "\n";
  }
  if (!sink_started_) return;
  std::cerr << "--- sink refusals\n"
            << ReadFileOrEmpty(sink_files_.reject_file)
            << "--- sink: " << ReadLines(sink_files_.out_file).size()
            << " applied, " << ReadLines(sink_files_.dup_file).size()
            << " duplicates\n";
}

std::unique_ptr<ServiceProcess> DealsE2eTest::StartPipelineConfig(
    std::vector<std::string> extra_args) {
  ServiceOptions options;
  options.binary = CRM_PIPELINE_CONFIG_BINARY;
  options.work_dir = temp_.path();
  options.output_file = pipeline_config_log_;
  options.start_timeout = kStartTimeout;
  // Explicit values for the flags whose CRM_* environment fallback could
  // change what the tests see.
  options.args = {"--data_dir=" + pipeline_config_data_,
                  absl::StrCat("--jwt_secret=", kE2eJwtSecret),
                  "--listen_host=127.0.0.1",
                  "--admin_users=1",
                  "--insecure_dev_auth=false",
                  "--seed_demo=false",
                  "--sync_writes=false",
                  "--log_level=info"};
  options.args.insert(options.args.end(), extra_args.begin(), extra_args.end());
  return StartOrFail(options, pipeline_config_log_);
}

void DealsE2eTest::StartLinkedPipelineConfigAndDeals(
    std::unique_ptr<ServiceProcess>* config,
    std::unique_ptr<ServiceProcess>* deals) {
  const absl::StatusOr<int> deals_port = PickFreePort();
  ASSERT_TRUE(deals_port.ok()) << deals_port.status();
  *config = StartPipelineConfig(
      {absl::StrCat("--deals_addr=127.0.0.1:", *deals_port)});
  ASSERT_NE(*config, nullptr);
  DealsOptions options;
  options.port = *deals_port;
  options.pipeline_config_addr = (*config)->grpc_address();
  *deals = StartDeals(options);
  ASSERT_NE(*deals, nullptr);
  ASSERT_EQ((*deals)->grpc_port(), *deals_port);
}

std::unique_ptr<ServiceProcess> DealsE2eTest::StartDeals(
    const DealsOptions& deals) {
  ServiceOptions options;
  options.binary = CRM_DEALS_BINARY;
  options.work_dir = temp_.path();
  options.grpc_port = deals.port;
  options.output_file = deals_log_;
  options.start_timeout = kStartTimeout;
  options.args = {
      "--data_dir=" + deals_data_,
      absl::StrCat("--jwt_secret=", kE2eJwtSecret),
      "--admin_users=1",
      "--pipeline_config_addr=" + deals.pipeline_config_addr,
      "--subscribers=" + deals.subscribers,
      "--relay_max_backoff_ms=200",
      "--shard=0",
      deals.sync_writes ? "--sync_writes=true" : "--sync_writes=false",
      "--listen_host=127.0.0.1",
      "--insecure_dev_auth=false",
      "--seed_demo=false",
      "--event_retention_days=30",
      "--time_zone=UTC",
      "--shutdown_grace_seconds=10",
      "--log_level=info"};
  options.args.insert(options.args.end(), deals.extra_args.begin(),
                      deals.extra_args.end());
  return StartOrFail(options, deals_log_);
}

std::unique_ptr<ServiceProcess> DealsE2eTest::StartSink(int port) {
  sink_started_ = true;
  SinkOptions options;
  options.port = port;
  // The relay must call as a service identity signed with the shared secret.
  options.jwt_secret = kE2eJwtSecret;
  absl::StatusOr<std::unique_ptr<ServiceProcess>> sink =
      StartEventSink(CRM_EVENT_SINK_BINARY, sink_files_, options);
  if (!sink.ok()) {
    ADD_FAILURE() << "cannot start the event sink: " << sink.status() << "\n"
                  << Tail(sink_files_.log_file, 40);
    return nullptr;
  }
  return std::move(sink).value();
}

std::string DealsE2eTest::SinkSubscriber(int port) {
  return absl::StrCat("sink=127.0.0.1:", port);
}

std::vector<SinkEvent> DealsE2eTest::WaitForSink(
    const std::function<bool(const std::vector<SinkEvent>&)>& done,
    absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  std::vector<SinkEvent> events;
  while (true) {
    absl::StatusOr<std::vector<SinkEvent>> read =
        ReadSinkEvents(sink_files_.out_file);
    if (!read.ok()) {
      ADD_FAILURE() << read.status();
      return events;
    }
    events = std::move(read).value();
    if (done(events) || absl::Now() >= deadline) return events;
    absl::SleepFor(absl::Milliseconds(50));
  }
}

void DealsE2eTest::ExpectGracefulExit(ServiceProcess& process,
                                      absl::Duration timeout) {
  absl::StatusOr<ExitInfo> exit = process.Terminate(SIGTERM, timeout);
  ASSERT_TRUE(exit.ok()) << process.process().options().binary << ": "
                         << exit.status();
  EXPECT_TRUE(exit->Success())
      << process.process().options().binary << ": " << exit->ToString();
}

::testing::AssertionResult GapFreeFromOne(
    const std::vector<SinkEvent>& events) {
  for (size_t i = 0; i < events.size(); ++i) {
    const int64_t want = static_cast<int64_t>(i) + 1;
    if (events[i].sequence != want ||
        events[i].event_id != absl::StrCat("0-", want)) {
      return ::testing::AssertionFailure()
             << "event #" << i << " is " << events[i].event_id << " (sequence "
             << events[i].sequence << "), expected 0-" << want;
    }
  }
  return ::testing::AssertionSuccess();
}

}  // namespace crm::testing
