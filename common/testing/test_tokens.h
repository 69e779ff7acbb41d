// Test-only: tokens of every kind a service test needs, signed with the
// secret the server under test was started with, and the check that an RPC
// refuses each bad one.
//
//   TestTokens tokens(kSecret);
//   CallAs(tokens.User(7), ...);
//   ExpectBadTokensRefused(tokens, /*user_id=*/1, rpcs);
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"

namespace crm::testing {

class TestTokens {
 public:
  explicit TestTokens(std::string secret) : secret_(std::move(secret)) {}

  // Valid for an hour; `admin` sets the admin claim.
  std::string User(int64_t user_id, bool admin = false) const;
  // A service identity.
  std::string Service(const std::string& service) const;
  // A user token that expired an hour ago.
  std::string Expired(int64_t user_id) const;
  // A user token signed with another secret.
  std::string WrongSignature(int64_t user_id) const;
  // No token, a garbage one, an expired and a wrongly signed one.
  std::vector<std::string> Bad(int64_t user_id) const;

 private:
  std::string secret_;
};

// Expects every call of `rpcs` ((name, call-with-token) pairs) to be
// UNAUTHENTICATED with each of tokens.Bad(user_id).
template <typename Rpcs>
void ExpectBadTokensRefused(const TestTokens& tokens, int64_t user_id,
                            const Rpcs& rpcs) {
  for (const auto& [name, rpc] : rpcs) {
    SCOPED_TRACE(name);
    for (const std::string& token : tokens.Bad(user_id)) {
      const absl::Status status = rpc(token);
      EXPECT_EQ(status.code(), absl::StatusCode::kUnauthenticated)
          << "token \"" << token << "\": " << status;
    }
  }
}

}  // namespace crm::testing
