// Zarr array metadata (formats.md §3): v2 `.zarray` and v3 `zarr.json`, parsed into one
// representation. A v2 array becomes the equivalent v3 pipeline: order "F" is a transpose
// with the reversed axis order, the dtype's byte order is the `bytes` codec's endianness, and
// the compressor is a bytes->bytes codec; numcodecs filters (formats/zarr/filters.h) sit
// between the byte order and the bytes->bytes codecs.
// v3 extensions (spec §"must_understand"): an unknown codec or storage transformer marked
// "must_understand": false is ignored, and so is an unknown top-level field whose value is an
// object marked so; any other unknown extension, field, data type, chunk grid or chunk key
// encoding is a FormatError naming the file and the extension.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/tensor.h"
#include "formats/zarr/filters.h"
#include "formats/zarr/zarr_dtype.h"

namespace ckb::zarr {

enum class BytesCodecKind { Zstd, Zlib, Gzip, Blosc, Crc32c, Bz2, Lz4 };

struct ShardingSpec;

// A codec pipeline: array->array transposes (encode order), one array->bytes codec (plain
// `bytes` or `sharding_indexed`), then bytes->bytes codecs (encode order).
struct CodecChain {
  std::vector<std::vector<std::size_t>> transposes;  // each: order[i] = input axis of output axis i
  bool big_endian = false;                           // `bytes` codec endianness
  std::vector<Filter> filters;                       // v2 numcodecs filters (encode order)
  std::shared_ptr<const ShardingSpec> sharding;      // set: array->bytes is sharding_indexed
  std::vector<BytesCodecKind> bytes_codecs;
};

struct ShardingSpec {
  std::vector<std::uint64_t> inner_chunk;  // inner chunk shape
  CodecChain inner;                        // pipeline of each inner chunk
  bool index_at_end = true;
  bool index_big_endian = false;
  bool index_crc32c = false;
};

struct ZarrMetadata {
  int zarr_format = 2;
  Shape shape;
  std::vector<std::uint64_t> chunks;  // outer chunk (v3: shard) shape, same rank
  ZarrDType dtype;
  std::optional<std::vector<std::byte>> fill;  // one LE element; nullopt = null
  CodecChain codecs;
  char separator = '.';
  bool v3_default_keys = false;  // "c/0/0" style keys ("c" for 0-d)

  std::uint64_t numel() const;
  std::vector<std::uint64_t> grid() const;      // chunks per dimension (ceil)
  std::uint64_t chunk_numel() const;            // product of `chunks` (1 for 0-d)
  // The storage key of a chunk, relative to the array ("0.1", "c/0/1", "0" / "c" for 0-d).
  std::string chunk_key(const std::vector<std::uint64_t>& idx) const;
};

// Parse and validate; errors are FormatError(`where`, ...).
ZarrMetadata parse_zarray(std::string_view text, const std::string& where);
ZarrMetadata parse_zarr_json(std::string_view text, const std::string& where);
// A v3 group's zarr.json (node_type "group"), checked as above; returns its attributes.
nlohmann::json parse_v3_group(std::string_view text, const std::string& where);
// Any JSON object (.zgroup, .zattrs, .zmetadata), nesting bounded; FormatError otherwise.
nlohmann::json parse_json_object(std::string_view text, const std::string& where);

// Chunks larger than this are refused (a corrupt or hostile header must not make us
// allocate without bound; Orbax chunks are at most the 2 GiB OCDBT target file size).
inline constexpr std::uint64_t kMaxChunkBytes = 16ull << 30;

}  // namespace ckb::zarr
