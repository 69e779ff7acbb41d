#include "common/status/status_macros.h"

#include <string>

#include "gtest/gtest.h"

#include "common/status/grpc_status.h"
#include "common/status/status_matchers.h"

namespace crm::common {
namespace {

using ::crm::testing::IsOk;
using ::crm::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::Not;

absl::Status FailIf(bool fail) {
  if (fail) return absl::InvalidArgumentError("field x: bad");
  return absl::OkStatus();
}

absl::StatusOr<int> Half(int v) {
  if (v % 2 != 0) return absl::InvalidArgumentError("odd");
  return v / 2;
}

absl::Status Chain(bool fail, int* reached) {
  CRM_RETURN_IF_ERROR(FailIf(fail));
  *reached = 1;
  return absl::OkStatus();
}

absl::StatusOr<int> Quarter(int v) {
  CRM_ASSIGN_OR_RETURN(int half, Half(v));
  CRM_ASSIGN_OR_RETURN(int quarter, Half(half));
  return quarter;
}

TEST(StatusMacrosTest, ReturnIfErrorStopsOnError) {
  int reached = 0;
  EXPECT_THAT(Chain(true, &reached),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(reached, 0);
  EXPECT_THAT(Chain(false, &reached), IsOk());
  EXPECT_EQ(reached, 1);
}

TEST(StatusMacrosTest, AssignOrReturnPropagatesAndAssigns) {
  EXPECT_EQ(Quarter(8).value(), 2);
  EXPECT_THAT(Quarter(6),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("odd")));
  EXPECT_THAT(Quarter(6), Not(IsOk()));
}

TEST(GrpcStatusTest, CodesMapOneToOne) {
  const grpc::Status s = ToGrpcStatus(absl::AbortedError("etag is stale"));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::ABORTED);
  EXPECT_EQ(s.error_message(), "etag is stale");
  EXPECT_TRUE(ToGrpcStatus(absl::OkStatus()).ok());
  EXPECT_EQ(ToGrpcStatus(absl::PermissionDeniedError("x")).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
}

TEST(GrpcStatusTest, InternalMessagesAreHidden) {
  const grpc::Status s =
      ToGrpcStatus(absl::InternalError("rocksdb: IO error /secret"));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INTERNAL);
  EXPECT_THAT(s.error_message(), Not(HasSubstr("secret")));
  EXPECT_THAT(s.error_message(), HasSubstr("ref"));
}

TEST(GrpcStatusTest, FromGrpcKeepsCodeAndNamesPeer) {
  const absl::Status s = FromGrpcStatus(
      grpc::Status(grpc::StatusCode::UNAVAILABLE, "down"), "deals");
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kUnavailable, "deals: down"));
}

// Also checks the log: the first refusal is logged for the operator, the
// next one at once is not (rate-limited). One test, because the limit is
// per process.
TEST(GrpcStatusTest, APeerRefusingOurCredentialsIsInternalAndLogged) {
  ::testing::internal::CaptureStderr();
  EXPECT_THAT(
      FromPeerStatus(grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "no"),
                     "deals"),
      StatusIs(absl::StatusCode::kInternal,
               "deals refused this service's credentials (PERMISSION_DENIED: "
               "no)"));
  EXPECT_THAT(
      FromPeerStatus(grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "bad"),
                     "deals"),
      StatusIs(absl::StatusCode::kInternal,
               "deals refused this service's credentials (UNAUTHENTICATED: "
               "bad)"));
  const std::string logged = ::testing::internal::GetCapturedStderr();
  EXPECT_THAT(logged, HasSubstr("level=error"));
  EXPECT_THAT(logged, HasSubstr("a peer refused this service's credentials"));
  EXPECT_THAT(logged, HasSubstr("peer=deals code=PERMISSION_DENIED error=no"));
  EXPECT_THAT(logged, Not(HasSubstr("UNAUTHENTICATED")));
  EXPECT_THAT(FromPeerStatus(grpc::Status(grpc::StatusCode::NOT_FOUND, "gone"),
                             "deals"),
              StatusIs(absl::StatusCode::kNotFound, "deals: gone"));
  EXPECT_TRUE(FromPeerStatus(grpc::Status::OK, "deals").ok());
}

}  // namespace
}  // namespace crm::common
