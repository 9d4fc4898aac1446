// Zarr bytes->bytes codecs (decode direction only): zstd, zlib, gzip, blosc, crc32c, and
// numcodecs' bz2 (libbz2) and lz4 (a 4-byte little-endian decoded size + one LZ4 block, liblz4).
// Every decoder is given the most bytes it may produce and checks it before allocating
// (zstd content size, blosc header, lz4 size prefix) or while streaming (zlib/gzip/bz2), so a corrupt or
// hostile chunk cannot make us allocate more than the chunk it is supposed to hold.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "core/tensor.h"
#include "formats/zarr/zarr_metadata.h"

namespace ckb::zarr {

// Decodes `in` with codec `kind`. The output must be at most `limit` bytes, and exactly
// `limit` when `exact`. FormatError(path, what + ...) on any problem; `offset` is where
// `in` starts in `path`.
Bytes decode_bytes_codec(BytesCodecKind kind, std::span<const std::byte> in, std::uint64_t limit, bool exact,
                         const std::string& path, std::uint64_t offset, const std::string& what);

const char* codec_name(BytesCodecKind kind);

}  // namespace ckb::zarr
