// The writing counterpart of io/kvstore.h: where zarr arrays put their metadata and chunk
// values. Two stores, as Orbax has: one file per key under a directory, or one OCDBT
// database (io/ocdbt/ocdbt_writer.h). Both are written inside a temporary directory that
// the caller renames into place; neither renames anything itself.
//
// Contract: put() is thread-safe and each key is written once; finish() completes the store
// (for OCDBT: B+tree and manifest) and must be called exactly once after the last put().
#pragma once

#include <memory>
#include <span>
#include <string>

#include "io/ocdbt/ocdbt_writer.h"

namespace ckb {

class KvWriter {
 public:
  virtual ~KvWriter() = default;
  virtual void put(const std::string& key, std::span<const std::byte> value) = 0;
  void put(const std::string& key, std::string_view value) {
    put(key, std::as_bytes(std::span(value.data(), value.size())));
  }
  virtual void finish() = 0;
};

// Keys become relative file paths; a key with an empty, "." or ".." component or a leading
// '/' is refused (MappingError), so nothing is written outside `root`.
std::unique_ptr<KvWriter> make_directory_kv_writer(std::string root);
std::unique_ptr<KvWriter> make_ocdbt_kv_writer(std::string root, ocdbt::WriterConfig config = {});

}  // namespace ckb
