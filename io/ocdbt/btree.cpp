// B+tree node decoding for io/ocdbt/btree.h.
#include "io/ocdbt/btree.h"

#include "core/errors.h"
#include "io/byte_reader.h"
#include "io/ocdbt/varint.h"

namespace ckb::ocdbt {
namespace {

std::vector<std::string> read_keys(ByteReader& r, std::uint64_t n, bool interior, std::vector<std::uint16_t>* subtree) {
  std::vector<std::uint16_t> prefix(n, 0), suffix(n);
  for (std::uint64_t i = 1; i < n; ++i) prefix[i] = read_varint16(r, "key prefix length");
  for (std::uint64_t i = 0; i < n; ++i) suffix[i] = read_varint16(r, "key suffix length");
  if (interior) {
    subtree->resize(n);
    for (std::uint64_t i = 0; i < n; ++i) (*subtree)[i] = read_varint16(r, "subtree common prefix length");
  }
  std::vector<std::string> keys(n);
  for (std::uint64_t i = 0; i < n; ++i) {
    const std::uint64_t at = r.abs_pos();
    if (i > 0 && prefix[i] > keys[i - 1].size())
      throw FormatError(r.path(), "b+tree node: key prefix length exceeds the previous key", at);
    std::string k = i > 0 ? keys[i - 1].substr(0, prefix[i]) : std::string();
    k += r.take_str(suffix[i], "key suffix");
    if (k.size() > 65535) throw FormatError(r.path(), "b+tree node: key longer than 65535 bytes", at);
    if (i > 0 && !(keys[i - 1] < k))
      throw FormatError(r.path(), "b+tree node: invalid key order ('" + keys[i - 1] + "' then '" + k + "')", at);
    if (interior && (*subtree)[i] > k.size())
      throw FormatError(r.path(), "b+tree node: subtree common prefix length exceeds key length", at);
    keys[i] = std::move(k);
  }
  return keys;
}

}  // namespace

BtreeNode parse_btree_node(std::span<const std::byte> body, std::shared_ptr<const void> owner, const std::string& path,
                           const std::string& transitive_base, std::uint64_t base) {
  ByteReader r(body, path, base);
  BtreeNode node;
  node.owner = std::move(owner);
  node.height = r.u8("node height");
  node.files = read_data_file_table(r, transitive_base);
  const std::uint64_t at_n = r.abs_pos();
  const std::uint64_t n = read_varint(r, "entry count");
  if (n == 0) throw FormatError(path, "empty b-tree node", at_n);
  if (n > kMaxNodeArity || n > r.remaining())
    throw FormatError(path, "b+tree node: entry count " + std::to_string(n) + " too large", at_n);
  std::vector<std::uint16_t> subtree;
  auto keys = read_keys(r, n, node.height > 0, &subtree);
  const std::size_t nf = node.files.size();
  if (node.height == 0) {
    node.leaves.resize(n);
    for (std::uint64_t i = 0; i < n; ++i) {
      node.leaves[i].key = std::move(keys[i]);
      node.leaves[i].ref.length = read_varint(r, "value length");
    }
    for (auto& e : node.leaves) {
      const std::uint64_t at = r.abs_pos();
      std::uint8_t kind = r.u8("value kind");
      if (kind > 1) throw FormatError(path, "b+tree leaf: unknown value kind " + std::to_string(kind), at);
      e.is_inline = kind == 0;
    }
    for (auto& e : node.leaves)
      if (!e.is_inline) e.ref.file_id = read_varint(r, "value data file id");
    for (auto& e : node.leaves)
      if (!e.is_inline) e.ref.offset = read_varint(r, "value offset");
    for (auto& e : node.leaves) {
      const std::uint64_t at = r.abs_pos();
      if (e.is_inline) {
        if (e.ref.length > kMaxInlineValueLength)
          throw FormatError(path, "b+tree leaf: inline value of " + std::to_string(e.ref.length) + " bytes exceeds 1 MiB",
                            at);
        e.value = r.take(static_cast<std::size_t>(e.ref.length), "inline value");
      } else if (e.ref.length > 0) {
        validate_ref(e.ref, nf, path, at, "out-of-line value");
      }
    }
  } else {
    node.children.resize(n);
    for (std::uint64_t i = 0; i < n; ++i) {
      node.children[i].key = std::move(keys[i]);
      node.children[i].subtree_prefix_length = subtree[i];
    }
    for (auto& e : node.children) e.ref.file_id = read_varint(r, "child data file id");
    for (auto& e : node.children) e.ref.offset = read_varint(r, "child offset");
    for (auto& e : node.children) e.ref.length = read_varint(r, "child length");
    for (auto& e : node.children) e.num_keys = read_varint(r, "child num_keys");
    for (auto& e : node.children) e.num_tree_bytes = read_varint(r, "child num_tree_bytes");
    for (auto& e : node.children) e.num_indirect_value_bytes = read_varint(r, "child num_indirect_value_bytes");
    for (auto& e : node.children) {
      if (e.ref.missing()) throw FormatError(path, "b+tree interior node: missing child reference", r.abs_pos());
      validate_ref(e.ref, nf, path, r.abs_pos(), "child node");
    }
  }
  if (!r.at_end())
    throw FormatError(path, "b+tree node: " + std::to_string(r.remaining()) + " trailing bytes", r.abs_pos());
  return node;
}

}  // namespace ckb::ocdbt
