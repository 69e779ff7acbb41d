// Test-only gMock matchers for absl::Status and absl::StatusOr.
//
//   EXPECT_THAT(store.Get(7), IsOk());
//   EXPECT_THAT(Update(stale), StatusIs(absl::StatusCode::kAborted,
//   HasSubstr("etag"))); ASSERT_OK_AND_ASSIGN(Pipeline p,
//   store.GetPipeline(0));
#pragma once

#include <ostream>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace crm::testing {

inline const absl::Status& GetStatus(const absl::Status& status) {
  return status;
}
template <typename T>
const absl::Status& GetStatus(const absl::StatusOr<T>& status_or) {
  return status_or.status();
}

MATCHER(IsOk, "is OK") {
  const absl::Status& s = ::crm::testing::GetStatus(arg);
  if (!s.ok()) *result_listener << "status is " << s;
  return s.ok();
}

MATCHER_P(StatusIs, code, "has code " + absl::StatusCodeToString(code)) {
  const absl::Status& s = ::crm::testing::GetStatus(arg);
  *result_listener << "status is " << s;
  return s.code() == code;
}

MATCHER_P2(StatusIs, code, message_matcher,
           "has code " + absl::StatusCodeToString(code)) {
  const absl::Status& s = ::crm::testing::GetStatus(arg);
  *result_listener << "status is " << s;
  return s.code() == code &&
         ::testing::ExplainMatchResult(
             message_matcher, std::string(s.message()), result_listener);
}

}  // namespace crm::testing

#define CRM_TESTING_CONCAT_INNER_(a, b) a##b
#define CRM_TESTING_CONCAT_(a, b) CRM_TESTING_CONCAT_INNER_(a, b)

#define ASSERT_OK(expr) ASSERT_THAT((expr), ::crm::testing::IsOk())
#define EXPECT_OK(expr) EXPECT_THAT((expr), ::crm::testing::IsOk())

#define ASSERT_OK_AND_ASSIGN(lhs, rexpr)                                       \
  ASSERT_OK_AND_ASSIGN_IMPL_(CRM_TESTING_CONCAT_(crm_test_so_, __LINE__), lhs, \
                             rexpr)
#define ASSERT_OK_AND_ASSIGN_IMPL_(so, lhs, rexpr) \
  auto so = (rexpr);                               \
  ASSERT_TRUE(so.ok()) << so.status();             \
  lhs = std::move(so).value()
