// POSIX implementation of io/shared_file.h.
#include "io/shared_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include "core/errors.h"

namespace ckb {

SharedFilePart::SharedFilePart(std::string path) : path_(std::move(path)) {
  fd_ = ::open(path_.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd_ < 0) throw_errno(path_, "cannot open the shared output file");
}

SharedFilePart::~SharedFilePart() {
  if (fd_ >= 0) ::close(fd_);
}

void SharedFilePart::pwrite(std::uint64_t offset, std::span<const std::byte> data) {
  const std::byte* p = data.data();
  std::size_t left = data.size();
  while (left > 0) {
    const ssize_t n = ::pwrite(fd_, p, left, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno(path_, "write failed at offset " + std::to_string(offset));
    }
    if (n == 0) throw IoError(path_, "write returned 0 bytes");
    p += n;
    left -= static_cast<std::size_t>(n);
    offset += static_cast<std::uint64_t>(n);
  }
}

void SharedFilePart::finish() {
  if (fd_ < 0) return;
  if (::fsync(fd_) != 0) throw_errno(path_, "fsync failed");
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) throw_errno(path_, "close failed");
}

}  // namespace ckb
