// The progress line a writing command draws on a terminal, fed by the engine's progress
// callback (from worker threads), and the process's cancellation token (set by SIGINT /
// SIGTERM, see main.cpp).
#pragma once

#include <chrono>
#include <mutex>

#include "engine/api.h"

namespace ckb::cli {

class Progress {
 public:
  explicit Progress(bool enabled) : enabled_(enabled), t0_(std::chrono::steady_clock::now()) {}
  ~Progress() { done(); }  // an error message must not land on the progress line
  void update(const engine::Progress& p);  // thread-safe; redraws at most 5 times a second
  void done();                             // clears the line (once)

 private:
  bool enabled_;
  bool drawn_ = false;
  std::mutex mu_;
  std::chrono::steady_clock::time_point t0_, last_{};
};

CancelToken& cancel_token();

}  // namespace ckb::cli
