// B+tree building and manifest encoding for io/ocdbt/ocdbt_writer.h.
#include "io/ocdbt/ocdbt_writer.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <functional>
#include <optional>
#include <tuple>
#include <mutex>
#include <random>
#include <vector>

#include "core/errors.h"
#include "io/ocdbt/btree.h"
#include "io/ocdbt/framing.h"
#include "io/ocdbt/varint.h"
#include "io/output.h"

namespace ckb::ocdbt {
namespace {

std::string random_hex(std::size_t nbytes) {
  static const char* digits = "0123456789abcdef";
  std::random_device rd;
  std::string s;
  for (std::size_t i = 0; i < nbytes; ++i) {
    const unsigned b = rd() & 0xFF;
    s.push_back(digits[b >> 4]);
    s.push_back(digits[b & 15]);
  }
  return s;
}

std::size_t common_prefix(const std::string& a, const std::string& b) {
  const std::size_t n = std::min(a.size(), b.size());
  std::size_t i = 0;
  while (i < n && a[i] == b[i]) ++i;
  return i;
}

void put_u64le(std::string& s, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}

struct Entry {
  std::string key;
  std::string inline_value;  // when !indirect
  bool indirect = false;
  std::size_t file = 0;  // pool id of the data file (indirect only)
  std::uint64_t offset = 0, length = 0;
};

// A data file of the pool. `busy` while a stream appends at its end; `end` is the end of
// the closed values (and, at finish, the nodes) it holds.
struct PoolFile {
  std::string rel;  // "d/<hex>"
  std::unique_ptr<AtomicFile> file;
  std::uint64_t end = 0;
  bool busy = false;
  // A data file of another database (put_reference): `base` + `rel` from this directory;
  // never written, truncated or committed here.
  bool external = false;
  std::string base;
  std::string full() const { return base + rel; }
};

// A node already written to the data file, as its parent references it.
struct NodeRef {
  std::string first_key, last_key;  // absolute keys of the subtree's range
  std::uint64_t offset = 0, length = 0;
  std::uint64_t num_keys = 0, num_tree_bytes = 0, num_indirect_value_bytes = 0;
};

// The key columns shared by leaf and interior nodes (formats.md §2.7).
void encode_keys(std::string& body, const std::vector<std::string>& keys, const std::vector<std::uint16_t>* subtree) {
  body += encode_varint(keys.size());
  for (std::size_t i = 1; i < keys.size(); ++i) body += encode_varint(common_prefix(keys[i - 1], keys[i]));
  for (std::size_t i = 0; i < keys.size(); ++i)
    body += encode_varint(keys[i].size() - (i ? common_prefix(keys[i - 1], keys[i]) : 0));
  if (subtree)
    for (auto s : *subtree) body += encode_varint(s);
  for (std::size_t i = 0; i < keys.size(); ++i) body += keys[i].substr(i ? common_prefix(keys[i - 1], keys[i]) : 0);
}

}  // namespace

struct OcdbtWriter::Impl {
  std::string dir;
  WriterConfig config;
  std::mutex mu;  // guards files' end/busy, entries, finished
  std::vector<std::unique_ptr<PoolFile>> files;
  std::vector<Entry> entries;
  bool finished = false;
  // Set by finish(): the file the nodes go to and each pool file's index in the table.
  std::size_t node_file = 0;
  std::vector<std::size_t> table_order;   // pool ids, in table order
  std::vector<std::uint64_t> table_index;  // pool id -> table index

  // A file nobody appends to (the lowest such pool id, or a new one) and its end.
  std::pair<std::size_t, std::uint64_t> checkout() {
    std::lock_guard lock(mu);
    if (finished) throw MappingError(dir, "OCDBT writer: value written after finish()");
    for (std::size_t i = 0; i < files.size(); ++i)
      if (!files[i]->busy && !files[i]->external) {
        files[i]->busy = true;
        return {i, files[i]->end};
      }
    auto f = std::make_unique<PoolFile>();
    f->rel = "d/" + random_hex(16);
    f->file = std::make_unique<AtomicFile>(dir + "/" + f->rel);
    f->busy = true;
    files.push_back(std::move(f));
    return {files.size() - 1, 0};
  }

