// Process life of crm-pipeline-config: graceful shutdown on SIGTERM/SIGINT
// (also with an open WatchConfig stream), restarts on the same data dir, and
// the RocksDB lock that keeps a second process off a data dir in use.
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <future>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "grpcpp/support/sync_stream.h"
#include "gtest/gtest.h"

#include "tests/e2e/pipeline_config_fixture.h"

namespace crm::testing {
namespace {

using PipelinesStub = v1::PipelinesService::Stub;

class ShutdownTest : public PipelineConfigTest,
                     public ::testing::WithParamInterface<int> {};

INSTANTIATE_TEST_SUITE_P(Signals, ShutdownTest,
                         ::testing::Values(SIGTERM, SIGINT),
                         [](const ::testing::TestParamInfo<int>& param) {
                           return param.param == SIGTERM ? "Sigterm" : "Sigint";
                         });

TEST_P(ShutdownTest, ExitsZeroPromptly) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  {
    Client client(server->NewChannel());
    v1::GetPipelineRequest request;
    v1::Pipeline pipeline;
    ASSERT_TRUE(
        IsOk(client.Call(&PipelinesStub::GetPipeline, request, &pipeline)));
  }  // Closes the connection (see kShutdownTimeout).

  const absl::Time start = absl::Now();
  absl::StatusOr<ExitInfo> exit =
      server->Terminate(GetParam(), kShutdownTimeout);
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_TRUE(exit->Success()) << exit->ToString();
  std::cout << "exited " << absl::FormatDuration(absl::Now() - start)
            << " after the signal\n";
}

// Idle client connections (two channels that made a call and stay open) hold
// the exit up, but never past the shutdown grace, and the exit is still clean.
TEST_F(PipelineConfigTest, ShutdownWithIdleClientConnectionsEndsWithinGrace) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  Client first(server->NewChannel());
  Client second(server->NewChannel());
  v1::GetPipelineRequest request;
  v1::Pipeline pipeline;
  ASSERT_TRUE(
      IsOk(first.Call(&PipelinesStub::GetPipeline, request, &pipeline)));
  ASSERT_TRUE(
      IsOk(second.Call(&PipelinesStub::GetPipeline, request, &pipeline)));

  const absl::Time start = absl::Now();
  absl::StatusOr<ExitInfo> exit =
      server->Terminate(SIGTERM, kShutdownGrace + absl::Seconds(5));
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_TRUE(exit->Success()) << exit->ToString();
  std::cout << "exited " << absl::FormatDuration(absl::Now() - start)
            << " after SIGTERM with two idle client connections\n";
}

// What the watcher thread saw.
struct WatchResult {
  std::vector<int64_t> versions;
  grpc::Status status;
};

