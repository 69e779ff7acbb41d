#include "tests/bench/bench_runner.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <thread>
#include <utility>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"

#include "tests/e2e/service_process.h"

ABSL_FLAG(int, channels, 4, "Channels (connections) the calls are spread over");
ABSL_FLAG(double, warmup_s, 0.3, "Warm-up seconds per run (not measured)");
ABSL_FLAG(double, duration_s, 2.0, "Measured seconds per run");
ABSL_FLAG(double, paced_qps, 0,
          "Calls per second to start at most (paced, still at most the "
          "in-flight count at once); 0 = as fast as the in-flight calls "
          "complete. At a fixed rate, CPU per call compares configurations "
          "at equal load");
ABSL_FLAG(
    int, repeats, 3,
    "Runs per point, methods interleaved; the median-QPS run is reported");

namespace crm::bench {

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

grpc::ByteBuffer Serialize(const google::protobuf::Message& message) {
  const std::string bytes = message.SerializeAsString();
  grpc::Slice slice(bytes);
  return grpc::ByteBuffer(&slice, 1);
}

std::string StatusText(const grpc::Status& status) {
  return absl::StrCat(status.error_code(), ": ", status.error_message());
}

std::optional<std::vector<int>> ParseCounts(
    const char* flag, const std::vector<std::string>& values) {
  std::vector<int> counts;
  for (const std::string& value : values) {
    int n = 0;
    if (!absl::SimpleAtoi(value, &n) || n <= 0) {
      std::cerr << "--" << flag << ": positive integers, got \"" << value
                << "\"\n";
      return std::nullopt;
    }
    counts.push_back(n);
  }
  return counts;
}

std::optional<LoopSettings> LoopSettingsFromFlags() {
  LoopSettings settings;
  settings.channels = std::max(1, absl::GetFlag(FLAGS_channels));
  settings.warmup = absl::Seconds(absl::GetFlag(FLAGS_warmup_s));
  settings.duration = absl::Seconds(absl::GetFlag(FLAGS_duration_s));
  settings.repeats = std::max(1, absl::GetFlag(FLAGS_repeats));
  settings.rate = absl::GetFlag(FLAGS_paced_qps);
  if (settings.rate < 0) {
    std::cerr << "--paced_qps must not be negative\n";
    return std::nullopt;
  }
  if (settings.duration <= absl::ZeroDuration()) {
    std::cerr << "--duration_s must be positive\n";
    return std::nullopt;
  }
  return settings;
}

std::vector<std::shared_ptr<grpc::Channel>> ConnectChannels(
    const std::string& address, int count) {
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  for (int i = 0; i < count; ++i) {
    std::shared_ptr<grpc::Channel> channel =
        crm::testing::NewLoopbackChannel(address);
    if (!channel->WaitForConnected(std::chrono::system_clock::now() +
                                   std::chrono::seconds(10))) {
      std::cerr << "cannot connect to " << address << "\n";
      return {};
    }
    channels.push_back(std::move(channel));
  }
  return channels;
}

namespace {

class ClosedLoop {
 public:
  ClosedLoop(CallDriver& driver, int in_flight, const LoopSettings& loop,
             const CpuClock& server_cpu, const std::string& authorization)
      : driver_(driver),
        server_cpu_(server_cpu),
        authorization_(authorization),
        rate_(loop.rate),
        slots_(static_cast<size_t>(in_flight)) {
    const Clock::time_point start = Clock::now();
    start_ = start;
    measure_start_ = start + absl::ToChronoNanoseconds(loop.warmup);
    measure_end_ = measure_start_ + absl::ToChronoNanoseconds(loop.duration);
    for (size_t i = 0; i < slots_.size(); ++i) {
      slots_[i].index = i;
      slots_[i].latencies_us.reserve(65536);
    }
  }

  PointResult Run() {
    {
      absl::MutexLock lock(&mu_);
      outstanding_ = static_cast<int>(slots_.size());
    }
    std::thread pacer;
    if (rate_ > 0) {
      // Paced: a completed call returns its slot; this thread starts the
      // k-th call at start + k / rate on a free slot.
      {
        absl::MutexLock lock(&mu_);
        for (Slot& slot : slots_) free_.push_back(&slot);
      }
      pacer = std::thread([this] { Pace(); });
    } else {
      for (Slot& slot : slots_) Issue(&slot);
    }
    // CPU used by both sides over the window (the window boundaries are
    // approximate: a scheduling delay here shifts them a little).
    std::this_thread::sleep_until(measure_start_);
    const double server_start = ServerCpu();
    const double client_start = SelfCpuSeconds();
    std::this_thread::sleep_until(measure_end_);
    const double server_end = ServerCpu();
    const double client_end = SelfCpuSeconds();
    {
      absl::MutexLock lock(&mu_);
      // Calls have a 10 s deadline, so this ends.
      mu_.Await(absl::Condition(
          +[](int* outstanding) { return *outstanding == 0; }, &outstanding_));
    }
    if (pacer.joinable()) pacer.join();
    PointResult result;
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
    size_t index = 0;
    std::unique_ptr<grpc::ClientContext> context;
    Clock::time_point started;
    std::vector<double> latencies_us;
    int64_t errors = 0;
    std::string first_error;
  };

