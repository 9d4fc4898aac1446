// Implementation of engine/execute.h (and formats/format.h's write_checkpoint).
#include "engine/execute.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <thread>

#include "core/errors.h"
#include "engine/stream_chains.h"
#include "io/direct_io.h"
#include "ops/cast.h"

namespace ckb {
namespace {

constexpr std::size_t kDirectBlock = DirectWriter::kBlock;

class ByteWindow {
 public:
  explicit ByteWindow(std::uint64_t cap) : cap_(cap) {}
  void acquire(std::uint64_t n) {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return used_ == 0 || used_ + n <= cap_; });
    used_ += n;
    peak_ = std::max(peak_, used_);
  }
  void release(std::uint64_t n) {
    {
      std::lock_guard lock(mu_);
      used_ -= n;
    }
    cv_.notify_all();
  }
  std::uint64_t peak() const { return peak_; }

 private:
  std::uint64_t cap_, used_ = 0, peak_ = 0;
  std::mutex mu_;
  std::condition_variable cv_;
};


}  // namespace

namespace {

void accumulate_block(TensorStats& s, const double* v, std::size_t m, double& sum) {
  for (std::size_t k = 0; k < m; ++k) {
    const double x = v[k];
    if (std::isnan(x)) {
      ++s.nan;
      continue;
    }
    if (std::isinf(x)) {
      ++s.inf;
      continue;
    }
    if (s.count == 0) s.min = s.max = x;
    s.min = std::min(s.min, x);
    s.max = std::max(s.max, x);
    sum += x;
    ++s.count;
  }
}

}  // namespace

void accumulate_stats(TensorStats& s, DType dtype, const std::byte* data, std::size_t count, double& sum) {
  if (!dtype_is_float(dtype) && !dtype_is_signed_int(dtype) && !dtype_is_unsigned_int(dtype)) return;
  s.numeric = true;
  if (dtype_is_subbyte(dtype)) {  // packed elements: converted in one call
    std::vector<double> v(count);
    convert_elements(dtype, DType::F64, data, reinterpret_cast<std::byte*>(v.data()), count, nullptr);
    accumulate_block(s, v.data(), count, sum);
    return;
  }
  // In blocks through a small buffer: a whole 32 MiB piece as doubles would be 128 MiB per
  // worker (2 GiB on a 16-core host).
  constexpr std::size_t kStatsBlock = 8192;
  double v[kStatsBlock];
  const std::size_t esz = dtype_size(dtype);
  for (std::size_t at = 0; at < count; at += kStatsBlock) {
    const std::size_t m = std::min(kStatsBlock, count - at);
    convert_elements(dtype, DType::F64, data + at * esz, reinterpret_cast<std::byte*>(v), m, nullptr);
    accumulate_block(s, v, m, sum);
  }
}

