// Streaming chunk decoding for formats/zarr/chunk_stream.h.
#include "formats/zarr/chunk_stream.h"

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <exception>
#include <mutex>
#include <thread>

#include "core/cancel.h"
#include "core/errors.h"
#include "io/file.h"
#include "io/sequential_read.h"
#include "codec/zstd_decode.h"

namespace ckb::zarr {
namespace {

constexpr std::uint64_t kPageStep = 16u << 20;   // input consumed between page drops/prefetches
constexpr std::uint64_t kReadAhead = 64u << 20;  // input prefetched ahead of the decoder

std::uint64_t element_count(const std::vector<std::uint64_t>& s) {
  std::uint64_t n = 1;
  for (auto d : s) n *= d;
  return n;
}

// The bytes codecs and byte order of a chain make its output a plain stream.
bool plain(const CodecChain& c, std::size_t elem) {
  if (!c.transposes.empty() || !c.filters.empty() || (c.big_endian && elem > 1)) return false;
  return c.bytes_codecs.empty() || (c.bytes_codecs.size() == 1 && c.bytes_codecs[0] == BytesCodecKind::Zstd);
}

}  // namespace

bool streamable(const CodecChain& chain, const std::vector<std::uint64_t>& shape, std::size_t elem) {
  if (!chain.sharding) return plain(chain, elem);
  const ShardingSpec& s = *chain.sharding;
  return chain.transposes.empty() && chain.bytes_codecs.empty() && s.inner_chunk == shape && !s.inner.sharding &&
         plain(s.inner, elem);
}

// The decode-ahead ring: block b of the decoded stream lives in blocks[b % kBlocks]; the
// helper fills a block only when the reader has consumed the one it replaces.
struct ChunkStream::Ahead {
  static constexpr std::size_t kBlock = 4u << 20, kBlocks = 4;
  std::vector<Bytes> blocks;
  std::mutex mu;
  std::condition_variable cv;
  std::uint64_t produced = 0, consumed = 0;
  bool stop = false, done = false;
  std::exception_ptr error;
  std::thread thread;
};

ChunkStream::ChunkStream(const CodecChain& chain, std::optional<KvValue> value, const std::vector<std::uint64_t>& shape,
                         ChunkContext ctx, std::uint64_t decode_ahead_from)
    : ctx_(std::move(ctx)), value_(std::move(value)) {
  const std::size_t elem = ctx_.meta->dtype.itemsize;
  total_ = element_count(shape) * elem;
  if (!value_) {
    fill_ = true;
    return;
  }
  encoded_ = value_->bytes;
  encoded_at_ = ctx_.offset;
  std::uint64_t stream_at = 0;  // the stream's offset in the value
  encoded_size_ = value_->size();
  const CodecChain* codecs = &chain;
  if (chain.sharding) {
    std::vector<std::pair<std::uint64_t, std::uint64_t>> index;
    if (value_->deferred) {
      const std::uint64_t at = shard_index_offset(*chain.sharding, encoded_size_, 1, ctx_);
      Bytes bytes(static_cast<std::size_t>(shard_index_size(*chain.sharding, 1)));
      value_->mapped->read(value_->offset + at, bytes.span(), "shard index");
      index = parse_shard_index(*chain.sharding, bytes.span(), encoded_size_, 1, ctx_);
    } else {
      index = shard_index(*chain.sharding, encoded_, 1, ctx_);
    }
    const auto [off, nb] = index[0];
    if (off == kMissingInner) {
      if (ctx_.missing_is_error)
        throw FormatError(ctx_.path, ctx_.what + ": inner chunk 0 of the shard is missing", ctx_.offset);
      if (ctx_.missing_log) ctx_.missing_log->note(ctx_.what + " inner chunk 0");
      fill_ = true;
      return;
    }
    if (!value_->deferred) encoded_ = encoded_.subspan(off, nb);
    stream_at = off;
    encoded_size_ = nb;
    encoded_at_ += off;
    ctx_.what += " inner chunk 0";
    codecs = &chain.sharding->inner;
  }
  if (value_->deferred)
    fetch_ = std::make_unique<SequentialRead>(value_->mapped, value_->offset + stream_at, encoded_size_, ctx_.what);
  if (codecs->bytes_codecs.empty()) {
    if (encoded_size_ != total_)
      throw FormatError(ctx_.path,
                        ctx_.what + ": chunk holds " + std::to_string(encoded_size_) + " bytes, expected " +
                            std::to_string(total_),
                        encoded_at_);
  } else if (fetch_) {
    zstd_ = std::make_unique<ZstdStream>(
        encoded_size_, [f = fetch_.get()](std::uint64_t at) { return f->from(at); }, total_, ctx_.path, encoded_at_,
        ctx_.what + " (zstd)");
  } else {
    zstd_ = std::make_unique<ZstdStream>(encoded_, total_, ctx_.path, encoded_at_, ctx_.what + " (zstd)");
  }
  if (value_->mapped && !value_->deferred)
    value_->mapped->will_need(value_->offset + (encoded_at_ - ctx_.offset), kReadAhead);
  if (zstd_ && encoded_size_ >= decode_ahead_from) {
    ahead_ = std::make_unique<Ahead>();
    for (std::size_t b = 0; b < Ahead::kBlocks; ++b)
      ahead_->blocks.emplace_back(static_cast<std::size_t>(std::min<std::uint64_t>(Ahead::kBlock, total_)));
    ahead_->thread = std::thread(with_current_cancel([this] { run_ahead(); }));
  }
}

ChunkStream::~ChunkStream() {
  if (ahead_) {
    {
      std::lock_guard lk(ahead_->mu);
      ahead_->stop = true;
    }
    ahead_->cv.notify_all();
    ahead_->thread.join();
  }
  if (value_ && value_->mapped && !value_->deferred) value_->mapped->drop_pages(value_->offset, value_->bytes.size());
}

void ChunkStream::run_ahead() {
  Ahead& a = *ahead_;
  try {
    std::uint64_t at = 0;
    while (at < total_) {
      {
        std::unique_lock lk(a.mu);
        a.cv.wait(lk, [&] { return a.stop || at + Ahead::kBlock <= a.consumed + Ahead::kBlocks * Ahead::kBlock; });
        if (a.stop) return;
      }
      const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(Ahead::kBlock, total_ - at));
      zstd_->read({a.blocks[(at / Ahead::kBlock) % Ahead::kBlocks].data(), n});
      track_pages(zstd_->consumed());
      at += n;
      {
        std::lock_guard lk(a.mu);
        a.produced = at;
      }
      a.cv.notify_all();
    }
    zstd_->finish();
  } catch (...) {
    std::lock_guard lk(a.mu);
    a.error = std::current_exception();
  }
  {
    std::lock_guard lk(a.mu);
    a.done = true;
  }
  a.cv.notify_all();
}

