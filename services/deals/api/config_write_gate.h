// Which pipeline-config version each write in flight was checked against,
// so a count can be made "as of" a version.
//
// pipeline-config deletes a stage or pipeline in three steps: it marks it
// `deleting` at version V, asks CountDeals with min_config_version = V, and
// deletes only on 0. Deals refuses to put deals into a `deleting` stage or
// pipeline, but a write that took its configuration before V may still be
// running. The gate closes that gap:
//
//   ConfigWriteGate::Pass pass = gate.Enter(pipelines);  // per write
//   ... validate against pass.config(), commit ...
//   // pass goes out of scope once the write is committed
//
//   CRM_RETURN_IF_ERROR(gate.AwaitVersion(pipelines, V, deadline));
//   ... count: no deal can arrive in what version V marks deleting ...
//
// Enter takes the snapshot and registers the write under one lock, and the
// snapshot's version never goes back, so once AwaitVersion returns every
// write still running, and every later one, saw version V or newer.
//
// Thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

#include "common/pipelines_client/pipeline_client.h"

namespace crm::deals {

class ConfigWriteGate {
 public:
  // One write's registration; releases it when destroyed. Move-only.
  class Pass {
   public:
    Pass() = default;
    Pass(Pass&& other) noexcept { *this = std::move(other); }
    Pass& operator=(Pass&& other) noexcept;
    ~Pass() { Release(); }

    // The configuration the write must be checked against.
    const std::shared_ptr<const common::ConfigView>& config() const {
      return config_;
    }

   private:
    friend class ConfigWriteGate;
    void Release();

    ConfigWriteGate* gate_ = nullptr;
    std::shared_ptr<const common::ConfigView> config_;
  };

  // The current configuration of `pipelines`, with the write registered
  // under its version until the pass is destroyed.
  [[nodiscard]] Pass Enter(const common::PipelineClient& pipelines);

  // Returns once `pipelines` holds `version` or newer and no write entered
  // with an older one is still running. UNAVAILABLE, naming both versions,
  // when that does not happen before `deadline`.
  [[nodiscard]] absl::Status AwaitVersion(
      const common::PipelineClient& pipelines, int64_t version,
      absl::Time deadline);

  // Writes running now (for tests).
  int in_flight() const;

 private:
  void Leave(int64_t version);

  mutable absl::Mutex mu_;
  // Config version -> writes running that entered with it.
  std::map<int64_t, int> running_ ABSL_GUARDED_BY(mu_);
};

}  // namespace crm::deals
