#include "common/auth/service_token.h"

#include <utility>

#include "common/auth/auth.h"

namespace crm::common {

ServiceTokenSource::ServiceTokenSource(std::string secret, std::string service,
                                       absl::Duration ttl, Clock clock)
    : secret_(std::move(secret)),
      service_(std::move(service)),
      ttl_(ttl),
      clock_(clock ? std::move(clock) : Clock([] { return absl::Now(); })) {}

std::string ServiceTokenSource::Token() {
  const absl::Time now = clock_();
  absl::MutexLock lock(&mu_);
  if (now >= refresh_at_) {
    token_ = common::MakeServiceToken(secret_, service_, ttl_, now);
    refresh_at_ = now + ttl_ / 2;
  }
  return token_;
}

}  // namespace crm::common
