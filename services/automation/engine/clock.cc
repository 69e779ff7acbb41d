#include "services/automation/engine/clock.h"

#include "absl/time/clock.h"

namespace crm::automation {

absl::Time Clock::Now() const {
  absl::MutexLock lock(&mu_);
  return absl::Now() + offset_;
}

absl::Status Clock::Advance(absl::Duration d) {
  if (!adjustable_) {
    return absl::FailedPreconditionError(
        "the clock is real time (start with --test_clock to move it)");
  }
  if (d < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("seconds: the clock only moves forward");
  }
  absl::MutexLock lock(&mu_);
  offset_ += d;
  return absl::OkStatus();
}

}  // namespace crm::automation
