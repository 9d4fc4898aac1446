// Writes a new single-generation OCDBT database (formats.md §2.10) into a directory:
// `manifest.ocdbt` plus one log-structured data file `d/<32 hex>` holding the out-of-line
// values followed by the B+tree nodes (leaves first, root last). TensorStore has no C++
// package in Debian and its writer pulls in its whole runtime, so this is written by hand
// from the format spec; it mirrors the reader in this folder.
//
// Contract:
//  - put() is thread-safe. Values longer than max_inline_value_bytes are written to the
//    data file at once (concurrent pwrite at reserved offsets), so memory holds only keys
//    and small values; shorter ones stay inline in the leaves.
//  - keys must be unique (finish() names duplicates); order of put() calls is free.
//  - finish() sorts the keys, packs leaves up to max_decoded_node_bytes, builds interior
//    levels, and writes the manifest with one inline version (generation 1). Non-root
//    nodes strip the common prefix of their key range, as TensorStore's encoder does.
//  - The writer never renames anything: callers build the database inside a temporary
//    directory (io/output.h AtomicDir). Files are fsync'd by finish().
//  - Sharded writing (one database per process, merged by a root whose leaves point into
//    `ocdbt.process_N/`) is the planned extension; nothing here assumes a single writer
//    process beyond the file name being random.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>

namespace ckb::ocdbt {

struct WriterConfig {
  std::uint32_t max_inline_value_bytes = 1024;      // Orbax's setting
  std::uint32_t max_decoded_node_bytes = 100000000;  // Orbax's setting
  std::optional<int> node_zstd_level = 0;            // nullopt: raw nodes and manifest
};

struct WriterStats {
  std::uint64_t num_keys = 0;
  std::uint64_t num_tree_bytes = 0;            // encoded B+tree node bytes
  std::uint64_t num_indirect_value_bytes = 0;  // out-of-line value bytes
  unsigned height = 0;                         // root height (0 = a single leaf)
};

class OcdbtWriter {
 public:
  // `dir` must exist; `d/` is created inside it.
  explicit OcdbtWriter(std::string dir, WriterConfig config = {});
  ~OcdbtWriter();
  OcdbtWriter(const OcdbtWriter&) = delete;
  OcdbtWriter& operator=(const OcdbtWriter&) = delete;

  void put(std::string key, std::span<const std::byte> value);
  void put(std::string key, std::string_view value) {
    put(std::move(key), std::as_bytes(std::span(value.data(), value.size())));
  }
  WriterStats finish();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ckb::ocdbt
