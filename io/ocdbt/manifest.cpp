// Manifest body decoding for io/ocdbt/manifest.h.
#include "io/ocdbt/manifest.h"

#include "core/errors.h"
#include "io/byte_reader.h"
#include "io/ocdbt/varint.h"

namespace ckb::ocdbt {
namespace {

Config read_config(ByteReader& r) {
  Config c;
  auto uuid = r.take(16, "uuid");
  for (int i = 0; i < 16; ++i) c.uuid[i] = std::to_integer<std::uint8_t>(uuid[i]);
  const std::uint64_t at = r.abs_pos();
  c.manifest_kind = r.u8("manifest kind");
  if (c.manifest_kind > 1) throw FormatError(r.path(), "unknown manifest kind " + std::to_string(c.manifest_kind), at);
  c.max_inline_value_bytes = read_varint32(r, "max_inline_value_bytes");
  c.max_decoded_node_bytes = read_varint32(r, "max_decoded_node_bytes");
  const std::uint64_t at_arity = r.abs_pos();
  c.version_tree_arity_log2 = r.u8("version_tree_arity_log2");
  if (c.version_tree_arity_log2 < 1 || c.version_tree_arity_log2 > 16)
    throw FormatError(r.path(), "version_tree_arity_log2 " + std::to_string(c.version_tree_arity_log2) + " not in 1..16",
                      at_arity);
  const std::uint64_t at_comp = r.abs_pos();
  c.compression_method = read_varint(r, "compression method");
  if (c.compression_method == 1) {
    c.zstd_level = r.le<std::int32_t>("zstd level");
    if (c.zstd_level < -(1 << 17) || c.zstd_level > 22)
      throw FormatError(r.path(), "zstd level " + std::to_string(c.zstd_level) + " out of range", at_comp);
  } else if (c.compression_method != 0) {
    throw FormatError(r.path(), "unknown compression method " + std::to_string(c.compression_method), at_comp);
  }
  return c;
}

std::vector<Version> read_versions(ByteReader& r, const Config& c, std::size_t num_files) {
  const std::uint64_t at = r.abs_pos();
  const std::uint64_t n = read_varint(r, "version count");
  const std::uint64_t max_n = 1ull << c.version_tree_arity_log2;
  if (n < 1 || n > max_n)
    throw FormatError(r.path(), "inline version count " + std::to_string(n) + " not in 1.." + std::to_string(max_n), at);
  std::vector<Version> v(n);
  for (auto& e : v) {
    const std::uint64_t a = r.abs_pos();
    e.generation = read_varint(r, "generation number");
    if (e.generation == 0 || (&e != v.data() && e.generation <= (&e - 1)->generation))
      throw FormatError(r.path(), "generation numbers must be non-zero and strictly increasing", a);
  }
  for (auto& e : v) e.root_height = r.u8("root height");
  for (auto& e : v) e.root.file_id = read_varint(r, "root data file id");
  for (auto& e : v) e.root.offset = read_varint(r, "root offset");
  for (auto& e : v) e.root.length = read_varint(r, "root length");
  for (auto& e : v) e.num_keys = read_varint(r, "num_keys");
  for (auto& e : v) e.num_tree_bytes = read_varint(r, "num_tree_bytes");
  for (auto& e : v) e.num_indirect_value_bytes = read_varint(r, "num_indirect_value_bytes");
  for (auto& e : v) e.commit_time_ns = r.le<std::uint64_t>("commit time");
  const std::uint64_t last = v.back().generation;
  const std::uint64_t min_first = last - ((last - 1) % max_n);
  if (v.front().generation < min_first)
    throw FormatError(r.path(), "inline versions reach back further than the version tree arity allows", at);
  for (const auto& e : v) validate_ref(e.root, num_files, r.path(), at, "version root");
  return v;
}

std::vector<VersionNodeRef> read_version_nodes(ByteReader& r, std::size_t num_files) {
  const std::uint64_t at = r.abs_pos();
  const std::uint64_t n = read_varint(r, "version node count");
  if (n > r.remaining()) throw FormatError(r.path(), "version node count too large", at);
  std::vector<VersionNodeRef> v(n);
  for (auto& e : v) e.generation = read_varint(r, "version node generation");
  for (auto& e : v) e.ref.file_id = read_varint(r, "version node data file id");
  for (auto& e : v) e.ref.offset = read_varint(r, "version node offset");
  for (auto& e : v) e.ref.length = read_varint(r, "version node length");
  for (auto& e : v) e.num_generations = read_varint(r, "version node generation count");
  for (auto& e : v) e.commit_time_ns = r.le<std::uint64_t>("version node commit time");
  for (auto& e : v) e.height = r.u8("version node height");
  for (std::size_t i = 0; i < v.size(); ++i) {
    validate_ref(v[i].ref, num_files, r.path(), at, "version node");
    if (i && v[i].height >= v[i - 1].height)
      throw FormatError(r.path(), "version node heights must be strictly decreasing", at);
  }
  return v;
}

}  // namespace

Manifest parse_manifest(std::span<const std::byte> body, const std::string& path, std::uint64_t base) {
  ByteReader r(body, path, base);
  Manifest m;
  m.config = read_config(r);
  if (m.config.manifest_kind == 0) {
    m.files = read_data_file_table(r, "");
    m.versions = read_versions(r, m.config, m.files.size());
    m.version_nodes = read_version_nodes(r, m.files.size());
  }
  if (!r.at_end())
    throw FormatError(path, "manifest: " + std::to_string(r.remaining()) + " trailing bytes after the body",
                      r.abs_pos());
  return m;
}

}  // namespace ckb::ocdbt
