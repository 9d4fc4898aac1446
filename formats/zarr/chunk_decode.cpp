// The codec pipeline and sharding_indexed decoding for formats/zarr/chunk_decode.h.
#include "formats/zarr/chunk_decode.h"

#include <algorithm>
#include <cstring>

#include "core/errors.h"
#include "formats/zarr/codecs.h"
#include "formats/zarr/filters.h"
#include "codec/crc32c.h"

namespace ckb::zarr {
namespace {

std::uint64_t prod(const std::vector<std::uint64_t>& s) {
  std::uint64_t n = 1;
  for (auto d : s) n *= d;
  return n;
}

std::vector<std::uint64_t> c_strides(const std::vector<std::uint64_t>& s) {
  std::vector<std::uint64_t> st(s.size(), 1);
  for (std::size_t d = s.size(); d-- > 1;) st[d - 1] = st[d] * s[d];
  return st;
}

void byteswap(std::span<std::byte> data, std::size_t unit) {
  if (unit <= 1) return;
  for (std::size_t i = 0; i + unit <= data.size(); i += unit) std::reverse(data.begin() + i, data.begin() + i + unit);
}

// `data` holds an array of shape t (C order) that is the transpose of an array of shape s
// by `perm` (t[i] = s[perm[i]]); returns the C-order array of shape s.
Bytes untranspose(const Bytes& data, const std::vector<std::uint64_t>& t, const std::vector<std::size_t>& perm,
                  std::size_t elem) {
  const std::size_t rank = t.size();
  std::vector<std::uint64_t> s(rank), src_stride(rank);
  const auto tst = c_strides(t);
  for (std::size_t i = 0; i < rank; ++i) {
    s[perm[i]] = t[i];
    src_stride[perm[i]] = tst[i];
  }
  Bytes out(data.size());
  const std::uint64_t n = prod(s);
  std::vector<std::uint64_t> idx(rank, 0);
  std::uint64_t src = 0;
  for (std::uint64_t k = 0; k < n; ++k) {
    std::memcpy(out.data() + k * elem, data.data() + src * elem, elem);
    for (std::size_t d = rank; d-- > 0;) {
      if (++idx[d] < s[d]) {
        src += src_stride[d];
        break;
      }
      src -= (s[d] - 1) * src_stride[d];
      idx[d] = 0;
    }
  }
  return out;
}

Bytes decode_shard(const ShardingSpec& spec, std::span<const std::byte> shard, const std::vector<std::uint64_t>& shape,
                   const ChunkContext& ctx) {
  const std::size_t rank = shape.size();
  const std::size_t elem = ctx.meta->dtype.itemsize;
  std::vector<std::uint64_t> grid(rank);
  for (std::size_t d = 0; d < rank; ++d) grid[d] = shape[d] / spec.inner_chunk[d];
  const auto index = shard_index(spec, shard, prod(grid), ctx);
  Bytes out(static_cast<std::size_t>(prod(shape) * elem));
  std::vector<std::uint64_t> inner_idx(rank, 0), origin(rank), zero(rank, 0);
  for (std::size_t j = 0; j < index.size(); ++j) {
    const auto [off, nb] = index[j];
    for (std::size_t d = 0; d < rank; ++d) origin[d] = inner_idx[d] * spec.inner_chunk[d];
    if (off == kMissingInner) {
      if (ctx.missing_is_error)
        throw FormatError(ctx.path, ctx.what + ": inner chunk " + std::to_string(j) + " of the shard is missing",
                          ctx.offset);
      if (ctx.missing_log) ctx.missing_log->note(ctx.what + " inner chunk " + std::to_string(j));
      Bytes fillbuf(static_cast<std::size_t>(prod(spec.inner_chunk) * elem));
      fill_elements(fillbuf.span(), ctx.meta->fill);
      copy_box(fillbuf.data(), spec.inner_chunk, zero, out.data(), shape, origin, spec.inner_chunk, elem);
    } else {
      ChunkContext inner = ctx;
      inner.offset = ctx.offset + off;
      inner.what = ctx.what + " inner chunk " + std::to_string(j);
      Bytes decoded = decode_chunk(spec.inner, shard.subspan(off, nb), spec.inner_chunk, inner);
      copy_box(decoded.data(), spec.inner_chunk, zero, out.data(), shape, origin, spec.inner_chunk, elem);
    }
    for (std::size_t d = rank; d-- > 0;) {
      if (++inner_idx[d] < grid[d]) break;
      inner_idx[d] = 0;
    }
  }
  return out;
}

}  // namespace

void MissingChunkLog::note(const std::string& what) {
  std::lock_guard lk(mu_);
  seen_.insert(what);
}

std::uint64_t MissingChunkLog::count() const {
  std::lock_guard lk(mu_);
  return seen_.size();
}

std::uint64_t shard_index_size(const ShardingSpec& spec, std::uint64_t n) {
  return 16 * n + (spec.index_crc32c ? 4 : 0);
}

std::uint64_t shard_index_offset(const ShardingSpec& spec, std::uint64_t shard_size, std::uint64_t n,
                                 const ChunkContext& ctx) {
  const std::uint64_t index_bytes = shard_index_size(spec, n);
  if (shard_size < index_bytes)
    throw FormatError(ctx.path,
                      ctx.what + ": shard of " + std::to_string(shard_size) + " bytes is smaller than its " +
                          std::to_string(index_bytes) + "-byte index",
                      ctx.offset);
  return spec.index_at_end ? shard_size - index_bytes : 0;
}

std::vector<std::pair<std::uint64_t, std::uint64_t>> parse_shard_index(const ShardingSpec& spec,
                                                                       std::span<const std::byte> index,
                                                                       std::uint64_t shard_size, std::uint64_t n,
                                                                       const ChunkContext& ctx) {
  const std::uint64_t index_at = shard_index_offset(spec, shard_size, n, ctx);
  if (index.size() != shard_index_size(spec, n))
    throw FormatError(ctx.path, ctx.what + ": shard index has the wrong size", ctx.offset + index_at);
  if (spec.index_crc32c) {
    std::uint32_t stored;
    std::memcpy(&stored, index.data() + 16 * n, 4);
    if (stored != ocdbt::crc32c(index.first(16 * n)))
      throw FormatError(ctx.path, ctx.what + ": shard index crc32c mismatch", ctx.offset + index_at);
  }
  std::vector<std::pair<std::uint64_t, std::uint64_t>> out(n);
  for (std::uint64_t j = 0; j < n; ++j) {
    std::uint64_t off, nb;
    std::memcpy(&off, index.data() + 16 * j, 8);
    std::memcpy(&nb, index.data() + 16 * j + 8, 8);
    if (spec.index_big_endian) {
      off = __builtin_bswap64(off);
      nb = __builtin_bswap64(nb);
    }
    if (off == kMissingInner && nb == kMissingInner) {
      out[j] = {kMissingInner, kMissingInner};
      continue;
    }
    if (off > shard_size || nb > shard_size - off)
      throw FormatError(ctx.path,
                        ctx.what + ": inner chunk " + std::to_string(j) + " [" + std::to_string(off) + ", +" +
                            std::to_string(nb) + ") lies outside the " + std::to_string(shard_size) + "-byte shard",
                        ctx.offset + index_at);
    out[j] = {off, nb};
  }
  return out;
}

std::vector<std::pair<std::uint64_t, std::uint64_t>> shard_index(const ShardingSpec& spec, std::span<const std::byte> shard,
                                                                 std::uint64_t n, const ChunkContext& ctx) {
  const std::uint64_t at = shard_index_offset(spec, shard.size(), n, ctx);
  return parse_shard_index(spec, shard.subspan(at, shard_index_size(spec, n)), shard.size(), n, ctx);
}

void fill_elements(std::span<std::byte> out, const std::optional<std::vector<std::byte>>& fill) {
  if (!fill || std::all_of(fill->begin(), fill->end(), [](std::byte b) { return b == std::byte{0}; })) {
    std::memset(out.data(), 0, out.size());
    return;
  }
  const std::size_t e = fill->size();
  for (std::size_t i = 0; i + e <= out.size(); i += e) std::memcpy(out.data() + i, fill->data(), e);
}

void copy_box(const std::byte* src, const std::vector<std::uint64_t>& src_shape, const std::vector<std::uint64_t>& src_origin,
              std::byte* dst, const std::vector<std::uint64_t>& dst_shape, const std::vector<std::uint64_t>& dst_origin,
              const std::vector<std::uint64_t>& box, std::size_t elem) {
  const std::size_t rank = box.size();
  if (rank == 0) {
    std::memcpy(dst, src, elem);
    return;
  }
  if (prod(box) == 0) return;
  const auto ss = c_strides(src_shape), ds = c_strides(dst_shape);
  const std::size_t row = static_cast<std::size_t>(box[rank - 1] * elem);
  std::vector<std::uint64_t> idx(rank, 0);
  while (true) {
    std::uint64_t so = 0, dof = 0;
    for (std::size_t d = 0; d < rank; ++d) {
      so += (src_origin[d] + idx[d]) * ss[d];
      dof += (dst_origin[d] + idx[d]) * ds[d];
    }
    std::memcpy(dst + dof * elem, src + so * elem, row);
    std::size_t d = rank - 1;
    while (d-- > 0) {
      if (++idx[d] < box[d]) break;
      idx[d] = 0;
    }
    if (d == static_cast<std::size_t>(-1)) return;
  }
}

Bytes decode_chunk(const CodecChain& chain, std::span<const std::byte> encoded, const std::vector<std::uint64_t>& shape,
                   const ChunkContext& ctx) {
  const std::size_t elem = ctx.meta->dtype.itemsize;
  const std::uint64_t raw = prod(shape) * elem;  // bounded by kMaxChunkBytes at metadata parse
  // Shapes after each transpose (encode order).
  std::vector<std::vector<std::uint64_t>> shapes{shape};
  for (const auto& perm : chain.transposes) {
    std::vector<std::uint64_t> t(shape.size());
    for (std::size_t i = 0; i < perm.size(); ++i) t[i] = shapes.back()[perm[i]];
    shapes.push_back(std::move(t));
  }
  // Sizes through the filters (encode order): sizes[k] is what filter k encodes.
  std::vector<std::uint64_t> sizes{raw};
  for (const auto& f : chain.filters) sizes.push_back(filter_encoded_size(f, sizes.back(), ctx.path));
  const std::uint64_t bound = chain.sharding ? raw + raw / 2 + (1u << 16) + 16 * prod(shape) : sizes.back();
  std::span<const std::byte> cur = encoded;
  Bytes holder;
  bool owned = false;
  for (std::size_t k = chain.bytes_codecs.size(); k-- > 0;) {
    const bool innermost = k == 0;
    const bool exact = innermost && !chain.sharding;
    holder = decode_bytes_codec(chain.bytes_codecs[k], cur, innermost ? bound : bound + (1u << 16), exact, ctx.path,
                                ctx.offset, ctx.what + " (" + codec_name(chain.bytes_codecs[k]) + ")");
    cur = holder.span();
    owned = true;
  }
  Bytes data;
  if (chain.sharding) {
    data = decode_shard(*chain.sharding, cur, shapes.back(), ctx);
  } else {
    if (cur.size() != sizes.back())
      throw FormatError(ctx.path,
                        ctx.what + ": chunk holds " + std::to_string(cur.size()) + " bytes, expected " +
                            std::to_string(sizes.back()),
                        ctx.offset);
    for (std::size_t k = chain.filters.size(); k-- > 0;) {
      holder = decode_filter(chain.filters[k], cur, sizes[k], ctx.path, ctx.offset, ctx.what);
      cur = holder.span();
      owned = true;
    }
    if (owned) {
      data = std::move(holder);
    } else {
      data = Bytes(cur.size());
      if (!cur.empty()) std::memcpy(data.data(), cur.data(), cur.size());
    }
    if (chain.big_endian) {
      const bool complex = ctx.meta->dtype.dtype == DType::C64 || ctx.meta->dtype.dtype == DType::C128;
      byteswap(data.span(), complex ? elem / 2 : elem);
    }
  }
  for (std::size_t t = chain.transposes.size(); t-- > 0;)
    data = untranspose(data, shapes[t + 1], chain.transposes[t], elem);
  return data;
}

}  // namespace ckb::zarr
