// Cooperative cancellation. A CancelToken is set by whoever wants a run to stop: the CLI's
// SIGINT/SIGTERM handler (async-signal-safe: one atomic store), Python's KeyboardInterrupt,
// another thread. Long-running loops call throw_if_cancelled() between units of work (a
// chunk, a tensor), which throws Cancelled; the destructors of temporary outputs
// (io/output.h) then remove them, so a cancelled run leaves the previous output or none.
#pragma once

#include <atomic>

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

}  // namespace ckb
