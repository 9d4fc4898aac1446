// Bounded Zstandard decoding shared by OCDBT nodes and zarr chunks. Input comes from
// untrusted files, so the output size is capped *before* anything is allocated: a frame
// whose declared content size exceeds the cap is refused up front, and the streaming
// decoder (ZSTD_decompressStream) stops as soon as the output would pass the cap, which
// also covers frames without a content-size field.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "core/tensor.h"

namespace ckb {

// Decodes exactly one zstd frame (trailing bytes are an error) producing at most `limit`
// bytes. `exact` = true additionally requires the output to be exactly `limit` bytes.
// Errors are FormatError(path, "<what>: ...", offset).
Bytes zstd_decode(std::span<const std::byte> in, std::uint64_t limit, bool exact, const std::string& path,
                  std::uint64_t offset, const std::string& what);

}  // namespace ckb
