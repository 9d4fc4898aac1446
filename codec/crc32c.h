// CRC-32C (Castagnoli; reflected polynomial 0x82F63B78, init and final XOR 0xFFFFFFFF).
// OCDBT frames every manifest and node with it, and zarr v3's `crc32c` codec appends it.
// Hand-written (slice-by-8 tables built at compile time) because no library already linked
// into ckb exposes CRC-32C.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace ckb::ocdbt {

// CRC-32C of `data`. To continue a running CRC pass the previous result as `crc`.
std::uint32_t crc32c(std::span<const std::byte> data, std::uint32_t crc = 0);

}  // namespace ckb::ocdbt
