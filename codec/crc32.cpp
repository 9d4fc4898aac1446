// CRC-32 for codec/crc32.h: libdeflate's (carry-less multiply folding, about 3x zlib's
// table version on the machines we measured: 6.5 vs 2.2 GB/s), zlib's crc32_combine.
#include "codec/crc32.h"

#include <libdeflate.h>
#include <zlib.h>

namespace ckb {

static_assert(sizeof(z_off_t) == 8, "crc32_combine needs a 64-bit z_off_t");

std::uint32_t crc32_update(std::span<const std::byte> data, std::uint32_t crc) {
  return ::libdeflate_crc32(crc, data.data(), data.size());
}

std::uint32_t crc32_combine(std::uint32_t crc_a, std::uint32_t crc_b, std::uint64_t len_b) {
  return static_cast<std::uint32_t>(::crc32_combine(crc_a, crc_b, static_cast<z_off_t>(len_b)));
}

}  // namespace ckb
