// POSIX implementation of io/output.h.
#include "io/output.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cerrno>
#include <filesystem>
#include <random>

#include "core/errors.h"

namespace ckb {
namespace {

constexpr std::size_t kWritebackBytes = 1u << 20;  // pieces at least this large start writeback

std::string temp_name(const std::string& final_path) {
  static std::atomic<unsigned> counter{0};
  std::random_device rd;
  std::filesystem::path p(final_path);
  std::string name = "." + p.filename().string() + ".ckb-tmp-" + std::to_string(::getpid()) + "-" +
                     std::to_string(counter++) + "-" + std::to_string(rd() & 0xffff);
  return (p.parent_path() / name).string();
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

AtomicFile::AtomicFile(std::string final_path) : final_(std::move(final_path)), tmp_(temp_name(final_)) {
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd_ < 0) throw_errno(final_, "cannot create temporary output " + tmp_);
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(tmp_.c_str());
}

void AtomicFile::pwrite(std::uint64_t offset, std::span<const std::byte> data) {
  const std::byte* p = data.data();
  std::size_t left = data.size();
  while (left > 0) {
    ssize_t n = ::pwrite(fd_, p, left, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno(final_, "write failed at offset " + std::to_string(offset));
    }
    if (n == 0) throw IoError(final_, "write returned 0 bytes");
    p += n;
    left -= static_cast<std::size_t>(n);
    offset += static_cast<std::uint64_t>(n);
  }
  // Start writing a large piece to disk now (asynchronously): on a machine with a lot of RAM
  // the kernel would otherwise keep gigabytes dirty until commit()'s fsync and only then
  // write them, after the conversion's compute instead of during it.
  if (data.size() >= kWritebackBytes)
    ::sync_file_range(fd_, static_cast<off_t>(offset - data.size()), static_cast<off_t>(data.size()),
                      SYNC_FILE_RANGE_WRITE);
}

void AtomicFile::truncate(std::uint64_t size) {
  if (::ftruncate(fd_, static_cast<off_t>(size)) != 0) throw_errno(final_, "cannot size output");
}

void AtomicFile::commit() {
  if (::fsync(fd_) != 0) throw_errno(final_, "fsync failed");
  if (::close(fd_) != 0) {
    fd_ = -1;
    throw_errno(final_, "close failed");
  }
  fd_ = -1;
  if (::rename(tmp_.c_str(), final_.c_str()) != 0) throw_errno(final_, "cannot rename temporary output into place");
  committed_ = true;
  fsync_parent(final_);
}

AtomicDir::AtomicDir(std::string final_path) : final_(std::move(final_path)), tmp_(temp_name(final_)) {
  std::error_code ec;
  auto parent = std::filesystem::path(final_).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  if (::mkdir(tmp_.c_str(), 0755) != 0) throw_errno(final_, "cannot create temporary directory " + tmp_);
}

AtomicDir::~AtomicDir() {
  if (!committed_) remove_tree(tmp_);
}

void AtomicDir::commit() {
  std::string old;
  struct stat st {};
  if (::lstat(final_.c_str(), &st) == 0) {
    // Replace an existing destination in one step: exchange the two names atomically, so
    // there is no moment at which the destination is missing; tmp_ then holds the previous
    // output, which is deleted (a kill before that leaves it under the hidden temporary name).
    if (::renameat2(AT_FDCWD, tmp_.c_str(), AT_FDCWD, final_.c_str(), RENAME_EXCHANGE) == 0) {
      committed_ = true;
      fsync_parent(final_);
      remove_tree(tmp_);
      return;
    }
    // Filesystems without RENAME_EXCHANGE: move the previous output aside, rename the new
    // one in, then delete the previous one.
    old = temp_name(final_) + ".old";
    if (::rename(final_.c_str(), old.c_str()) != 0) throw_errno(final_, "cannot move the previous output aside");
  }
  if (::rename(tmp_.c_str(), final_.c_str()) != 0) {
    if (!old.empty()) ::rename(old.c_str(), final_.c_str());
    throw_errno(final_, "cannot rename temporary directory into place");
  }
  committed_ = true;
  fsync_parent(final_);
  if (!old.empty()) remove_tree(old);
}

void write_small_file(const std::string& path, std::string_view content) {
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
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  if (ec) throw IoError(path, "cannot create directory: " + ec.message());
}

void remove_tree(const std::string& path) {
  std::error_code ec;
  std::filesystem::remove_all(path, ec);
}

}  // namespace ckb
