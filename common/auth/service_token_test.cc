#include "common/auth/service_token.h"

#include <string>

#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "common/auth/auth.h"
#include "common/status/status_matchers.h"

namespace crm::common {
namespace {

constexpr char kSecret[] = "service-token-test-secret";

TEST(ServiceTokenSourceTest, SignsAServiceIdentityTheVerifierAccepts) {
  ServiceTokenSource tokens(kSecret, "deals");
  const std::string header = tokens.AuthorizationHeader();
  ASSERT_EQ(header.rfind("Bearer ", 0), 0u) << header;
  common::JwtVerifier verifier(kSecret);
  ASSERT_OK_AND_ASSIGN(common::Principal principal,
                       verifier.Verify(header.substr(7), absl::Now()));
  EXPECT_TRUE(principal.IsService());
  EXPECT_EQ(principal.service, "deals");
}

TEST(ServiceTokenSourceTest, ReusesTheTokenUntilHalfItsLifeThenRenewsIt) {
  absl::Time now = absl::FromUnixSeconds(1'800'000'000);
  ServiceTokenSource tokens(kSecret, "deals", absl::Minutes(10),
                            [&now] { return now; });
  const std::string first = tokens.Token();
  now += absl::Minutes(4);
  EXPECT_EQ(tokens.Token(), first);
  now += absl::Minutes(1);
  const std::string second = tokens.Token();
  EXPECT_NE(second, first);

  // The new token is valid well past the old one's expiry.
  common::JwtVerifier verifier(kSecret, /*leeway=*/absl::ZeroDuration());
  EXPECT_OK(verifier.Verify(second, now + absl::Minutes(9)));
  EXPECT_THAT(verifier.Verify(first, now + absl::Minutes(9)),
              crm::testing::StatusIs(absl::StatusCode::kUnauthenticated));
}

}  // namespace
}  // namespace crm::common
