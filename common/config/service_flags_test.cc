#include "common/config/service_flags.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "common/auth/auth.h"
#include "common/status/status_matchers.h"

namespace crm::common {
namespace {

using ::crm::testing::StatusIs;

TEST(ServiceFlagsTest, ParsesAdminUsers) {
  ASSERT_OK_AND_ASSIGN(std::set<int64_t> admins, ParseAdminUsers("1, 7,12,7"));
  EXPECT_EQ(admins, (std::set<int64_t>{1, 7, 12}));
  ASSERT_OK_AND_ASSIGN(std::set<int64_t> none, ParseAdminUsers(""));
  EXPECT_TRUE(none.empty());
  for (const char* bad : {"0", "-3", "x", "1;2", "1,,a"}) {
    EXPECT_THAT(ParseAdminUsers(bad),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         ::testing::HasSubstr("--admin_users")))
        << bad;
  }
}

TEST(ServiceFlagsTest, RefusesUnknownLogLevels) {
  EXPECT_OK(SetUpLogging("test", "warn"));
  EXPECT_THAT(SetUpLogging("test", "loud"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       ::testing::HasSubstr("--log_level")));
  EXPECT_OK(SetUpLogging("test", "error"));
}

TEST(ServiceFlagsTest, FallsBackToTheDevSecret) {
  EXPECT_EQ(ResolveJwtSecret("s3cret", false), "s3cret");
  EXPECT_EQ(ResolveJwtSecret("", false), kDevJwtSecret);
}

}  // namespace
}  // namespace crm::common
