// Decoding one stored zarr chunk into its C-order little-endian element bytes: the
// bytes->bytes codecs in reverse, then the v2 filters in reverse, then `bytes` (byte order) or `sharding_indexed` (shard
// index + inner chunks, recursively), then the transposes undone. Sizes are checked
// against the expected chunk size before any buffer for them is allocated.
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"
#include "formats/zarr/zarr_metadata.h"

namespace ckb::zarr {

// The distinct chunks (and inner chunks of shards) an array found missing and read as the
// fill value; thread-safe.
class MissingChunkLog {
 public:
  void note(const std::string& what);
  std::uint64_t count() const;

 private:
  mutable std::mutex mu_;
  std::set<std::string> seen_;
};

struct ChunkContext {
  const ZarrMetadata* meta;
  bool missing_is_error = true;  // a missing inner chunk of a shard: error, or fill value
  std::string path;              // file holding the encoded chunk (messages)
  std::uint64_t offset = 0;      // where the encoded chunk starts in it
  std::string what;              // "array 'x' chunk 'x/0.0'"
  MissingChunkLog* missing_log = nullptr;  // where missing inner chunks read as fill are noted
};

// `shape` is the full (not edge-cropped) chunk shape.
Bytes decode_chunk(const CodecChain& chain, std::span<const std::byte> encoded, const std::vector<std::uint64_t>& shape,
                   const ChunkContext& ctx);

// The (offset, length) of each of the `n` inner chunks of a sharding_indexed shard, checked
// (index size, crc32c, every range inside the shard); a missing inner chunk is
// {kMissingInner, kMissingInner}.
inline constexpr std::uint64_t kMissingInner = ~0ull;
std::vector<std::pair<std::uint64_t, std::uint64_t>> shard_index(const ShardingSpec& spec, std::span<const std::byte> shard,
                                                                 std::uint64_t n, const ChunkContext& ctx);
// The same in two steps, for a shard that is not in memory: where its index lies (FormatError
// when the shard is smaller than it) and how many bytes it has, then parsing the index bytes.
std::uint64_t shard_index_size(const ShardingSpec& spec, std::uint64_t n);
std::uint64_t shard_index_offset(const ShardingSpec& spec, std::uint64_t shard_size, std::uint64_t n,
                                 const ChunkContext& ctx);
std::vector<std::pair<std::uint64_t, std::uint64_t>> parse_shard_index(const ShardingSpec& spec,
                                                                       std::span<const std::byte> index,
                                                                       std::uint64_t shard_size, std::uint64_t n,
                                                                       const ChunkContext& ctx);

// Fills `out` with repetitions of the fill element (zeros when there is none).
void fill_elements(std::span<std::byte> out, const std::optional<std::vector<std::byte>>& fill);

// Copies the box of extent `box` at `src_origin` of a C-order array of shape `src_shape`
// to `dst_origin` of a C-order array of shape `dst_shape` (elements of `elem` bytes).
void copy_box(const std::byte* src, const std::vector<std::uint64_t>& src_shape, const std::vector<std::uint64_t>& src_origin,
              std::byte* dst, const std::vector<std::uint64_t>& dst_shape, const std::vector<std::uint64_t>& dst_origin,
              const std::vector<std::uint64_t>& box, std::size_t elem);

}  // namespace ckb::zarr