  double ServerCpu() const { return server_cpu_ ? server_cpu_() : -1.0; }

  void Issue(Slot* slot) {
    // A context serves one call; the previous one is done (we are in its
    // completion callback or before the first call).
    slot->context = std::make_unique<grpc::ClientContext>();
    slot->context->set_deadline(std::chrono::system_clock::now() +
                                std::chrono::seconds(10));
    if (!authorization_.empty()) {
      slot->context->AddMetadata("authorization", authorization_);
    }
    slot->started = Clock::now();
    driver_.Start(slot->index, slot->context.get(),
                  [this, slot](grpc::Status status) { Done(slot, status); });
  }

  void Done(Slot* slot, grpc::Status status) {
    driver_.Finish(slot->index, &status);
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
      slot->first_error = StatusText(status);
    }
    if (rate_ > 0) {
      absl::MutexLock lock(&mu_);
      free_.push_back(slot);
      return;
    }
    if (now < measure_end_) {
      Issue(slot);
      return;
    }
    absl::MutexLock lock(&mu_);
    --outstanding_;
  }

  void Pace() {
    const auto interval = std::chrono::duration<double>(1.0 / rate_);
    for (int64_t k = 0;; ++k) {
      const Clock::time_point at =
          start_ + std::chrono::duration_cast<Clock::duration>(interval * k);
      if (at >= measure_end_) break;
      std::this_thread::sleep_until(at);
      Slot* slot = nullptr;
      {
        absl::MutexLock lock(&mu_);
        // All slots busy: the call starts late (the server is saturated).
        mu_.Await(absl::Condition(
            +[](std::vector<Slot*>* free) { return !free->empty(); }, &free_));
        slot = free_.back();
        free_.pop_back();
      }
      Issue(slot);
    }
    // Every slot back: nothing is in flight any more.
    absl::MutexLock lock(&mu_);
    const size_t all = slots_.size();
    struct Args {
      std::vector<Slot*>* free;
      size_t all;
    } args{&free_, all};
    mu_.Await(absl::Condition(
        +[](Args* a) { return a->free->size() == a->all; }, &args));
    outstanding_ = 0;
  }

  CallDriver& driver_;
  const CpuClock server_cpu_;
  const std::string authorization_;
  const double rate_;
  std::vector<Slot> slots_;
  Clock::time_point start_;
  Clock::time_point measure_start_;
  Clock::time_point measure_end_;
  absl::Mutex mu_;
  int outstanding_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<Slot*> free_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

PointResult RunPoint(CallDriver& driver, int in_flight,
                     const LoopSettings& loop, const CpuClock& server_cpu,
                     const std::string& authorization) {
  ClosedLoop point(driver, in_flight, loop, server_cpu, authorization);
  return point.Run();
}

void PrintTableHeader() {
  std::printf("%-34s %9s %9s %9s %9s %6s %13s %13s\n", "method", "in flight",
              "QPS", "p50 (us)", "p99 (us)", "errors", "srv CPU/call",
              "cli CPU/call");
  std::fflush(stdout);
}

std::vector<PointResult> RunRepeats(
    int in_flight, const std::vector<std::string>& names, int repeats,
    const std::function<PointResult(size_t)>& run, bool* had_errors) {
  std::vector<std::vector<PointResult>> runs(names.size());
  for (int round = 0; round < repeats; ++round) {
    for (size_t i = 0; i < names.size(); ++i) runs[i].push_back(run(i));
  }
  std::vector<PointResult> medians;
  for (size_t i = 0; i < names.size(); ++i) {
    std::vector<PointResult>& all = runs[i];
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
                names[i].c_str(), in_flight, r.qps, r.p50_us, r.p99_us,
                static_cast<long long>(r.errors), cpu(r.server_cpu_us).c_str(),
                cpu(r.client_cpu_us).c_str(), spread.c_str());
    for (const PointResult& one : all) {
      if (!one.first_error.empty()) {
        std::printf("  first error: %s\n", one.first_error.c_str());
        *had_errors = true;
        break;
      }
    }
    std::fflush(stdout);
    medians.push_back(r);
  }
  return medians;
}

std::string RatioCell(std::optional<double> ratio) {
  return ratio.has_value() ? absl::StrFormat("%.2fx", *ratio)
                           : std::string("-");
}

}  // namespace crm::bench
