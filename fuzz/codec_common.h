// Shared by the bytes->bytes codec targets: the first two input bytes choose the output
// limit (up to 4 MiB, in 64-byte steps) and whether the output must be exactly that size;
// the rest is the encoded input.
#pragma once

#include "fuzz/fuzz_common.h"
#include "formats/zarr/codecs.h"

namespace ckb::fuzz {

inline void run_codec(ckb::zarr::BytesCodecKind kind, const std::uint8_t* data, std::size_t size) {
  if (size < 2) return;
  const std::uint64_t limit = (std::uint64_t{data[0]} | (std::uint64_t{data[1]} & 0x7f) << 8) * 128;
  const bool exact = data[1] & 0x80;
  auto out = ckb::zarr::decode_bytes_codec(kind, bytes(data + 2, size - 2), limit, exact, "fuzz/chunk", 0, "chunk");
  if (out.size() > limit || (exact && out.size() != limit)) ::abort();  // the contract callers rely on
}

}  // namespace ckb::fuzz
