// CRC-32 (the IEEE polynomial of zip, gzip and PNG; libdeflate's implementation), with the
// combination of two adjacent ranges' CRCs. io/zip_crc.h verifies zip members with it.
#pragma once

#include <cstdint>
#include <span>

namespace ckb {

// CRC-32 of `data` continuing from `crc` (0 to start); any length.
std::uint32_t crc32_update(std::span<const std::byte> data, std::uint32_t crc = 0);

// The CRC-32 of A followed by B, from crc(A), crc(B) and B's length.
std::uint32_t crc32_combine(std::uint32_t crc_a, std::uint32_t crc_b, std::uint64_t len_b);

}  // namespace ckb
