// crm-bench-pipeline-config: closed-loop load on crm-pipeline-config's read
// path compared with the cheapest call the server has,
// grpc.health.v1.Health/Check.
//
// For every point (method x calls in flight) the bench keeps exactly N unary
// calls in flight (tests/bench/bench_runner.h), spread round-robin over
// --channels channels (each its own connection).
//
//   crm-bench-pipeline-config                      # starts its own server
//   crm-bench-pipeline-config --target=127.0.0.1:50052 --token=$(crm-dev-token
//   --user=1)
//
// Goal checked at the end: reads (GetPipeline, ListStages of pipeline 0)
// reach >= 0.8x the Health/Check QPS at 8 calls in flight.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "grpcpp/generic/generic_stub.h"

#include "crm/pipelines/v1/pipelines_service.grpc.pb.h"

#include "common/auth/auth.h"
#include "common/testing/temp_dir.h"
#include "tests/bench/bench_runner.h"
#include "tests/e2e/service_process.h"

#ifndef CRM_PIPELINE_CONFIG_BINARY
#define CRM_PIPELINE_CONFIG_BINARY ""
#endif

ABSL_FLAG(std::string, target, "",
          "host:port of a running crm-pipeline-config; empty = start one on a "
          "temp dir");
ABSL_FLAG(std::string, binary, CRM_PIPELINE_CONFIG_BINARY,
          "crm-pipeline-config binary to start when --target is empty");
ABSL_FLAG(std::string, token, "",
          "Bearer token for the reads; empty = mint one for --user with "
          "--jwt_secret");
ABSL_FLAG(std::string, jwt_secret, "",
          "Secret to mint the token with (and to start the server with); empty "
          "= a bench secret for a server the bench starts; required with "
          "--target unless --token is given");
ABSL_FLAG(int64_t, user, 1, "User id of the minted token");
ABSL_FLAG(std::vector<std::string>, in_flight,
          std::vector<std::string>({"1", "8", "64"}),
          "Calls kept in flight, one point each");
ABSL_FLAG(std::vector<std::string>, methods,
          std::vector<std::string>({"health", "get_pipeline", "list_stages"}),
          "Methods to measure: health, get_pipeline, list_stages, "
          "get_config_version (an authenticated call with a tiny reply)");
ABSL_FLAG(bool, parse_replies, false,
          "Use typed stubs that parse every reply. Off by default: the client "
          "shares the 2 cores with the server, and parsing the larger read "
          "replies would be charged to the server's figures; raw calls (a "
          "generic stub sending pre-serialized requests and keeping reply "
          "bytes) are used for every method alike");
ABSL_FLAG(int64_t, pipeline_id, 0,
          "Pipeline read by get_pipeline and list_stages");

namespace crm::bench {
namespace {

namespace v1 = ::crm::pipelines::v1;
using ::grpc::health::v1::Health;
using ::grpc::health::v1::HealthCheckRequest;
using ::grpc::health::v1::HealthCheckResponse;

constexpr char kBenchSecret[] = "crm-bench-secret-0123456789";

enum class Method { kHealth, kGetPipeline, kListStages, kGetConfigVersion };

const char* MethodName(Method method) {
  switch (method) {
    case Method::kHealth:
      return "grpc.health.v1.Health/Check";
    case Method::kGetPipeline:
      return "PipelinesService/GetPipeline";
    case Method::kListStages:
      return "PipelinesService/ListStages";
    case Method::kGetConfigVersion:
      return "PipelinesService/GetConfigVersion";
  }
  return "?";
}

std::optional<Method> ParseMethod(const std::string& name) {
  if (name == "health") return Method::kHealth;
  if (name == "get_pipeline") return Method::kGetPipeline;
  if (name == "list_stages") return Method::kListStages;
  if (name == "get_config_version") return Method::kGetConfigVersion;
  return std::nullopt;
}

struct Stubs {
  std::unique_ptr<Health::Stub> health;
  std::unique_ptr<v1::PipelinesService::Stub> pipelines;
  std::unique_ptr<grpc::GenericStub> generic;
};

const char* MethodPath(Method method) {
  switch (method) {
    case Method::kHealth:
      return "/grpc.health.v1.Health/Check";
    case Method::kGetPipeline:
      return "/crm.pipelines.v1.PipelinesService/GetPipeline";
    case Method::kListStages:
      return "/crm.pipelines.v1.PipelinesService/ListStages";
    case Method::kGetConfigVersion:
      return "/crm.pipelines.v1.PipelinesService/GetConfigVersion";
  }
  return "";
}

// The calls of one point of `method`: call slot i sends over channel
// i % channels, raw (generic stub) or, with --parse_replies, typed.
class PipelineCalls : public CallDriver {
 public:
  PipelineCalls(std::vector<Stubs>& stubs, Method method, int in_flight,
                int64_t pipeline_id)
      : stubs_(stubs), method_(method), slots_(static_cast<size_t>(in_flight)) {
    for (Slot& slot : slots_) {
      slot.get_pipeline.set_pipeline_id(pipeline_id);
      slot.list_stages.set_pipeline_id(pipeline_id);
      switch (method_) {
        case Method::kHealth:
          slot.raw_request = Serialize(slot.health);
          break;
        case Method::kGetPipeline:
          slot.raw_request = Serialize(slot.get_pipeline);
          break;
        case Method::kListStages:
          slot.raw_request = Serialize(slot.list_stages);
          break;
        case Method::kGetConfigVersion:
          slot.raw_request = Serialize(slot.get_version);
          break;
      }
    }
  }

