// Large file writes that bypass the page cache (O_DIRECT), used by AtomicFile for every
// output. Why: a buffered write copies every byte into the page cache and leaves it dirty
// until writeback; on the machines we measured (a 2-core VM, ext4 on virtio) that copy and
// its writeback cost 2-4x a durable `cp` of the same bytes in system time, whereas direct
// writes of large aligned blocks go from our buffers to the device at disk speed. No
// packaged library does this; the mechanism is small.
//
// Contract:
//  - DirectWriter opens an existing file a second time with O_DIRECT. It is inactive when
//    the filesystem refuses O_DIRECT (tmpfs, some FUSE), or when the environment says
//    CKB_IO=buffered (for A/B measurements).
//  - write(offset, data) writes the whole kBlock-aligned blocks inside [offset, offset +
//    size) directly and returns the bytes before and after them (head, tail), which the caller
//    writes through its ordinary (buffered) descriptor. Data whose memory is not aligned like
//    its file offset goes through a per-thread aligned bounce buffer. When nothing can be
//    written directly (inactive, too small, or the filesystem rejects a direct write with
//    EINVAL, which also deactivates it) the whole range comes back as `head`.
//  - A direct write is complete on the device's side when write() returns, so the caller's
//    fsync at commit makes it durable together with the buffered pieces. The two descriptors
//    never write the same block (a block is direct only when the whole block lies in one
//    call's range, and callers write each byte once), so page-cache coherence is not at stake.
//  - Other write errors throw IoError naming `path` and the offset.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace ckb {

class DirectWriter {
 public:
  static constexpr std::size_t kBlock = 4096;         // offset, length and memory alignment
  static constexpr std::size_t kMinDirect = 1u << 20;  // smaller writes stay buffered

  explicit DirectWriter(const std::string& path);
  ~DirectWriter();
  DirectWriter(const DirectWriter&) = delete;
  DirectWriter& operator=(const DirectWriter&) = delete;

  bool active() const { return fd_ >= 0 && !refused_.load(std::memory_order_relaxed); }

  struct Rest {
    std::uint64_t head_offset = 0;
    std::span<const std::byte> head;
    std::uint64_t tail_offset = 0;
    std::span<const std::byte> tail;
  };
  Rest write(std::uint64_t offset, std::span<const std::byte> data);

 private:
  // Writes [p, p+len) at `offset`, all three aligned; false when the filesystem refused
  // (EINVAL) before anything was written.
  bool write_aligned(const std::byte* p, std::size_t len, std::uint64_t offset);
  std::string path_;
  int fd_ = -1;
  std::atomic<bool> refused_{false};  // set once a direct write got EINVAL
};

// True unless the environment asks for buffered writes (CKB_IO=buffered).
bool direct_io_allowed();

}  // namespace ckb
