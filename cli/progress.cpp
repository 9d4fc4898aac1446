// Implementation of cli/progress.h.
#include "cli/progress.h"

#include <cstdio>

#include "cli/util.h"

namespace ckb::cli {

void Progress::update(const engine::Progress& p) {
  if (!enabled_) return;
  std::lock_guard lock(mu_);
  const auto now = std::chrono::steady_clock::now();
  if (drawn_ && now - last_ < std::chrono::milliseconds(200) && p.bytes_done < p.bytes_total) return;
  last_ = now;
  drawn_ = true;
  const double secs = std::chrono::duration<double>(now - t0_).count();
  const double pct = p.bytes_total ? 100.0 * static_cast<double>(p.bytes_done) / static_cast<double>(p.bytes_total) : 100.0;
  const auto rate = static_cast<std::uint64_t>(secs > 0 ? static_cast<double>(p.bytes_done) / secs : 0);
  std::fprintf(stderr, "\r  %5.1f%%  %s / %s  %s/s  %zu/%zu tensors   ", pct, human_bytes(p.bytes_done).c_str(),
               human_bytes(p.bytes_total).c_str(), human_bytes(rate).c_str(), p.tensors_done, p.tensors_total);
}

void Progress::done() {
  if (!enabled_ || !drawn_) return;
  drawn_ = false;
  std::fprintf(stderr, "\r%90s\r", "");
}

CancelToken& cancel_token() {
  static auto* token = new CancelToken;  // never destroyed: the signal watchdog outlives main
  return *token;
}

}  // namespace ckb::cli
