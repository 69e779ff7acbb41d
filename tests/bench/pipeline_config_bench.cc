// crm-bench-pipeline-config: closed-loop load on crm-pipeline-config's read
// path compared with the cheapest call the server has,
// grpc.health.v1.Health/Check.
//
// For every point (method x calls in flight) the bench keeps exactly N unary
// calls in flight with the gRPC callback API (a completed call starts the
// next one from its callback), spread round-robin over --channels channels
// (each its own connection). Calls completing in the warm-up are discarded;
// QPS and latency percentiles come from the calls completing in the
// measurement window that follows.
//
//   crm-bench-pipeline-config                      # starts its own server
//   crm-bench-pipeline-config --target=127.0.0.1:50052 --token=$(crm-dev-token
//   --user=1)
//
// Goal checked at the end: reads (GetPipeline, ListStages of pipeline 0)
// reach >= 0.8x the Health/Check QPS at 8 calls in flight.
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iostream>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "grpcpp/generic/generic_stub.h"

#include "crm/pipelines/v1/pipelines_service.grpc.pb.h"

#include "common/auth/auth.h"
#include "common/testing/temp_dir.h"
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
          "= a bench "
          "secret for a server the bench starts, the development secret for "
          "--target");
ABSL_FLAG(int64_t, user, 1, "User id of the minted token");
ABSL_FLAG(std::vector<std::string>, in_flight,
          std::vector<std::string>({"1", "8", "64"}),
          "Calls kept in flight, one point each");
ABSL_FLAG(std::vector<std::string>, methods,
          std::vector<std::string>({"health", "get_pipeline", "list_stages"}),
          "Methods to measure: health, get_pipeline, list_stages, "
          "get_config_version (an authenticated call with a tiny reply)");
ABSL_FLAG(int, channels, 4, "Channels (connections) the calls are spread over");
ABSL_FLAG(double, warmup_s, 0.3, "Warm-up seconds per run (not measured)");
ABSL_FLAG(double, duration_s, 2.0, "Measured seconds per run");
ABSL_FLAG(
    int, repeats, 3,
    "Runs per point, methods interleaved; the median-QPS run is reported");
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
using Clock = std::chrono::steady_clock;

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

grpc::ByteBuffer Serialize(const google::protobuf::Message& message) {
  const std::string bytes = message.SerializeAsString();
  grpc::Slice slice(bytes);
  return grpc::ByteBuffer(&slice, 1);
}

struct PointResult {
  Method method;
  int in_flight = 0;
  int64_t calls = 0;   // completed OK in the window
  int64_t errors = 0;  // completed with an error in the window
  double seconds = 0;
  double qps = 0;
  double p50_us = 0;
  double p99_us = 0;
  // CPU time per OK call in the window; < 0 when unknown.
  double server_cpu_us = -1;
  double client_cpu_us = -1;
  std::string first_error;
};

// CPU seconds (user + system) a process has used so far; < 0 if unknown.
using CpuClock = std::function<double()>;

