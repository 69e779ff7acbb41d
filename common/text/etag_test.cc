#include "common/text/etag.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "common/status/status_matchers.h"

namespace crm::common {
namespace {

using ::crm::testing::IsOk;
using ::crm::testing::StatusIs;
using ::testing::HasSubstr;

TEST(EtagTest, QuotedRevision) {
  EXPECT_EQ(EtagOf(42), "\"42\"");
  EXPECT_NE(EtagOf(42), EtagOf(43));
}

TEST(EtagTest, EmptyOrCurrentPassesAStaleOneIsAborted) {
  EXPECT_THAT(CheckEtag("", EtagOf(3), "deal 7"), IsOk());
  EXPECT_THAT(CheckEtag(EtagOf(3), EtagOf(3), "deal 7"), IsOk());
  EXPECT_THAT(
      CheckEtag(EtagOf(2), EtagOf(3), "deal 7"),
      StatusIs(absl::StatusCode::kAborted,
               HasSubstr("etag: deal 7 has changed (current etag \"3\", given "
                         "\"2\")")));
}

}  // namespace
}  // namespace crm::common
