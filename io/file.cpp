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

#include "core/errors.h"

namespace ckb {

std::shared_ptr<const MappedFile> MappedFile::open(const std::string& path) {
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
  if (data_) ::munmap(const_cast<std::byte*>(data_), size_);
}

std::span<const std::byte> MappedFile::range(std::uint64_t off, std::uint64_t len, const char* what) const {
  if (off > size_ || len > size_ - off)
    throw FormatError(path_,
                      std::string(what) + " [" + std::to_string(off) + ", +" + std::to_string(len) +
                          ") lies beyond the end of the file (" + std::to_string(size_) + " bytes)",
                      off);
  return {data_ + off, static_cast<std::size_t>(len)};
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
  advise(data_, size_, off, len, MADV_DONTNEED);
}

void MappedFile::will_need(std::uint64_t off, std::uint64_t len) const {
  advise(data_, size_, off, len, MADV_WILLNEED);
}

void MappedRangeSource::prefetch(std::uint64_t offset, std::uint64_t len) const {
  if (offset >= len_) return;
  file_->will_need(offset_ + offset, std::min(len, len_ - offset));
}

MappedRangeSource::MappedRangeSource(MappedFilePtr file, std::uint64_t offset, std::uint64_t len, std::string what)
    : file_(std::move(file)), offset_(offset), len_(len), what_(std::move(what)) {
  file_->range(offset_, len_, what_.c_str());
}

void MappedRangeSource::read(std::uint64_t offset, std::span<std::byte> out) const {
  if (offset > len_ || out.size() > len_ - offset)
    throw FormatError(file_->path(), "read beyond tensor '" + what_ + "'", offset_ + offset);
  if (!out.empty()) std::memcpy(out.data(), file_->data() + offset_ + offset, out.size());
}

std::string MappedRangeSource::describe() const {
  return file_->path() + ":" + what_ + " @" + std::to_string(offset_);
}

bool path_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

bool is_directory(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::string read_text_file(const std::string& path) {
  auto f = MappedFile::open(path);
  return std::string(reinterpret_cast<const char*>(f->data()), f->size());
}

bool same_file(const std::string& a, const std::string& b) {
  struct stat sa {}, sb {};
  if (::stat(a.c_str(), &sa) != 0 || ::stat(b.c_str(), &sb) != 0) return false;
  return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

}  // namespace ckb
