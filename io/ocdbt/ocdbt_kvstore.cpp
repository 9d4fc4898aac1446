// B+tree traversal and file resolution for io/ocdbt/ocdbt_kvstore.h.
#include "io/ocdbt/ocdbt_kvstore.h"

#include <algorithm>
#include <cctype>
#include <filesystem>

#include "core/errors.h"
#include "io/ocdbt/framing.h"

namespace ckb::ocdbt {

OcdbtKvStore::OcdbtKvStore(std::string root) : root_(std::move(root)) {
  while (root_.size() > 1 && root_.back() == '/') root_.pop_back();
}

bool OcdbtKvStore::looks_like_database(const std::string& dir) {
  try {
    const std::string p = dir + "/manifest.ocdbt";
    if (!path_exists(p) || is_directory(p)) return false;
    auto f = MappedFile::open(p);
    if (f->size() < 16) return false;
    auto b = f->range(0, 4, "manifest magic");
    return std::to_integer<int>(b[0]) == 0x0C && std::to_integer<int>(b[1]) == 0xDB &&
           std::to_integer<int>(b[2]) == 0x3A && std::to_integer<int>(b[3]) == 0x2A;
  } catch (...) {
    return false;
  }
}

MappedFilePtr OcdbtKvStore::open_file(const std::string& path) const {
  {
    std::lock_guard lk(mu_);
    auto it = files_.find(path);
    if (it != files_.end()) return it->second;
  }
  if (!path_exists(path)) throw FormatError(path, "OCDBT data file is missing");
  auto f = MappedFile::open(path);
  std::lock_guard lk(mu_);
  return files_.emplace(path, std::move(f)).first->second;
}

namespace {
Manifest read_manifest_file(const MappedFilePtr& f) {
  Body body = decode_framed(f->bytes(), f, kManifestMagic, f->path(), 0, "manifest");
  return parse_manifest(body.bytes, f->path(), body.file_offset);
}
}  // namespace

void OcdbtKvStore::load() const {
  std::call_once(loaded_, [this] {
    std::string path = root_ + "/manifest.ocdbt";
    if (!path_exists(path)) throw FormatError(path, "OCDBT manifest is missing");
    Manifest m = read_manifest_file(open_file(path));
    if (m.config.manifest_kind == 1) {
      // Numbered manifests: the greatest manifest.<16 hex> holds the latest generation.
      std::string best;
      for (const auto& de : list_directory(root_)) {
        const std::string& name = de.name;
        if (name.size() != 9 + 16 || name.compare(0, 9, "manifest.") != 0) continue;
        if (!std::all_of(name.begin() + 9, name.end(), [](char c) { return std::isxdigit(static_cast<unsigned char>(c)); }))
          continue;
        if (name > best) best = name;
      }
      if (best.empty()) throw FormatError(path, "numbered manifest kind but no manifest.<number> file");
      path = root_ + "/" + best;
      Manifest numbered = read_manifest_file(open_file(path));
      if (numbered.config.manifest_kind != 0)
        throw FormatError(path, "a numbered manifest must itself have manifest kind 0 (single)");
      if (numbered.config.uuid != m.config.uuid) throw FormatError(path, "database uuid differs from manifest.ocdbt");
      m = std::move(numbered);
    }
    const Version& v = m.latest();
    manifest_file_ = path;
    if (v.root.missing()) {
      empty_ = true;
    } else {
      const DataFile& df = m.files.at(v.root.file_id);
      root_node_ = NodeRef{root_ + "/" + df.path(), df.base_path, v.root, v.root_height};
    }
    manifest_ = std::move(m);
  });
}

const Manifest& OcdbtKvStore::manifest() const {
  load();
  return manifest_;
}
std::string OcdbtKvStore::manifest_path() const {
  load();
  return manifest_file_;
}

std::shared_ptr<const BtreeNode> OcdbtKvStore::read_node(const NodeRef& at) const {
  const auto cache_key = std::make_pair(at.file, at.ref.offset);
  {
    std::lock_guard lk(mu_);
    auto it = nodes_.find(cache_key);
    if (it != nodes_.end()) return it->second;
  }
  auto f = open_file(at.file);
  auto framed = f->range(at.ref.offset, at.ref.length, "b+tree node");
  Body body = decode_framed(framed, f, kBtreeNodeMagic, f->path(), at.ref.offset, "b+tree node");
  auto node = std::make_shared<BtreeNode>(
      parse_btree_node(body.bytes, body.owner, f->path(), at.base_path, body.file_offset));
  if (node->height != at.height)
    throw FormatError(f->path(),
                      "b+tree node has height " + std::to_string(node->height) + ", its parent expects " +
                          std::to_string(at.height),
                      at.ref.offset);
  std::lock_guard lk(mu_);
  return nodes_.emplace(cache_key, std::move(node)).first->second;
}

OcdbtKvStore::NodeRef OcdbtKvStore::child_ref(const BtreeNode& node, std::size_t i) const {
  const InteriorEntry& e = node.children[i];
  const DataFile& df = node.files[e.ref.file_id];
  return NodeRef{root_ + "/" + df.path(), df.base_path, e.ref, static_cast<std::uint8_t>(node.height - 1)};
}

KvValue OcdbtKvStore::value_of(const BtreeNode& node, const LeafEntry& e, const std::string& node_file,
                               bool streamed) const {
  KvValue v;
  if (e.is_inline) {
    v.bytes = e.value;
    v.keepalive = node.owner;
    v.file = node_file;
    return v;
  }
  if (e.ref.length == 0) {
    v.file = node_file;
    return v;
  }
  const DataFile& df = node.files[e.ref.file_id];
  auto f = open_file(root_ + "/" + df.path());
  v.file = f->path();
  v.offset = e.ref.offset;
  if (streamed && f->remote()) {  // read by the consumer as it decodes
    f->check_range(e.ref.offset, e.ref.length, "out-of-line value");
    v.mapped = f;
    v.keepalive = f;
    v.deferred = true;
    v.deferred_size = e.ref.length;
    return v;
  }
  // A local value is a range of the mapped data file (dropped by the consumer once decoded);
  // a remote one is fetched into its own buffer, freed with the value.
  auto view = f->view(e.ref.offset, e.ref.length, "out-of-line value");
  v.bytes = view.bytes;
  v.keepalive = std::move(view.keepalive);
  if (!f->remote()) v.mapped = f;
  return v;
}

std::optional<KvValue> OcdbtKvStore::find(const std::string& key, bool streamed) const {
  load();
  if (empty_) return std::nullopt;
  NodeRef at = root_node_;
  std::string prefix;     // implicit prefix of the current node
  std::string lower;      // inclusive lower bound the node's first key must respect
  while (true) {
    auto node = read_node(at);
    const std::string first = prefix + node->key(0);
    if (first < lower)
      throw FormatError(at.file, "b+tree node's first key '" + first + "' is below its parent's entry '" + lower + "'",
                        at.ref.offset);
    if (key.compare(0, prefix.size(), prefix) != 0) return std::nullopt;
    const std::string rel = key.substr(prefix.size());
    if (node->height == 0) {
      auto it = std::lower_bound(node->leaves.begin(), node->leaves.end(), rel,
                                 [](const LeafEntry& e, const std::string& k) { return e.key < k; });
      if (it == node->leaves.end() || it->key != rel) return std::nullopt;
      return value_of(*node, *it, at.file, streamed);
    }
    // Last entry whose key <= rel.
    auto it = std::upper_bound(node->children.begin(), node->children.end(), rel,
                               [](const std::string& k, const InteriorEntry& e) { return k < e.key; });
    if (it == node->children.begin()) return std::nullopt;
    --it;
    const std::size_t i = static_cast<std::size_t>(it - node->children.begin());
    lower = prefix + it->key;
    prefix += it->key.substr(0, it->subtree_prefix_length);
    at = child_ref(*node, i);
  }
}

void OcdbtKvStore::list_subtree(const NodeRef& at, const std::string& prefix, const std::string& lower_bound,
                                std::vector<std::string>& out) const {
  auto node = read_node(at);
  const std::string first = prefix + node->key(0);
  if (first < lower_bound)
    throw FormatError(at.file,
                      "b+tree node's first key '" + first + "' is below its parent's entry '" + lower_bound + "'",
                      at.ref.offset);
  if (!out.empty() && !(out.back() < first))
    throw FormatError(at.file, "b+tree keys out of order across nodes at '" + first + "'", at.ref.offset);
  if (node->height == 0) {
    for (const auto& e : node->leaves) out.push_back(prefix + e.key);
    return;
  }
  for (std::size_t i = 0; i < node->children.size(); ++i) {
    const auto& e = node->children[i];
    list_subtree(child_ref(*node, i), prefix + e.key.substr(0, e.subtree_prefix_length), prefix + e.key, out);
  }
}

std::vector<std::string> OcdbtKvStore::list() const {
  load();
  std::vector<std::string> keys;
  if (!empty_) list_subtree(root_node_, "", "", keys);
  return keys;
}

}  // namespace ckb::ocdbt
