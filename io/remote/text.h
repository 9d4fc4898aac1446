// Small text helpers shared by the io/remote files: environment lookups, ASCII case folding,
// trimming, and decimal parsing.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace ckb::remote {

// The variable's value, "" when unset.
std::string env_string(const char* name);
std::string ascii_lower(std::string_view s);
// Without leading and trailing spaces, tabs, CR and LF.
std::string trim_space(std::string_view s);
// A whole decimal number (digits only), nullopt otherwise.
std::optional<std::uint64_t> parse_decimal(std::string_view s);

}  // namespace ckb::remote
