// POSIX implementation of io/output.h.
#include "io/output.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <random>
#include <set>

#include "core/errors.h"
#include "io/file.h"
#include "io/remote_output.h"

namespace ckb {
namespace {

constexpr std::size_t kWritebackBytes = 1u << 20;  // pieces at least this large start writeback

constexpr std::string_view kTempPrefix = ".ckb-tmp-";

// ".ckb-tmp-<pid>-<counter><4 hex digits>-<name>": the pid tells a later run whether the
// owner is gone; the counter makes it unique within the process (O_EXCL catches the rest).
std::string temp_name(const std::string& final_path) {
  static std::atomic<unsigned> counter{0};
  std::random_device rd;
  std::filesystem::path p(final_path);
  char unique[32];
  std::snprintf(unique, sizeof unique, "%u%04x", counter++, rd() & 0xffffu);
  std::string name = std::string(kTempPrefix) + std::to_string(::getpid()) + "-" + unique + "-" + p.filename().string();
  return (p.parent_path() / name).string();
}

// The process's live temporaries. Never destroyed: the signal watchdog may use it while
// the process exits.
struct Registry {
  std::mutex mu;
  std::set<std::string> live;
  bool abandoned = false;  // abandon_temporaries() ran: no new temporaries, no commits
};

Registry& registry() {
  static Registry* r = new Registry;
  return *r;
}

void throw_if_abandoned(const Registry& reg) {
  if (reg.abandoned) throw Cancelled();
}

void forget(const std::string& path) {
  Registry& reg = registry();
  std::lock_guard lock(reg.mu);
  reg.live.erase(path);
}

// Removes a file or a tree; a tree is retried because writers may still be adding files to it.
void remove_path(const std::string& path) {
  for (int attempt = 0; attempt < 3; ++attempt) {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
    if (!ec) return;
  }
}

void fsync_parent(const std::string& path) {
  std::filesystem::path p(path);
  auto parent = p.parent_path().empty() ? std::string(".") : p.parent_path().string();
  int fd = ::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

}  // namespace

AtomicFile::AtomicFile(std::string final_path) : final_(std::move(final_path)) {
  if (is_remote_path(final_)) {
    tmp_ = final_;
    remote_ = std::make_unique<RemoteUpload>(final_);
    return;
  }
  tmp_ = temp_name(final_);
  Registry& reg = registry();
  std::lock_guard lock(reg.mu);
  throw_if_abandoned(reg);
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd_ < 0) throw_errno(final_, "cannot create temporary output " + tmp_);
  reg.live.insert(tmp_);
  direct_ = std::make_unique<DirectWriter>(tmp_);
  if (!direct_->active()) direct_.reset();
}

AtomicFile::~AtomicFile() {
  if (remote_) {
    remote_.reset();  // aborts unless committed
    return;
  }
  direct_.reset();
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(tmp_.c_str());
  forget(tmp_);
}

void AtomicFile::pwrite(std::uint64_t offset, std::span<const std::byte> data) {
  if (remote_) {
    remote_->pwrite(offset, data);
  } else if (direct_) {
    const DirectWriter::Rest rest = direct_->write(offset, data);
    buffered_write(rest.head_offset, rest.head);
    buffered_write(rest.tail_offset, rest.tail);
  } else {
    buffered_write(offset, data);
  }
}

void pwrite_all(int fd, std::uint64_t offset, std::span<const std::byte> data, const std::string& path) {
  const std::byte* p = data.data();
  std::size_t left = data.size();
  while (left > 0) {
    ssize_t n = ::pwrite(fd, p, left, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno(path, "write failed at offset " + std::to_string(offset));
    }
    if (n == 0) throw IoError(path, "write returned 0 bytes");
    p += n;
    left -= static_cast<std::size_t>(n);
    offset += static_cast<std::uint64_t>(n);
  }
}

void AtomicFile::buffered_write(std::uint64_t offset, std::span<const std::byte> data) {
  pwrite_all(fd_, offset, data, final_);
  // Start writing a large piece to disk now (asynchronously): on a machine with a lot of RAM
  // the kernel would otherwise keep gigabytes dirty until commit()'s fsync and only then
  // write them, after the conversion's compute instead of during it.
  if (data.size() >= kWritebackBytes)
    ::sync_file_range(fd_, static_cast<off_t>(offset), static_cast<off_t>(data.size()),
                      SYNC_FILE_RANGE_WRITE);
}

void AtomicFile::truncate(std::uint64_t size) {
  if (remote_) return remote_->truncate(size);
  if (::ftruncate(fd_, static_cast<off_t>(size)) != 0) throw_errno(final_, "cannot size output");
}

void AtomicFile::commit() {
  if (remote_) {
    remote_->commit();
    committed_ = true;
    return;
  }
  direct_.reset();
  if (::fsync(fd_) != 0) throw_errno(final_, "fsync failed");
  if (::close(fd_) != 0) {
    fd_ = -1;
    throw_errno(final_, "close failed");
  }
  fd_ = -1;
  {
    Registry& reg = registry();
    std::lock_guard lock(reg.mu);  // excludes abandon_temporaries()
    throw_if_abandoned(reg);
    if (::rename(tmp_.c_str(), final_.c_str()) != 0) throw_errno(final_, "cannot rename temporary output into place");
    committed_ = true;
    reg.live.erase(tmp_);
  }
  fsync_parent(final_);
}

AtomicDir::AtomicDir(std::string final_path) : final_(std::move(final_path)) {
  if (is_remote_path(final_)) {
    tmp_ = final_;
    remote_ = std::make_unique<RemoteDir>(final_);
    return;
  }
  tmp_ = temp_name(final_);
  std::error_code ec;
  auto parent = std::filesystem::path(final_).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  Registry& reg = registry();
  std::lock_guard lock(reg.mu);
  throw_if_abandoned(reg);
  if (::mkdir(tmp_.c_str(), 0755) != 0) throw_errno(final_, "cannot create temporary directory " + tmp_);
  reg.live.insert(tmp_);
}

AtomicDir::~AtomicDir() {
  if (remote_) {
    remote_.reset();  // uncommitted: deletes what it completed
    return;
  }
  if (!committed_) remove_tree(tmp_);
  forget(tmp_);
}

void AtomicDir::commit() {
  if (remote_) {
    remote_->commit();
    committed_ = true;
    return;
  }
  Registry& reg = registry();
  std::unique_lock lock(reg.mu);  // the renames exclude abandon_temporaries()
  throw_if_abandoned(reg);
  std::string old;
  struct stat st {};
  if (::lstat(final_.c_str(), &st) == 0) {
    // Replace an existing destination in one step: exchange the two names atomically, so
    // there is no moment at which the destination is missing; tmp_ then holds the previous
    // output (still registered as a temporary), which is deleted.
    if (::renameat2(AT_FDCWD, tmp_.c_str(), AT_FDCWD, final_.c_str(), RENAME_EXCHANGE) == 0) {
      committed_ = true;
      lock.unlock();
      fsync_parent(final_);
      remove_tree(tmp_);
      forget(tmp_);
      return;
    }
    // Filesystems without RENAME_EXCHANGE: move the previous output aside, rename the new
    // one in, then delete the previous one.
    old = temp_name(final_) + ".old";
    if (::rename(final_.c_str(), old.c_str()) != 0) throw_errno(final_, "cannot move the previous output aside");
    reg.live.insert(old);
  }
  if (::rename(tmp_.c_str(), final_.c_str()) != 0) {
    if (!old.empty() && ::rename(old.c_str(), final_.c_str()) == 0) reg.live.erase(old);
    throw_errno(final_, "cannot rename temporary directory into place");
  }
  committed_ = true;
  reg.live.erase(tmp_);
  lock.unlock();
  fsync_parent(final_);
  if (!old.empty()) {
    remove_tree(old);
    forget(old);
  }
}

void write_small_file(const std::string& path, std::string_view content) {
  if (is_remote_path(path)) return remote_write_small_file(path, content);
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw_errno(path, "cannot create");
  const char* p = content.data();
  std::size_t left = content.size();
  while (left) {
    ssize_t n = ::write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      ::close(fd);
      errno = e;
      throw_errno(path, "write failed");
    }
    p += n;
    left -= static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) throw_errno(path, "cannot finish writing");
}

