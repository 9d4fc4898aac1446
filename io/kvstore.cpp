// Plain-directory implementation of io/kvstore.h: one mmap'd file per key.
#include "io/kvstore.h"

#include <algorithm>

#include "core/errors.h"
#include "io/file.h"
#include "io/remote/object_store.h"
#include "io/remote_snapshot.h"

namespace ckb {

DirectoryKvStore::DirectoryKvStore(std::string root) : root_(std::move(root)) {
  while (root_.size() > 1 && root_.back() == '/') root_.pop_back();
}

std::vector<std::string> DirectoryKvStore::list() const { return list_files_recursive(root_); }

namespace {
// The path of `key` under `root`; keys with "." / ".." components or a leading '/' refused.
std::string key_path(const std::string& root, const std::string& key) {
  if (key.empty() || key.front() == '/') throw FormatError(root, "invalid key '" + key + "'");
  std::size_t start = 0;
  while (start <= key.size()) {
    std::size_t end = key.find('/', start);
    if (end == std::string::npos) end = key.size();
    std::string_view part(key.data() + start, end - start);
    if (part == "." || part == "..") throw FormatError(root, "invalid key '" + key + "'");
    start = end + 1;
  }
  return root + "/" + key;
}
}  // namespace

std::optional<KvValue> DirectoryKvStore::get_streamed(const std::string& key) const {
  std::string path = key_path(root_, key);
  if (!is_remote_path(path)) return get(key);
  // One HEAD (the scope lets the open below reuse it); the bytes are fetched by the consumer
  // as it reads.
  const RemoteSnapshotScope one_head;
  auto loc = remote::open_remote(path);
  if (!snapshot_stat(*loc.store, loc.key)) return std::nullopt;
  auto file = MappedFile::open(path);
  KvValue v;
  v.file = path;
  v.mapped = file;
  v.keepalive = file;
  v.deferred = true;
  v.deferred_size = file->size();
  return v;
}

std::optional<KvValue> DirectoryKvStore::get(const std::string& key) const {
  std::string path = key_path(root_, key);
  if (is_remote_path(path)) {
    // One GET: the whole value into its own buffer (absent: nullopt).
    auto loc = remote::open_remote(path);
    auto value = loc.store->get(loc.key);
    if (!value) return std::nullopt;
    auto held = std::make_shared<std::string>(std::move(*value));
    KvValue v;
    v.bytes = {reinterpret_cast<const std::byte*>(held->data()), held->size()};
    v.file = path;
    v.keepalive = std::move(held);
    return v;
  }
  if (!path_exists(path) || is_directory(path)) return std::nullopt;
  auto file = MappedFile::open(path);
  KvValue v;
  v.bytes = file->bytes();
  v.file = path;
  v.offset = 0;
  v.keepalive = file;
  v.mapped = file;
  return v;
}

}  // namespace ckb
