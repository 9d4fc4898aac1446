// CRC-32 verification of zip members as their bytes stream past (io/zip.h uses it).
//
// A stored member is served by range: the executor may read disjoint ranges of one member
// from several threads and in any order, and several tensors may share a member (torch
// storages). ZipCrcVerifier collects the CRC-32 of each range read (codec/crc32.h, computed
// on bytes that were just copied, so they are still in cache: no second pass over the
// data), joins adjacent ranges with crc32_combine, and compares with the central
// directory's CRC-32 once the ranges cover the whole member. A mismatch is a FormatError
// ("CRC-32 mismatch in member 'a.npy' of x.npz: stored 0x..., computed 0x...") thrown by
// the read that completes the member and by every read after it, so a conversion fails
// before its output is committed.
//
// Rules:
//  - The check happens when every byte of the member has been read at least once (the
//    bytes before/after a tensor's window, e.g. an .npy header, are checksummed from the
//    mapped file when the tensor's source is created). A member only partly read (a torch
//    storage of which the checkpoint's tensors use only a part) is verified when the rest
//    is read too, or not at all.
//  - Ranges read again are not checksummed again. Reads scattered into more than
//    kMaxRuns separate ranges (a transposed view read element by element) switch to one
//    pass over the whole mapped member at that point, then stop tracking.
//  - Once verified, a read costs one atomic load.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <span>
#include <string>

#include "io/file.h"

namespace ckb {

// The message every zip CRC mismatch uses: "CRC-32 mismatch in member 'NAME' of PATH:
// stored 0x%08x, computed 0x%08x".
std::string crc_mismatch_message(const std::string& archive, const std::string& member, std::uint32_t stored,
                                 std::uint32_t computed);

class ZipCrcVerifier {
 public:
  static constexpr std::size_t kMaxRuns = 256;

  // The member's stored bytes are [data_offset, data_offset + size) of `file`.
  ZipCrcVerifier(MappedFilePtr file, std::string member, std::uint64_t data_offset, std::uint64_t size,
                 std::uint32_t expected);

  // Bytes [off, off + data.size()) of the member have been read and are `data`. Thread-safe.
  // Throws FormatError when the member is complete and its CRC-32 differs (and on every
  // call after that).
  void cover(std::uint64_t off, std::span<const std::byte> data) const;
  // Same, reading the bytes from the mapped file (for bytes no tensor reads).
  void cover_mapped(std::uint64_t off, std::uint64_t len) const;
  bool verified() const { return state_.load(std::memory_order_acquire) == kOk; }

 private:
  enum : int { kOpen = 0, kOk = 1, kBad = 2 };
  struct Run {
    std::uint64_t end;
    std::uint32_t crc;
  };
  [[noreturn]] void throw_mismatch() const;
  void insert_locked(std::uint64_t off, std::span<const std::byte> data, std::uint32_t crc) const;
  void conclude_locked(std::uint32_t computed) const;

  MappedFilePtr file_;
  std::string member_;
  std::uint64_t data_offset_, size_;
  std::uint32_t expected_;
  mutable std::mutex mu_;
  mutable std::map<std::uint64_t, Run> runs_;  // start -> run; disjoint, never adjacent
  mutable std::atomic<int> state_{kOpen};
  mutable std::uint32_t computed_ = 0;
};

}  // namespace ckb
