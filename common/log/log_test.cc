#include "common/log/log.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace crm::common {
namespace {

using ::testing::EndsWith;
using ::testing::HasSubstr;
using ::testing::StartsWith;

TEST(LogTest, FormatsOneLineWithQuotedValues) {
  SetLogService("pipeline-config");
  const std::string line =
      FormatLogLine(LogLevel::kWarning, "two words",
                    {{"port", "50052"}, {"path", "a \"b\"\nc"}});
  EXPECT_THAT(line, StartsWith("ts="));
  EXPECT_THAT(
      line,
      HasSubstr(
          " level=warn svc=pipeline-config msg=\"two words\" port=50052 "));
  EXPECT_THAT(line, EndsWith("path=\"a \\\"b\\\"\\nc\""));
  EXPECT_EQ(line.find('\n'), std::string::npos);
}

TEST(LogTest, ParsesLevels) {
  LogLevel level = LogLevel::kInfo;
  EXPECT_TRUE(ParseLogLevel("DEBUG", &level));
  EXPECT_EQ(level, LogLevel::kDebug);
  EXPECT_TRUE(ParseLogLevel("warning", &level));
  EXPECT_EQ(level, LogLevel::kWarning);
  EXPECT_FALSE(ParseLogLevel("loud", &level));
}

}  // namespace
}  // namespace crm::common
