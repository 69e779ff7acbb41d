#include "common/testing/test_tokens.h"

#include "absl/time/clock.h"

#include "common/auth/auth.h"

namespace crm::testing {

std::string TestTokens::User(int64_t user_id, bool admin) const {
  return common::MakeUserToken(secret_, user_id, admin, absl::Hours(1),
                               absl::Now());
}

std::string TestTokens::Service(const std::string& service) const {
  return common::MakeServiceToken(secret_, service, absl::Hours(1),
                                  absl::Now());
}

std::string TestTokens::Expired(int64_t user_id) const {
  return common::MakeUserToken(secret_, user_id, /*admin=*/false,
                               absl::Hours(1), absl::Now() - absl::Hours(2));
}

std::string TestTokens::WrongSignature(int64_t user_id) const {
  return common::MakeUserToken(secret_ + "-not", user_id, /*admin=*/false,
                               absl::Hours(1), absl::Now());
}

std::vector<std::string> TestTokens::Bad(int64_t user_id) const {
  return {std::string(), std::string("garbage"), Expired(user_id),
          WrongSignature(user_id)};
}

}  // namespace crm::testing
