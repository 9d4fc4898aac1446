// The writing side of zarr, as Orbax lays arrays out (formats.md §1.6): metadata text
// (`.zarray` for v2, `zarr.json` with `sharding_indexed` for v3), chunk keys and chunk
// encoding. Arrays are chunked along the first axis only, so every chunk is one contiguous
// byte range of the C-order tensor and can be encoded as soon as its bytes are in; the
// last chunk is padded with zeros to the full chunk shape, as zarr requires.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "core/tensor.h"

namespace ckb::zarr {

struct WriteSpec {
  int zarr_format = 2;       // 2 or 3
  bool compress = true;      // zstd (v2: compressor level 1; v3: codec level 3, Orbax's defaults)
  TensorInfo info;           // dtype and shape of the array
  std::uint64_t chunk_rows = 0;  // rows of axis 0 per chunk; 0 = the whole array (one chunk)

  Shape chunk_shape() const;           // Orbax style: dims of size 0 become 1
  std::uint64_t num_chunks() const;    // 0 when the array has no elements
  std::uint64_t chunk_bytes() const;   // raw bytes of one full chunk
  // The bytes of the array that chunk `i` covers: [begin, end) (end - begin < chunk_bytes()
  // only for a partial last chunk).
  std::pair<std::uint64_t, std::uint64_t> chunk_range(std::uint64_t i) const;
};

// Picks chunk_rows so that a chunk holds at most `max_chunk_bytes` (at least one row), with
// the fewest chunks of balanced size.
std::uint64_t rows_for_chunk_bytes(const TensorInfo& info, std::uint64_t max_chunk_bytes);

std::string metadata_key(const WriteSpec& s);  // ".zarray" or "zarr.json"
std::string metadata_json(const WriteSpec& s);  // exactly what TensorStore writes
std::string chunk_key(const WriteSpec& s, std::uint64_t i);  // "3.0.0" / "c/3/0/0"; "0" / "c" for 0-d

// Encodes one chunk from its raw bytes (chunk_range(i) of the array; a short last chunk is
// zero-padded). Returns the value to
// store and its length (the buffer may be larger).
// Uncompressed full v2 chunks are passed through without a copy (`view` = the input).
struct EncodedChunk {
  Bytes buffer;
  std::size_t size = 0;
  std::span<const std::byte> view;
  std::span<const std::byte> bytes() const { return view.data() ? view : buffer.span().first(size); }
};
EncodedChunk encode_chunk(const WriteSpec& s, std::span<const std::byte> raw);

std::string v2_dtype_string(DType t);

// The zstd level chunks of `s` are compressed with (v2: 1, v3: 3; Orbax's defaults).
int zstd_level(const WriteSpec& s);

}  // namespace ckb::zarr