TEST_P(ShutdownTest, EndsOpenWatchConfigStream) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  int64_t version = 0;
  {
    Client client(server->NewChannel());
    ASSERT_TRUE(IsOk(client.ConfigVersion(&version)));
  }

  // The watcher owns its channel and context and drops both as soon as the
  // stream ends, so no idle connection delays the exit.
  absl::Mutex context_mu;
  grpc::ClientContext* watch_context = nullptr;  // Guarded by context_mu.
  std::promise<void> first_version;
  std::promise<void> second_version;
  std::promise<WatchResult> ended;
  std::future<WatchResult> ended_future = ended.get_future();
  std::thread watcher([&, channel = server->NewChannel()]() mutable {
    WatchResult result;
    {
      Client client(channel);
      channel.reset();
      grpc::ClientContext context;
      // Long enough that only the server can end the stream within the test.
      client.Prepare(&context, absl::Seconds(60));
      {
        absl::MutexLock lock(&context_mu);
        watch_context = &context;
      }
      // known_version 0: the current version comes at once.
      v1::WatchConfigRequest request;
      std::unique_ptr<grpc::ClientReader<v1::ConfigVersion>> reader =
          client.pipelines().WatchConfig(&context, request);
      v1::ConfigVersion message;
      while (reader->Read(&message)) {
        result.versions.push_back(message.version());
        if (result.versions.size() == 1) first_version.set_value();
        if (result.versions.size() == 2) second_version.set_value();
      }
      result.status = reader->Finish();
      absl::MutexLock lock(&context_mu);
      watch_context = nullptr;
    }
    ended.set_value(std::move(result));
  });
  // Whatever happens below, the watcher thread is cancelled and joined.
  struct Joiner {
    absl::Mutex& mu;
    grpc::ClientContext*& context;
    std::thread& thread;
    ~Joiner() {
      {
        absl::MutexLock lock(&mu);
        if (context != nullptr) context->TryCancel();
      }
      thread.join();
    }
  } joiner{context_mu, watch_context, watcher};

  ASSERT_EQ(first_version.get_future().wait_for(std::chrono::seconds(10)),
            std::future_status::ready)
      << "WatchConfig sent nothing";
  // A change reaches the open stream.
  v1::Pipeline created;
  {
    Client client(server->NewChannel());
    v1::CreatePipelineRequest create;
    create.mutable_pipeline()->set_name("Watched");
    ASSERT_TRUE(
        IsOk(client.Call(&PipelinesStub::CreatePipeline, create, &created)));
  }
  ASSERT_EQ(second_version.get_future().wait_for(std::chrono::seconds(10)),
            std::future_status::ready)
      << "WatchConfig did not report the change";

  const absl::Time start = absl::Now();
  absl::StatusOr<ExitInfo> exit =
      server->Terminate(GetParam(), kShutdownTimeout);
  ASSERT_TRUE(exit.ok()) << exit.status()
                         << " (a WatchConfig stream blocks shutdown?)";
  EXPECT_TRUE(exit->Success()) << exit->ToString();
  std::cout << "exited " << absl::FormatDuration(absl::Now() - start)
            << " after the signal with a stream open\n";

  ASSERT_EQ(ended_future.wait_for(std::chrono::seconds(5)),
            std::future_status::ready)
      << "the WatchConfig stream hangs after the server exited";
  const WatchResult result = ended_future.get();
  ASSERT_GE(result.versions.size(), 2u);
  EXPECT_EQ(result.versions[0], version);
  EXPECT_EQ(result.versions[1], EtagVersion(created.etag()));
  EXPECT_EQ(result.status.error_code(), grpc::StatusCode::UNAVAILABLE)
      << result.status.error_message();
}

class RestartTest : public PipelineConfigTest {};

