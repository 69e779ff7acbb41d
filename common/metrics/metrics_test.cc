#include "common/metrics/metrics.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace crm::common {
namespace {

using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kGetPipeline[] =
    "/crm.pipelines.v1.PipelinesService/GetPipeline";
constexpr char kGetLabels[] =
    R"(grpc_service="crm.pipelines.v1.PipelinesService",grpc_method="GetPipeline")";

std::vector<std::string> Lines(const std::string& text) {
  return absl::StrSplit(text, '\n', absl::SkipEmpty());
}

int CountOccurrences(const std::string& text, const std::string& needle) {
  int count = 0;
  for (size_t pos = text.find(needle); pos != std::string::npos;
       pos = text.find(needle, pos + needle.size())) {
    ++count;
  }
  return count;
}

// The value of the sample line starting with `series` + " ", or "" if absent.
std::string SampleValue(const std::string& text, const std::string& series) {
  for (const std::string& line : Lines(text)) {
    if (line.size() > series.size() &&
        line.compare(0, series.size(), series) == 0 &&
        line[series.size()] == ' ') {
      return line.substr(series.size() + 1);
    }
  }
  return "";
}

TEST(MetricsRegistryTest, EmptyRegistryRendersOnlyRpcFamilyHeaders) {
  MetricsRegistry registry;
  const std::string text = registry.RenderPrometheus();
  EXPECT_EQ(text,
            "# HELP crm_grpc_server_handled_total Total number of RPCs "
            "completed on the "
            "server, regardless of success or failure.\n"
            "# TYPE crm_grpc_server_handled_total counter\n"
            "# HELP crm_grpc_server_errors_total Total number of RPCs "
            "completed on the "
            "server with a non-OK status.\n"
            "# TYPE crm_grpc_server_errors_total counter\n"
            "# HELP crm_grpc_server_handling_seconds Histogram of response "
            "latency (seconds) "
            "of RPCs handled by the server.\n"
            "# TYPE crm_grpc_server_handling_seconds histogram\n");
}

TEST(MetricsRegistryTest, RendersExactCountsBucketsSumAndCount) {
  MetricsRegistry registry;
  registry.RecordRpc(kGetPipeline, 0, 0.0002);
  registry.RecordRpc(kGetPipeline, 0, 0.003);
  registry.RecordRpc(kGetPipeline, 5, 0.5);  // NOT_FOUND
  registry.RecordRpc(kGetPipeline, 3,
                     20);  // INVALID_ARGUMENT, beyond the last bound

  const std::string l = kGetLabels;
  const std::string expected =
      "# HELP crm_grpc_server_handled_total Total number of RPCs completed on "
      "the server, "
      "regardless of success or failure.\n"
      "# TYPE crm_grpc_server_handled_total counter\n"
      "crm_grpc_server_handled_total{" +
      l +
      ",grpc_code=\"OK\"} 2\n"
      "crm_grpc_server_handled_total{" +
      l +
      ",grpc_code=\"INVALID_ARGUMENT\"} 1\n"
      "crm_grpc_server_handled_total{" +
      l +
      ",grpc_code=\"NOT_FOUND\"} 1\n"
      "# HELP crm_grpc_server_errors_total Total number of RPCs completed on "
      "the server "
      "with a non-OK status.\n"
      "# TYPE crm_grpc_server_errors_total counter\n"
      "crm_grpc_server_errors_total{" +
      l +
      ",grpc_code=\"INVALID_ARGUMENT\"} 1\n"
      "crm_grpc_server_errors_total{" +
      l +
      ",grpc_code=\"NOT_FOUND\"} 1\n"
      "# HELP crm_grpc_server_handling_seconds Histogram of response latency "
      "(seconds) of "
      "RPCs handled by the server.\n"
      "# TYPE crm_grpc_server_handling_seconds histogram\n"
      "crm_grpc_server_handling_seconds_bucket{" +
      l +
      ",le=\"0.0001\"} 0\n"
      "crm_grpc_server_handling_seconds_bucket{" +
      l +
      ",le=\"0.00025\"} 1\n"
      "crm_grpc_server_handling_seconds_bucket{" +
      l +
      ",le=\"0.0005\"} 1\n"
      "crm_grpc_server_handling_seconds_bucket{" +
      l +
      ",le=\"0.001\"} 1\n"
      "crm_grpc_server_handling_seconds_bucket{" +
      l +
      ",le=\"0.0025\"} 1\n"
      "crm_grpc_server_handling_seconds_bucket{" +
      l +
      ",le=\"0.005\"} 2\n"
      "crm_grpc_server_handling_seconds_bucket{" +
      l +
      ",le=\"0.01\"} 2\n"
      "crm_grpc_server_handling_seconds_bucket{" +
      l +
      ",le=\"0.025\"} 2\n"
      "crm_grpc_server_handling_seconds_bucket{" +
      l +
      ",le=\"0.05\"} 2\n"
      "crm_grpc_server_handling_seconds_bucket{" +
      l +
      ",le=\"0.1\"} 2\n"
      "crm_grpc_server_handling_seconds_bucket{" +
      l +
      ",le=\"0.25\"} 2\n"
      "crm_grpc_server_handling_seconds_bucket{" +
      l +
      ",le=\"0.5\"} 3\n"
      "crm_grpc_server_handling_seconds_bucket{" +
      l +
      ",le=\"1\"} 3\n"
      "crm_grpc_server_handling_seconds_bucket{" +
      l +
      ",le=\"2.5\"} 3\n"
      "crm_grpc_server_handling_seconds_bucket{" +
      l +
      ",le=\"5\"} 3\n"
      "crm_grpc_server_handling_seconds_bucket{" +
      l +
      ",le=\"10\"} 3\n"
      "crm_grpc_server_handling_seconds_bucket{" +
      l +
      ",le=\"+Inf\"} 4\n"
      "crm_grpc_server_handling_seconds_sum{" +
      l +
      "} 20.5032\n"
      "crm_grpc_server_handling_seconds_count{" +
      l + "} 4\n";
  EXPECT_EQ(registry.RenderPrometheus(), expected);
}

TEST(MetricsRegistryTest, BucketUpperBoundIsInclusive) {
  MetricsRegistry registry;
  registry.RecordRpc(kGetPipeline, 0, 0.001);
  registry.RecordRpc(kGetPipeline, 0, 0.0010001);
  const std::string text = registry.RenderPrometheus();
  const std::string bucket =
      absl::StrCat("crm_grpc_server_handling_seconds_bucket{", kGetLabels);
  EXPECT_EQ(SampleValue(text, bucket + ",le=\"0.0005\"}"), "0");
  EXPECT_EQ(SampleValue(text, bucket + ",le=\"0.001\"}"), "1");
  EXPECT_EQ(SampleValue(text, bucket + ",le=\"0.0025\"}"), "2");
  EXPECT_EQ(SampleValue(text, bucket + ",le=\"+Inf\"}"), "2");
}

TEST(MetricsRegistryTest, NegativeAndNanLatenciesCountAsZero) {
  MetricsRegistry registry;
  registry.RecordRpc(kGetPipeline, 0, -1);
  registry.RecordRpc(kGetPipeline, 0, std::nan(""));
  const std::string text = registry.RenderPrometheus();
  EXPECT_EQ(
      SampleValue(text, absl::StrCat("crm_grpc_server_handling_seconds_bucket{",
                                     kGetLabels, ",le=\"0.0001\"}")),
      "2");
  EXPECT_EQ(
      SampleValue(text, absl::StrCat("crm_grpc_server_handling_seconds_sum{",
                                     kGetLabels, "}")),
      "0");
}

TEST(MetricsRegistryTest, FamiliesHaveOneHeaderAndSortedMethods) {
  MetricsRegistry registry;
  registry.RecordRpc("/crm.deals.v1.DealsService/UpdateDeal", 10, 0.01);
  registry.RecordRpc("/crm.deals.v1.DealsService/GetDeal", 0, 0.01);
  registry.RecordRpc(kGetPipeline, 14, 0.01);
  const std::string text = registry.RenderPrometheus();
  for (const char* family :
       {"crm_grpc_server_handled_total", "crm_grpc_server_errors_total",
        "crm_grpc_server_handling_seconds"}) {
    EXPECT_EQ(CountOccurrences(text, absl::StrCat("# HELP ", family, " ")), 1)
        << family;
    EXPECT_EQ(CountOccurrences(text, absl::StrCat("# TYPE ", family, " ")), 1)
        << family;
  }
  const size_t get_deal = text.find("grpc_method=\"GetDeal\"");
  const size_t update_deal = text.find("grpc_method=\"UpdateDeal\"");
  const size_t get_pipeline = text.find("grpc_method=\"GetPipeline\"");
  ASSERT_NE(get_pipeline, std::string::npos);
  EXPECT_LT(get_deal, update_deal);
  EXPECT_LT(update_deal, get_pipeline);
  // Every family's samples come right after its own header.
  EXPECT_LT(text.find("# TYPE crm_grpc_server_handled_total"),
            text.find("crm_grpc_server_handled_total{"));
  EXPECT_LT(text.find("crm_grpc_server_handled_total{"),
            text.find("# TYPE crm_grpc_server_errors_total"));
  EXPECT_LT(text.rfind("crm_grpc_server_errors_total{"),
            text.find("# TYPE crm_grpc_server_handling_seconds"));
  EXPECT_THAT(Lines(text),
              Contains("crm_grpc_server_errors_total{grpc_service=\"crm.deals."
                       "v1.DealsService\","
                       "grpc_method=\"UpdateDeal\",grpc_code=\"ABORTED\"} 1"));
  EXPECT_THAT(Lines(text),
              Contains(absl::StrCat("crm_grpc_server_errors_total{", kGetLabels,
                                    ",grpc_code=\"UNAVAILABLE\"} 1")));
  EXPECT_THAT(text,
              Not(HasSubstr("grpc_method=\"GetDeal\",grpc_code=\"OK\"} 1\n"
                            "crm_grpc_server_errors")));
  EXPECT_EQ(CountOccurrences(text, "crm_grpc_server_errors_total{"), 2);
}

TEST(MetricsRegistryTest, CodeNamesAndOutOfRangeCodes) {
  MetricsRegistry registry;
  registry.RecordRpc(kGetPipeline, 16, 0.01);
  registry.RecordRpc(kGetPipeline, 1, 0.01);
  registry.RecordRpc(kGetPipeline, 17, 0.01);
  registry.RecordRpc(kGetPipeline, -3, 0.01);
  const std::string text = registry.RenderPrometheus();
  const std::string prefix =
      absl::StrCat("crm_grpc_server_handled_total{", kGetLabels);
  EXPECT_EQ(SampleValue(text, prefix + ",grpc_code=\"UNAUTHENTICATED\"}"), "1");
  EXPECT_EQ(SampleValue(text, prefix + ",grpc_code=\"CANCELLED\"}"), "1");
  EXPECT_EQ(SampleValue(text, prefix + ",grpc_code=\"UNKNOWN\"}"), "2");
}

TEST(MetricsRegistryTest, EscapesLabelValues) {
  MetricsRegistry registry;
  registry.RecordRpc("/we\"ird\\svc\nx/Me\"th", 0, 0.01);
  const std::string text = registry.RenderPrometheus();
  EXPECT_THAT(
      Lines(text),
      Contains("crm_grpc_server_handled_total{grpc_service=\"we\\\"ird\\\\"
               "svc\\nx\",grpc_method=\"Me\\\"th\",grpc_code=\"OK\"} 1"));
  // No raw newline sneaks into a sample line.
  for (const std::string& line : Lines(text)) {
    EXPECT_TRUE(line[0] == '#' || line.compare(0, 4, "crm_") == 0) << line;
  }
}

TEST(MetricsRegistryTest, MalformedMethodNamesShareTheUnknownSeries) {
  MetricsRegistry registry;
  registry.RecordRpc("no-slashes", 0, 0.01);
  registry.RecordRpc("/onlyservice", 0, 0.01);
  registry.RecordRpc("/unknown/unknown", 0, 0.01);
  registry.RecordRpc("", 0, 0.01);
  registry.RecordRpc("no-slashes", 0, 0.01);
  const std::string text = registry.RenderPrometheus();
  EXPECT_EQ(
      SampleValue(text,
                  "crm_grpc_server_handled_total{grpc_service=\"unknown\","
                  "grpc_method=\"unknown\",grpc_code=\"OK\"}"),
      "5");
  EXPECT_EQ(CountOccurrences(text, "crm_grpc_server_handling_seconds_count{"),
            1);
}

TEST(MetricsRegistryTest, DistinctMethodsAreCapped) {
  MetricsRegistry registry;
  const int total = static_cast<int>(MetricsRegistry::kMaxMethods) + 7;
  for (int i = 0; i < total; ++i) {
    registry.RecordRpc(absl::StrCat("/svc.S/M", i), 0, 0.01);
  }
  registry.RecordRpc("/svc.S/M0", 0, 0.01);  // already tracked
  const std::string text = registry.RenderPrometheus();
  EXPECT_EQ(CountOccurrences(text, "crm_grpc_server_handling_seconds_count{"),
            static_cast<int>(MetricsRegistry::kMaxMethods) + 1);
  EXPECT_EQ(
      SampleValue(text,
                  "crm_grpc_server_handled_total{grpc_service=\"unknown\","
                  "grpc_method=\"unknown\",grpc_code=\"OK\"}"),
      "7");
  EXPECT_EQ(SampleValue(text,
                        "crm_grpc_server_handled_total{grpc_service=\"svc.S\","
                        "grpc_method=\"M0\",grpc_code=\"OK\"}"),
            "2");
}

TEST(MetricsRegistryTest, CountersAndGauges) {
  MetricsRegistry registry;
  registry.SetGauge("crm_outbox_lag", "Outbox entries not yet published.", 7);
  registry.SetGauge("crm_outbox_lag", "ignored help", -2.5);
  registry.IncrementCounter("crm_webhooks_total",
                            "Webhooks received.\nBy path \\ kind.");
  registry.IncrementCounter("crm_webhooks_total", "", 2.5);
  registry.IncrementCounter("crm_webhooks_total", "",
                            -10);  // counters never go down
  registry.IncrementCounter("crm_webhooks_total", "", std::nan(""));
  registry.IncrementCounter("crm-bad.name", "Sanitized.", 1);
  registry.IncrementCounter("9lives", "Sanitized.", 1);

  const std::string text = registry.RenderPrometheus();
  EXPECT_THAT(
      text,
      HasSubstr("# HELP crm_outbox_lag Outbox entries not yet published.\n"
                "# TYPE crm_outbox_lag gauge\n"
                "crm_outbox_lag -2.5\n"));
  EXPECT_THAT(
      text,
      HasSubstr("# HELP crm_webhooks_total Webhooks received.\\nBy path \\\\ "
                "kind.\n"
                "# TYPE crm_webhooks_total counter\n"
                "crm_webhooks_total 3.5\n"));
  EXPECT_THAT(text, HasSubstr("# TYPE crm_bad_name counter\ncrm_bad_name 1\n"));
  EXPECT_THAT(text, HasSubstr("# TYPE _lives counter\n_lives 1\n"));
  // Sorted by name after the RPC families.
  EXPECT_LT(text.find("# TYPE crm_grpc_server_handling_seconds"),
            text.find("_lives"));
  EXPECT_LT(text.find("_lives"), text.find("crm_bad_name"));
  EXPECT_LT(text.find("crm_bad_name"), text.find("crm_outbox_lag"));
  EXPECT_LT(text.find("crm_outbox_lag"), text.find("crm_webhooks_total"));
}

TEST(MetricsRegistryTest, KindConflictsAndReservedNamesAreIgnored) {
  MetricsRegistry registry;
  registry.IncrementCounter("crm_things_total", "Things.", 2);
  registry.SetGauge("crm_things_total", "Things.", 100);  // wrong kind: ignored
  registry.SetGauge("crm_level", "Level.", 4);
  registry.IncrementCounter("crm_level", "Level.", 1);  // wrong kind: ignored
  registry.IncrementCounter("crm_grpc_server_handled_total", "Clash.", 1);
  registry.SetGauge("crm_grpc_server_handling_seconds_count", "Clash.", 1);
  registry.SetGauge("", "Empty.", 1);

  const std::string text = registry.RenderPrometheus();
  EXPECT_THAT(Lines(text), Contains("crm_things_total 2"));
  EXPECT_THAT(Lines(text), Contains("crm_level 4"));
  EXPECT_EQ(CountOccurrences(text, "# TYPE crm_grpc_server_handled_total"), 1);
  EXPECT_THAT(text, Not(HasSubstr("Clash")));
  EXPECT_THAT(text, Not(HasSubstr("Empty")));
  EXPECT_THAT(text, Not(HasSubstr("crm_grpc_server_handling_seconds_count ")));
}

TEST(MetricsRegistryTest, ConcurrentRecordingGivesExactTotals) {
  MetricsRegistry registry;
  constexpr int kThreads = 4;
  constexpr int kPerThread = 30000;
  const std::vector<std::string> methods = {
      "/crm.a.v1.A/One", "/crm.a.v1.A/Two", "/crm.b.v1.B/Three"};
  std::atomic<bool> done{false};
  // Renders concurrently with the writers to exercise the read side.
  std::thread renderer([&] {
    while (!done.load()) {
      const std::string text = registry.RenderPrometheus();
      ASSERT_THAT(text,
                  HasSubstr("# TYPE crm_grpc_server_handled_total counter"));
    }
  });
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        // Each thread also creates its own methods, racing on first insertion.
        if (i % 1000 == 0)
          registry.RecordRpc(absl::StrCat("/crm.c.v1.C/M", i), 0, 0.002);
        registry.RecordRpc(methods[i % 3], i % 2 == 0 ? 0 : 14, 0.001);
        registry.IncrementCounter("crm_test_events_total", "Events.", 1);
        if (i % 100 == 0) registry.SetGauge("crm_test_gauge", "Gauge.", t);
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  done = true;
  renderer.join();

  const std::string text = registry.RenderPrometheus();
  // Per method: kThreads * kPerThread / 3 calls, half OK and half UNAVAILABLE
  // (kPerThread is a multiple of 6).
  const int per_method = kThreads * kPerThread / 3;
  for (const auto& [service, method] :
       std::vector<std::pair<std::string, std::string>>{
           {"crm.a.v1.A", "One"},
           {"crm.a.v1.A", "Two"},
           {"crm.b.v1.B", "Three"}}) {
    const std::string labels = absl::StrCat("grpc_service=\"", service,
                                            "\",grpc_method=\"", method, "\"");
    EXPECT_EQ(SampleValue(text, absl::StrCat("crm_grpc_server_handled_total{",
                                             labels, ",grpc_code=\"OK\"}")),
              absl::StrCat(per_method / 2));
    EXPECT_EQ(
        SampleValue(text, absl::StrCat("crm_grpc_server_errors_total{", labels,
                                       ",grpc_code=\"UNAVAILABLE\"}")),
        absl::StrCat(per_method / 2));
    EXPECT_EQ(SampleValue(
                  text, absl::StrCat("crm_grpc_server_handling_seconds_bucket{",
                                     labels, ",le=\"0.0005\"}")),
              "0");
    EXPECT_EQ(SampleValue(
                  text, absl::StrCat("crm_grpc_server_handling_seconds_bucket{",
                                     labels, ",le=\"0.001\"}")),
              absl::StrCat(per_method));
    EXPECT_EQ(SampleValue(
                  text, absl::StrCat("crm_grpc_server_handling_seconds_count{",
                                     labels, "}")),
              absl::StrCat(per_method));
    EXPECT_EQ(
        SampleValue(text, absl::StrCat("crm_grpc_server_handling_seconds_sum{",
                                       labels, "}")),
        "40");  // 40000 calls * 1ms
  }
  for (int i = 0; i < kPerThread; i += 1000) {
    EXPECT_EQ(SampleValue(
                  text, absl::StrCat(
                            "crm_grpc_server_handled_total{grpc_service=\"crm."
                            "c.v1.C\",grpc_method=\"M",
                            i, "\",grpc_code=\"OK\"}")),
              absl::StrCat(kThreads));
  }
  EXPECT_EQ(SampleValue(text, "crm_test_events_total"),
            absl::StrCat(kThreads * kPerThread));
  EXPECT_THAT(SampleValue(text, "crm_test_gauge"),
              testing::AnyOf("0", "1", "2", "3"));
}

}  // namespace
}  // namespace crm::common
