// Front-to-back reading of a byte range of a file in pieces, the next pieces fetched in the
// background while the consumer works on the current one. This is how a decoder streams a
// value that lives in object storage (a remote MappedFile keeps no mapping of tensor bytes)
// without ever holding it whole: memory is (ahead + 1) pieces, whatever the value's size.
//
// Contract:
//  - pieces are the aligned slices [k * piece, (k + 1) * piece) of the range;
//  - from(at) returns the bytes from `at` to the end of its piece, valid until the next call;
//    positions only move forward (a position behind the current piece is a logic error and
//    throws std::logic_error); a jump ahead drops the pieces in between;
//  - read errors (IoError naming the file) are thrown by the call that needs the piece; a later
//    call at the same position fetches it again;
//  - the destructor waits for the fetches in flight. Not for use from several threads.
#pragma once

#include <cstdint>
#include <deque>
#include <future>
#include <span>
#include <string>

#include "core/tensor.h"
#include "io/file.h"

namespace ckb {

class SequentialRead {
 public:
  static constexpr std::size_t kPiece = 8u << 20, kAhead = 2;
  SequentialRead(MappedFilePtr file, std::uint64_t offset, std::uint64_t length, std::string what,
                 std::size_t piece = kPiece, std::size_t ahead = kAhead);
  ~SequentialRead();
  SequentialRead(const SequentialRead&) = delete;
  SequentialRead& operator=(const SequentialRead&) = delete;

  std::uint64_t size() const { return length_; }
  // The range's bytes [at, end of at's piece); at < size().
  std::span<const std::byte> from(std::uint64_t at);
  // Copies [at, at + dst.size()) of the range into dst (across pieces; forward only).
  void read(std::uint64_t at, std::span<std::byte> dst);

 private:
  struct Piece {
    std::uint64_t index = 0;
    Bytes bytes;
    std::future<void> fetched;
    bool ready = false;
  };
  void start(std::uint64_t index);
  Piece& load(std::uint64_t index);

  MappedFilePtr file_;
  std::uint64_t offset_, length_;
  std::string what_;
  std::size_t piece_, ahead_;
  std::uint64_t pieces_;
  std::deque<Piece> window_;  // consecutive pieces, the current one first
};

}  // namespace ckb