  void Start(size_t index, grpc::ClientContext* context,
             std::function<void(grpc::Status)> done) override {
    Slot* slot = &slots_[index];
    Stubs& stubs = stubs_[index % stubs_.size()];
    if (!parse_replies_) {
      stubs.generic->UnaryCall(context, MethodPath(method_),
                               grpc::StubOptions(), &slot->raw_request,
                               &slot->raw_response, std::move(done));
      return;
    }
    switch (method_) {
      case Method::kHealth:
        stubs.health->async()->Check(context, &slot->health,
                                     &slot->health_response, std::move(done));
        break;
      case Method::kGetPipeline:
        stubs.pipelines->async()->GetPipeline(context, &slot->get_pipeline,
                                              &slot->pipeline, std::move(done));
        break;
      case Method::kListStages:
        stubs.pipelines->async()->ListStages(context, &slot->list_stages,
                                             &slot->stages, std::move(done));
        break;
      case Method::kGetConfigVersion:
        stubs.pipelines->async()->GetConfigVersion(
            context, &slot->get_version, &slot->version, std::move(done));
        break;
    }
  }

 private:
  struct Slot {
    HealthCheckRequest health;
    HealthCheckResponse health_response;
    v1::GetPipelineRequest get_pipeline;
    v1::Pipeline pipeline;
    v1::ListStagesRequest list_stages;
    v1::ListStagesResponse stages;
    v1::GetConfigVersionRequest get_version;
    v1::ConfigVersion version;
    grpc::ByteBuffer raw_request;
    grpc::ByteBuffer raw_response;
  };

