// Sequential decoding of one stored zarr chunk straight into the reader's buffers, for chunks
// whose decoded bytes are a plain byte stream: no transpose codec, little-endian (or 1-byte
// elements), at most one zstd codec, either directly or inside a sharding_indexed shard that
// holds a single inner chunk (Orbax's zarr3 layout). Orbax writes one chunk per array unless
// told otherwise, so a multi-GB array is one zstd frame: streamed, it never has to be resident,
// and its decoding overlaps with whatever consumes it. Input pages are prefetched ahead of the
// decoder (cold reads) and dropped behind it (the resident set stays flat). A large zstd chunk
// is decoded ahead by a helper thread into a small ring of blocks, so decoding overlaps with
// the reader's own work (writing, merging) and the chunks of one band decode in parallel.
// A deferred value (a chunk in object storage: KvStore::get_streamed) is fetched as it is
// decoded, a few pieces ahead (io/sequential_read.h), so it is never whole in memory either.
// Everything decode_chunk checks is checked here too (sizes, truncation, trailing bytes, the
// shard index); errors name the file and offset.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "formats/zarr/chunk_decode.h"
#include "io/kvstore.h"

namespace ckb {
class SequentialRead;
class ZstdStream;
}

namespace ckb::zarr {

// True when chunks of full shape `shape` (elements of `elem` bytes) encoded with `chain`
// can be read as a stream.
bool streamable(const CodecChain& chain, const std::vector<std::uint64_t>& shape, std::size_t elem);

class ChunkStream {
 public:
  // `value` is the stored chunk, or nullopt for a missing one (it reads as the fill value;
  // whether a missing chunk is allowed is the caller's decision). `shape` is the full chunk
  // shape; `chain` must be streamable for it. `ctx` as for decode_chunk.
  // Chunks whose zstd frame is at least `decode_ahead_from` bytes are decoded ahead.
  ChunkStream(const CodecChain& chain, std::optional<KvValue> value, const std::vector<std::uint64_t>& shape,
              ChunkContext ctx, std::uint64_t decode_ahead_from = kDecodeAheadFrom);
  static constexpr std::uint64_t kDecodeAheadFrom = 32u << 20;
  ~ChunkStream();
  ChunkStream(const ChunkStream&) = delete;
  ChunkStream& operator=(const ChunkStream&) = delete;

  // The next out.size() decoded bytes.
  void read(std::span<std::byte> out);
  // Decodes and discards bytes up to decoded offset `pos` (>= produced(): edge padding).
  void skip_to(std::uint64_t pos);
  // Skips the rest of the chunk, then checks that the stored chunk holds exactly the
  // chunk's bytes.
  void finish();
  std::uint64_t produced() const { return pos_; }

 private:
  void track_pages(std::uint64_t consumed);
  struct Ahead;
  void run_ahead();        // the helper thread's loop
  void read_ahead(std::span<std::byte> out);

  ChunkContext ctx_;
  std::optional<KvValue> value_;
  std::span<const std::byte> encoded_;  // the stream inside value_ (raw bytes or a zstd frame)
  std::uint64_t encoded_at_ = 0;        // its offset in the file
  std::uint64_t encoded_size_ = 0;
  std::unique_ptr<SequentialRead> fetch_;  // a deferred value's stream, fetched as it is read
  std::unique_ptr<ZstdStream> zstd_;
  bool fill_ = false;  // a missing chunk or inner chunk
  std::uint64_t total_ = 0, pos_ = 0;
  std::uint64_t released_ = 0;  // encoded bytes whose pages were dropped
  std::unique_ptr<Ahead> ahead_;
};

}  // namespace ckb::zarr
