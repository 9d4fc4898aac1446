// The one JSON parser for untrusted files (safetensors headers and indexes, Orbax and zarr
// metadata, recipes, PEFT/openpi configs). nlohmann::json does the parsing; this adds what
// the formats' reference readers enforce and nlohmann does not:
//   - nesting is capped (max_depth), so no later recursion (dump(), copies, recursive
//     recipe parsing) can exhaust the stack on a hostile file;
//   - an object holding the same key twice is an error. nlohmann silently keeps the last
//     value, Python's json keeps the last, serde rejects duplicate struct fields: a file that
//     means different things to different readers is refused rather than guessed at.
// Both are FormatError(path, ..., offset) naming the file and the key / the depth.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace ckb {

struct JsonLimits {
  int max_depth = 64;
  // false: a syntax error returns a discarded value (nlohmann's allow_exceptions = false);
  // true: it throws nlohmann::json::parse_error, as nlohmann::json::parse does.
  bool allow_exceptions = true;
  // Duplicate keys are refused unless this is false (content sniffing, which must not throw).
  bool reject_duplicate_keys = true;
  // Byte offset of the text in `path`, reported with the errors (a safetensors header is at 8).
  std::optional<std::uint64_t> offset = std::nullopt;
};

nlohmann::json parse_json_bounded(std::string_view text, const std::string& path, const JsonLimits& limits = {});
nlohmann::ordered_json parse_ordered_json_bounded(std::string_view text, const std::string& path,
                                                  const JsonLimits& limits = {});

}  // namespace ckb
