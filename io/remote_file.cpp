// Remote objects as MappedFiles and remote prefixes as folders (io/remote_file.h).
#include "io/remote_file.h"

#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <deque>
#include <future>
#include <map>

#include "core/cancel.h"
#include "core/errors.h"
#include "io/remote_snapshot.h"

namespace ckb {

bool is_remote_path(std::string_view path) { return remote::is_remote_url(path); }

namespace {
constexpr std::uint64_t kParallelPiece = 8ull << 20;  // reads above this go out as several requests

// A key without its trailing '/' ("a/b/" -> "a/b", "/" -> "": the bucket's root).
std::string bare_key(const std::string& key) {
  std::string k = without_trailing_slashes(key);
  return k == "/" ? "" : k;
}
// The prefix under which a "folder" key's objects live ("a/b" -> "a/b/", "" -> "").
std::string folder_prefix(const std::string& key) {
  std::string k = bare_key(key);
  return k.empty() ? k : k + "/";
}
}  // namespace

void remote_read_parallel(const remote::ObjectStore& store, const std::string& key, std::uint64_t off,
                          std::span<std::byte> dst) {
  if (dst.size() <= kParallelPiece) {
    store.read(key, off, dst);
    return;
  }
  const std::size_t pieces = (dst.size() + kParallelPiece - 1) / kParallelPiece;
  const std::size_t lanes = std::min<std::size_t>(pieces, static_cast<std::size_t>(
                                                              std::max(1, remote::default_options().parallel_requests)));
  std::atomic<std::size_t> next{0};
  auto lane = [&] {
    for (std::size_t i; (i = next.fetch_add(1)) < pieces;) {
      const std::size_t b = i * kParallelPiece, n = std::min<std::size_t>(kParallelPiece, dst.size() - b);
      store.read(key, off + b, dst.subspan(b, n));
    }
  };
  std::vector<std::future<void>> futures;
  for (std::size_t i = 1; i < lanes; ++i) futures.push_back(std::async(std::launch::async, with_current_cancel(lane)));
  std::exception_ptr first;
  try {
    lane();
  } catch (...) {
    first = std::current_exception();
    next = pieces;
  }
  for (auto& f : futures) try {
      f.get();
    } catch (...) {
      if (!first) first = std::current_exception();
    }
  if (first) std::rethrow_exception(first);
}

namespace {
// The last few remote objects opened, kept alive so that a reopen reuses what was fetched.
struct RecentFiles {
  static constexpr std::size_t kKeep = 16;
  std::mutex mu;
  std::deque<std::pair<std::string, std::shared_ptr<RemoteBacking>>> recent;
};
RecentFiles& recent_files() {
  static RecentFiles* r = new RecentFiles;
  return *r;
}
}  // namespace

std::shared_ptr<RemoteBacking> RemoteBacking::open(const std::string& url) {
  auto loc = remote::open_remote(url);
  auto size = snapshot_stat(*loc.store, loc.key);
  if (!size) throw IoError(url, "cannot open: no such object");
  auto& r = recent_files();
  std::lock_guard lk(r.mu);
  for (auto it = r.recent.begin(); it != r.recent.end(); ++it)
    if (it->first == url) {
      if (it->second->size() == *size) return it->second;
      r.recent.erase(it);
      break;
    }
  auto b = std::make_shared<RemoteBacking>(url, loc.store, loc.key, *size);
  r.recent.emplace_back(url, b);
  if (r.recent.size() > RecentFiles::kKeep) r.recent.pop_front();
  return b;
}

void forget_remote_file(const std::string& url) {
  remote_objects_changed();
  auto& r = recent_files();
  std::lock_guard lk(r.mu);
  std::erase_if(r.recent, [&](const auto& e) { return e.first == url; });
}

RemoteBacking::RemoteBacking(std::string url, remote::ObjectStorePtr store, std::string key, std::uint64_t size)
    : store_(std::move(store)), key_(std::move(key)), url_(std::move(url)), size_(size) {
  mapped_ = static_cast<std::size_t>(std::max<std::uint64_t>(size_, 1));
  void* p = ::mmap(nullptr, mapped_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) throw_errno(url, "cannot reserve address space for the remote object");
  base_ = static_cast<std::byte*>(p);
  state_.assign(static_cast<std::size_t>((size_ + kBlock - 1) / kBlock), 0);
}

RemoteBacking::~RemoteBacking() {
  if (base_) ::munmap(base_, mapped_);
}

void RemoteBacking::ensure(std::uint64_t off, std::uint64_t len) {
  if (len == 0) return;
  const std::size_t first = static_cast<std::size_t>(off / kBlock), last = static_cast<std::size_t>((off + len - 1) / kBlock);
  std::unique_lock lk(mu_);
  for (;;) {
    // Claim every absent block of the range, in runs, and fetch the runs; then wait for
    // blocks other threads are fetching.
    std::vector<std::pair<std::size_t, std::size_t>> runs;
    bool waiting = false;
    for (std::size_t b = first; b <= last; ++b) {
      if (state_[b] == 1) waiting = true;
      if (state_[b] != 0) continue;
      if (!runs.empty() && runs.back().second == b) {
        runs.back().second = b + 1;
      } else {
        runs.push_back({b, b + 1});
      }
      state_[b] = 1;
    }
    if (!runs.empty()) {
      lk.unlock();
      std::exception_ptr failed;
      std::size_t done = 0;
      try {
        for (const auto& [b, e] : runs) {
          const std::uint64_t s = b * kBlock, n = std::min<std::uint64_t>(e * kBlock, size_) - s;
          remote_read_parallel(*store_, key_, s, {base_ + s, static_cast<std::size_t>(n)});
          ++done;
        }
      } catch (...) {
        failed = std::current_exception();
      }
      lk.lock();
      for (std::size_t i = 0; i < runs.size(); ++i)
        for (std::size_t b = runs[i].first; b < runs[i].second; ++b) state_[b] = i < done ? 2 : 0;
      cv_.notify_all();
      if (failed) std::rethrow_exception(failed);
      continue;
    }
    if (!waiting) return;
    // In slices: the fetch waited for may be another run's, on a stalled server.
    if (cv_.wait_for(lk, std::chrono::milliseconds(50)) == std::cv_status::timeout) throw_if_current_cancelled();
  }
}

void RemoteBacking::read(std::uint64_t off, std::span<std::byte> dst) const {
  if (dst.empty()) return;
  {
    std::lock_guard lk(mu_);
    const std::size_t first = static_cast<std::size_t>(off / kBlock),
                      last = static_cast<std::size_t>((off + dst.size() - 1) / kBlock);
    bool all = true;
    for (std::size_t b = first; b <= last && all; ++b) all = state_[b] == 2;
    if (all) {
      std::memcpy(dst.data(), base_ + off, dst.size());
      return;
    }
  }
  remote_read_parallel(*store_, key_, off, dst);
}

bool remote_exists(const std::string& url) {
  auto loc = remote::open_remote(url);
  const std::string key = bare_key(loc.key);
  if (key.empty()) return true;  // the bucket / host root
  if (loc.key.back() != '/' && snapshot_stat(*loc.store, key)) return true;
  return loc.store->can_list() && !snapshot_list(*loc.store, folder_prefix(key)).empty();
}

bool remote_is_directory(const std::string& url) {
  auto loc = remote::open_remote(url);
  const std::string key = bare_key(loc.key);
  if (!loc.store->can_list()) return false;  // http(s): objects only
  if (key.empty()) return true;
  return !snapshot_list(*loc.store, folder_prefix(key)).empty();
}

std::vector<DirEntry> remote_list_directory(const std::string& url) {
  auto loc = remote::open_remote(url);
  const std::string prefix = folder_prefix(loc.key);
  std::map<std::string, bool> names;  // name -> is a folder
  for (const auto& o : snapshot_list(*loc.store, prefix)) {
    const std::string rest = o.key.substr(prefix.size());
    const auto slash = rest.find('/');
    if (slash == std::string::npos) {
      names.emplace(rest, false);
    } else if (slash > 0) {
      names[rest.substr(0, slash)] = true;
    }
  }
  std::vector<DirEntry> out;
  for (auto& [n, d] : names) out.push_back({n, d});
  return out;
}

std::vector<std::string> remote_list_files(const std::string& url) {
  auto loc = remote::open_remote(url);
  const std::string prefix = folder_prefix(loc.key);
  std::vector<std::string> out;
  for (const auto& o : snapshot_list(*loc.store, prefix)) {
    std::string rest = o.key.substr(prefix.size());
    if (!rest.empty() && rest.back() != '/') out.push_back(std::move(rest));
  }
  std::sort(out.begin(), out.end());
  return out;
}

bool same_remote_object(const std::string& a, const std::string& b) {
  auto la = remote::open_remote(a), lb = remote::open_remote(b);
  return la.store == lb.store && bare_key(la.key) == bare_key(lb.key);
}

}  // namespace ckb
