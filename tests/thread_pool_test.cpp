// core/thread_pool.h: every task runs once, the first exception reaches the waiter, later
// tasks are skipped, nested batches complete even when every worker waits on one, and tasks
// run under their submitter's run token.
#include "core/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <numeric>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

#include "core/cancel.h"

namespace ckb {
namespace {

TEST(ThreadPool, ParallelForRunsEachIndexOnce) {
  ThreadPool pool(3);
  std::vector<std::atomic<int>> hits(1000);
  parallel_for(hits.size(), 4, [&](std::size_t i) { hits[i] += static_cast<int>(i) + 1; }, pool);
  for (std::size_t i = 0; i < hits.size(); ++i) EXPECT_EQ(hits[i].load(), static_cast<int>(i) + 1) << i;
}

TEST(ThreadPool, FirstExceptionReachesTheWaiterAndLaterTasksAreSkipped) {
  ThreadPool pool(1);
  TaskBatch batch(pool);
  std::atomic<int> ran{0};
  batch.submit([&] { ++ran; });
  batch.submit([&] {
    ++ran;
    throw std::runtime_error("task 2 failed");
  });
  std::string what;
  try {
    batch.wait();
  } catch (const std::runtime_error& e) {
    what = e.what();
  }
  EXPECT_EQ(what, "task 2 failed");
  EXPECT_EQ(ran.load(), 2);

  TaskBatch again(pool);  // the pool is still usable
  int sum = 0;
  again.submit([&] { sum = 42; });
  again.wait();
  EXPECT_EQ(sum, 42);
}

TEST(ThreadPool, ParallelForRethrowsTheTasksException) {
  ThreadPool pool(2);
  std::string what;
  try {
    parallel_for(
        1000, 3,
        [&](std::size_t i) {
          if (i == 10) throw std::out_of_range("index 10");
        },
        pool);
  } catch (const std::out_of_range& e) {
    what = e.what();
  }
  EXPECT_EQ(what, "index 10");
}

TEST(ThreadPool, NestedBatchesCompleteWhenEveryWorkerWaits) {
  ThreadPool pool(2);
  std::vector<std::atomic<int>> inner(16 * 64);
  // 16 outer tasks on 2 workers, each waiting on its own 64-task batch: the waiters run their
  // own tasks, so this finishes instead of deadlocking.
  parallel_for(16, 16, [&](std::size_t o) {
    parallel_for(64, 8, [&](std::size_t i) { ++inner[o * 64 + i]; }, pool);
  }, pool);
  for (std::size_t i = 0; i < inner.size(); ++i) EXPECT_EQ(inner[i].load(), 1) << i;
}

TEST(ThreadPool, SharedPoolHasAWorkerPerCore) {
  EXPECT_EQ(ThreadPool::shared().size(), std::max(1u, std::thread::hardware_concurrency()));
}

// Work handed to the pool runs under the submitter's run token (core/cancel.h), so code deep
// below (a remote request) sees the cancellation of the run it works for and no other. The
// first tasks wait until a second thread has joined in, so pool workers, not only the waiting
// thread, are proven to carry the token.
TEST(ThreadPool, TasksSeeTheirSubmittersRunToken) {
  CancelToken a, b;
  const auto run_tasks = [](std::vector<const CancelToken*>& seen, std::set<std::thread::id>& threads) {
    std::mutex mu;
    std::condition_variable cv;
    parallel_for(seen.size(), 4, [&](std::size_t i) {
      std::unique_lock lk(mu);
      threads.insert(std::this_thread::get_id());
      cv.notify_all();
      cv.wait_for(lk, std::chrono::seconds(5), [&] { return threads.size() >= 2; });
      seen[i] = current_cancel();
    });
  };
  std::vector<const CancelToken*> seen_a(64), seen_b(64);
  std::set<std::thread::id> threads_a, threads_b;
  std::thread other([&] {
    const CancelScope run(&b);
    run_tasks(seen_b, threads_b);
  });
  {
    const CancelScope run(&a);
    run_tasks(seen_a, threads_a);
    {
      const CancelScope cleanup(nullptr);  // clean-up that must finish: no token
      EXPECT_EQ(current_cancel(), nullptr);
    }
    EXPECT_EQ(current_cancel(), &a);
  }
  other.join();
  EXPECT_EQ(current_cancel(), nullptr);
  EXPECT_GE(threads_a.size(), 2u);
  EXPECT_GE(threads_b.size(), 2u);
  for (std::size_t i = 0; i < seen_a.size(); ++i) {
    EXPECT_EQ(seen_a[i], &a) << i;
    EXPECT_EQ(seen_b[i], &b) << i;
  }
  a.cancel();
  const CancelScope run(&a);
  EXPECT_THROW(throw_if_current_cancelled(), Cancelled);
  auto later = std::thread(with_current_cancel([] { EXPECT_THROW(throw_if_current_cancelled(), Cancelled); }));
  later.join();
}
}  // namespace
}  // namespace ckb
