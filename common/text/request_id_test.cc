#include "common/text/request_id.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "common/status/status_matchers.h"

namespace crm::common {
namespace {

using ::crm::testing::IsOk;
using ::crm::testing::StatusIs;
using ::testing::HasSubstr;

TEST(RequestIdTest, PrintableAsciiUpToTheBudget) {
  EXPECT_THAT(ValidateRequestId(""), IsOk());
  EXPECT_THAT(ValidateRequestId("retry-1/a_b.c~d"), IsOk());
  EXPECT_THAT(ValidateRequestId(std::string(128, 'r')), IsOk());
  EXPECT_THAT(ValidateRequestId(std::string(129, 'r')),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("request_id: at most 128 characters")));
  for (const char* bad : {"with space", "tab\t", "caf\xc3\xa9", "\x7f"}) {
    EXPECT_THAT(ValidateRequestId(bad),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr("printable ASCII without spaces")))
        << bad;
  }
}

TEST(RequestIdTest, ReservedCharactersShrinkTheBudget) {
  EXPECT_THAT(ValidateRequestId(std::string(108, 'r'), 20), IsOk());
  EXPECT_THAT(ValidateRequestId(std::string(109, 'r'), 20, "batch.request_id"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("batch.request_id: at most 108 characters")));
  // A derived id of the longest valid one is itself valid.
  const std::string longest(128 - 1 - kMaxInt64Digits, 'r');
  EXPECT_THAT(ValidateRequestId(longest, 1 + kMaxInt64Digits), IsOk());
  EXPECT_THAT(ValidateRequestId(longest + "/9223372036854775807"), IsOk());
}

}  // namespace
}  // namespace crm::common
