// Bearer-token authentication shared by all services: compact HS256 JWTs
// signed with one shared secret, for users and for service identities.
//
//   JwtVerifier verifier(secret);
//   CRM_ASSIGN_OR_RETURN(Principal who, verifier.Verify(token, absl::Now()));
//
//   Authenticator auth(secret, /*insecure_dev_auth=*/false);
//   CRM_ASSIGN_OR_RETURN(Principal who, auth.Authenticate(*context));
//
// Claims understood by the verifier:
//   sub    required; a positive decimal int64 (string or JSON integer) for a
//          user, or "service:<svc>" for a service identity
//   svc    optional string; its presence makes the token a service identity
//   exp    required number (seconds since the Unix epoch)
//   nbf    optional number
//   iat    optional number
//   admin  optional bool
#pragma once

#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/server_context.h"
#include "nlohmann/json.hpp"

namespace crm::common {

// The authenticated caller of a request.
struct Principal {
  int64_t user_id = 0;  // > 0 for users, 0 for service identities
  std::string service;  // non-empty for service identities
  bool is_admin = false;
  // When the token stops being accepted (its exp plus the leeway).
  absl::Time expires = absl::InfiniteFuture();
  bool IsService() const { return !service.empty(); }
  // Passes every permission check: an administrator by token claim or by
  // the service's admin list, or a service identity.
  bool IsPrivileged(const std::set<int64_t>& admin_user_ids) const {
    return is_admin || IsService() || admin_user_ids.count(user_id) > 0;
  }
};

// The caller of one RPC as a service's checks see it.
struct CallerIdentity {
  Principal principal;
  // Principal::IsPrivileged with the service's admin list: passes every
  // permission check.
  bool privileged = false;
};

// Signs claims as a compact HS256 JWT (header {"alg":"HS256","typ":"JWT"}).
std::string SignHs256Jwt(const nlohmann::json& claims, std::string_view secret);

// Builds a token for a user: sub=<user id as decimal string>, iat, exp=now+ttl,
// and "admin": true when `admin`.
std::string MakeUserToken(std::string_view secret, int64_t user_id, bool admin,
                          absl::Duration ttl, absl::Time now);

// Builds a token for a service identity: sub="service:<name>", "svc": "<name>",
// iat, exp=now+ttl.
std::string MakeServiceToken(std::string_view secret, std::string_view service,
                             absl::Duration ttl, absl::Time now);

// Verifies compact HS256 JWTs. Thread-safe (immutable after construction).
class JwtVerifier {
 public:
  // `leeway` is the clock skew tolerated for exp, nbf and iat. An empty
  // secret makes every verification fail.
  explicit JwtVerifier(std::string secret,
                       absl::Duration leeway = absl::Seconds(30));

  // Checks format, algorithm (exactly "HS256"), signature, exp/nbf/iat and
  // the identity claims. Every failure is UNAUTHENTICATED with a message that
  // names the problem ("token expired", "bad signature",
  // "malformed token: ...", "unsupported alg ...", "missing sub claim", ...).
  [[nodiscard]] absl::StatusOr<Principal> Verify(std::string_view token,
                                                 absl::Time now) const;

 private:
  std::string secret_;
  absl::Duration leeway_;
};

// Authenticates gRPC (and HTTP) requests from their "authorization" header.
// Thread-safe.
//
// Verified tokens are remembered (exact token bytes -> principal, bounded,
// sharded) until they expire: a client sends the same token on every call, and
// re-checking its HMAC and re-parsing its JSON each time costs more server CPU
// than a small read RPC itself. A cached token is still refused once expired.
class Authenticator {
 public:
  // insecure_dev_auth: signatures and expiry are not checked, and a call
  // without a token acts as user 1, an administrator. A token that is present
  // must still be well formed with a valid sub. Meant for local debugging
  // only (the caller logs a warning at start).
  Authenticator(std::string secret, bool insecure_dev_auth);
  ~Authenticator();
  Authenticator(const Authenticator&) = delete;
  Authenticator& operator=(const Authenticator&) = delete;

  // Reads the "authorization" metadata ("Bearer <jwt>", scheme
  // case-insensitive) of the call. Missing header, wrong scheme or bad token
  // -> UNAUTHENTICATED naming the reason.
  [[nodiscard]] absl::StatusOr<Principal> Authenticate(
      const grpc::ServerContextBase& context) const;
  // The same, with whether the caller is privileged: an administrator by
  // token claim or by `admin_user_ids`, or a service identity.
  [[nodiscard]] absl::StatusOr<CallerIdentity> AuthenticateCaller(
      const grpc::ServerContextBase& context,
      const std::set<int64_t>& admin_user_ids) const;

  // The same for a header value; an empty value counts as a missing header.
  [[nodiscard]] absl::StatusOr<Principal> AuthenticateHeader(
      std::string_view authorization_value) const;
  // The same at a given time (for tests).
  [[nodiscard]] absl::StatusOr<Principal> AuthenticateHeader(
      std::string_view authorization_value, absl::Time now) const;

  bool insecure_dev_auth() const { return insecure_dev_auth_; }

 private:
  class TokenCache;

  JwtVerifier verifier_;
  bool insecure_dev_auth_;
  std::unique_ptr<TokenCache> cache_;
};

}  // namespace crm::common