ExecResult execute(const Node& target, const Format& fmt, const std::string& dst, const WriteOptions& wo,
                   const ExecOptions& eo) {
  const CancelScope cancel_scope(eo.cancel);  // remote requests below stop when the run is cancelled
  auto t0 = std::chrono::steady_clock::now();
  std::unique_ptr<Writer> own;
  Writer* writer = eo.writer;
  if (!writer) {
    if (!fmt.make_writer) throw UsageError("writing " + fmt.name + " is not supported");
    check_bytes_only_dtypes(target, fmt);
    own = fmt.make_writer(dst, wo);
    own->begin(target);
    writer = own.get();
  }
  auto tensors = tensor_list(target);
  auto mine = [&](std::size_t i) { return !eo.owned || (i < eo.owned->size() && (*eo.owned)[i]); };
  ExecResult res;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    res.names.push_back(tensors[i].first);
    if (mine(i)) res.bytes += tensors[i].second->info.nbytes();
  }
  if (eo.stats) res.stats.resize(tensors.size());
  unsigned threads = eo.threads ? eo.threads : std::max(1u, std::thread::hardware_concurrency());
  // Each worker holds about two pieces (its output buffer and the input pages behind it, twice
  // as many for a narrowing cast): on a many-core host the pieces shrink so that all workers
  // together stay within a quarter of the memory window per piece (16 MiB for 16 workers and
  // the default 1 GiB), never below 4 MiB.
  const std::uint64_t budget = eo.max_memory ? eo.max_memory : (1ull << 30);
  const std::uint64_t per_worker = std::max<std::uint64_t>(4u << 20, budget / (4ull * std::max(1u, threads)));
  const std::uint64_t chunk = std::max<std::uint64_t>(std::min<std::uint64_t>(eo.chunk_bytes, per_worker), 1 << 16);
  // What each tensor holds in memory while it is processed, and the order: largest first, so
  // the longest single-threaded decodes and merges start at once instead of ending the run.
  // A large tensor whose source computes disjoint ranges independently (a LoRA merge, a cast)
  // is cut into ranges that several workers produce at once; any other is read front to back
  // by one worker, which a streaming source serves without holding anything resident.
  const unsigned nthreads = threads;
  auto split = [&](const Tensor& t) {
    return t.info.nbytes() >= 4 * chunk && nthreads > 1 && !t.source->contiguous() && t.source->parallel_reads() &&
           !writer->streams_in_order();
  };
  std::vector<std::uint64_t> cost(tensors.size());
  std::vector<std::size_t> order(tensors.size());
  std::uint64_t largest = 0;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = *tensors[i].second;
    const std::uint64_t n = t.info.nbytes();
    cost[i] = (n && t.source->contiguous() ? 0 : std::min(n, chunk)) +
              (split(t) ? t.source->resident_bytes() : t.source->sequential_resident_bytes());
    if (mine(i)) largest = std::max(largest, cost[i]);
    order[i] = i;
  }
  if (eo.owned) std::erase_if(order, [&](std::size_t i) { return !mine(i); });
  if (!writer->prefers_file_order())
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
      return std::make_pair(cost[a], tensors[a].second->info.nbytes()) > std::make_pair(cost[b], tensors[b].second->info.nbytes());
    });
  // The window bounds data in flight to --max-memory plus the largest single tensor's need,
  // so the largest tensor never runs alone while everything else waits.
  ByteWindow window((eo.max_memory ? eo.max_memory : (1ull << 30)) + largest);

  // Work items: whole tensors or ranges of split ones. The source is released when its last
  // range is done. A unit is a run of items one worker does in turn: a range, a tensor, or a
  // chain of tensors streaming from one stored array (engine/stream_chains.h), unsplit.
  struct Item {
    std::size_t slot;
    std::uint64_t off, len;
  };
  std::vector<Item> items;
  std::vector<std::pair<std::size_t, std::size_t>> units;  // [first, last) items
  std::vector<std::atomic<std::size_t>> pending(tensors.size());
  std::vector<const Tensor*> tensor_ptrs;
  for (auto& nt : tensors) tensor_ptrs.push_back(nt.second);
  for (const auto& chain : stream_chains(tensor_ptrs, order)) {
    const std::size_t first = items.size();
    for (std::size_t i : chain) {
      const Tensor& t = *tensors[i].second;
      const std::uint64_t n = t.info.nbytes();
      const std::uint64_t esz = dtype_is_subbyte(t.info.dtype) ? 1 : dtype_size(t.info.dtype);
      std::uint64_t piece = n;
      if (chain.size() == 1 && split(t))
        piece = std::max<std::uint64_t>(chunk, (n / nthreads + esz - 1) / esz * esz);
      std::size_t count = 0;
      for (std::uint64_t off = 0; off < n || (n == 0 && off == 0); off += piece) {
        items.push_back({i, off, std::min(piece, n - off)});
        if (chain.size() == 1) units.push_back({items.size() - 1, items.size()});
        ++count;
        if (n == 0) break;
      }
      pending[i] = count;
    }
    if (chain.size() > 1) units.push_back({first, items.size()});
  }
  threads = std::min<unsigned>(threads, static_cast<unsigned>(std::max<std::size_t>(1, units.size())));
  std::vector<double> sums(tensors.size(), 0.0);
  std::mutex stats_mu;

  std::atomic<std::size_t> next{0};
  std::atomic<std::uint64_t> done_bytes{0};
  std::atomic<std::size_t> tensors_done{0};
  std::exception_ptr failure;
  std::atomic<bool> failed{false};
  auto work = [&] {
    Bytes buf;
    try {
      for (std::size_t u = next++; u < units.size() && !failed; u = next++)
      for (std::size_t k = units[u].first; k < units[u].second && !failed; ++k) {
        if (eo.cancel) eo.cancel->throw_if_cancelled();
        const Item item = items[k];
        const std::size_t i = item.slot;
        const Tensor& t = *tensors[i].second;
        const std::uint64_t n = t.info.nbytes();
        const std::byte* direct = n ? t.source->contiguous() : nullptr;
        // A tensor's resident inputs (a decoded chunk shared by its ranges) are charged to
        // its first range; the others hold their own buffer and block.
        const std::uint64_t c = item.off == 0 ? cost[i] : 2 * std::min(item.len, chunk);
        window.acquire(c);
        struct Release {
          ByteWindow& w;
          std::uint64_t c;
          const Tensor& t;
          std::atomic<std::size_t>& left;
          std::atomic<std::size_t>& tensors_done;
          ~Release() {
            if (--left == 0) {
              t.source->release();
              ++tensors_done;
            }
            w.release(c);
          }
        } guard{window, c, t, pending[i], tensors_done};
        TensorStats st;
        double sum = 0;
        // The first piece is asked for from disk now; each later one while the piece before
        // it is computed and written.
        t.source->prefetch(item.off, std::min(item.len, chunk));
        const std::uint64_t end = item.off + item.len;
        for (std::uint64_t off = item.off; off < end; off += chunk) {
          std::size_t len = static_cast<std::size_t>(std::min(chunk, end - off));
          if (off + len < end) t.source->prefetch(off + len, std::min(chunk, end - off - len));
          const std::byte* p;
          if (direct) {
            p = direct + off;
          } else {
            // Laid out like the output file (same offset modulo the block), so a direct write
            // of it needs no copy.
            const std::size_t phase = static_cast<std::size_t>(writer->file_position(i, off).value_or(0) % kDirectBlock);
            if (buf.size() < len + phase) buf = Bytes(static_cast<std::size_t>(std::min(n, chunk)) + kDirectBlock);
            t.source->read(off, {buf.data() + phase, len});
            p = buf.data() + phase;
          }
          // A zero-copy source is written straight from its memory, piece by piece; every
          // piece is released once used, so a mapped input never grows the resident set.
          writer->write(i, off, {p, len});
          if (eo.stats && !dtype_is_bytes_only(t.info.dtype)) accumulate_stats(st, t.info.dtype, p, len / dtype_size(t.info.dtype), sum);
          t.source->release_range(off, len);
          done_bytes += len;
          if (eo.cancel) eo.cancel->throw_if_cancelled();
        }
        if (eo.stats) {
          std::lock_guard lock(stats_mu);
          TensorStats& s = res.stats[i];
          s.numeric = s.numeric || st.numeric;
          if (st.count) {
            s.min = s.count ? std::min(s.min, st.min) : st.min;
            s.max = s.count ? std::max(s.max, st.max) : st.max;
          }
          s.count += st.count;
          s.nan += st.nan;
          s.inf += st.inf;
          sums[i] += sum;
          if (s.count) s.mean = sums[i] / static_cast<double>(s.count);
        }
      }
    } catch (...) {
      if (!failed.exchange(true)) failure = std::current_exception();
    }
  };

  // Progress: a line on stderr and/or the callback, from one thread, every 200 ms.
  std::mutex progress_mu;
  std::condition_variable progress_cv;
  bool finished = false;
  // A callback that throws (a Python exception, a full pipe) fails the run like a worker would.
  auto report = [&] {
    if (failed) return;
    try {
      eo.on_progress(done_bytes.load(), res.bytes, tensors_done.load(), order.size());
    } catch (...) {
      if (!failed.exchange(true)) failure = std::current_exception();
    }
  };
  std::thread progress;
  if (eo.on_progress) {
    progress = std::thread([&] {
      std::unique_lock lock(progress_mu);
      while (!progress_cv.wait_for(lock, std::chrono::milliseconds(200), [&] { return finished; })) report();
    });
  }
  std::vector<std::thread> pool;
  for (unsigned k = 1; k < threads; ++k) pool.emplace_back(with_current_cancel(work));
  work();
  for (auto& th : pool) th.join();
  {
    std::lock_guard lock(progress_mu);
    finished = true;
  }
  progress_cv.notify_all();
  if (progress.joinable()) progress.join();
  if (failure) std::rethrow_exception(failure);
  if (eo.cancel) eo.cancel->throw_if_cancelled();
  if (eo.on_progress) report();
  if (failure) std::rethrow_exception(failure);
  // The final progress report may have asked to stop (a callback that raised): nothing is published.
  if (eo.cancel) eo.cancel->throw_if_cancelled();
  writer->commit();
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  res.peak_window_bytes = window.peak();
  return res;
}

void write_checkpoint(const Checkpoint& ck, const std::string& dst, const Format& fmt, const WriteOptions& opts,
                      unsigned threads) {
  ExecOptions eo;
  eo.threads = threads;
  execute(ck.root, fmt, dst, opts, eo);
}

}  // namespace ckb
