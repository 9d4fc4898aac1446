// The writing counterpart of io/kvstore.h: where zarr arrays put their metadata and chunk
// values. Two stores, as Orbax has: one file per key under a directory, or one OCDBT
// database (io/ocdbt/ocdbt_writer.h). Both are written inside a temporary directory that
// the caller renames into place; neither renames anything but its own temporaries.
//
// Contract:
//  - begin_value(key) starts a value that arrives in pieces: append() them in order, then
//    close() stores it under `key`. Nothing of it is held in memory beyond the store's
//    small buffers (the directory store writes a file as it comes; OCDBT appends to a data
//    file no other value is being appended to). A sink destroyed without close() stores
//    nothing: no file, no key (an exception half-way leaves no partial value behind).
//  - put() is begin_value + one append + close.
//  - Thread-safe: values may be written from several threads at once; each key once.
//  - finish() completes the store (for OCDBT: B+tree and manifest) and must be called
//    exactly once, after every sink is closed or destroyed.
#pragma once

#include <memory>
#include <span>
#include <string>

#include "io/ocdbt/ocdbt_writer.h"

namespace ckb {

class KvValueSink {
 public:
  virtual ~KvValueSink() = default;
  virtual void append(std::span<const std::byte> bytes) = 0;
  virtual void close() = 0;
};

class KvWriter {
 public:
  virtual ~KvWriter() = default;
  virtual std::unique_ptr<KvValueSink> begin_value(const std::string& key) = 0;
  void put(const std::string& key, std::span<const std::byte> value) {
    auto sink = begin_value(key);
    sink->append(value);
    sink->close();
  }
  void put(const std::string& key, std::string_view value) {
    put(key, std::as_bytes(std::span(value.data(), value.size())));
  }
  virtual void finish() = 0;
};

// Keys become relative file paths; a key with an empty, "." or ".." component or a leading
// '/' is refused (MappingError), so nothing is written outside `root`. A value is written
// straight to its file (the store is inside the caller's temporary directory), fsync'd at
// close(); an abandoned sink removes its file.
std::unique_ptr<KvWriter> make_directory_kv_writer(std::string root);
std::unique_ptr<KvWriter> make_ocdbt_kv_writer(std::string root, ocdbt::WriterConfig config = {});

}  // namespace ckb