  std::uint64_t append_node(std::span<const std::byte> bytes) {
    PoolFile& f = *files[node_file];
    const std::uint64_t at = f.end;
    f.file->pwrite(at, bytes);
    f.end += bytes.size();
    return at;
  }

  // Paths are prefix-compressed over base + relative path; a shared prefix reaching into the
  // base paths only happens between equal bases (sorted, and bases end in '/').
  std::string file_table() const {
    auto full = [&](std::size_t i) { return files[table_order[i]]->full(); };
    auto prefix = [&](std::size_t i) { return i ? common_prefix(full(i - 1), full(i)) : 0; };
    std::string t = encode_varint(table_order.size());
    for (std::size_t i = 1; i < table_order.size(); ++i) t += encode_varint(prefix(i));
    for (std::size_t i = 0; i < table_order.size(); ++i) t += encode_varint(full(i).size() - prefix(i));
    for (std::size_t i = 0; i < table_order.size(); ++i) t += encode_varint(files[table_order[i]]->base.size());
    for (std::size_t i = 0; i < table_order.size(); ++i) t += full(i).substr(prefix(i));
    return t;
  }

  NodeRef write_node(std::uint8_t height, std::string body_after_table, bool uses_file) {
    std::string body(1, static_cast<char>(height));
    body += uses_file ? file_table() : encode_varint(0);
    body += body_after_table;
    const std::string framed = encode_framed(kBtreeNodeMagic, body, config.node_zstd_level);
    NodeRef r;
    r.length = framed.size();
    r.offset = append_node(std::as_bytes(std::span(framed.data(), framed.size())));
    r.num_tree_bytes = framed.size();
    return r;
  }

  // Encodes entries [begin, end) as one leaf; `strip` bytes of every key are implicit.
  NodeRef write_leaf(std::size_t begin, std::size_t end, std::size_t strip) {
    std::vector<std::string> keys;
    std::string body;
    for (std::size_t i = begin; i < end; ++i) keys.push_back(entries[i].key.substr(strip));
    encode_keys(body, keys, nullptr);
    bool any_indirect = false;
    std::uint64_t indirect_bytes = 0;
    for (std::size_t i = begin; i < end; ++i)
      body += encode_varint(entries[i].indirect ? entries[i].length : entries[i].inline_value.size());
    for (std::size_t i = begin; i < end; ++i) {
      body.push_back(entries[i].indirect ? 1 : 0);
      any_indirect |= entries[i].indirect;
      if (entries[i].indirect) indirect_bytes += entries[i].length;
    }
    for (std::size_t i = begin; i < end; ++i)
      if (entries[i].indirect) body += encode_varint(table_index[entries[i].file]);
    for (std::size_t i = begin; i < end; ++i)
      if (entries[i].indirect) body += encode_varint(entries[i].offset);
    for (std::size_t i = begin; i < end; ++i)
      if (!entries[i].indirect) body += entries[i].inline_value;
    NodeRef r = write_node(0, std::move(body), any_indirect);
    r.first_key = entries[begin].key;
    r.last_key = entries[end - 1].key;
    r.num_keys = end - begin;
    r.num_indirect_value_bytes = indirect_bytes;
    return r;
  }

