// The one thread pool: a fixed set of workers that run submitted tasks, and batches whose
// waiter gets the batch's first exception. Used for fork/join parallelism inside a read or a
// pass (zarr chunk copies, LoRA merge parts, diff comparisons).
//
// Contract:
//  - ThreadPool::shared() has hardware_concurrency() workers, started on first use and
//    joined at exit; a pool never grows.
//  - A TaskBatch's tasks run on the pool's workers *and* on the thread that waits: wait()
//    takes the batch's tasks no worker has started yet and runs them itself, then sleeps
//    (no busy waiting) until the started ones finish. So a batch completes even when every
//    worker is busy (a batch waited on from inside a pool task, or all workers held by other
//    batches) and nested batches cannot deadlock.
//  - The first exception thrown by a task is rethrown by wait(); tasks of the batch not yet
//    started when it happened are skipped. A batch must be waited on before it is destroyed
//    (the destructor waits and swallows the exception if not).
//  - A task runs under its submitter's run token (core/cancel.h current_cancel()).
//  - Tasks must not block on something only a later task of the same pool provides (a
//    producer/consumer pair); such threads stay dedicated (zarr's decode-ahead, the
//    executor's memory-windowed workers).
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace ckb {

class ThreadPool {
 public:
  explicit ThreadPool(unsigned workers);
  ~ThreadPool();  // finishes queued tasks, joins the workers
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  unsigned size() const { return static_cast<unsigned>(workers_.size()); }
  void submit(std::function<void()> task);

  static ThreadPool& shared();

 private:
  void run();
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  bool stop_ = false;
  std::vector<std::thread> workers_;
};

class TaskBatch {
 public:
  explicit TaskBatch(ThreadPool& pool = ThreadPool::shared());
  ~TaskBatch();
  TaskBatch(const TaskBatch&) = delete;
  TaskBatch& operator=(const TaskBatch&) = delete;

  void submit(std::function<void()> task);
  // Runs the tasks no worker has taken, waits for the rest, rethrows the first exception.
  void wait();

 private:
  struct State;
  ThreadPool& pool_;
  std::shared_ptr<State> s_;
};

// Calls fn(i) for every i in [0, n) on up to `threads` threads (the caller and pool workers),
// each taking the next index; returns when all calls have returned and rethrows the first
// exception (indices not yet taken are then skipped). threads <= 1 runs them all here.
void parallel_for(std::size_t n, unsigned threads, const std::function<void(std::size_t)>& fn,
                  ThreadPool& pool = ThreadPool::shared());

}  // namespace ckb
