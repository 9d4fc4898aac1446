// The common OCDBT framing shared by manifests, version-tree nodes and B+tree nodes
// (formats.md §2.3): magic (u32be), total length (u64le), format version varint (must be 0),
// compression varint (0 raw, 1 zstd), body, crc32c (u32le) over everything before it.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "core/tensor.h"

namespace ckb::ocdbt {

inline constexpr std::uint32_t kManifestMagic = 0x0CDB3A2Au;
inline constexpr std::uint32_t kVersionNodeMagic = 0x0CDB1234u;
inline constexpr std::uint32_t kBtreeNodeMagic = 0x0CDB20DEu;

// Cap on a decoded body. TensorStore does not enforce max_decoded_node_bytes on read, but a
// bound is needed so that a corrupt frame cannot make us allocate without limit.
inline constexpr std::uint64_t kMaxDecodedBody = 1ull << 30;

// A decoded body. Raw bodies point into the input (kept alive by `owner`); zstd bodies own
// their buffer.
struct Body {
  std::span<const std::byte> bytes;
  std::shared_ptr<const void> owner;
  std::uint64_t file_offset = 0;  // for messages: file offset of body byte 0 (raw) or of the frame (zstd)
};

// Checks the framing of `framed` (all of it: its length must equal the stored length) and
// returns the body. `offset` is its position in `path`, for messages; `what` names the kind
// ("manifest", "b+tree node"). Throws FormatError naming path and offset.
Body decode_framed(std::span<const std::byte> framed, std::shared_ptr<const void> owner, std::uint32_t magic,
                   const std::string& path, std::uint64_t offset, const char* what);

// The writing direction: frames `body` (raw when `zstd_level` is nullopt, else as one zstd
// frame at that level) with the magic, back-filled length and trailing crc32c.
std::string encode_framed(std::uint32_t magic, std::string_view body, std::optional<int> zstd_level);

}  // namespace ckb::ocdbt
