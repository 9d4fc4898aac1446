// Lazy chunked reads for formats/zarr/zarr_array.h.
#include "formats/zarr/zarr_array.h"

#include "io/file.h"

#include <algorithm>
#include <cstring>
#include <exception>
#include <thread>

#include "core/errors.h"
#include "core/thread_pool.h"
#include "formats/zarr/chunk_decode.h"

namespace ckb::zarr {

namespace {
constexpr std::uint64_t kParallelBytes = 8u << 20;  // reads at least this large use threads
constexpr unsigned kMaxThreads = 4;
constexpr std::uint64_t kMaxBandStreams = 64;  // chunks of one band open at once when streaming
}  // namespace

void ZarrArray::rethrow(const std::exception& e) const {
  const std::string tag = "array '" + name_ + "'";
  if (const auto* ce = dynamic_cast<const Error*>(&e)) {
    if (ce->detail().find(tag) != std::string::npos) throw;
    const std::string detail = tag + ": " + ce->detail();
    switch (ce->kind()) {
      case ErrorKind::Io: throw IoError(ce->path(), detail);
      case ErrorKind::Mapping: throw MappingError(ce->path(), detail);
      case ErrorKind::Usage: throw UsageError(detail);
      case ErrorKind::Cancelled: throw;
      case ErrorKind::Format: throw FormatError(ce->path(), detail, ce->offset());
    }
  }
  throw;
}

std::shared_ptr<const ZarrArray> ZarrArray::open(KvStorePtr store, std::string prefix, std::string name,
                                                 MissingChunks missing, ZarrVersion version) {
  auto a = std::shared_ptr<ZarrArray>(new ZarrArray());
  a->store_ = std::move(store);
  a->prefix_ = std::move(prefix);
  a->name_ = std::move(name);
  a->missing_ = missing;
  try {
    auto v2 = version != ZarrVersion::V3 ? a->store_->get(a->prefix_ + ".zarray") : std::nullopt;
    auto v3 = version != ZarrVersion::V2 && !v2 ? a->store_->get(a->prefix_ + "zarr.json") : std::nullopt;
    if (v2) {
      a->metadata_file_ = v2->file;
      a->meta_ = parse_zarray(v2->text(), v2->file);
    } else if (v3) {
      a->metadata_file_ = v3->file;
      a->meta_ = parse_zarr_json(v3->text(), v3->file);
    } else if (version == ZarrVersion::Auto) {
      throw FormatError(a->store_->describe(),
                        "no '" + a->prefix_ + ".zarray' or '" + a->prefix_ + "zarr.json': the array data is missing");
    } else {
      const std::string want = a->prefix_ + (version == ZarrVersion::V2 ? ".zarray" : "zarr.json");
      throw FormatError(a->store_->locate(want), std::string("no '") + want + "' (zarr v" +
                                                     (version == ZarrVersion::V2 ? "2" : "3") + " metadata was requested)");
    }
  } catch (const std::exception& e) {
    a->rethrow(e);
  }
  // Streaming needs one open stream per chunk of a band: allowed up to kMaxBandStreams.
  const ZarrMetadata& m = a->meta_;
  const auto grid = m.grid();
  std::uint64_t per_band = 1, row = m.dtype.itemsize;
  for (std::size_t d = 1; d < m.shape.size(); ++d) {
    per_band *= grid[d];
    row *= static_cast<std::uint64_t>(m.shape[d]);
  }
  if (m.numel() > 0 && per_band <= kMaxBandStreams && streamable(m.codecs, m.chunks, m.dtype.itemsize)) {
    a->band_ = m.shape.empty() ? row : m.chunks[0] * row;
    a->band_chunks_ = per_band;
    a->contiguous_from_ = m.shape.empty() ? 0 : m.shape.size() - 1;
    while (a->contiguous_from_ > 0 &&
           m.chunks[a->contiguous_from_] == static_cast<std::uint64_t>(m.shape[a->contiguous_from_]))
      --a->contiguous_from_;
  }
  return a;
}

Tensor ZarrArray::tensor() const { return Tensor{info(), shared_from_this()}; }

std::string ZarrArray::describe() const { return store_->describe() + ":" + prefix_ + " (zarr array '" + name_ + "')"; }

void ZarrArray::release() const {
  {
    std::lock_guard lk(cache_mu_);
    cache_.clear();
  }
  std::lock_guard lk(stream_mu_);
  if (band_open_ && stream_pos_ > 0 && stream_pos_ < meta_.numel() * meta_.dtype.itemsize) return;
  streams_.clear();
  band_open_ = false;
}

std::pair<std::optional<KvValue>, ChunkContext> ZarrArray::stored_chunk(const std::vector<std::uint64_t>& idx,
                                                                        bool streamed) const {
  const std::string key = prefix_ + meta_.chunk_key(idx);
  auto v = streamed ? store_->get_streamed(key) : store_->get(key);
  const bool strict = missing_ == MissingChunks::Error;
  if (!v && strict) throw FormatError(store_->locate(key), "chunk '" + key + "' is missing");
  if (!v) missing_log_.note(key);
  ChunkContext ctx{&meta_, strict, v ? v->file : store_->locate(key), v ? v->offset : 0, "chunk '" + key + "'",
                   &missing_log_};
  return {std::move(v), std::move(ctx)};
}

std::uint64_t ZarrArray::sequential_resident_bytes() const { return band_ ? 0 : resident_bytes(); }

bool ZarrArray::read_streaming(std::uint64_t offset, std::span<std::byte> out) const {
  std::lock_guard lk(stream_mu_);
  const bool continues = band_open_ && offset == stream_pos_;
  // Forward in the open band: the streams decode and drop the bytes in between (a reader that
  // skips tensors, such as an MPI rank owning some layers of a stacked array). Backward into
  // the middle of a band would decode it again from the start: such reads use the chunk cache.
  const bool forward = band_open_ && offset > stream_pos_ && offset < band_end_;
  if (!continues && !forward && band_open_ && offset < stream_pos_ && offset % band_ != 0) return false;
  if (forward) {
    stream_pos_ = offset;
  } else if (!continues) {
    streams_.clear();
    band_open_ = false;
    stream_pos_ = offset;
  }
  const std::size_t es = meta_.dtype.itemsize;
  const std::uint64_t total = meta_.numel() * es;
  const std::size_t rank = meta_.shape.size();
  const auto grid = meta_.grid();
  std::vector<std::uint64_t> shape(meta_.shape.begin(), meta_.shape.end()), astride(rank, 1), cstride(rank, 1);
  for (std::size_t d = rank; d-- > 1;) {
    astride[d - 1] = astride[d] * shape[d];
    cstride[d - 1] = cstride[d] * meta_.chunks[d];
  }
  try {
    std::vector<std::uint64_t> idx(rank), cidx(rank);
    std::size_t done = 0;
    while (done < out.size()) {
      if (!band_open_) {
        streams_.resize(band_chunks_);
        band_end_ = std::min(total, (stream_pos_ / band_ + 1) * band_);
        band_open_ = true;
      }
      // Where the next byte lies: which chunk of the band, where in that chunk's stream, and
      // how many bytes from here on are contiguous in both.
      const std::uint64_t e = stream_pos_ / es, part = stream_pos_ % es;
      std::uint64_t k = 0, local = 0, run = es;
      if (rank > 0) {
        std::uint64_t rest = e;
        for (std::size_t d = 0; d < rank; ++d) {
          idx[d] = rest / astride[d];
          rest %= astride[d];
          cidx[d] = idx[d] / meta_.chunks[d];
          local += (idx[d] % meta_.chunks[d]) * cstride[d];
          if (d > 0) k = k * grid[d] + cidx[d];
        }
        const std::size_t j = contiguous_from_;
        const std::uint64_t end_j = std::min(shape[j], (cidx[j] + 1) * meta_.chunks[j]);
        std::uint64_t within = 0;
        for (std::size_t d = j + 1; d < rank; ++d) within += idx[d] * astride[d];
        run = (end_j - idx[j]) * astride[j] - within;
      }
      if (!streams_[k]) {
        auto [v, ctx] = stored_chunk(cidx, true);
        streams_[k] = std::make_unique<ChunkStream>(meta_.codecs, std::move(v), meta_.chunks, std::move(ctx));
      }
      streams_[k]->skip_to(local * es + part);
      const std::size_t n = static_cast<std::size_t>(
          std::min({run * es - part, static_cast<std::uint64_t>(out.size() - done), band_end_ - stream_pos_}));
      streams_[k]->read(out.subspan(done, n));
      done += n;
      stream_pos_ += n;
      if (stream_pos_ == band_end_) {
        for (auto& st : streams_)
          if (st) st->finish();
        streams_.clear();
        band_open_ = false;
      }
    }
  } catch (...) {
    streams_.clear();
    band_open_ = false;
    throw;
  }
  return true;
}

std::uint64_t ZarrArray::resident_bytes() const {
  const auto g = meta_.grid();
  std::uint64_t band = 1, all = 1;
  for (std::size_t d = 0; d < g.size(); ++d) {
    all *= g[d];
    if (d > 0) band *= g[d];
  }
  return std::min(all, 2 * band) * meta_.chunk_numel() * meta_.dtype.itemsize;
}

std::shared_ptr<const Bytes> ZarrArray::decode_chunk_at(const std::vector<std::uint64_t>& idx) const {
  std::promise<std::shared_ptr<const Bytes>> promise;
  {
    std::unique_lock lk(cache_mu_);
    for (const auto& [i, data] : cache_)
      if (i == idx) return data;
    if (auto it = inflight_.find(idx); it != inflight_.end()) {
      auto f = it->second;
      lk.unlock();
      return f.get();  // rethrows the decoder's error
    }
    inflight_.emplace(idx, promise.get_future().share());
  }
  // Publishes the result or the error to waiting readers and retires the in-flight entry.
  auto finish = [&](std::shared_ptr<const Bytes> value, std::exception_ptr error) {
    std::lock_guard lk(cache_mu_);
    if (value) {
      cache_.emplace_back(idx, value);
      promise.set_value(value);
    } else {
      promise.set_exception(error);
    }
    inflight_.erase(idx);
  };
  try {
    std::shared_ptr<Bytes> out;
    auto [v, ctx] = stored_chunk(idx);
    if (!v) {
      out = std::make_shared<Bytes>(static_cast<std::size_t>(meta_.chunk_numel() * meta_.dtype.itemsize));
      fill_elements(out->span(), meta_.fill);
    } else {
      out = std::make_shared<Bytes>(decode_chunk(meta_.codecs, v->bytes, meta_.chunks, ctx));
      if (v->mapped) v->mapped->drop_pages(v->offset, v->bytes.size());
    }
    finish(out, nullptr);
    return out;
  } catch (...) {
    finish(nullptr, std::current_exception());
    throw;
  }
}

std::shared_ptr<const Bytes> ZarrArray::read_chunk(const std::vector<std::uint64_t>& idx) const {
  try {
    const auto g = meta_.grid();
    if (idx.size() != g.size()) throw FormatError(describe(), "chunk index has the wrong rank");
    for (std::size_t d = 0; d < g.size(); ++d)
      if (idx[d] >= g[d]) throw FormatError(describe(), "chunk index out of range");
    return decode_chunk_at(idx);
  } catch (const std::exception& e) {
    rethrow(e);
  }
}

void ZarrArray::read(std::uint64_t offset, std::span<std::byte> out) const {
  try {
    const std::size_t es = meta_.dtype.itemsize;
    const std::uint64_t total = meta_.numel() * es;
    if (offset > total || out.size() > total - offset)
      throw FormatError(describe(), "read [" + std::to_string(offset) + ", +" + std::to_string(out.size()) +
                                        ") beyond the array's " + std::to_string(total) + " bytes");
    if (out.empty()) return;
    if (band_ && read_streaming(offset, out)) return;
    // Work in an "effective" rank >= 1 (a 0-d array is one element in one chunk).
    const bool scalar = meta_.shape.empty();
    std::vector<std::uint64_t> shape, chunks;
    if (scalar) {
      shape = {1};
      chunks = {1};
    } else {
      shape.assign(meta_.shape.begin(), meta_.shape.end());
      chunks = meta_.chunks;
    }
    const std::size_t rank = shape.size();
    std::vector<std::uint64_t> stride(rank, 1), grid(rank);
    for (std::size_t d = rank; d-- > 1;) stride[d - 1] = stride[d] * shape[d];
    for (std::size_t d = 0; d < rank; ++d) grid[d] = (shape[d] + chunks[d] - 1) / chunks[d];
    const std::uint64_t e0 = offset / es, e1 = (offset + out.size() + es - 1) / es;  // elements [e0, e1)
    auto unravel = [&](std::uint64_t e) {
      std::vector<std::uint64_t> ix(rank);
      for (std::size_t d = 0; d < rank; ++d) {
        ix[d] = e / stride[d];
        e %= stride[d];
      }
      return ix;
    };
    const auto first = unravel(e0), last = unravel(e1 - 1);
    // Candidate chunk ranges per dimension: exact while the leading indices agree.
    std::vector<std::uint64_t> lo(rank), hi(rank);
    bool same = true;
    for (std::size_t d = 0; d < rank; ++d) {
      if (same) {
        lo[d] = first[d] / chunks[d];
        hi[d] = last[d] / chunks[d];
        same = first[d] == last[d];
      } else {
        lo[d] = 0;
        hi[d] = grid[d] - 1;
      }
    }
    // Collect chunks whose linear extent intersects [e0, e1).
    std::vector<std::vector<std::uint64_t>> todo;
    std::vector<std::uint64_t> ci(lo);
    while (true) {
      std::uint64_t cmin = 0, cmax = 0;
      for (std::size_t d = 0; d < rank; ++d) {
        cmin += ci[d] * chunks[d] * stride[d];
        cmax += (std::min(shape[d], (ci[d] + 1) * chunks[d]) - 1) * stride[d];
      }
      if (cmin < e1 && cmax >= e0) todo.push_back(ci);
      std::size_t d = rank;
      while (d-- > 0) {
        if (++ci[d] <= hi[d]) break;
        ci[d] = lo[d];
      }
      if (d == static_cast<std::size_t>(-1)) break;
    }
    const std::uint64_t r0 = offset, r1 = offset + out.size();
    // Copies the rows of chunk `c` that overlap [r0, r1).
    std::vector<std::shared_ptr<const Bytes>> used(todo.size());
    auto copy_chunk = [&](std::size_t slot) {
      const auto& c = todo[slot];
      std::vector<std::uint64_t> key_idx = scalar ? std::vector<std::uint64_t>{} : c;
      auto data = decode_chunk_at(key_idx);
      used[slot] = data;
      std::vector<std::uint64_t> box(rank), cstride(rank, 1);
      for (std::size_t d = 0; d < rank; ++d) box[d] = std::min(shape[d], (c[d] + 1) * chunks[d]) - c[d] * chunks[d];
      for (std::size_t d = rank; d-- > 1;) cstride[d - 1] = cstride[d] * chunks[d];
      const std::uint64_t row_bytes = box[rank - 1] * es;
      // Rows of the chunk's box (all axes but the last), in C order; their positions in the
      // array increase with the row number, so the rows overlapping [r0, r1) are a range.
      std::uint64_t nrows = 1;
      for (std::size_t d = 0; d + 1 < rank; ++d) nrows *= box[d];
      std::vector<std::uint64_t> ix(rank, 0);
      auto locate = [&](std::uint64_t row, std::uint64_t& lin, std::uint64_t& src) {
        for (std::size_t d = rank - 1; d-- > 0;) {
          ix[d] = row % box[d];
          row /= box[d];
        }
        lin = src = 0;
        for (std::size_t d = 0; d < rank; ++d) {
          lin += (c[d] * chunks[d] + ix[d]) * stride[d];
          src += ix[d] * cstride[d];
        }
      };
      std::uint64_t lo_row = 0, hi_row = nrows;  // first row whose end is past r0
      while (lo_row < hi_row) {
        const std::uint64_t mid = lo_row + (hi_row - lo_row) / 2;
        std::uint64_t lin, src;
        locate(mid, lin, src);
        if (lin * es + row_bytes <= r0) lo_row = mid + 1;
        else hi_row = mid;
      }
      for (std::uint64_t row = lo_row; row < nrows; ++row) {
        std::uint64_t lin, src;
        locate(row, lin, src);
        const std::uint64_t b0 = lin * es, b1 = b0 + row_bytes;
        if (b0 >= r1) break;
        const std::uint64_t s = std::max(b0, r0), e = std::min(b1, r1);
        if (s < e) std::memcpy(out.data() + (s - r0), data->data() + src * es + (s - b0), static_cast<std::size_t>(e - s));
      }
    };
    auto keep_used = [&] {
      std::lock_guard lk(cache_mu_);
      cache_.clear();
      for (std::size_t i = 0; i < todo.size(); ++i)
        if (used[i]) cache_.emplace_back(scalar ? std::vector<std::uint64_t>{} : todo[i], used[i]);
    };
    const unsigned hw = std::max(1u, std::thread::hardware_concurrency());
    const unsigned threads = static_cast<unsigned>(std::min<std::size_t>({kMaxThreads, hw, todo.size()}));
    if (threads <= 1 || out.size() < kParallelBytes) {
      for (std::size_t i = 0; i < todo.size(); ++i) copy_chunk(i);
      keep_used();
      return;
    }
    parallel_for(todo.size(), threads, copy_chunk);
    keep_used();
  } catch (const std::exception& e) {
    rethrow(e);
  }
}

}  // namespace ckb::zarr
