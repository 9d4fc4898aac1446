// Plain-directory implementation of io/kvstore.h: one mmap'd file per key.
#include "io/kvstore.h"

#include <algorithm>
#include <filesystem>

#include "core/errors.h"
#include "io/file.h"

namespace ckb {

DirectoryKvStore::DirectoryKvStore(std::string root) : root_(std::move(root)) {
  while (root_.size() > 1 && root_.back() == '/') root_.pop_back();
}

std::vector<std::string> DirectoryKvStore::list() const {
  namespace fs = std::filesystem;
  std::vector<std::string> keys;
  std::error_code ec;
  fs::recursive_directory_iterator it(root_, ec), end;
  if (ec) throw IoError(root_, "cannot list directory: " + ec.message());
  for (; it != end; it.increment(ec)) {
    if (ec) throw IoError(root_, "cannot list directory: " + ec.message());
    if (!it->is_regular_file(ec)) continue;
    keys.push_back(fs::relative(it->path(), root_, ec).generic_string());
  }
  std::sort(keys.begin(), keys.end());
  return keys;
}

std::optional<KvValue> DirectoryKvStore::get(const std::string& key) const {
  if (key.empty() || key.front() == '/') throw FormatError(root_, "invalid key '" + key + "'");
  std::size_t start = 0;
  while (start <= key.size()) {
    std::size_t end = key.find('/', start);
    if (end == std::string::npos) end = key.size();
    std::string_view part(key.data() + start, end - start);
    if (part == "." || part == "..") throw FormatError(root_, "invalid key '" + key + "'");
    start = end + 1;
  }
  std::string path = root_ + "/" + key;
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
