// Streaming zarr chunk encoding, for formats/zarr/zarr_chunk_encoder.h.
#include "formats/zarr/zarr_chunk_encoder.h"

#include <algorithm>
#include <cstring>

#include "codec/crc32c.h"
#include "core/errors.h"

namespace ckb::zarr {

ChunkEncoder::ChunkEncoder(const WriteSpec& s, std::uint64_t chunk, Output out) : spec_(s), out_(std::move(out)) {
  const auto [b, e] = s.chunk_range(chunk);
  raw_bytes_ = e - b;
  if (s.compress)
    zstd_ = std::make_unique<ZstdStreamEncoder>(zstd_level(s), s.chunk_bytes(),
                                                [this](std::span<const std::byte> z) { emit(z); });
}

void ChunkEncoder::emit(std::span<const std::byte> bytes) {
  encoded_ += bytes.size();
  out_(bytes);
}

void ChunkEncoder::append(std::span<const std::byte> raw) {
  if (raw.size() > raw_bytes_ - received_)
    throw std::logic_error("zarr chunk encoder: more bytes than the chunk holds");
  received_ += raw.size();
  if (zstd_) {
    zstd_->append(raw);
  } else {
    emit(raw);
  }
}

void ChunkEncoder::finish() {
  if (received_ != raw_bytes_) throw std::logic_error("zarr chunk encoder: finish() before the whole chunk came in");
  // Zero padding of a short last chunk, in bounded pieces.
  static const std::byte zeros[1 << 16] = {};
  for (std::uint64_t left = spec_.chunk_bytes() - raw_bytes_; left;) {
    const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(left, sizeof zeros));
    if (zstd_) zstd_->append({zeros, n});
    else emit({zeros, n});
    left -= n;
  }
  if (zstd_) zstd_->finish();
  if (spec_.zarr_format == 3) {  // shard index: one inner chunk at offset 0, then crc32c
    std::byte index[20];
    const std::uint64_t off = 0, len = encoded_;
    std::memcpy(index, &off, 8);
    std::memcpy(index + 8, &len, 8);
    const std::uint32_t crc = ocdbt::crc32c({index, 16});
    std::memcpy(index + 16, &crc, 4);
    emit({index, 20});
  }
}

}  // namespace ckb::zarr
