// The list of formats and the generic read/write drivers of formats/format.h.
#include <algorithm>
#include <atomic>
#include <thread>

#include "core/errors.h"
#include "formats/format.h"

namespace ckb {

const std::vector<Format>& formats() {
  // Order matters only where signatures overlap: npz and torch zips are both zip files.
  static const std::vector<Format> all = {
      make_orbax_format(),  make_safetensors_format(), make_torch_format(),
      make_npz_format(),    make_npy_format(),         make_msgpack_format(),
  };
  return all;
}

const Format& format_by_name(const std::string& name) {
  std::string known;
  for (const auto& f : formats()) {
    if (f.name == name) return f;
    known += (known.empty() ? "" : ", ") + f.name;
  }
  throw UsageError("unknown format '" + name + "' (known: " + known + ")");
}

const Format& detect_format(const std::string& path) {
  for (const auto& f : formats())
    if (f.detect && f.detect(path)) return f;
  throw FormatError(path, "not a checkpoint format ckptbridge recognises");
}

Checkpoint read_checkpoint(const std::string& path, const ReadOptions& opts) {
  const Format& f = detect_format(path);
  if (!f.read) throw FormatError(path, "reading " + f.name + " is not implemented yet");
  Checkpoint ck = f.read(path, opts);
  ck.format = f.name;
  if (ck.path.empty()) ck.path = path;
  return ck;
}

void write_checkpoint(const Checkpoint& ck, const std::string& dst, const Format& fmt, const WriteOptions& opts,
                      unsigned threads) {
  if (!fmt.make_writer) throw UsageError("writing " + fmt.name + " is not supported");
  auto writer = fmt.make_writer(dst, opts);
  writer->begin(ck.root);
  auto tensors = tensor_list(ck.root);
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  threads = std::min<unsigned>(threads, static_cast<unsigned>(std::max<std::size_t>(1, tensors.size())));

  constexpr std::uint64_t kChunk = 32u << 20;
  std::atomic<std::size_t> next{0};
  std::exception_ptr failure;
  std::atomic<bool> failed{false};
  auto work = [&] {
    Bytes buf;
    try {
      for (std::size_t i = next++; i < tensors.size() && !failed; i = next++) {
        const Tensor& t = *tensors[i].second;
        const std::uint64_t n = t.info.nbytes();
        if (n == 0) continue;
        if (const std::byte* p = t.source->contiguous()) {
          for (std::uint64_t off = 0; off < n; off += kChunk)
            writer->write(i, off, {p + off, static_cast<std::size_t>(std::min(kChunk, n - off))});
          continue;
        }
        if (buf.size() < std::min(n, kChunk)) buf = Bytes(static_cast<std::size_t>(std::min(n, kChunk)));
        for (std::uint64_t off = 0; off < n; off += kChunk) {
          std::size_t len = static_cast<std::size_t>(std::min(kChunk, n - off));
          t.source->read(off, {buf.data(), len});
          writer->write(i, off, {buf.data(), len});
        }
      }
    } catch (...) {
      if (!failed.exchange(true)) failure = std::current_exception();
    }
  };
  std::vector<std::thread> pool;
  for (unsigned k = 1; k < threads; ++k) pool.emplace_back(work);
  work();
  for (auto& th : pool) th.join();
  if (failure) std::rethrow_exception(failure);
  writer->commit();
}

}  // namespace ckb