void ChunkStream::read_ahead(std::span<std::byte> out) {
  Ahead& a = *ahead_;
  std::size_t copied = 0;
  while (copied < out.size()) {
    std::uint64_t avail;
    {
      std::unique_lock lk(a.mu);
      a.cv.wait(lk, [&] { return a.produced > pos_ || a.done; });
      if (a.produced <= pos_) {
        if (a.error) std::rethrow_exception(a.error);
        throw FormatError(ctx_.path, ctx_.what + ": decoding stopped early", ctx_.offset);
      }
      avail = a.produced - pos_;
    }
    const std::size_t off = static_cast<std::size_t>(pos_ % Ahead::kBlock);
    const std::size_t take = static_cast<std::size_t>(
        std::min<std::uint64_t>({avail, Ahead::kBlock - off, static_cast<std::uint64_t>(out.size() - copied)}));
    std::memcpy(out.data() + copied, a.blocks[(pos_ / Ahead::kBlock) % Ahead::kBlocks].data() + off, take);
    copied += take;
    pos_ += take;
    {
      std::lock_guard lk(a.mu);
      a.consumed = pos_;
    }
    a.cv.notify_all();
  }
}

void ChunkStream::track_pages(std::uint64_t consumed) {
  if (!value_ || !value_->mapped || value_->deferred || consumed < released_ + kPageStep) return;
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
    pos_ += out.size();
  } else if (ahead_) {
    read_ahead(out);  // advances pos_
  } else if (zstd_) {
    zstd_->read(out);
    track_pages(zstd_->consumed());
    pos_ += out.size();
  } else if (fetch_) {
    fetch_->read(pos_, out);
    pos_ += out.size();
  } else {
    std::memcpy(out.data(), encoded_.data() + pos_, out.size());
    track_pages(pos_ + out.size());
    pos_ += out.size();
  }
}

void ChunkStream::skip_to(std::uint64_t pos) {
  if (pos < pos_ || pos > total_)
    throw FormatError(ctx_.path, ctx_.what + ": cannot skip back or past the chunk's end", ctx_.offset);
  if (!zstd_ && !fill_) {  // raw bytes: nothing to decode on the way
    track_pages(pos);
    pos_ = pos;
    return;
  }
  std::byte scratch[1 << 14];
  while (pos_ < pos) read({scratch, static_cast<std::size_t>(std::min<std::uint64_t>(sizeof scratch, pos - pos_))});
}

void ChunkStream::finish() {
  skip_to(total_);
  if (ahead_) {
    std::unique_lock lk(ahead_->mu);
    ahead_->cv.wait(lk, [&] { return ahead_->done; });
    if (ahead_->error) std::rethrow_exception(ahead_->error);
  } else if (zstd_) {
    zstd_->finish();
  }
}

}  // namespace ckb::zarr
