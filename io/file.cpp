// POSIX implementation of io/file.h.
#include "io/file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <sstream>

#include <filesystem>

#include "core/errors.h"
#include "io/remote_file.h"

namespace ckb {

std::shared_ptr<const MappedFile> MappedFile::open(const std::string& path) {
  if (is_remote_path(path)) {
    auto f = std::shared_ptr<MappedFile>(new MappedFile());
    f->path_ = path;
    f->remote_ = RemoteBacking::open(path);
    f->size_ = f->remote_->size();
    f->data_ = f->remote_->base();
    return f;
  }
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw_errno(path, "cannot open");
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    throw_errno(path, "cannot stat");
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw IoError(path, "not a regular file");
  }
  auto f = std::shared_ptr<MappedFile>(new MappedFile());
  f->path_ = path;
  f->size_ = static_cast<std::uint64_t>(st.st_size);
  if (f->size_ > 0) {
    void* p = ::mmap(nullptr, f->size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      ::close(fd);
      throw_errno(path, "cannot mmap");
    }
    f->data_ = static_cast<const std::byte*>(p);
  }
  ::close(fd);
  return f;
}

MappedFile::~MappedFile() {
  if (data_ && !remote_) ::munmap(const_cast<std::byte*>(data_), size_);
}

void MappedFile::check_range(std::uint64_t off, std::uint64_t len, const char* what) const {
  if (off > size_ || len > size_ - off)
    throw FormatError(path_,
                      std::string(what) + " [" + std::to_string(off) + ", +" + std::to_string(len) +
                          ") lies beyond the end of the file (" + std::to_string(size_) + " bytes)",
                      off);
}

std::span<const std::byte> MappedFile::range(std::uint64_t off, std::uint64_t len, const char* what) const {
  check_range(off, len, what);
  if (remote_) remote_->ensure(off, len);
  return {data_ + off, static_cast<std::size_t>(len)};
}

std::span<const std::byte> MappedFile::bytes() const { return range(0, size_, "the file"); }

void MappedFile::read(std::uint64_t off, std::span<std::byte> dst, const char* what) const {
  check_range(off, dst.size(), what);
  if (dst.empty()) return;
  if (remote_)
    remote_->read(off, dst);
  else
    std::memcpy(dst.data(), data_ + off, dst.size());
}

MappedFile::View MappedFile::view(std::uint64_t off, std::uint64_t len, const char* what) const {
  check_range(off, len, what);
  if (!remote_) return {{data_ + off, static_cast<std::size_t>(len)}, shared_from_this()};
  auto buf = std::make_shared<Bytes>(static_cast<std::size_t>(len));
  remote_->read(off, buf->span());
  return {{buf->data(), static_cast<std::size_t>(len)}, buf};
}

namespace {
// madvise on the whole pages covering [off, off+len) of a mapping of `size` bytes.
void advise(const std::byte* data, std::uint64_t size, std::uint64_t off, std::uint64_t len, int advice) {
  if (!data || len == 0 || off >= size) return;
  static const std::uint64_t page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
  const std::uint64_t begin = off / page * page, end = std::min(size, off + len);
  ::madvise(const_cast<std::byte*>(data) + begin, end - begin, advice);
}
}  // namespace

void MappedFile::drop_pages(std::uint64_t off, std::uint64_t len) const {
  if (!remote_) advise(data_, size_, off, len, MADV_DONTNEED);  // remote: range() keeps only metadata
}

void MappedFile::will_need(std::uint64_t off, std::uint64_t len) const {
  if (!remote_) advise(data_, size_, off, len, MADV_WILLNEED);
}

void MappedRangeSource::prefetch(std::uint64_t offset, std::uint64_t len) const {
  if (offset >= len_) return;
  file_->will_need(offset_ + offset, std::min(len, len_ - offset));
}

MappedRangeSource::MappedRangeSource(MappedFilePtr file, std::uint64_t offset, std::uint64_t len, std::string what)
    : file_(std::move(file)), offset_(offset), len_(len), what_(std::move(what)) {
  file_->check_range(offset_, len_, what_.c_str());
}

void MappedRangeSource::read(std::uint64_t offset, std::span<std::byte> out) const {
  if (offset > len_ || out.size() > len_ - offset)
    throw FormatError(file_->path(), "read beyond tensor '" + what_ + "'", offset_ + offset);
  file_->read(offset_ + offset, out, what_.c_str());
}

std::string MappedRangeSource::describe() const {
  return file_->path() + ":" + what_ + " @" + std::to_string(offset_);
}

std::string without_trailing_slashes(std::string path) {
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  return path;
}

bool path_exists(const std::string& path) {
  if (is_remote_path(path)) return remote_exists(path);
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

bool is_directory(const std::string& path) {
  if (is_remote_path(path)) return remote_is_directory(path);
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::string read_text_file(const std::string& path) {
  auto f = MappedFile::open(path);
  const auto b = f->bytes();
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

std::vector<DirEntry> list_directory(const std::string& dir) {
  if (is_remote_path(dir)) return remote_list_directory(dir);
  namespace fs = std::filesystem;
  std::vector<DirEntry> out;
  std::error_code ec;
  fs::directory_iterator it(dir, ec), end;
  if (ec) throw IoError(dir, "cannot list directory: " + ec.message());
  for (; it != end; it.increment(ec)) {
    if (ec) throw IoError(dir, "cannot list directory: " + ec.message());
    std::error_code ec2;
    out.push_back({it->path().filename().string(), it->is_directory(ec2)});
  }
  std::sort(out.begin(), out.end(), [](const DirEntry& a, const DirEntry& b) { return a.name < b.name; });
  return out;
}

std::vector<std::string> list_files_recursive(const std::string& dir) {
  if (is_remote_path(dir)) return remote_list_files(dir);
  namespace fs = std::filesystem;
  std::vector<std::string> keys;
  std::error_code ec;
  fs::recursive_directory_iterator it(dir, ec), end;
  if (ec) throw IoError(dir, "cannot list directory: " + ec.message());
  for (; it != end; it.increment(ec)) {
    if (ec) throw IoError(dir, "cannot list directory: " + ec.message());
    if (!it->is_regular_file(ec)) continue;
    keys.push_back(fs::relative(it->path(), dir, ec).generic_string());
  }
  std::sort(keys.begin(), keys.end());
  return keys;
}

bool same_file(const std::string& a, const std::string& b) {
  if (is_remote_path(a) || is_remote_path(b)) return is_remote_path(a) && is_remote_path(b) && same_remote_object(a, b);
  struct stat sa {}, sb {};
  if (::stat(a.c_str(), &sa) != 0 || ::stat(b.c_str(), &sb) != 0) return false;
  return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

}  // namespace ckb
