// Streaming chunk decoding for formats/zarr/chunk_stream.h.
#include "formats/zarr/chunk_stream.h"

#include <algorithm>
#include <cstring>

#include "core/errors.h"
#include "io/file.h"
#include "io/ocdbt/zstd_decode.h"

namespace ckb::zarr {
namespace {

constexpr std::uint64_t kPageStep = 16u << 20;   // input consumed between page drops/prefetches
constexpr std::uint64_t kReadAhead = 64u << 20;  // input prefetched ahead of the decoder

std::uint64_t prod(const std::vector<std::uint64_t>& s) {
  std::uint64_t n = 1;
  for (auto d : s) n *= d;
  return n;
}

// The bytes codecs and byte order of a chain make its output a plain stream.
bool plain(const CodecChain& c, std::size_t elem) {
  if (!c.transposes.empty() || (c.big_endian && elem > 1)) return false;
  return c.bytes_codecs.empty() || (c.bytes_codecs.size() == 1 && c.bytes_codecs[0] == BytesCodecKind::Zstd);
}

}  // namespace

bool streamable(const CodecChain& chain, const std::vector<std::uint64_t>& shape, std::size_t elem) {
  if (!chain.sharding) return plain(chain, elem);
  const ShardingSpec& s = *chain.sharding;
  return chain.transposes.empty() && chain.bytes_codecs.empty() && s.inner_chunk == shape && !s.inner.sharding &&
         plain(s.inner, elem);
}

ChunkStream::ChunkStream(const CodecChain& chain, std::optional<KvValue> value, const std::vector<std::uint64_t>& shape,
                         ChunkContext ctx)
    : ctx_(std::move(ctx)), value_(std::move(value)) {
  const std::size_t elem = ctx_.meta->dtype.itemsize;
  total_ = prod(shape) * elem;
  if (!value_) {
    fill_ = true;
    return;
  }
  encoded_ = value_->bytes;
  encoded_at_ = ctx_.offset;
  const CodecChain* codecs = &chain;
  if (chain.sharding) {
    const auto index = shard_index(*chain.sharding, encoded_, 1, ctx_);
    const auto [off, nb] = index[0];
    if (off == kMissingInner) {
      if (ctx_.missing_is_error)
        throw FormatError(ctx_.path, ctx_.what + ": inner chunk 0 of the shard is missing", ctx_.offset);
      fill_ = true;
      return;
    }
    encoded_ = encoded_.subspan(off, nb);
    encoded_at_ += off;
    ctx_.what += " inner chunk 0";
    codecs = &chain.sharding->inner;
  }
  if (codecs->bytes_codecs.empty()) {
    if (encoded_.size() != total_)
      throw FormatError(ctx_.path,
                        ctx_.what + ": chunk holds " + std::to_string(encoded_.size()) + " bytes, expected " +
                            std::to_string(total_),
                        encoded_at_);
  } else {
    zstd_ = std::make_unique<ZstdStream>(encoded_, total_, ctx_.path, encoded_at_, ctx_.what + " (zstd)");
  }
  if (value_->mapped) value_->mapped->will_need(value_->offset + (encoded_at_ - ctx_.offset), kReadAhead);
}

ChunkStream::~ChunkStream() {
  if (value_ && value_->mapped) value_->mapped->drop_pages(value_->offset, value_->bytes.size());
}

void ChunkStream::track_pages(std::uint64_t consumed) {
  if (!value_ || !value_->mapped || consumed < released_ + kPageStep) return;
  const std::uint64_t at = value_->offset + (encoded_at_ - ctx_.offset);
  value_->mapped->drop_pages(at + released_, consumed - released_);
  value_->mapped->will_need(at + consumed, kReadAhead);
  released_ = consumed;
}

void ChunkStream::read(std::span<std::byte> out) {
  if (out.size() > total_ - pos_)
    throw FormatError(ctx_.path, ctx_.what + ": read past the chunk's " + std::to_string(total_) + " bytes", ctx_.offset);
  if (fill_) {
    const auto& fill = ctx_.meta->fill;
    const std::size_t e = fill ? fill->size() : 1;
    for (std::size_t i = 0; i < out.size(); ++i)
      out[i] = fill ? (*fill)[(pos_ + i) % e] : std::byte{0};
  } else if (zstd_) {
    zstd_->read(out);
    track_pages(zstd_->consumed());
  } else {
    std::memcpy(out.data(), encoded_.data() + pos_, out.size());
    track_pages(pos_ + out.size());
  }
  pos_ += out.size();
}

void ChunkStream::skip_to(std::uint64_t pos) {
  if (pos < pos_ || pos > total_)
    throw FormatError(ctx_.path, ctx_.what + ": cannot skip back or past the chunk's end", ctx_.offset);
  if (!zstd_ && !fill_) {
    track_pages(pos);
    pos_ = pos;
    return;
  }
  std::byte scratch[1 << 14];
  while (pos_ < pos) read({scratch, static_cast<std::size_t>(std::min<std::uint64_t>(sizeof scratch, pos - pos_))});
}

void ChunkStream::finish() {
  skip_to(total_);
  if (zstd_) zstd_->finish();
}

}  // namespace ckb::zarr
