// OCDBT B+tree nodes (formats.md §2.7). Keys in a node are relative to the node's implicit
// prefix (see OcdbtKvStore); interior entries carry the length of the prefix their child
// strips (subtree_common_prefix_length). Leaf values are inline (bytes inside the node) or
// out-of-line (a range of a data file).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "io/ocdbt/data_file_table.h"

namespace ckb::ocdbt {

inline constexpr std::uint64_t kMaxNodeArity = 1u << 20;
inline constexpr std::uint64_t kMaxInlineValueLength = 1u << 20;

struct LeafEntry {
  std::string key;  // relative to the node's prefix
  bool is_inline = true;
  std::span<const std::byte> value;  // inline: points into the node body
  IndirectRef ref;                   // out-of-line: ref.length = value length
};

struct InteriorEntry {
  std::string key;  // relative; the child's inclusive lower bound
  std::uint16_t subtree_prefix_length = 0;
  IndirectRef ref;  // the child node
  std::uint64_t num_keys = 0, num_tree_bytes = 0, num_indirect_value_bytes = 0;
};

struct BtreeNode {
  std::uint8_t height = 0;
  DataFileTable files;
  std::vector<LeafEntry> leaves;        // height == 0
  std::vector<InteriorEntry> children;  // height > 0
  std::shared_ptr<const void> owner;    // keeps inline values alive
  std::size_t size() const { return height == 0 ? leaves.size() : children.size(); }
  const std::string& key(std::size_t i) const { return height == 0 ? leaves[i].key : children[i].key; }
};

// Parses a decoded node body. `transitive_base` is the base path of the file the node was
// read from; `owner` keeps `body` alive. Enforces: 1 <= entries <= 2^20, keys strictly
// increasing and <= 65535 bytes, subtree prefix <= key length, inline values <= 1 MiB,
// references valid, no trailing bytes.
BtreeNode parse_btree_node(std::span<const std::byte> body, std::shared_ptr<const void> owner, const std::string& path,
                           const std::string& transitive_base, std::uint64_t base = 0);

}  // namespace ckb::ocdbt