  NodeRef write_interior(std::uint8_t height, const std::vector<NodeRef>& kids, std::size_t begin, std::size_t end,
                         std::size_t strip) {
    std::vector<std::string> keys;
    std::vector<std::uint16_t> subtree;
    for (std::size_t i = begin; i < end; ++i) {
      keys.push_back(kids[i].first_key.substr(strip));
      const std::size_t child_strip = common_prefix(kids[i].first_key, kids[i].last_key);
      subtree.push_back(static_cast<std::uint16_t>(child_strip - strip));
    }
    std::string body;
    encode_keys(body, keys, &subtree);
    for (std::size_t i = begin; i < end; ++i) body += encode_varint(table_index[node_file]);
    for (std::size_t i = begin; i < end; ++i) body += encode_varint(kids[i].offset);
    for (std::size_t i = begin; i < end; ++i) body += encode_varint(kids[i].length);
    for (std::size_t i = begin; i < end; ++i) body += encode_varint(kids[i].num_keys);
    for (std::size_t i = begin; i < end; ++i) body += encode_varint(kids[i].num_tree_bytes);
    for (std::size_t i = begin; i < end; ++i) body += encode_varint(kids[i].num_indirect_value_bytes);
    NodeRef r = write_node(height, std::move(body), true);
    r.first_key = kids[begin].first_key;
    r.last_key = kids[end - 1].last_key;
    for (std::size_t i = begin; i < end; ++i) {
      r.num_keys += kids[i].num_keys;
      r.num_tree_bytes += kids[i].num_tree_bytes;
      r.num_indirect_value_bytes += kids[i].num_indirect_value_bytes;
    }
    return r;
  }

  // Groups [0, n) into runs whose estimated encoded size stays within the node limit.
  std::vector<std::pair<std::size_t, std::size_t>> pack(std::size_t n, const std::function<std::size_t(std::size_t)>& size) {
    std::vector<std::pair<std::size_t, std::size_t>> runs;
    const std::size_t limit = std::max<std::size_t>(config.max_decoded_node_bytes, 64);
    std::size_t start = 0, bytes = 0;
    for (std::size_t i = 0; i < n; ++i) {
      const std::size_t s = size(i);
      if (i > start && (bytes + s > limit || i - start >= kMaxNodeArity)) {
        runs.emplace_back(start, i);
        start = i;
        bytes = 0;
      }
      bytes += s;
    }
    if (n > start) runs.emplace_back(start, n);
    return runs;
  }
};

class OcdbtWriter::Stream final : public OcdbtWriter::ValueStream {
 public:
  Stream(Impl& m, std::string key) : m_(m), key_(std::move(key)) {}
  ~Stream() override {
    if (!file_) return;
    std::lock_guard lock(m_.mu);  // roll back: the file's end stays where the value began
    m_.files[*file_]->busy = false;
  }
  void append(std::span<const std::byte> bytes) override {
    if (closed_) throw MappingError(m_.dir, "OCDBT writer: append() to '" + key_ + "' after close()");
    if (!file_) {
      if (pending_.size() + bytes.size() <= m_.config.max_inline_value_bytes) {
        pending_.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
        return;
      }
      std::tie(file_, start_) = m_.checkout();
      write(std::as_bytes(std::span(pending_.data(), pending_.size())));
      pending_ = std::string();
    }
    write(bytes);
  }
  void close() override {
    if (closed_) throw MappingError(m_.dir, "OCDBT writer: '" + key_ + "' closed twice");
    Entry e;
    e.key = key_;
    if (file_) {
      e.indirect = true;
      e.file = *file_;
      e.offset = start_;
      e.length = written_;
    } else {
      e.inline_value = std::move(pending_);
    }
    std::lock_guard lock(m_.mu);
    if (m_.finished) throw MappingError(m_.dir, "OCDBT writer: '" + key_ + "' closed after finish()");
    m_.entries.push_back(std::move(e));
    if (file_) {
      m_.files[*file_]->end = start_ + written_;
      m_.files[*file_]->busy = false;
      file_.reset();
    }
    closed_ = true;
  }