double ProcessCpuSeconds(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)),
                   std::istreambuf_iterator<char>());
  // Fields after the command name (which may hold spaces): state is field 3,
  // utime and stime are fields 14 and 15.
  const size_t paren = stat.rfind(')');
  if (paren == std::string::npos) return -1;
  std::vector<std::string> fields = absl::StrSplit(stat.substr(paren + 2), ' ');
  double utime = 0;
  double stime = 0;
  if (fields.size() < 13 || !absl::SimpleAtod(fields[11], &utime) ||
      !absl::SimpleAtod(fields[12], &stime)) {
    return -1;
  }
  return (utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

double SelfCpuSeconds() {
  rusage usage{};
  if (getrusage(RUSAGE_SELF, &usage) != 0) return -1;
  auto seconds = [](const timeval& tv) {
    return static_cast<double>(tv.tv_sec) +
           static_cast<double>(tv.tv_usec) / 1e6;
  };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

// One measurement point: `in_flight` call chains, each restarting its call
// from the completion callback until the window closes.
class Point {
 public:
  Point(std::vector<Stubs>& stubs, CpuClock server_cpu, Method method,
        int in_flight, std::string bearer, int64_t pipeline_id,
        absl::Duration warmup, absl::Duration duration)
      : stubs_(stubs),
        server_cpu_(std::move(server_cpu)),
        method_(method),
        bearer_(std::move(bearer)),
        slots_(static_cast<size_t>(in_flight)) {
    const Clock::time_point start = Clock::now();
    measure_start_ = start + absl::ToChronoNanoseconds(warmup);
    measure_end_ = measure_start_ + absl::ToChronoNanoseconds(duration);
    for (size_t i = 0; i < slots_.size(); ++i) {
      Slot& slot = slots_[i];
      slot.channel = i % stubs_.size();
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
      slot.latencies_us.reserve(65536);
    }
  }

  PointResult Run() {
    {
      absl::MutexLock lock(&mu_);
      outstanding_ = static_cast<int>(slots_.size());
    }
    for (Slot& slot : slots_) Issue(&slot);
    // CPU used by both sides over the window (the window boundaries are
    // approximate: a scheduling delay here shifts them a little).
    std::this_thread::sleep_until(measure_start_);
    const double server_start = server_cpu_();
    const double client_start = SelfCpuSeconds();
    std::this_thread::sleep_until(measure_end_);
    const double server_end = server_cpu_();
    const double client_end = SelfCpuSeconds();
    {
      absl::MutexLock lock(&mu_);
      // Calls have a 10 s deadline, so this ends.
      mu_.Await(absl::Condition(
          +[](int* outstanding) { return *outstanding == 0; }, &outstanding_));
    }
    PointResult result;
    result.method = method_;
    result.in_flight = static_cast<int>(slots_.size());
    result.seconds =
        std::chrono::duration<double>(measure_end_ - measure_start_).count();
    std::vector<double> latencies;
    for (Slot& slot : slots_) {
      latencies.insert(latencies.end(), slot.latencies_us.begin(),
                       slot.latencies_us.end());
      result.errors += slot.errors;
      if (result.first_error.empty()) result.first_error = slot.first_error;
    }
    result.calls = static_cast<int64_t>(latencies.size());
    result.qps = static_cast<double>(result.calls) / result.seconds;
    std::sort(latencies.begin(), latencies.end());
    auto percentile = [&](double p) {
      if (latencies.empty()) return 0.0;
      const size_t index = std::min(
          latencies.size() - 1,
          static_cast<size_t>(p * static_cast<double>(latencies.size())));
      return latencies[index];
    };
    result.p50_us = percentile(0.50);
    result.p99_us = percentile(0.99);
    if (result.calls > 0) {
      const double calls = static_cast<double>(result.calls);
      if (server_start >= 0 && server_end >= 0) {
        result.server_cpu_us = (server_end - server_start) * 1e6 / calls;
      }
      if (client_start >= 0 && client_end >= 0) {
        result.client_cpu_us = (client_end - client_start) * 1e6 / calls;
      }
    }
    return result;
  }

 private:
  struct Slot {
    size_t channel = 0;
    std::unique_ptr<grpc::ClientContext> context;
    Clock::time_point started;
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
    std::vector<double> latencies_us;
    int64_t errors = 0;
    std::string first_error;
  };

  void Issue(Slot* slot) {
    // A context serves one call; the previous one is done (we are in its
    // completion callback or before the first call).
    slot->context = std::make_unique<grpc::ClientContext>();
    slot->context->set_deadline(std::chrono::system_clock::now() +
                                std::chrono::seconds(10));
    if (method_ != Method::kHealth)
      slot->context->AddMetadata("authorization", bearer_);
    Stubs& stubs = stubs_[slot->channel];
    auto done = [this, slot](grpc::Status status) { Done(slot, status); };
    slot->started = Clock::now();
    if (!parse_replies_) {
      stubs.generic->UnaryCall(slot->context.get(), MethodPath(method_),
                               grpc::StubOptions(), &slot->raw_request,
                               &slot->raw_response, std::move(done));
      return;
    }
    switch (method_) {
      case Method::kHealth:
        stubs.health->async()->Check(slot->context.get(), &slot->health,
                                     &slot->health_response, std::move(done));
        break;
      case Method::kGetPipeline:
        stubs.pipelines->async()->GetPipeline(slot->context.get(),
                                              &slot->get_pipeline,
                                              &slot->pipeline, std::move(done));
        break;
      case Method::kListStages:
        stubs.pipelines->async()->ListStages(slot->context.get(),
                                             &slot->list_stages, &slot->stages,
                                             std::move(done));
        break;
      case Method::kGetConfigVersion:
        stubs.pipelines->async()->GetConfigVersion(
            slot->context.get(), &slot->get_version, &slot->version,
            std::move(done));
        break;
    }
  }

  void Done(Slot* slot, const grpc::Status& status) {
    const Clock::time_point now = Clock::now();
    if (now >= measure_start_ && now <= measure_end_) {
      if (status.ok()) {
        slot->latencies_us.push_back(
            std::chrono::duration<double, std::micro>(now - slot->started)
                .count());
      } else {
        ++slot->errors;
      }
    }
    if (!status.ok() && slot->first_error.empty()) {
      slot->first_error =
          absl::StrCat(status.error_code(), ": ", status.error_message());
    }
    if (now < measure_end_) {
      Issue(slot);
      return;
    }
    absl::MutexLock lock(&mu_);
    --outstanding_;
  }

  std::vector<Stubs>& stubs_;
  const CpuClock server_cpu_;
  const Method method_;
  const bool parse_replies_ = absl::GetFlag(FLAGS_parse_replies);
  const std::string bearer_;
  std::vector<Slot> slots_;
  Clock::time_point measure_start_;
  Clock::time_point measure_end_;
  absl::Mutex mu_;
  int outstanding_ ABSL_GUARDED_BY(mu_) = 0;
};

int Run() {
  std::vector<int> in_flight;
  for (const std::string& value : absl::GetFlag(FLAGS_in_flight)) {
    int n = 0;
    if (!absl::SimpleAtoi(value, &n) || n <= 0) {
      std::cerr << "--in_flight: positive integers, got \"" << value << "\"\n";
      return 2;
    }
    in_flight.push_back(n);
  }
  std::vector<Method> methods;
  for (const std::string& name : absl::GetFlag(FLAGS_methods)) {
    std::optional<Method> method = ParseMethod(name);
    if (!method.has_value()) {
      std::cerr << "--methods: unknown method \"" << name << "\"\n";
      return 2;
    }
    methods.push_back(*method);
  }
  const int channel_count = std::max(1, absl::GetFlag(FLAGS_channels));
  const absl::Duration warmup = absl::Seconds(absl::GetFlag(FLAGS_warmup_s));
  const absl::Duration duration =
      absl::Seconds(absl::GetFlag(FLAGS_duration_s));
  if (duration <= absl::ZeroDuration()) {
    std::cerr << "--duration_s must be positive\n";
    return 2;
  }

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
  } else if (secret.empty()) {
    secret = common::kDevJwtSecret;
  }
  std::string token = absl::GetFlag(FLAGS_token);
  if (token.empty()) {
    token = common::MakeUserToken(secret, absl::GetFlag(FLAGS_user),
                                  /*admin=*/false, absl::Hours(1), absl::Now());
  }

  // Server CPU is known only for a server started here.
  CpuClock server_cpu = [] { return -1.0; };
  if (server != nullptr) {
    const pid_t pid = server->process().pid();
    server_cpu = [pid] { return ProcessCpuSeconds(pid); };
  }

  std::vector<Stubs> stubs(static_cast<size_t>(channel_count));
  for (Stubs& s : stubs) {
    std::shared_ptr<grpc::Channel> channel =
        crm::testing::NewLoopbackChannel(address);
    if (!channel->WaitForConnected(std::chrono::system_clock::now() +
                                   std::chrono::seconds(10))) {
      std::cerr << "cannot connect to " << address << "\n";
      return 2;
    }
    s.health = Health::NewStub(channel);
    s.pipelines = v1::PipelinesService::NewStub(channel);
    s.generic = std::make_unique<grpc::GenericStub>(channel);
  }

  std::printf(
      "crm-pipeline-config bench: %s (%s), %d channel(s), %s warm-up + %s per "
      "point, "
      "%u hardware threads shared by client and server, replies %s\n",
      address.c_str(), server != nullptr ? "started by the bench" : "given",
      channel_count, absl::FormatDuration(warmup).c_str(),
      absl::FormatDuration(duration).c_str(),
      std::thread::hardware_concurrency(),
      absl::GetFlag(FLAGS_parse_replies) ? "parsed (typed stubs)"
                                         : "kept as bytes (generic stub)");
  std::printf("%-34s %9s %9s %9s %9s %6s %13s %13s\n", "method", "in flight",
              "QPS", "p50 (us)", "p99 (us)", "errors", "srv CPU/call",
              "cli CPU/call");
  std::fflush(stdout);
  std::map<std::pair<int, Method>, PointResult> results;
  bool had_errors = false;
  // Each point runs `repeats` times, the methods taking turns, and the run
  // with the median QPS is kept: on 2 shared cores a single window is noisy
  // and drifts, and interleaving keeps the drift from favouring one method.
  const int repeats = std::max(1, absl::GetFlag(FLAGS_repeats));
  for (int n : in_flight) {
    std::map<Method, std::vector<PointResult>> runs;
    for (int round = 0; round < repeats; ++round) {
      for (Method method : methods) {
        Point point(stubs, server_cpu, method, n, "Bearer " + token,
                    absl::GetFlag(FLAGS_pipeline_id), warmup, duration);
        runs[method].push_back(point.Run());
      }
    }
    for (Method method : methods) {
      std::vector<PointResult>& all = runs[method];
      std::sort(all.begin(), all.end(),
                [](const PointResult& a, const PointResult& b) {
                  return a.qps < b.qps;
                });
      const PointResult& r = all[all.size() / 2];
      auto cpu = [](double us) {
        return us < 0 ? std::string("-") : absl::StrFormat("%.1f us", us);
      };
      std::string spread;
      if (all.size() > 1) {
        spread =
            absl::StrFormat("  (QPS %.0f..%.0f over %d runs)", all.front().qps,
                            all.back().qps, static_cast<int>(all.size()));
      }
      std::printf("%-34s %9d %9.0f %9.1f %9.1f %6lld %13s %13s%s\n",
                  MethodName(method), n, r.qps, r.p50_us, r.p99_us,
                  static_cast<long long>(r.errors),
                  cpu(r.server_cpu_us).c_str(), cpu(r.client_cpu_us).c_str(),
                  spread.c_str());
      for (const PointResult& run : all) {
        if (!run.first_error.empty()) {
          std::printf("  first error: %s\n", run.first_error.c_str());
          had_errors = true;
          break;
        }
      }
      std::fflush(stdout);
      results[{n, method}] = r;
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
  for (int n : in_flight) {
    auto cell = [](std::optional<double> r) {
      return r.has_value() ? absl::StrFormat("%.2fx", *r) : std::string("-");
    };
    std::printf("%9d %22s %22s\n", n,
                cell(ratio(n, Method::kGetPipeline)).c_str(),
                cell(ratio(n, Method::kListStages)).c_str());
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