void make_dirs(const std::string& path) {
  if (is_remote_path(path)) return;  // object storage has no folders
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  if (ec) throw IoError(path, "cannot create directory: " + ec.message());
}

void remove_tree(const std::string& path) {
  if (is_remote_path(path)) return;  // only local temporaries are removed this way
  std::error_code ec;
  std::filesystem::remove_all(path, ec);
}

std::size_t live_temporary_count() {
  Registry& reg = registry();
  std::lock_guard lock(reg.mu);
  return reg.live.size();
}

std::size_t abandon_temporaries() {
  Registry& reg = registry();
  std::lock_guard lock(reg.mu);
  reg.abandoned = true;
  const std::size_t n = reg.live.size() + abandon_remote_outputs();
  for (const auto& p : reg.live) remove_path(p);  // a tree before the files inside it
  reg.live.clear();
  return n;
}

long temporary_owner(const std::string& path) {
  const std::string name = std::filesystem::path(path).filename().string();
  if (name.rfind(kTempPrefix, 0) != 0) return 0;
  const char* first = name.data() + kTempPrefix.size();
  const char* last = name.data() + name.size();
  long pid = 0;
  auto [end, ec] = std::from_chars(first, last, pid);
  if (ec != std::errc() || end == first || end == last || *end != '-' || pid <= 0) return 0;
  return pid;
}

std::vector<std::string> remove_stale_temporaries(const std::string& destination) {
  namespace fs = std::filesystem;
  std::vector<std::string> removed;
  if (is_remote_path(destination)) return removed;  // remote outputs have no temporaries
  auto scan = [&](const fs::path& dir) {
    std::error_code ec;
    std::vector<fs::path> stale;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
      const long pid = temporary_owner(it->path().string());
      if (pid == 0 || static_cast<pid_t>(pid) != pid) continue;
      if (::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;  // alive (or not ours to judge)
      stale.push_back(it->path());
    }
    for (const auto& p : stale) {
      std::error_code rec;
      fs::remove_all(p, rec);
      if (!rec) removed.push_back(p.string());
    }
  };
  const fs::path dst(destination);
  scan(dst.parent_path().empty() ? fs::path(".") : dst.parent_path());
  std::error_code ec;
  if (fs::is_directory(dst, ec)) scan(dst);
  return removed;
}

}  // namespace ckb
