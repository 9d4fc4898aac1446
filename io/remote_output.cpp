// Crash-safe outputs in object storage (io/remote_output.h).
#include "io/remote_output.h"

#include <algorithm>
#include <cstring>
#include <set>

#include "core/cancel.h"
#include "core/errors.h"
#include "core/thread_pool.h"
#include "io/remote_file.h"
#include "io/remote_snapshot.h"

namespace ckb {
namespace {

constexpr std::uint64_t kMinPart = 8ull << 20;  // S3 needs >= 5 MiB for every part but the last
constexpr std::uint64_t kMaxParts = 10000;      // S3's limit (part numbers 1..10,000)

struct Live {
  std::mutex mu;
  std::set<RemoteUpload*> uploads;
  std::set<RemoteDir*> dirs;
  bool abandoned = false;  // abandon_remote_outputs() ran: no new outputs, no commits
};
Live& live() {
  static Live* l = new Live;  // never destroyed: the signal watchdog may use it while exiting
  return *l;
}

struct ReadyPart {
  std::size_t index;
  Bytes bytes;
  std::uint64_t len;
};

Bytes zeroed(std::uint64_t n) {
  Bytes b(static_cast<std::size_t>(n));
  if (n) std::memset(b.data(), 0, b.size());
  return b;
}

// The listing prefix of a folder's objects ("" for a bucket's root).
std::string prefix_of(const std::string& folder_key) { return folder_key.empty() ? "" : folder_key + "/"; }

// Deletes the objects at `urls`, best effort (cleaning up after a failure: never throws; not
// interrupted by the run's cancellation, which is often why it runs).
void remove_objects(const std::vector<std::string>& urls) noexcept {
  const CancelScope cleanup(nullptr);
  for (const auto& u : urls) try {
      auto loc = remote::open_remote(u);
      loc.store->remove(loc.key);
    } catch (...) {
    }
  remote_objects_changed();
}

}  // namespace

// --- RemoteUpload ----------------------------------------------------------------------

RemoteUpload::RemoteUpload(std::string url) : url_(std::move(url)) {
  auto loc = remote::open_remote(url_);
  if (!loc.store->writable()) throw UsageError(url_ + ": this kind of location is read-only (write to s3:// or gs://)");
  store_ = loc.store;
  key_ = loc.key;
  if (key_.empty() || key_.back() == '/') throw UsageError(url_ + ": names a bucket or folder, not an object");
  std::lock_guard lk(live().mu);
  if (live().abandoned) throw Cancelled();
  live().uploads.insert(this);
}

RemoteUpload::~RemoteUpload() {
  if (!done_) abort();
  std::lock_guard lk(live().mu);
  live().uploads.erase(this);
}

std::uint64_t RemoteUpload::part_size_locked() {
  if (part_size_ == 0) {
    // kMinPart, or the smallest whole number of MiB that fits the object in kMaxParts parts.
    constexpr std::uint64_t kMiB = 1u << 20;
    const std::uint64_t fits = (size_ + kMaxParts - 1) / kMaxParts;
    part_size_ = std::max(kMinPart, (fits + kMiB - 1) / kMiB * kMiB);
  }
  return part_size_;
}

void RemoteUpload::upload(std::size_t index, Bytes bytes, std::uint64_t len) {
  if (index + 1 > kMaxParts)  // part numbers start at 1
    throw IoError(url_, "too large for a multipart upload in parts of " + std::to_string(part_size_ >> 20) +
                            " MiB (10,000 parts at most)");
  remote::MultipartUpload* u;
  {
    std::lock_guard lk(mu_);
    if (aborted_) throw Cancelled();  // abandon_remote_outputs() ran: no new upload to leak
    if (!upload_) upload_ = store_->begin_upload(key_);
    u = upload_.get();
  }
  u->upload_part(static_cast<int>(index + 1), bytes.span().subspan(0, static_cast<std::size_t>(len)));
}

void RemoteUpload::pwrite(std::uint64_t offset, std::span<const std::byte> data) {
  if (data.empty()) return;
  std::vector<ReadyPart> ready;
  {
    std::lock_guard lk(mu_);
    if (done_) throw IoError(url_, "write after the upload was committed or aborted");
    const std::uint64_t p = part_size_locked();
    const std::uint64_t end = offset + data.size();
    size_ = std::max(size_, end);
    for (std::uint64_t at = offset; at < end;) {
      const std::size_t k = static_cast<std::size_t>(at / p);
      const std::uint64_t part_begin = k * p, part_end = part_begin + p;
      const std::uint64_t n = std::min(end, part_end) - at;
      Part& part = parts_[k];
      if (part.uploaded)
        throw IoError(url_, "internal: bytes at offset " + std::to_string(at) + " rewritten after their part was uploaded");
      if (!part.bytes.data()) part.bytes = zeroed(p);
      std::memcpy(part.bytes.data() + (at - part_begin), data.data() + (at - offset), static_cast<std::size_t>(n));
      part.cover(at - part_begin, at - part_begin + n);
      if (part.filled == p) {  // a full part: the last one, maybe shorter, waits for commit()
        part.uploaded = true;
        ready.push_back(ReadyPart{k, std::move(part.bytes), p});
      }
      at += n;
    }
  }
  for (auto& r : ready) upload(r.index, std::move(r.bytes), r.len);
}

void RemoteUpload::Part::cover(std::uint64_t begin, std::uint64_t end) {
  auto it = written.upper_bound(begin);
  if (it != written.begin() && std::prev(it)->second >= begin) --it;
  while (it != written.end() && it->first <= end) {
    begin = std::min(begin, it->first);
    end = std::max(end, it->second);
    filled -= it->second - it->first;
    it = written.erase(it);
  }
  written.emplace(begin, end);
  filled += end - begin;
}

void RemoteUpload::Part::clip(std::uint64_t end) {
  for (auto it = written.begin(); it != written.end();) {
    if (it->first >= end) {
      filled -= it->second - it->first;
      it = written.erase(it);
    } else {
      if (it->second > end) {
        filled -= it->second - end;
        it->second = end;
      }
      ++it;
    }
  }
  if (bytes.data() && end < bytes.size()) std::memset(bytes.data() + end, 0, bytes.size() - end);
}

void RemoteUpload::truncate(std::uint64_t size) {
  std::lock_guard lk(mu_);
  if (size >= size_) {
    size_ = size;
    part_size_locked();  // a size given before the first write chooses the part size
    return;
  }
  const std::uint64_t p = part_size_locked();
  for (auto it = parts_.begin(); it != parts_.end();) {
    const std::uint64_t begin = it->first * p;
    if (begin + p <= size) {
      ++it;
      continue;
    }
    if (it->second.uploaded)
      throw IoError(url_, "cannot shrink to " + std::to_string(size) + " bytes: the part at offset " +
                              std::to_string(begin) + " is already uploaded");
    if (begin >= size) {
      it = parts_.erase(it);
    } else {
      it->second.clip(size - begin);
      ++it;
    }
  }
  size_ = size;
}

void RemoteUpload::commit() {
  // The last point where a cancellation stops this file; from here it is published to the end
  // (a request cancelled after the server applied it would leave an object nobody records).
  throw_if_current_cancelled();
  const CancelScope publishing(nullptr);
  std::vector<ReadyPart> rest;
  bool single = false, started = false;
  {
    std::lock_guard lk(mu_);
    if (done_) throw IoError(url_, "committed twice");
    started = upload_ != nullptr;
    const std::uint64_t p = part_size_locked();
    const std::size_t count = static_cast<std::size_t>((size_ + p - 1) / p);
    single = !started && count <= 1 && std::none_of(parts_.begin(), parts_.end(), [](const auto& kv) { return kv.second.uploaded; });
    for (std::size_t k = 0; k < count; ++k) {
      Part& part = parts_[k];
      if (part.uploaded) continue;
      const std::uint64_t len = std::min(p, size_ - k * p);
      if (!part.bytes.data()) part.bytes = zeroed(p);  // never written: zeros, as a sparse file reads
      part.uploaded = true;
      rest.push_back(ReadyPart{k, std::move(part.bytes), len});
    }
  }
  {
    std::lock_guard lk(live().mu);
    if (live().abandoned) throw Cancelled();
  }
  RemoteDir* dir = RemoteDir::containing(url_);
  if (dir && dir->replacing()) {
    // Replacing a previous output: this file stays invisible until the folder's commit.
    if (rest.empty() && !started) {
      dir->hold_small_file(url_, "");  // empty: a multipart upload needs a part
      std::lock_guard lk(mu_);
      done_ = true;
      return;
    }
    for (auto& r : rest) upload(r.index, std::move(r.bytes), r.len);
    std::unique_ptr<remote::MultipartUpload> u;
    {
      std::lock_guard lk(mu_);
      if (aborted_ || !upload_) throw Cancelled();
      u = std::move(upload_);
      done_ = true;
    }
    dir->complete_at_commit(url_, std::move(u));
    return;
  }
  if (single) {
    const std::uint64_t n = rest.empty() ? 0 : rest.front().len;
    store_->put(key_, rest.empty() ? std::span<const std::byte>{} : rest.front().bytes.span().subspan(0, n));
  } else {
    for (auto& r : rest) upload(r.index, std::move(r.bytes), r.len);
    remote::MultipartUpload* u;
    {
      std::lock_guard lk(mu_);
      if (aborted_ || !upload_) throw Cancelled();  // abandon_remote_outputs() aborted it
      u = upload_.get();
    }
    u->complete();
  }
  {
    std::lock_guard lk(mu_);
    done_ = true;
  }
  forget_remote_file(url_);
  if (dir) dir->completed(url_);
}

void RemoteUpload::abort() noexcept {
  const CancelScope cleanup(nullptr);  // runs to its end after a cancellation
  // The upload object stays (destroyed with this one): another thread may be using it.
  remote::MultipartUpload* u;
  {
    std::lock_guard lk(mu_);
    done_ = true;
    aborted_ = true;
    u = upload_.get();
    parts_.clear();
  }
  if (u) u->abort();
}

// --- RemoteDir -------------------------------------------------------------------------

RemoteDir::RemoteDir(std::string url) : url_(without_trailing_slashes(std::move(url))) {
  auto loc = remote::open_remote(url_);
  if (!loc.store->writable()) throw UsageError(url_ + ": this kind of location is read-only (write to s3:// or gs://)");
  try {
    replacing_ = !snapshot_list(*loc.store, prefix_of(loc.key)).empty();
  } catch (const IoError& e) {
    throw IoError(e.path(), e.detail() + " (a folder output lists its place first, to replace a previous output "
                                         "there without ever showing a mix of the two)");
  }
  std::lock_guard lk(live().mu);
  if (live().abandoned) throw Cancelled();
  live().dirs.insert(this);
}

RemoteDir::~RemoteDir() {
  {
    std::lock_guard lk(live().mu);
    live().dirs.erase(this);
  }
  if (committed_) return;
  const CancelScope cleanup(nullptr);  // runs to its end after a cancellation
  std::lock_guard lk(mu_);
  pending_.clear();  // aborts the uploads not completed
  remove_objects(completed_);
}

RemoteDir* RemoteDir::containing(const std::string& path) {
  std::lock_guard lk(live().mu);
  RemoteDir* best = nullptr;
  for (RemoteDir* d : live().dirs)
    if (path.size() > d->url_.size() && path.compare(0, d->url_.size(), d->url_) == 0 && path[d->url_.size()] == '/' &&
        (!best || d->url_.size() > best->url_.size()))
      best = d;
  return best;
}

void RemoteDir::hold_small_file(const std::string& path, std::string content) {
  const CancelScope cleanup(nullptr);  // outlives `replaced`, whose destructor aborts it
  std::unique_ptr<remote::MultipartUpload> replaced;  // a pending upload of the same file, aborted
  std::lock_guard lk(mu_);
  for (auto it = pending_.begin(); it != pending_.end(); ++it)
    if (it->first == path) {
      replaced = std::move(it->second);
      pending_.erase(it);
      break;
    }
  for (auto& [p, c] : held_)
    if (p == path) {
      c = std::move(content);
      return;
    }
  held_.emplace_back(path, std::move(content));
}

void RemoteDir::completed(const std::string& path) {
  std::lock_guard lk(mu_);
  completed_.push_back(path);
}

void RemoteDir::complete_at_commit(const std::string& path, std::unique_ptr<remote::MultipartUpload> upload) {
  const CancelScope cleanup(nullptr);  // outlives `replaced`, whose destructor aborts it
  std::unique_ptr<remote::MultipartUpload> replaced;  // an earlier upload of the same file, aborted
  std::lock_guard lk(mu_);
  std::erase_if(held_, [&](const auto& h) { return h.first == path; });
  for (auto& [p, u] : pending_)
    if (p == path) {
      replaced = std::move(u);
      u = std::move(upload);
      return;
    }
  pending_.emplace_back(path, std::move(upload));
}

void RemoteDir::commit() {
  {
    std::lock_guard lk(live().mu);
    if (live().abandoned) throw Cancelled();
  }
  // The last point where a cancellation stops this output; from here it is published to the end.
  throw_if_current_cancelled();
  const CancelScope publishing(nullptr);
  std::vector<std::pair<std::string, std::string>> held;
  std::vector<std::pair<std::string, remote::MultipartUpload*>> pending;
  std::set<std::string> ours;  // keys of the objects this output made visible so far
  {
    std::lock_guard lk(mu_);
    held = held_;
    for (const auto& [path, upload] : pending_) pending.emplace_back(path, upload.get());
    for (const auto& u : completed_) ours.insert(remote::open_remote(u).key);
  }
  auto loc = remote::open_remote(url_);
  const std::string prefix = prefix_of(loc.key);
  const unsigned lanes = 16;  // requests at once
  if (replacing_) {
    // The previous output goes first: the objects that this output's small files replace
    // (marker, index, metadata), the last written first, so that no reader finds the previous
    // marker over missing data; then the rest. From the first delete until the new marker is
    // written nothing is visible here; before it, nothing of the new output was.
    std::vector<std::string> old;
    for (const auto& o : loc.store->list(prefix))
      if (!ours.count(o.key)) old.push_back(o.key);
    for (auto h = held.rbegin(); h != held.rend(); ++h) {
      const std::string key = remote::open_remote(h->first).key;
      if (auto it = std::find(old.begin(), old.end(), key); it != old.end()) {
        loc.store->remove(key);
        old.erase(it);
      }
    }
    parallel_for(old.size(), lanes, [&](std::size_t i) { loc.store->remove(old[i]); });
    remote_objects_changed();
    parallel_for(pending.size(), lanes, [&](std::size_t i) {
      pending[i].second->complete();
      forget_remote_file(pending[i].first);
      completed(pending[i].first);
    });
  }
  for (const auto& [path, content] : held) {
    auto file = remote::open_remote(path);
    file.store->put(file.key, std::as_bytes(std::span(content.data(), content.size())));
    forget_remote_file(path);
    completed(path);
  }
  {
    std::lock_guard lk(mu_);
    for (const auto& u : completed_) ours.insert(remote::open_remote(u).key);
    committed_ = true;
  }
  // Anything else there now (written meanwhile by someone else) is not part of this output.
  if (!replacing_)
    for (const auto& o : loc.store->list(prefix))
      if (!ours.count(o.key)) loc.store->remove(o.key);
  remote_objects_changed();
}

// --- free functions --------------------------------------------------------------------

void remote_write_small_file(const std::string& url, std::string_view content) {
  if (RemoteDir* d = RemoteDir::containing(url)) {
    d->hold_small_file(url, std::string(content));
    return;
  }
  auto loc = remote::open_remote(url);
  if (!loc.store->writable()) throw UsageError(url + ": this kind of location is read-only (write to s3:// or gs://)");
  loc.store->put(loc.key, std::as_bytes(std::span(content.data(), content.size())));
  forget_remote_file(url);
}

void remote_remove_tree(const std::string& url) noexcept {
  try {
    auto loc = remote::open_remote(without_trailing_slashes(url));
    if (!loc.store->writable() || loc.key.empty()) return;  // never a whole bucket
    for (const auto& o : loc.store->list(loc.key + "/")) loc.store->remove(o.key);
    loc.store->remove(loc.key);
  } catch (...) {
  }
  remote_objects_changed();
}

std::size_t abandon_remote_outputs() noexcept {
  // Under the lock throughout: an output being destroyed meanwhile waits for this.
  std::lock_guard live_lock(live().mu);
  live().abandoned = true;
  const auto& uploads = live().uploads;
  const auto& dirs = live().dirs;
  for (auto* u : uploads) u->abort();
  const CancelScope cleanup(nullptr);
  for (auto* d : dirs) {
    std::vector<std::string> done;
    {
      std::lock_guard lk(d->mu_);
      done = d->completed_;
      for (auto& [path, upload] : d->pending_)
        if (upload) upload->abort();
    }
    remove_objects(done);
  }
  return uploads.size() + dirs.size();
}

}  // namespace ckb
