// zlib's CRC-32, for codec/crc32.h.
#include "codec/crc32.h"

#include <zlib.h>

#include <algorithm>

namespace ckb {

static_assert(sizeof(z_off_t) == 8, "crc32_combine needs a 64-bit z_off_t");

std::uint32_t crc32_update(std::span<const std::byte> data, std::uint32_t crc) {
  uLong c = crc;
  const auto* p = reinterpret_cast<const Bytef*>(data.data());
  std::size_t left = data.size();
  while (left > 0) {
    const uInt n = static_cast<uInt>(std::min<std::size_t>(left, 1u << 30));
    c = ::crc32(c, p, n);
    p += n;
    left -= n;
  }
  return static_cast<std::uint32_t>(c);
}

std::uint32_t crc32_combine(std::uint32_t crc_a, std::uint32_t crc_b, std::uint64_t len_b) {
  return static_cast<std::uint32_t>(::crc32_combine(crc_a, crc_b, static_cast<z_off_t>(len_b)));
}

}  // namespace ckb
