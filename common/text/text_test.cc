#include "common/text/text.h"

#include "gtest/gtest.h"

#include "common/status/status_matchers.h"

namespace crm::common {
namespace {

using ::crm::testing::IsOk;
using ::crm::testing::StatusIs;
using ::testing::HasSubstr;

TEST(TextTest, CountsCharactersNotBytes) {
  const TextRules rules{3, false, false};
  EXPECT_THAT(ValidateText("f", "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", rules),
              IsOk());
  EXPECT_THAT(ValidateText("f", "abcd", rules),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("f: longer than 3")));
}

TEST(TextTest, EmptyBlankAndControls) {
  EXPECT_THAT(
      ValidateText("f", "", TextRules{}),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("f: required")));
  EXPECT_THAT(ValidateText("f", "", TextRules{10, true, false}), IsOk());
  EXPECT_THAT(ValidateText("f", " \xc2\xa0 ", TextRules{}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("blank")));
  EXPECT_THAT(
      ValidateText("f", "a\nb", TextRules{}),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("control")));
  EXPECT_THAT(ValidateText("f", "a\nb\tc", TextRules{10, true, true}), IsOk());
  EXPECT_THAT(
      ValidateText("f", "a\x01", TextRules{10, true, true}),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("control")));
}

TEST(TextTest, RejectsInvalidUtf8) {
  for (const char* bad : {"\xff", "\xc3", "\xc0\xaf", "\xed\xa0\x80"}) {
    EXPECT_THAT(
        ValidateText("f", bad, TextRules{}),
        StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("UTF-8")));
  }
}

}  // namespace
}  // namespace crm::common
