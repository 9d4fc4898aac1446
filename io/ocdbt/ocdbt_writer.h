// Writes a new single-generation OCDBT database (formats.md §2.10) into a directory:
// `manifest.ocdbt` plus log-structured data files `d/<32 hex>` holding the out-of-line
// values and (in one of them) the B+tree nodes (leaves first, root last). TensorStore has no C++
// package in Debian and its writer pulls in its whole runtime, so this is written by hand
// from the format spec; it mirrors the reader in this folder.
//
// Contract:
//  - put() and begin_value() are thread-safe. A value is written as it arrives: begin_value()
//    returns a ValueStream to append() to; close() stores it under its key. Values longer than
//    max_inline_value_bytes go to a data file as they arrive, so memory holds only keys and
//    small values; shorter ones stay inline in the leaves. put() is one append and close().
//  - Data files: each stream appends at the end of a data file that no other stream is
//    appending to (taken from a pool when its value outgrows the inline limit, given back
//    at close), so concurrent values never interleave; the pool grows to the number of
//    values written at once (one file when puts never overlap). Which file and offset a
//    value gets depends on timing; its bytes and key do not.
//  - A stream destroyed without close() stores nothing: its key is not recorded and the
//    file end it wrote past is rolled back (the bytes are overwritten by later values or cut
//    off by finish(); a data file left empty is not part of the database).
//  - keys must be unique (finish() names duplicates); order of put() calls is free. Every
//    stream must be closed or destroyed before finish().
//  - finish() sorts the keys, packs leaves up to max_decoded_node_bytes, builds interior
//    levels, and writes the manifest with one inline version (generation 1). Non-root
//    nodes strip the common prefix of their key range, as TensorStore's encoder does.
//  - The writer never renames anything: callers build the database inside a temporary
//    directory (io/output.h AtomicDir). Files are fsync'd by finish().
//  - Sharded writing: one database per process, merged by a root whose leaves point into
//    `ocdbt.process_N/` (put_reference, io/ocdbt/ocdbt_merge.h), as multi-host Orbax does.
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

  class ValueStream {
   public:
    virtual ~ValueStream() = default;
    virtual void append(std::span<const std::byte> bytes) = 0;
    virtual void close() = 0;
  };
  // MappingError for a key longer than 65535 bytes, or after finish().
  std::unique_ptr<ValueStream> begin_value(std::string key);
  void put(std::string key, std::span<const std::byte> value);
  void put(std::string key, std::string_view value) {
    put(std::move(key), std::as_bytes(std::span(value.data(), value.size())));
  }
  // A value that already lives in another database's data file: bytes [offset, offset +
  // length) of `base_path` + `relative_path` (relative to this database's directory, e.g.
  // "ocdbt.process_1/" + "d/<hex>"), which is neither read nor written. How a root database
  // takes in per-process databases without copying a value (io/ocdbt/ocdbt_merge.h).
  void put_reference(std::string key, const std::string& base_path, const std::string& relative_path,
                     std::uint64_t offset, std::uint64_t length);
  WriterStats finish();

 private:
  struct Impl;
  class Stream;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ckb::ocdbt
