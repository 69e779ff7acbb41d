#include "common/config/service_flags.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

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

TEST(ServiceFlagsTest, ASecretIsRequiredUnlessTokensAreNotVerified) {
  ASSERT_OK_AND_ASSIGN(std::string given,
                       ResolveJwtSecret("0123456789abcdef", false));
  EXPECT_EQ(given, "0123456789abcdef");
  EXPECT_THAT(ResolveJwtSecret("", false),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       ::testing::HasSubstr("--jwt_secret")));
  EXPECT_THAT(ResolveJwtSecret("short", true),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       ::testing::HasSubstr("at least 16 bytes")));
  // Without verification a random secret still signs page tokens; two
  // processes never share one.
  ASSERT_OK_AND_ASSIGN(std::string first, ResolveJwtSecret("", true));
  ASSERT_OK_AND_ASSIGN(std::string second, ResolveJwtSecret("", true));
  EXPECT_GE(first.size(), kMinJwtSecretBytes);
  EXPECT_NE(first, second);
}

}  // namespace
}  // namespace crm::common
