// Implementation of io/direct_io.h.
#include "io/direct_io.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string_view>

#include "core/errors.h"

namespace ckb {
namespace {

constexpr std::size_t kBounceBytes = 8u << 20;

struct FreeDeleter {
  void operator()(std::byte* p) const { std::free(p); }
};

// This thread's aligned bounce buffer (allocated on first use, kept for the thread's life).
std::byte* bounce_buffer() {
  thread_local std::unique_ptr<std::byte, FreeDeleter> buf;
  if (!buf) {
    void* p = nullptr;
    if (::posix_memalign(&p, DirectWriter::kBlock, kBounceBytes) != 0) throw std::bad_alloc();
    buf.reset(static_cast<std::byte*>(p));
  }
  return buf.get();
}

bool aligned(std::uint64_t v) { return v % DirectWriter::kBlock == 0; }

}  // namespace

bool direct_io_allowed() {
  const char* v = std::getenv("CKB_IO");
  return !(v && std::string_view(v) == "buffered");
}

DirectWriter::DirectWriter(const std::string& path) : path_(path) {
  if (!direct_io_allowed()) return;
  fd_ = ::open(path.c_str(), O_WRONLY | O_DIRECT | O_CLOEXEC);  // -1 where O_DIRECT is refused
}

DirectWriter::~DirectWriter() {
  if (fd_ >= 0) ::close(fd_);
}

bool DirectWriter::write_aligned(const std::byte* p, std::size_t len, std::uint64_t offset) {
  bool wrote = false;
  while (len > 0) {
    ssize_t n = ::pwrite(fd_, p, len, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EINVAL && !wrote) return false;
      throw_errno(path_, "direct write failed at offset " + std::to_string(offset));
    }
    if (n == 0) throw IoError(path_, "direct write returned 0 bytes at offset " + std::to_string(offset));
    // A short direct write ends on a block boundary unless the device is full; a ragged
    // remainder is left to the caller's buffered path by failing loudly here instead.
    if (!aligned(static_cast<std::uint64_t>(n)))
      throw IoError(path_, "direct write stopped inside a block at offset " + std::to_string(offset));
    wrote = true;
    p += n;
    len -= static_cast<std::size_t>(n);
    offset += static_cast<std::uint64_t>(n);
  }
  return true;
}

DirectWriter::Rest DirectWriter::write(std::uint64_t offset, std::span<const std::byte> data) {
  Rest rest{offset, data, offset + data.size(), {}};
  if (!active() || data.size() < kMinDirect) return rest;
  const std::uint64_t end = offset + data.size();
  const std::uint64_t first = (offset + kBlock - 1) / kBlock * kBlock;
  const std::uint64_t last = end / kBlock * kBlock;
  if (last <= first) return rest;
  const std::byte* body = data.data() + (first - offset);
  std::size_t body_len = static_cast<std::size_t>(last - first);
  bool ok = true;
  if (reinterpret_cast<std::uintptr_t>(body) % kBlock == 0) {
    ok = write_aligned(body, body_len, first);
  } else {
    std::byte* bounce = bounce_buffer();
    std::uint64_t at = first;
    for (std::size_t done = 0; done < body_len && ok;) {
      const std::size_t n = std::min(kBounceBytes, body_len - done);
      std::memcpy(bounce, body + done, n);
      ok = write_aligned(bounce, n, at);
      if (!ok && done > 0)
        throw IoError(path_, "direct write refused at offset " + std::to_string(at) + " after earlier ones succeeded");
      done += n;
      at += n;
    }
  }
  if (!ok) {  // the filesystem refuses direct I/O here: everything goes the buffered way from now on
    refused_ = true;
    return rest;
  }
  return Rest{offset, data.first(static_cast<std::size_t>(first - offset)), last,
              data.subspan(static_cast<std::size_t>(last - offset))};
}

}  // namespace ckb
