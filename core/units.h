// Quantities as users type them: byte sizes ("5GB", "500MiB", "1048576") and integers,
// parsed exactly (no overflow, no trailing junk) into UsageErrors that quote the text.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace ckb {

// Decimal digits with an optional unit: B, KB/MB/GB/TB (powers of 1000), K/KiB, M/MiB, G/GiB,
// T/TiB (powers of 1024), case-insensitive. `what` names the option in the error.
std::uint64_t parse_byte_size(std::string_view text, std::string_view what = "size");
// An optionally signed decimal integer that fits int64.
std::int64_t parse_integer(std::string_view text, std::string_view what = "integer");

}  // namespace ckb
