// The automation service's time source.
#pragma once

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace crm::automation {

// Real time plus an offset that tests (and --test_clock) can move forward.
class Clock {
 public:
  explicit Clock(bool adjustable = false) : adjustable_(adjustable) {}
  absl::Time Now() const;
  bool adjustable() const { return adjustable_; }
  // FAILED_PRECONDITION unless adjustable; INVALID_ARGUMENT for d < 0.
  [[nodiscard]] absl::Status Advance(absl::Duration d);

 private:
  const bool adjustable_;
  mutable absl::Mutex mu_;
  absl::Duration offset_ ABSL_GUARDED_BY(mu_);
};

}  // namespace crm::automation