 private:
  void write(std::span<const std::byte> bytes) {
    if (bytes.empty()) return;
    m_.files[*file_]->file->pwrite(start_ + written_, bytes);
    written_ += bytes.size();
  }
  Impl& m_;
  std::string key_;
  std::string pending_;  // the value while it may still be inline
  std::optional<std::size_t> file_;
  std::uint64_t start_ = 0, written_ = 0;
  bool closed_ = false;
};

OcdbtWriter::OcdbtWriter(std::string dir, WriterConfig config) : impl_(std::make_unique<Impl>()) {
  impl_->dir = std::move(dir);
  impl_->config = config;
  make_dirs(impl_->dir + "/d");
}

OcdbtWriter::~OcdbtWriter() = default;

std::unique_ptr<OcdbtWriter::ValueStream> OcdbtWriter::begin_value(std::string key) {
  if (key.size() > 65535) throw MappingError(impl_->dir, "OCDBT key longer than 65535 bytes: '" + key.substr(0, 80) + "...'");
  {
    std::lock_guard lock(impl_->mu);
    if (impl_->finished) throw MappingError(impl_->dir, "OCDBT writer: put() after finish()");
  }
  return std::make_unique<Stream>(*impl_, std::move(key));
}

void OcdbtWriter::put(std::string key, std::span<const std::byte> value) {
  auto s = begin_value(std::move(key));
  s->append(value);
  s->close();
}

void OcdbtWriter::put_reference(std::string key, const std::string& base_path, const std::string& relative_path,
                                std::uint64_t offset, std::uint64_t length) {
  if (key.size() > 65535) throw MappingError(impl_->dir, "OCDBT key longer than 65535 bytes: '" + key.substr(0, 80) + "...'");
  if (length == 0) return put(std::move(key), std::string_view());
  Impl& m = *impl_;
  std::lock_guard lock(m.mu);
  if (m.finished) throw MappingError(m.dir, "OCDBT writer: put_reference() after finish()");
  std::size_t id = 0;
  while (id < m.files.size() && !(m.files[id]->external && m.files[id]->base == base_path && m.files[id]->rel == relative_path))
    ++id;
  if (id == m.files.size()) {
    auto f = std::make_unique<PoolFile>();
    f->external = true;
    f->base = base_path;
    f->rel = relative_path;
    m.files.push_back(std::move(f));
  }
  m.files[id]->end = std::max(m.files[id]->end, offset + length);
  Entry e;
  e.key = std::move(key);
  e.indirect = true;
  e.file = id;
  e.offset = offset;
  e.length = length;
  m.entries.push_back(std::move(e));
}

WriterStats OcdbtWriter::finish() {
  Impl& m = *impl_;
  std::lock_guard lock(m.mu);
  if (m.finished) throw MappingError(m.dir, "OCDBT writer: finish() called twice");
  m.finished = true;
  std::sort(m.entries.begin(), m.entries.end(), [](const Entry& a, const Entry& b) { return a.key < b.key; });
  for (std::size_t i = 1; i < m.entries.size(); ++i)
    if (m.entries[i - 1].key == m.entries[i].key)
      throw MappingError(m.dir, "OCDBT writer: key '" + m.entries[i].key + "' written twice");

  for (const auto& f : m.files)
    if (f->busy) throw MappingError(m.dir, "OCDBT writer: finish() while a value is still being written");
  // The nodes go to the first data file that holds values (or a new one); files left empty
  // by rolled-back streams are dropped, the others cut to their end.
  if (!m.entries.empty()) {
    m.node_file = m.files.size();
    for (std::size_t i = 0; i < m.files.size() && m.node_file == m.files.size(); ++i)
      if (m.files[i]->end && !m.files[i]->external) m.node_file = i;
    if (m.node_file == m.files.size()) {
      auto f = std::make_unique<PoolFile>();
      f->rel = "d/" + random_hex(16);
      f->file = std::make_unique<AtomicFile>(m.dir + "/" + f->rel);
      m.files.push_back(std::move(f));
    }
  }
  m.table_index.assign(m.files.size(), 0);
  for (std::size_t i = 0; i < m.files.size(); ++i)
    if (m.files[i]->end || (i == m.node_file && !m.entries.empty())) m.table_order.push_back(i);
  std::sort(m.table_order.begin(), m.table_order.end(),
            [&](std::size_t a, std::size_t b) { return m.files[a]->full() < m.files[b]->full(); });
  for (std::size_t t = 0; t < m.table_order.size(); ++t) {
    m.table_index[m.table_order[t]] = t;
    if (!m.files[m.table_order[t]]->external) m.files[m.table_order[t]]->file->truncate(m.files[m.table_order[t]]->end);
  }

  WriterStats stats;
  std::optional<NodeRef> root;
  if (!m.entries.empty()) {
    // Leaves.
    auto leaf_runs = m.pack(m.entries.size(), [&](std::size_t i) {
      return m.entries[i].key.size() + (m.entries[i].indirect ? 0 : m.entries[i].inline_value.size()) + 24;
    });
    std::vector<NodeRef> level;
    const bool single = leaf_runs.size() == 1;
    for (auto [b, e] : leaf_runs)
      level.push_back(m.write_leaf(b, e, single ? 0 : common_prefix(m.entries[b].key, m.entries[e - 1].key)));
    // Interior levels until one node remains.
    std::uint8_t height = 0;
    while (level.size() > 1) {
      ++height;
      auto runs = m.pack(level.size(), [&](std::size_t i) { return level[i].first_key.size() + 64; });
      const bool top = runs.size() == 1;
      std::vector<NodeRef> up;
      for (auto [b, e] : runs)
        up.push_back(m.write_interior(height, level, b, e,
                                      top ? 0 : common_prefix(level[b].first_key, level[e - 1].last_key)));
      level = std::move(up);
    }
    root = level.front();
    stats.height = height;
    stats.num_keys = root->num_keys;
    stats.num_tree_bytes = root->num_tree_bytes;
    stats.num_indirect_value_bytes = root->num_indirect_value_bytes;
  }
  for (std::size_t i : m.table_order)
    if (!m.files[i]->external) m.files[i]->file->commit();

  // Manifest (formats.md §2.4): config, file table, one inline version, no version nodes.
  std::string body;
  std::random_device rd;
  for (int i = 0; i < 16; ++i) body.push_back(static_cast<char>(rd() & 0xFF));
  body.push_back(0);  // manifest kind: single
  body += encode_varint(m.config.max_inline_value_bytes);
  body += encode_varint(m.config.max_decoded_node_bytes);
  body.push_back(4);  // version_tree_arity_log2
  if (m.config.node_zstd_level) {
    body += encode_varint(1);
    const std::int32_t level = *m.config.node_zstd_level;
    for (int i = 0; i < 4; ++i) body.push_back(static_cast<char>((static_cast<std::uint32_t>(level) >> (8 * i)) & 0xFF));
  } else {
    body += encode_varint(0);
  }
  const std::uint64_t now = static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch()).count());
  if (root) {
    body += m.file_table();
  } else {  // an empty tree: a missing root in a table entry with an empty path
    body += encode_varint(1);
    body += encode_varint(0);
    body += encode_varint(0);
  }
  body += encode_varint(1);  // one version
  body += encode_varint(1);  // generation 1
  body.push_back(static_cast<char>(stats.height));
  body += encode_varint(root ? m.table_index[m.node_file] : 0);  // data file id
  body += encode_varint(root ? root->offset : kMissing);
  body += encode_varint(root ? root->length : kMissing);
  body += encode_varint(stats.num_keys);
  body += encode_varint(stats.num_tree_bytes);
  body += encode_varint(stats.num_indirect_value_bytes);
  put_u64le(body, now);
  body += encode_varint(0);  // no version nodes
  write_small_file(m.dir + "/manifest.ocdbt", encode_framed(kManifestMagic, body, m.config.node_zstd_level));
  return stats;
}

}  // namespace ckb::ocdbt
