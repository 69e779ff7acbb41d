#include "services/deals/api/config_write_gate.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace crm::deals {

ConfigWriteGate::Pass& ConfigWriteGate::Pass::operator=(Pass&& other) noexcept {
  if (this != &other) {
    Release();
    gate_ = std::exchange(other.gate_, nullptr);
    config_ = std::move(other.config_);
  }
  return *this;
}

void ConfigWriteGate::Pass::Release() {
  if (gate_ != nullptr) {
    std::exchange(gate_, nullptr)->Leave(config_->version());
  }
}

ConfigWriteGate::Pass ConfigWriteGate::Enter(
    const common::PipelineClient& pipelines) {
  Pass pass;
  absl::MutexLock lock(&mu_);
  pass.config_ = pipelines.GetConfig();
  ++running_[pass.config_->version()];
  pass.gate_ = this;
  return pass;
}

void ConfigWriteGate::Leave(int64_t version) {
  absl::MutexLock lock(&mu_);
  auto it = running_.find(version);
  if (it != running_.end() && --it->second == 0) running_.erase(it);
}

absl::Status ConfigWriteGate::AwaitVersion(
    const common::PipelineClient& pipelines, int64_t version,
    absl::Time deadline) {
  // The snapshot is replaced by the client's watch thread, which has no
  // hook to wait on; it arrives within milliseconds of the change, so a
  // short poll is enough.
  absl::Duration pause = absl::Milliseconds(1);
  for (;;) {
    const int64_t have = pipelines.GetConfig()->version();
    if (have >= version) break;
    const absl::Time now = absl::Now();
    if (now >= deadline) {
      return absl::UnavailableError(
          absl::StrCat("deals holds pipeline configuration version ", have,
                       ", not yet version ", version, "; retry"));
    }
    absl::SleepFor(std::min(pause, deadline - now));
    pause = std::min(pause * 2, absl::Milliseconds(20));
  }
  absl::MutexLock lock(&mu_);
  auto older_done = [this, version]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return running_.empty() || running_.begin()->first >= version;
  };
  if (!mu_.AwaitWithDeadline(absl::Condition(&older_done), deadline)) {
    return absl::UnavailableError(absl::StrCat(
        "writes checked against pipeline configuration older than version ",
        version, " are still running; retry"));
  }
  return absl::OkStatus();
}

int ConfigWriteGate::in_flight() const {
  absl::MutexLock lock(&mu_);
  int total = 0;
  for (const auto& [version, count] : running_) total += count;
  return total;
}

}  // namespace crm::deals
