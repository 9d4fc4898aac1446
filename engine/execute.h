// The streaming executor: writes a target tree through a format's Writer with a pool of
// worker threads. Each tensor is read in chunks (zero-copy when its source is mmap'd) and
// written at its final offset. A memory window bounds what is resident: a tensor task
// reserves min(size, chunk) plus whatever its source must hold (resident_bytes(): a
// materialised group for permute/einsum/...), and waits while the window is full; a task
// larger than the window runs alone. So peak memory ~ window + the largest group.
//
// Cancellation: every worker checks ExecOptions::cancel before each tensor (or range) and
// after each chunk, so a cancelled run stops within about a chunk per worker (a zero-copy
// tensor goes to the writer in one piece: within that tensor); all workers are joined and
// Cancelled propagates out of execute() without committing, so the Writer's destructor
// removes its temporaries (io/output.h) and the destination keeps its previous content.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/cancel.h"
#include "core/tree.h"
#include "formats/format.h"

namespace ckb {

struct ExecOptions {
  unsigned threads = 0;                 // 0 = hardware concurrency
  std::uint64_t max_memory = 0;         // 0 = default window (1 GiB)
  std::uint64_t chunk_bytes = 32u << 20;
  bool stats = false;                   // per-tensor min/max/mean/NaN/inf
  const CancelToken* cancel = nullptr;  // checked between chunks; execute() throws Cancelled
  // Called from a separate thread about 5 times a second while tensors are written, and once
  // with everything done before the commit; never concurrently with itself.
  std::function<void(std::uint64_t bytes_done, std::uint64_t bytes_total, std::size_t tensors_done,
                     std::size_t tensors_total)>
      on_progress;
  // One process of several (engine/shared_run.h): the writer to use, already begun (null:
  // execute() makes one and begins it), and the tensor slots this process writes (null: all).
  Writer* writer = nullptr;
  const std::vector<bool>* owned = nullptr;
};

struct TensorStats {
  bool numeric = false;
  double min = 0, max = 0, mean = 0;
  std::uint64_t nan = 0, inf = 0, count = 0;
};

struct ExecResult {
  std::vector<std::string> names;       // tensor slots in order
  std::vector<TensorStats> stats;       // when ExecOptions::stats
  std::uint64_t bytes = 0;
  double seconds = 0;
  std::uint64_t peak_window_bytes = 0;  // largest reservation total seen
};

ExecResult execute(const Node& target, const Format& fmt, const std::string& dst, const WriteOptions& wo,
                   const ExecOptions& eo);

// Accumulates stats over a chunk of elements of `dtype`.
void accumulate_stats(TensorStats& s, DType dtype, const std::byte* data, std::size_t count, double& sum);

}  // namespace ckb
