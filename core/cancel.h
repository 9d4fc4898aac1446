// Cooperative cancellation. A CancelToken is set by whoever wants a run to stop: the CLI's
// SIGINT/SIGTERM handler (async-signal-safe: one atomic store), Python's KeyboardInterrupt,
// another thread. Long-running loops call throw_if_cancelled() between units of work (a
// chunk, a tensor), which throws Cancelled; the destructors of temporary outputs
// (io/output.h) then remove them, so a cancelled run leaves the previous output or none.
//
// Code far below the run (a remote request waiting on a stalled server or in a retry's
// backoff) cannot be handed the token through every call; it asks current_cancel() instead: the
// token of the run the calling thread works for. A run sets it with a CancelScope on its own
// thread; work handed to another thread carries it with with_current_cancel() (the thread
// pool, the executor's workers, read-ahead threads), so concurrent runs in one process each see
// only their own token.
#pragma once

#include <atomic>
#include <utility>

#include "core/errors.h"

namespace ckb {

class CancelToken {
 public:
  // `signo`: the signal that asked (0: none). Safe to call from a signal handler.
  void cancel(int signo = 0) noexcept {
    signal_.store(signo, std::memory_order_relaxed);
    cancelled_.store(true, std::memory_order_release);
  }
  bool cancelled() const noexcept { return cancelled_.load(std::memory_order_acquire); }
  int signal() const noexcept { return signal_.load(std::memory_order_relaxed); }
  void throw_if_cancelled() const {
    if (cancelled()) throw Cancelled(signal());
  }

 private:
  std::atomic<bool> cancelled_{false};
  std::atomic<int> signal_{0};
};

// The token of the run this thread works for; nullptr outside any CancelScope.
const CancelToken* current_cancel() noexcept;

// Throws Cancelled when the current run's token (current_cancel()) is cancelled.
void throw_if_current_cancelled();

// Makes `token` this thread's current_cancel() until destroyed (then the previous one again).
// nullptr: none, for clean-up that must run to its end after a cancellation.
class CancelScope {
 public:
  explicit CancelScope(const CancelToken* token) noexcept;
  ~CancelScope();
  CancelScope(const CancelScope&) = delete;
  CancelScope& operator=(const CancelScope&) = delete;

 private:
  const CancelToken* previous_;
};

// `fn` wrapped to run under the calling thread's current token, wherever it is called. The
// token is held by pointer: it must outlive the work (a run's threads are joined before it ends).
template <class F>
auto with_current_cancel(F fn) {
  return [token = current_cancel(), fn = std::move(fn)](auto&&... args) mutable -> decltype(auto) {
    const CancelScope scope(token);
    return fn(std::forward<decltype(args)>(args)...);
  };
}

}  // namespace ckb
