// POSIX implementation of io/shared_file.h.
#include "io/shared_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include "core/errors.h"
#include "io/output.h"

namespace ckb {

SharedFilePart::SharedFilePart(std::string path) : path_(std::move(path)) {
  fd_ = ::open(path_.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd_ < 0) throw_errno(path_, "cannot open the shared output file");
}

SharedFilePart::~SharedFilePart() {
  if (fd_ >= 0) ::close(fd_);
}

void SharedFilePart::pwrite(std::uint64_t offset, std::span<const std::byte> data) { pwrite_all(fd_, offset, data, path_); }

void SharedFilePart::finish() {
  if (fd_ < 0) return;
  if (::fsync(fd_) != 0) throw_errno(path_, "fsync failed");
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) throw_errno(path_, "close failed");
}

}  // namespace ckb
