// Shared pieces of the deals end-to-end tests: a fixture that runs the real
// crm-pipeline-config, crm-deals and crm-test-event-sink binaries on temp
// dirs, a DealsService client with a token, and polling of what the sink
// applied.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "grpcpp/channel.h"
#include "grpcpp/support/status.h"
#include "gtest/gtest.h"

#include "crm/deals/v1/deals_service.grpc.pb.h"

#include "common/testing/temp_dir.h"
#include "tests/e2e/event_sink_fixture.h"
#include "tests/e2e/pipeline_config_fixture.h"
#include "tests/e2e/service_process.h"

namespace crm::testing {

namespace deals_v1 = ::crm::deals::v1;

// The stages of the default pipeline 0, in order.
inline constexpr const char* kPipeline0Stages[] = {
    "NEW",       "PREPARATION",   "PREPAYMENT_INVOICE",
    "EXECUTING", "FINAL_INVOICE", "WON",
    "LOSE",      "APOLOGY"};
// How long the relay may take to deliver what the tests wait for. Generous:
// ctest runs two tests at once on two cores.
inline constexpr absl::Duration kDeliveryTimeout = absl::Seconds(30);

// DealsService calls with `authorization: Bearer <token>` and a deadline.
class DealsClient {
 public:
  // Default token: user 1, an administrator by --admin_users=1.
  explicit DealsClient(const std::shared_ptr<grpc::Channel>& channel,
                       std::string token = UserToken(1));

  grpc::Status Create(const deals_v1::Deal& deal, deals_v1::Deal* out,
                      const std::string& request_id = "") const;
  grpc::Status Get(int64_t deal_id, deals_v1::Deal* out) const;
  grpc::Status Move(int64_t deal_id, const std::string& stage_id,
                    deals_v1::Deal* out) const;
  grpc::Status UpdateTitle(int64_t deal_id, const std::string& title,
                           deals_v1::Deal* out) const;
  grpc::Status Delete(int64_t deal_id) const;

  deals_v1::DealsService::Stub& stub() const { return *stub_; }
  void Prepare(grpc::ClientContext* context,
               absl::Duration timeout = kCallTimeout) const;

 private:
  std::string token_;
  std::unique_ptr<deals_v1::DealsService::Stub> stub_;
};

struct DealsOptions {
  // 0 = any free port.
  int port = 0;
  // "127.0.0.1:<port>" of pipeline-config; required.
  std::string pipeline_config_addr;
  // --subscribers value ("name=host:port,..."); empty = none.
  std::string subscribers;
  bool sync_writes = false;
  std::vector<std::string> extra_args;
};

// Fixture: a temp dir with one data dir per service and the sink's files;
// the processes' output goes to log files there, and their tails are printed
// when a test fails.
class DealsE2eTest : public ::testing::Test {
 protected:
  void TearDown() override;

  // Start and wait until SERVING; nullptr (with a test failure) otherwise.
  std::unique_ptr<ServiceProcess> StartPipelineConfig(
      std::vector<std::string> extra_args = {});
  std::unique_ptr<ServiceProcess> StartDeals(const DealsOptions& options);
  // pipeline-config with --deals_addr, then deals on the port picked for it
  // in advance (each needs the other's address). Both null, with a test
  // failure, when either does not start.
  void StartLinkedPipelineConfigAndDeals(
      std::unique_ptr<ServiceProcess>* config,
      std::unique_ptr<ServiceProcess>* deals);
  // The sink on sink_files(); the files persist across restarts.
  std::unique_ptr<ServiceProcess> StartSink(int port = 0);

  // "sink=127.0.0.1:<port>".
  static std::string SinkSubscriber(int port);

  const SinkFiles& sink_files() const { return sink_files_; }
  const std::string& deals_data_dir() const { return deals_data_; }
  // The test's temp dir (data dirs and logs live here).
  const std::string& work_dir() const { return temp_.path(); }

  // Another file whose tail TearDown prints when the test failed (the logs
  // of processes a derived fixture starts).
  void DumpOnFailure(std::string path) {
    extra_logs_.push_back(std::move(path));
  }

  // Polls the sink's out file until `done` holds for its events or `timeout`
  // passes; returns the last events read (check `done` again to assert).
  std::vector<SinkEvent> WaitForSink(
      const std::function<bool(const std::vector<SinkEvent>&)>& done,
      absl::Duration timeout = kDeliveryTimeout);

  // Closes nothing itself: the caller drops its channels first (see
  // kShutdownTimeout). Expects a clean exit within `timeout`.
  static void ExpectGracefulExit(ServiceProcess& process,
                                 absl::Duration timeout);

 private:
  TempDir temp_;
  std::string pipeline_config_data_ = temp_.path() + "/pipeline-config";
  std::string deals_data_ = temp_.path() + "/deals";
  SinkFiles sink_files_{temp_.path()};
  std::string pipeline_config_log_ = temp_.path() + "/pipeline-config.log";
  std::string deals_log_ = temp_.path() + "/deals.log";
  std::vector<std::string> extra_logs_;
  bool sink_started_ = false;
};

// Checks that `events` are exactly the sequences 1..n of shard 0, in order,
// each event id once.
::testing::AssertionResult GapFreeFromOne(const std::vector<SinkEvent>& events);

}  // namespace crm::testing