  std::vector<Stubs>& stubs_;
  const Method method_;
  const bool parse_replies_ = absl::GetFlag(FLAGS_parse_replies);
  std::vector<Slot> slots_;
};

int Run() {
  std::optional<std::vector<int>> in_flight =
      ParseCounts("in_flight", absl::GetFlag(FLAGS_in_flight));
  if (!in_flight.has_value()) return 2;
  std::vector<Method> methods;
  std::vector<std::string> names;
  for (const std::string& name : absl::GetFlag(FLAGS_methods)) {
    std::optional<Method> method = ParseMethod(name);
    if (!method.has_value()) {
      std::cerr << "--methods: unknown method \"" << name << "\"\n";
      return 2;
    }
    methods.push_back(*method);
    names.push_back(MethodName(*method));
  }
  const std::optional<LoopSettings> loop = LoopSettingsFromFlags();
  if (!loop.has_value()) return 2;

  // The server: given, or ours on a temp data dir (removed at exit).
  std::string address = absl::GetFlag(FLAGS_target);
  std::string secret = absl::GetFlag(FLAGS_jwt_secret);
  std::unique_ptr<crm::testing::TempDir> temp;
  std::unique_ptr<crm::testing::ServiceProcess> server;
  if (address.empty()) {
    if (secret.empty()) secret = kBenchSecret;
    temp = std::make_unique<crm::testing::TempDir>();
    crm::testing::ServiceOptions options;
    options.binary = absl::GetFlag(FLAGS_binary);
    options.work_dir = temp->path();
    options.args = {"--data_dir=" + temp->path() + "/data",
                    "--jwt_secret=" + secret, "--log_level=warn"};
    absl::StatusOr<std::unique_ptr<crm::testing::ServiceProcess>> started =
        crm::testing::ServiceProcess::Start(options);
    if (!started.ok()) {
      std::cerr << "cannot start " << options.binary << ": " << started.status()
                << "\n";
      return 2;
    }
    server = std::move(started).value();
    address = server->grpc_address();
  }
  std::string token = absl::GetFlag(FLAGS_token);
  if (secret.empty() && token.empty()) {
    std::cerr << "--jwt_secret (the server's secret) or --token is required\n";
    return 2;
  }
  if (token.empty()) {
    token = common::MakeUserToken(secret, absl::GetFlag(FLAGS_user),
                                  /*admin=*/false, absl::Hours(1), absl::Now());
  }
  const std::string bearer = "Bearer " + token;

  // Server CPU is known only for a server started here.
  CpuClock server_cpu = [] { return -1.0; };
  if (server != nullptr) {
    const pid_t pid = server->process().pid();
    server_cpu = [pid] { return ProcessCpuSeconds(pid); };
  }

  std::vector<std::shared_ptr<grpc::Channel>> channels =
      ConnectChannels(address, loop->channels);
  if (channels.empty()) return 2;
  std::vector<Stubs> stubs(channels.size());
  for (size_t i = 0; i < channels.size(); ++i) {
    stubs[i].health = Health::NewStub(channels[i]);
    stubs[i].pipelines = v1::PipelinesService::NewStub(channels[i]);
    stubs[i].generic = std::make_unique<grpc::GenericStub>(channels[i]);
  }
  channels.clear();

  std::printf(
      "crm-pipeline-config bench: %s (%s), %d channel(s), %s warm-up + %s per "
      "point, "
      "%u hardware threads shared by client and server, replies %s\n",
      address.c_str(), server != nullptr ? "started by the bench" : "given",
      loop->channels, absl::FormatDuration(loop->warmup).c_str(),
      absl::FormatDuration(loop->duration).c_str(),
      std::thread::hardware_concurrency(),
      absl::GetFlag(FLAGS_parse_replies) ? "parsed (typed stubs)"
                                         : "kept as bytes (generic stub)");
  PrintTableHeader();
  std::map<std::pair<int, Method>, PointResult> results;
  bool had_errors = false;
  for (int n : *in_flight) {
    std::vector<PointResult> medians = RunRepeats(
        n, names, loop->repeats,
        [&](size_t i) {
          PipelineCalls calls(stubs, methods[i], n,
                              absl::GetFlag(FLAGS_pipeline_id));
          return RunPoint(calls, n, *loop, server_cpu,
                          methods[i] == Method::kHealth ? "" : bearer);
        },
        &had_errors);
    for (size_t i = 0; i < methods.size(); ++i) {
      results[{n, methods[i]}] = medians[i];
    }
  }

  auto ratio = [&](int n, Method method) -> std::optional<double> {
    auto read = results.find({n, method});
    auto health = results.find({n, Method::kHealth});
    if (read == results.end() || health == results.end() ||
        health->second.qps <= 0) {
      return std::nullopt;
    }
    return read->second.qps / health->second.qps;
  };
  std::printf(
      "(CPU/call: user+system CPU of the server process and of this client "
      "over the window, per OK call)\n");
  std::printf("\nQPS relative to Health/Check:\n%9s %22s %22s\n", "in flight",
              "GetPipeline/Health", "ListStages/Health");
  for (int n : *in_flight) {
    std::printf("%9d %22s %22s\n", n,
                RatioCell(ratio(n, Method::kGetPipeline)).c_str(),
                RatioCell(ratio(n, Method::kListStages)).c_str());
  }
  std::optional<double> get = ratio(8, Method::kGetPipeline);
  std::optional<double> list = ratio(8, Method::kListStages);
  if (get.has_value() || list.has_value()) {
    auto verdict = [](std::optional<double> r) {
      if (!r.has_value()) return std::string("not measured");
      return absl::StrFormat("%.2fx %s", *r, *r >= 0.8 ? "PASS" : "MISS");
    };
    std::printf(
        "\nGoal: reads >= 0.8x Health.Check QPS at 8 in flight: GetPipeline "
        "%s, "
        "ListStages %s\n",
        verdict(get).c_str(), verdict(list).c_str());
  } else {
    std::printf(
        "\nGoal (reads >= 0.8x Health.Check QPS at 8 in flight): not "
        "measured\n");
  }

  // Close our connections first: idle ones would hold up the server's
  // graceful shutdown.
  stubs.clear();
  if (server != nullptr) {
    absl::StatusOr<crm::testing::ExitInfo> exit =
        server->Terminate(SIGTERM, absl::Seconds(15));
    if (!exit.ok() || !exit->Success()) {
      std::cerr << "server did not stop cleanly: "
                << (exit.ok() ? exit->ToString() : exit.status().ToString())
                << "\n";
    }
  }
  return had_errors ? 1 : 0;
}

}  // namespace
}  // namespace crm::bench

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Closed-loop QPS/latency of crm-pipeline-config reads vs Health/Check.");
  absl::ParseCommandLine(argc, argv);
  return crm::bench::Run();
}
