// Per-call caching of remote listings and sizes, for io/remote_snapshot.h.
#include "io/remote_snapshot.h"

#include <algorithm>
#include <map>
#include <mutex>

#include "io/file.h"

namespace ckb {
namespace {

struct Snapshot {
  std::mutex mu;
  int scopes = 0;
  std::uint64_t generation = 0;  // bumped by every clear: an answer asked before it is not kept
  // Keyed by the store's URL of the prefix or key (one bucket's "" and another's differ).
  std::map<std::string, std::vector<remote::ObjectInfo>> listings;  // by the URL of the listed prefix
  std::map<std::string, std::optional<std::uint64_t>> sizes;        // by the object's URL
  void clear() {
    listings.clear();
    sizes.clear();
    ++generation;
  }
};
Snapshot& snapshot() {
  static Snapshot* s = new Snapshot;
  return *s;
}

// The objects of a kept listing (sorted by key) whose keys start with `prefix`.
std::pair<std::vector<remote::ObjectInfo>::const_iterator, std::vector<remote::ObjectInfo>::const_iterator> under(
    const std::vector<remote::ObjectInfo>& all, const std::string& prefix) {
  auto first = std::lower_bound(all.begin(), all.end(), prefix,
                                [](const remote::ObjectInfo& o, const std::string& k) { return o.key < k; });
  auto last = first;
  while (last != all.end() && last->key.compare(0, prefix.size(), prefix) == 0) ++last;
  return {first, last};
}

// A kept listing of `store` whose prefix holds everything under `prefix`.
const std::vector<remote::ObjectInfo>* covering(Snapshot& s, const remote::ObjectStore& store,
                                               const std::string& prefix) {
  // Candidates: "" and every prefix of `prefix` ending at a '/'.
  for (std::size_t end = prefix.size() + 1; end-- > 0;) {
    if (end != 0 && prefix[end - 1] != '/') continue;
    auto it = s.listings.find(store.url(prefix.substr(0, end)));
    if (it != s.listings.end()) return &it->second;
  }
  return nullptr;
}

}  // namespace

RemoteSnapshotScope::RemoteSnapshotScope() {
  std::lock_guard lk(snapshot().mu);
  ++snapshot().scopes;
}

RemoteSnapshotScope::~RemoteSnapshotScope() {
  Snapshot& s = snapshot();
  std::lock_guard lk(s.mu);
  if (--s.scopes == 0) s.clear();
}

void remote_objects_changed() {
  Snapshot& s = snapshot();
  std::lock_guard lk(s.mu);
  s.clear();
}

std::vector<remote::ObjectInfo> snapshot_list(const remote::ObjectStore& store, const std::string& prefix) {
  Snapshot& s = snapshot();
  std::uint64_t asked_at;
  {
    std::lock_guard lk(s.mu);
    if (s.scopes > 0)
      if (const auto* all = covering(s, store, prefix)) {
        auto [first, last] = under(*all, prefix);
        return {first, last};
      }
    asked_at = s.generation;
  }
  auto objects = store.list(prefix);
  std::sort(objects.begin(), objects.end(), [](const auto& a, const auto& b) { return a.key < b.key; });
  std::lock_guard lk(s.mu);
  if (s.scopes > 0 && s.generation == asked_at) s.listings[store.url(prefix)] = objects;
  return objects;
}

std::optional<std::uint64_t> snapshot_stat(const remote::ObjectStore& store, const std::string& key) {
  Snapshot& s = snapshot();
  const std::string url = store.url(key);
  std::uint64_t asked_at;
  {
    std::lock_guard lk(s.mu);
    if (s.scopes > 0) {
      if (auto it = s.sizes.find(url); it != s.sizes.end()) return it->second;
      if (const auto* all = covering(s, store, key)) {
        auto [first, last] = under(*all, key);
        if (first != last && first->key == key) return first->size;
        return std::nullopt;
      }
    }
    asked_at = s.generation;
  }
  auto size = store.stat(key);
  std::lock_guard lk(s.mu);
  if (s.scopes > 0 && s.generation == asked_at) s.sizes[url] = size;
  return size;
}

}  // namespace ckb
