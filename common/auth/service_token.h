// The bearer token a service sends when it calls another service: an HS256
// service-identity JWT (crm::common::MakeServiceToken) that is re-signed
// before it expires, so a long-running client never sends an expired token.
//
//   ServiceTokenSource tokens(secret, "deals");
//   context.AddMetadata("authorization", tokens.AuthorizationHeader());
#pragma once

#include <functional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace crm::common {

// Thread-safe.
class ServiceTokenSource {
 public:
  using Clock = std::function<absl::Time()>;

  // Tokens live `ttl` and are replaced once half of it has passed, so every
  // token sent has at least ttl/2 left (far above the verifiers' clock-skew
  // leeway). REQUIRES: ttl > 0. `clock` defaults to absl::Now.
  ServiceTokenSource(std::string secret, std::string service,
                     absl::Duration ttl = absl::Hours(1), Clock clock = {});

  // The current token, signing a new one when the old one is due.
  std::string Token();
  // "Bearer <token>", the value of the "authorization" metadata.
  std::string AuthorizationHeader() { return "Bearer " + Token(); }

 private:
  const std::string secret_;
  const std::string service_;
  const absl::Duration ttl_;
  const Clock clock_;
  absl::Mutex mu_;
  std::string token_ ABSL_GUARDED_BY(mu_);
  absl::Time refresh_at_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
};

}  // namespace crm::common