TEST_F(RestartTest, KeepsDataAndDoesNotDuplicatePipelineZero) {
  int64_t created_id = 0;
  int64_t version = 0;
  {
    auto server = StartServer();
    ASSERT_NE(server, nullptr);
    {
      Client client(server->NewChannel());
      v1::CreatePipelineRequest create;
      create.mutable_pipeline()->set_name("Keep me");
      v1::Pipeline created;
      ASSERT_TRUE(
          IsOk(client.Call(&PipelinesStub::CreatePipeline, create, &created)));
      created_id = created.id();
      ASSERT_TRUE(IsOk(client.ConfigVersion(&version)));
    }
    absl::StatusOr<ExitInfo> exit =
        server->Terminate(SIGTERM, kShutdownTimeout);
    ASSERT_TRUE(exit.ok()) << exit.status();
    ASSERT_TRUE(exit->Success()) << exit->ToString();
  }
  // A graceful restart, then one after SIGKILL: neither re-seeds pipeline 0.
  for (const char* how : {"after SIGTERM", "after SIGKILL"}) {
    SCOPED_TRACE(how);
    auto server = StartServer();
    ASSERT_NE(server, nullptr);
    auto client = std::make_unique<Client>(server->NewChannel());
    std::vector<v1::Pipeline> pipelines;
    ASSERT_TRUE(
        IsOk(client->ListAllPipelines(/*include_stages=*/true, &pipelines)));
    ASSERT_EQ(pipelines.size(), 2u);
    std::vector<int64_t> ids = {pipelines[0].id(), pipelines[1].id()};
    std::sort(ids.begin(), ids.end());
    EXPECT_EQ(ids, (std::vector<int64_t>{0, created_id}));
    int defaults = 0;
    for (const auto& p : pipelines) {
      defaults += p.is_default() ? 1 : 0;
      EXPECT_EQ(p.stages_size(), 8) << "pipeline " << p.id();
    }
    EXPECT_EQ(defaults, 1);

    v1::GetPipelineRequest get;
    get.set_pipeline_id(0);
    v1::Pipeline zero;
    ASSERT_TRUE(IsOk(client->Call(&PipelinesStub::GetPipeline, get, &zero)));
    EXPECT_TRUE(zero.is_default());
    std::vector<std::string> stage_ids;
    for (const auto& stage : zero.stages())
      stage_ids.push_back(stage.stage_id());
    EXPECT_EQ(stage_ids,
              (std::vector<std::string>{
                  "NEW", "PREPARATION", "PREPAYMENT_INVOICE", "EXECUTING",
                  "FINAL_INVOICE", "WON", "LOSE", "APOLOGY"}));
    int64_t version_now = 0;
    ASSERT_TRUE(IsOk(client->ConfigVersion(&version_now)));
    EXPECT_EQ(version_now, version)
        << "a restart without writes changed the config version";

    client.reset();  // Closes the connection before the signal.
    if (std::string(how) == "after SIGTERM") {
      absl::StatusOr<ExitInfo> exit = server->process().Kill();
      ASSERT_TRUE(exit.ok()) << exit.status();
    } else {
      absl::StatusOr<ExitInfo> exit =
          server->Terminate(SIGTERM, kShutdownTimeout);
      ASSERT_TRUE(exit.ok()) << exit.status();
      EXPECT_TRUE(exit->Success()) << exit->ToString();
    }
  }
}

TEST_F(RestartTest, SecondProcessOnSameDataDirFails) {
  auto first = StartServer();
  ASSERT_NE(first, nullptr);

  const std::string port_file = work_dir() + "/second.ports";
  const std::string output = work_dir() + "/second.log";
  ProcessOptions options;
  options.binary = CRM_PIPELINE_CONFIG_BINARY;
  options.args = {"--port=0", "--http_port=0", "--port_file=" + port_file};
  const std::vector<std::string> args = ServerArgs(data_dir());
  options.args.insert(options.args.end(), args.begin(), args.end());
  options.output_file = output;
  absl::StatusOr<std::unique_ptr<Process>> second = Process::Start(options);
  ASSERT_TRUE(second.ok()) << second.status();
  absl::StatusOr<ExitInfo> exit = (*second)->Wait(absl::Seconds(10));
  ASSERT_TRUE(exit.ok()) << exit.status()
                         << " (the second process runs on a data dir in use)";
  EXPECT_TRUE(exit->exited) << exit->ToString();
  EXPECT_NE(exit->code, 0);
  EXPECT_EQ(ReadFileOrEmpty(port_file), "")
      << "the second process bound its ports";
  const std::string log = ReadFileOrEmpty(output);
  EXPECT_TRUE(absl::StrContains(absl::AsciiStrToLower(log), "lock"))
      << "output: " << log;

  // The first one is unharmed.
  ASSERT_TRUE(WaitForServing(first->NewChannel(), "", absl::Seconds(5)).ok());
  {
    Client client(first->NewChannel());
    v1::GetPipelineRequest get;
    v1::Pipeline zero;
    EXPECT_TRUE(IsOk(client.Call(&PipelinesStub::GetPipeline, get, &zero)));
  }
  absl::StatusOr<ExitInfo> first_exit =
      first->Terminate(SIGTERM, kShutdownTimeout);
  ASSERT_TRUE(first_exit.ok()) << first_exit.status();
  EXPECT_TRUE(first_exit->Success()) << first_exit->ToString();
}

}  // namespace
}  // namespace crm::testing
