// OCDBT manifest bodies (formats.md §2.4, §2.6.1-2): the config, the data-file table, the
// inline version entries (the last one is the latest generation) and the version-node
// references. Version-tree nodes themselves are not needed to read the latest generation.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "io/ocdbt/data_file_table.h"

namespace ckb::ocdbt {

struct Config {
  std::array<std::uint8_t, 16> uuid{};
  std::uint8_t manifest_kind = 0;  // 0 single, 1 numbered
  std::uint32_t max_inline_value_bytes = 0;
  std::uint32_t max_decoded_node_bytes = 0;
  std::uint8_t version_tree_arity_log2 = 0;
  std::uint64_t compression_method = 0;  // 0 none, 1 zstd
  std::int32_t zstd_level = 0;
};

struct Version {
  std::uint64_t generation = 0;
  std::uint8_t root_height = 0;
  IndirectRef root;
  std::uint64_t num_keys = 0, num_tree_bytes = 0, num_indirect_value_bytes = 0;
  std::uint64_t commit_time_ns = 0;
};

struct VersionNodeRef {
  std::uint64_t generation = 0;
  IndirectRef ref;
  std::uint64_t num_generations = 0;
  std::uint64_t commit_time_ns = 0;
  std::uint8_t height = 0;
};

struct Manifest {
  Config config;
  DataFileTable files;                 // empty for a numbered-kind config-only manifest
  std::vector<Version> versions;       // inline versions, increasing generations
  std::vector<VersionNodeRef> version_nodes;
  const Version& latest() const { return versions.back(); }
};

// Parses a decoded manifest body (after framing). `path` and `base` (the absolute offset
// of the body, for messages) locate it. Validates every field and that nothing trails.
Manifest parse_manifest(std::span<const std::byte> body, const std::string& path, std::uint64_t base = 0);

}  // namespace ckb::ocdbt
