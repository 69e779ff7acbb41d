#include "common/config/env.h"

#include <cstdlib>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "common/status/status_matchers.h"

namespace crm::common {
namespace {

TEST(EnvTest, ReadsValuesAndFallsBack) {
  ::setenv("CRM_TEST_STR", "abc", 1);
  ::setenv("CRM_TEST_INT", "42", 1);
  ::setenv("CRM_TEST_BAD_INT", "4x2", 1);
  ::setenv("CRM_TEST_BOOL", "Yes", 1);
  ::setenv("CRM_TEST_EMPTY", "", 1);
  ::unsetenv("CRM_TEST_UNSET");
  EXPECT_EQ(EnvString("CRM_TEST_STR", "d"), "abc");
  EXPECT_EQ(EnvString("CRM_TEST_EMPTY", "d"), "d");
  EXPECT_EQ(EnvString("CRM_TEST_UNSET", "d"), "d");
  EXPECT_EQ(EnvInt("CRM_TEST_INT", 7), 42);
  EXPECT_TRUE(EnvBool("CRM_TEST_BOOL", false));
  EXPECT_FALSE(EnvBool("CRM_TEST_UNSET", false));
  ::setenv("CRM_TEST_BOOL", "off", 1);
  EXPECT_FALSE(EnvBool("CRM_TEST_BOOL", true));
  EXPECT_OK(CheckEnvironment());
}

TEST(EnvTest, ValuesThatDoNotParseAreReported) {
  ::setenv("CRM_TEST_BAD_INT", "4x2", 1);
  ::setenv("CRM_TEST_BAD_BOOL", "enabled", 1);
  EXPECT_EQ(EnvInt("CRM_TEST_BAD_INT", 7), 7);
  EXPECT_TRUE(EnvBool("CRM_TEST_BAD_BOOL", true));
  const absl::Status status = CheckEnvironment();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(
      std::string(status.message()),
      ::testing::AllOf(
          ::testing::HasSubstr("CRM_TEST_BAD_INT=4x2: not an integer"),
          ::testing::HasSubstr("CRM_TEST_BAD_BOOL=enabled: not a boolean")));
}

}  // namespace
}  // namespace crm::common
