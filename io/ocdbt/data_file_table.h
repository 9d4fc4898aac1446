// OCDBT data-file tables (formats.md §2.5) and the (file, offset, length) references into
// them. A table is stored column-wise with prefix compression of base_path+relative_path;
// entries are resolved against the "transitive" base path of the object holding the table
// (the manifest: ""; a node: the base_path of the file it was read from).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "io/byte_reader.h"

namespace ckb::ocdbt {

struct DataFile {
  std::string base_path;      // transitive base already prepended
  std::string relative_path;  // e.g. "d/4bb2f13e..."
  std::string path() const { return base_path + relative_path; }
};

using DataFileTable = std::vector<DataFile>;

// Parses a table at the reader's position and validates it (prefix/base-length rules,
// path length <= 65535, no absolute paths or ".." components).
DataFileTable read_data_file_table(ByteReader& r, const std::string& transitive_base);

inline constexpr std::uint64_t kMissing = ~0ull;

// A reference to bytes [offset, offset+length) of data file `file_id` of some table.
struct IndirectRef {
  std::uint64_t file_id = 0;
  std::uint64_t offset = 0;
  std::uint64_t length = 0;
  bool missing() const { return offset == kMissing && length == kMissing; }
};

// offset + length <= 2^63-1 unless it is the "missing" sentinel; file_id < table size
// (when not missing). `at` is the absolute offset of the reference, for messages.
void validate_ref(const IndirectRef& ref, std::size_t num_files, const std::string& path, std::uint64_t at,
                  const char* what);

}  // namespace ckb::ocdbt
