// Region and parallel reads of a tensor's bytes (core/region.h).
#include "core/region.h"

#include <algorithm>
#include <thread>

#include "core/errors.h"
#include "core/thread_pool.h"

namespace ckb {
namespace {

constexpr std::uint64_t kSplitBytes = 8ull << 20;  // below this, one read is faster than a fan-out

unsigned workers(unsigned threads) {
  return threads ? threads : std::max(1u, std::thread::hardware_concurrency());
}

}  // namespace

void read_parallel(const TensorSource& src, std::uint64_t offset, std::span<std::byte> out, unsigned threads) {
  const std::uint64_t n = out.size();
  const unsigned w = workers(threads);
  if (!src.parallel_reads() || w <= 1 || n < 2 * kSplitBytes) {
    src.read(offset, out);
    return;
  }
  const std::uint64_t parts = std::min<std::uint64_t>(w * 4, n / kSplitBytes);
  // Split points on 4 KiB boundaries, so on whole elements of any dtype (a cast source
  // converts whole elements only; `offset` is the caller's, element-aligned).
  const std::uint64_t step = ((n + parts - 1) / parts + 4095) & ~std::uint64_t{4095};
  parallel_for(parts, w, [&](std::size_t i) {
    const std::uint64_t a = i * step, b = std::min(n, a + step);
    if (a < b) src.read(offset + a, out.subspan(a, b - a));
  });
}

void read_region(const Tensor& t, std::span<const std::int64_t> start, std::span<const std::int64_t> stop,
                 std::span<std::byte> out, const std::string& name, unsigned threads) {
  const Shape& shape = t.info.shape;
  const std::size_t nd = shape.size();
  if (start.size() != nd || stop.size() != nd)
    throw UsageError(name + ": a region of a " + std::to_string(nd) + "-d tensor needs " + std::to_string(nd) +
                     " start and stop indices, got " + std::to_string(start.size()) + " and " + std::to_string(stop.size()));
  std::uint64_t count = 1;
  bool whole = true;
  for (std::size_t d = 0; d < nd; ++d) {
    if (start[d] < 0 || stop[d] < start[d] || stop[d] > shape[d])
      throw UsageError(name + ": region [" + std::to_string(start[d]) + ", " + std::to_string(stop[d]) + ") of axis " +
                       std::to_string(d) + " is outside its size " + std::to_string(shape[d]));
    count *= static_cast<std::uint64_t>(stop[d] - start[d]);
    whole &= start[d] == 0 && stop[d] == shape[d];
  }
  const std::size_t bits = dtype_bits(t.info.dtype);
  if (bits % 8 != 0 && !whole)
    throw UsageError(name + ": " + std::string(dtype_name(t.info.dtype)) + " elements are smaller than a byte; read the tensor whole");
  const std::uint64_t want = whole ? t.info.nbytes() : count * (bits / 8);
  if (out.size() != want)
    throw UsageError(name + ": the region holds " + std::to_string(want) + " bytes, the buffer " + std::to_string(out.size()));
  if (want == 0) return;
  if (whole) {
    read_parallel(*t.source, 0, out, threads);
    return;
  }
  const std::uint64_t elem = bits / 8;
  // Element strides of the C-order tensor, and the innermost axis k whose slice is partial:
  // axes after k are whole, so each index of the axes before k is one contiguous run.
  std::vector<std::uint64_t> stride(nd, 1);
  for (std::size_t d = nd; d-- > 1;) stride[d - 1] = stride[d] * static_cast<std::uint64_t>(shape[d]);
  std::size_t k = nd - 1;
  while (k > 0 && start[k] == 0 && stop[k] == shape[k]) --k;
  const std::uint64_t run = static_cast<std::uint64_t>(stop[k] - start[k]) * stride[k] * elem;
  const std::uint64_t runs = want / run;
  auto run_offset = [&](std::uint64_t r) {  // byte offset of run r in the tensor
    std::uint64_t rest = r, off = static_cast<std::uint64_t>(start[k]) * stride[k];
    for (std::size_t d = k; d-- > 0;) {  // decompose r over the extents of axes k-1 .. 0
      const auto ext = static_cast<std::uint64_t>(stop[d] - start[d]);
      off += (static_cast<std::uint64_t>(start[d]) + rest % ext) * stride[d];
      rest /= ext;
    }
    return off * elem;
  };
  auto read_run = [&](std::uint64_t r) { t.source->read(run_offset(r), out.subspan(r * run, run)); };
  if (runs == 1) {
    read_parallel(*t.source, run_offset(0), out, threads);
  } else if (t.source->parallel_reads() && want >= kSplitBytes) {
    parallel_for(runs, workers(threads), [&](std::size_t r) { read_run(r); });
  } else {
    for (std::uint64_t r = 0; r < runs; ++r) read_run(r);
  }
}

}  // namespace ckb
