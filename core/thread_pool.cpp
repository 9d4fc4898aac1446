// Implementation of core/thread_pool.h. A batch keeps its own queue of tasks; the pool gets
// one "run the next task of this batch" job per task, so whoever gets there first (a worker
// or the waiter) runs it and a late job finds the queue empty and returns.
#include "core/thread_pool.h"

#include <algorithm>
#include <atomic>
#include <utility>

#include "core/cancel.h"

namespace ckb {

ThreadPool::ThreadPool(unsigned workers) {
  workers_.reserve(std::max(1u, workers));
  for (unsigned i = 0; i < std::max(1u, workers); ++i) workers_.emplace_back([this] { run(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::submit(std::function<void()> task) {
  {
    std::lock_guard lk(mu_);
    queue_.push_back(with_current_cancel(std::move(task)));  // the submitter's run, on the worker
  }
  cv_.notify_one();
}

void ThreadPool::run() {
  while (true) {
    std::function<void()> task;
    {
      std::unique_lock lk(mu_);
      cv_.wait(lk, [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;
      task = std::move(queue_.front());
      queue_.pop_front();
    }
    task();  // batch jobs never throw: they record the exception in their batch
  }
}

ThreadPool& ThreadPool::shared() {
  static ThreadPool pool(std::max(1u, std::thread::hardware_concurrency()));
  return pool;
}

struct TaskBatch::State {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::function<void()>> pending;
  std::size_t running = 0;
  std::exception_ptr error;

  // Runs the next pending task, if any; false when none was left.
  bool run_one() {
    std::function<void()> task;
    {
      std::lock_guard lk(mu);
      if (pending.empty()) return false;
      task = std::move(pending.front());
      pending.pop_front();
      ++running;
    }
    std::exception_ptr failure;
    try {
      task();
    } catch (...) {
      failure = std::current_exception();
    }
    {
      std::lock_guard lk(mu);
      if (failure && !error) {
        error = failure;
        pending.clear();  // not started: skipped
      }
      --running;
    }
    cv.notify_all();
    return true;
  }
};

TaskBatch::TaskBatch(ThreadPool& pool) : pool_(pool), s_(std::make_shared<State>()) {}

TaskBatch::~TaskBatch() {
  try {
    wait();
  } catch (...) {
  }
}

void TaskBatch::submit(std::function<void()> task) {
  {
    std::lock_guard lk(s_->mu);
    if (s_->error) return;
    s_->pending.push_back(std::move(task));
  }
  pool_.submit([s = s_] { s->run_one(); });
}

void TaskBatch::wait() {
  while (s_->run_one()) {
  }
  std::unique_lock lk(s_->mu);
  s_->cv.wait(lk, [&] { return s_->running == 0 && s_->pending.empty(); });
  if (auto e = std::exchange(s_->error, nullptr)) std::rethrow_exception(e);
}

void parallel_for(std::size_t n, unsigned threads, const std::function<void(std::size_t)>& fn, ThreadPool& pool) {
  if (n == 0) return;
  threads = static_cast<unsigned>(std::min<std::size_t>(std::max(1u, threads), n));
  if (threads == 1) {
    for (std::size_t i = 0; i < n; ++i) fn(i);
    return;
  }
  std::atomic<std::size_t> next{0};
  std::atomic<bool> failed{false};
  auto loop = [&] {
    try {
      for (std::size_t i = next++; i < n && !failed.load(std::memory_order_relaxed); i = next++) fn(i);
    } catch (...) {
      failed = true;
      throw;
    }
  };
  TaskBatch batch(pool);
  for (unsigned k = 0; k < threads; ++k) batch.submit(loop);
  batch.wait();
}

}  // namespace ckb
