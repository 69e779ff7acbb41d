// Tells listeners (WatchConfig streams) that the config version changed.
// Thread-safe. Listeners run under the notifier's lock: they must be quick
// and must not call back into the notifier.
#pragma once

#include <cstdint>
#include <functional>
#include <map>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace crm::pipeline_config {

class VersionNotifier {
 public:
  using Listener = std::function<void(int64_t version)>;

  // The version listeners get when the notifier closes (server stopping).
  static constexpr int64_t kClosed = -1;

  // Returns a handle for Unsubscribe. On a closed notifier the listener is
  // called with kClosed at once and not kept (the handle is 0).
  int64_t Subscribe(Listener listener) {
    absl::MutexLock lock(&mu_);
    if (closed_) {
      listener(kClosed);
      return 0;
    }
    listeners_.emplace(++last_handle_, std::move(listener));
    return last_handle_;
  }
  // After it returns the listener is not running and will not run again.
  void Unsubscribe(int64_t handle) {
    absl::MutexLock lock(&mu_);
    listeners_.erase(handle);
  }
  void Notify(int64_t version) {
    absl::MutexLock lock(&mu_);
    for (auto& [handle, listener] : listeners_) listener(version);
  }
  // Tells every listener, present and future, that no more versions come.
  void Close() {
    absl::MutexLock lock(&mu_);
    closed_ = true;
    for (auto& [handle, listener] : listeners_) listener(kClosed);
  }
  size_t listener_count() const {
    absl::MutexLock lock(&mu_);
    return listeners_.size();
  }

 private:
  mutable absl::Mutex mu_;
  int64_t last_handle_ ABSL_GUARDED_BY(mu_) = 0;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  std::map<int64_t, Listener> listeners_ ABSL_GUARDED_BY(mu_);
};

}  // namespace crm::pipeline_config
