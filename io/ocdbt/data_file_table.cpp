// Column-wise data-file table decoding for io/ocdbt/data_file_table.h.
#include "io/ocdbt/data_file_table.h"

#include <algorithm>

#include "core/errors.h"
#include "io/ocdbt/varint.h"

namespace ckb::ocdbt {

DataFileTable read_data_file_table(ByteReader& r, const std::string& transitive_base) {
  const std::uint64_t start = r.abs_pos();
  const std::uint64_t n = read_varint(r, "data file count");
  // Each entry needs at least 2 bytes of columns: bound n by what is left before allocating.
  if (n > r.remaining()) throw FormatError(r.path(), "data file table: count " + std::to_string(n) + " too large", start);
  std::vector<std::uint16_t> prefix(n, 0), suffix(n), base_len(n);
  for (std::uint64_t i = 1; i < n; ++i) prefix[i] = read_varint16(r, "data file path prefix length");
  for (std::uint64_t i = 0; i < n; ++i) suffix[i] = read_varint16(r, "data file path suffix length");
  for (std::uint64_t i = 0; i < n; ++i) base_len[i] = read_varint16(r, "data file base path length");
  DataFileTable table;
  table.reserve(n);
  std::string prev;
  for (std::uint64_t i = 0; i < n; ++i) {
    const std::uint64_t at = r.abs_pos();
    if (prefix[i] > prev.size())
      throw FormatError(r.path(), "data file table: prefix length " + std::to_string(prefix[i]) + " exceeds previous path",
                        at);
    std::string path = prev.substr(0, prefix[i]);
    path += r.take_str(suffix[i], "data file path suffix");
    if (base_len[i] > path.size())
      throw FormatError(r.path(), "data file table: base path length exceeds path '" + path + "'", at);
    if (i > 0 && prefix[i] > std::min(base_len[i - 1], base_len[i])) {
      if (base_len[i] != base_len[i - 1] || path.compare(0, base_len[i], prev, 0, base_len[i]) != 0)
        throw FormatError(r.path(), "data file table: inconsistent base path for '" + path + "'", at);
    }
    if (transitive_base.size() + path.size() > 65535)
      throw FormatError(r.path(), "data file table: path longer than 65535 bytes", at);
    DataFile f{transitive_base + path.substr(0, base_len[i]), path.substr(base_len[i])};
    const std::string full = f.path();
    if (!full.empty() && full.front() == '/')
      throw FormatError(r.path(), "data file table: absolute path '" + full + "'", at);
    for (std::size_t s = 0; s <= full.size();) {
      std::size_t e = full.find('/', s);
      if (e == std::string::npos) e = full.size();
      if (full.compare(s, e - s, "..") == 0 && e - s == 2)
        throw FormatError(r.path(), "data file table: path '" + full + "' leaves the database", at);
      s = e + 1;
    }
    table.push_back(std::move(f));
    prev = std::move(path);
  }
  return table;
}

void validate_ref(const IndirectRef& ref, std::size_t num_files, const std::string& path, std::uint64_t at,
                  const char* what) {
  if (ref.missing()) return;
  if (ref.file_id >= num_files)
    throw FormatError(path,
                      std::string(what) + ": data file id " + std::to_string(ref.file_id) + " >= table size " +
                          std::to_string(num_files),
                      at);
  constexpr std::uint64_t kMax = (1ull << 63) - 1;
  if (ref.offset > kMax || ref.length > kMax - ref.offset)
    throw FormatError(path,
                      std::string(what) + ": offset " + std::to_string(ref.offset) + " + length " +
                          std::to_string(ref.length) + " exceeds 2^63-1",
                      at);
}

}  // namespace ckb::ocdbt
