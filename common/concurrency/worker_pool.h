// A fixed set of threads running queued closures, for work that may block
// (a permission fetch from another service, an fsync, a long index scan) and
// so must not run on gRPC's callback threads, which serve every other call.
//
//   WorkerPool pool(WorkerPoolOptions{});   // 8 threads, 10000 queued
//   if (!pool.TrySubmit([reactor, ...] { ...; reactor->Finish(status); })) {
//     reactor->Finish(grpc::Status(grpc::RESOURCE_EXHAUSTED, "busy"));
//   }
//
// The queue is bounded: when it is full TrySubmit refuses instead of letting
// latency grow without limit, and the caller answers RESOURCE_EXHAUSTED.
// Shutdown() runs what is queued, then joins the threads.
#pragma once

#include <cstddef>
#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace crm::common {

struct WorkerPoolOptions {
  int threads = 8;
  size_t max_queue = 10000;
};

class WorkerPool {
 public:
  explicit WorkerPool(WorkerPoolOptions options);
  // Calls Shutdown().
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // Queues `task`; false (and `task` dropped unrun) when the queue is full or
  // the pool is shutting down. Thread-safe.
  [[nodiscard]] bool TrySubmit(std::function<void()> task);

  // Tasks queued and not yet started.
  size_t queued() const;

  // Stops accepting tasks, runs the queued ones and joins the threads.
  // Idempotent.
  void Shutdown();

 private:
  void Run();

  const WorkerPoolOptions options_;
  mutable absl::Mutex mu_;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace crm::common
