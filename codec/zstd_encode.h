// One-shot zstd compression (libzstd) for the writers: OCDBT node/manifest bodies and
// zarr chunks. A compression context is kept per thread, so concurrent callers neither
// share nor re-create state.
#pragma once

#include <span>
#include <string>

#include "core/tensor.h"

namespace ckb {

// The most bytes zstd_encode_into may write for `n` input bytes.
std::size_t zstd_bound(std::size_t n);
// Writes one complete zstd frame (content size recorded, no checksum) holding `in` to the
// start of `out` (at least zstd_bound(in.size()) bytes) and returns its length.
std::size_t zstd_encode_into(std::span<const std::byte> in, std::span<std::byte> out, int level);
std::string zstd_encode_string(std::string_view in, int level);

}  // namespace ckb
