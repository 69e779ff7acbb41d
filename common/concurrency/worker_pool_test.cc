#include "common/concurrency/worker_pool.h"

#include <atomic>

#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"

namespace crm::common {
namespace {

WorkerPoolOptions Options(int threads, size_t max_queue) {
  WorkerPoolOptions options;
  options.threads = threads;
  options.max_queue = max_queue;
  return options;
}

TEST(WorkerPoolTest, RunsEverySubmittedTask) {
  std::atomic<int> ran{0};
  {
    WorkerPool pool(Options(3, 1000));
    for (int i = 0; i < 500; ++i) {
      ASSERT_TRUE(pool.TrySubmit([&ran] { ran.fetch_add(1); }));
    }
  }  // The destructor runs what is queued before joining.
  EXPECT_EQ(ran.load(), 500);
}

TEST(WorkerPoolTest, RefusesWhenTheQueueIsFull) {
  WorkerPool pool(Options(1, 2));
  absl::Notification started;
  absl::Notification release;
  ASSERT_TRUE(pool.TrySubmit([&] {
    started.Notify();
    release.WaitForNotification();
  }));
  started.WaitForNotification();  // The only thread is busy now.
  EXPECT_TRUE(pool.TrySubmit([] {}));
  EXPECT_TRUE(pool.TrySubmit([] {}));
  EXPECT_FALSE(pool.TrySubmit([] {}));
  EXPECT_EQ(pool.queued(), 2u);
  release.Notify();
}

TEST(WorkerPoolTest, RefusesAfterShutdown) {
  WorkerPool pool(Options(2, 10));
  pool.Shutdown();
  pool.Shutdown();  // Idempotent.
  EXPECT_FALSE(pool.TrySubmit([] {}));
}

}  // namespace
}  // namespace crm::common
