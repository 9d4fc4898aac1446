// Bounded Zstandard decoding shared by OCDBT nodes and zarr chunks. Input comes from
// untrusted files, so the output size is capped *before* anything is allocated: a frame
// whose declared content size exceeds the cap is refused up front, and the streaming
// decoder (ZSTD_decompressStream) stops as soon as the output would pass the cap, which
// also covers frames without a content-size field.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>

#include "core/errors.h"
#include "core/tensor.h"

namespace ckb {

// Decodes exactly one zstd frame (trailing bytes are an error) producing at most `limit`
// bytes. `exact` = true additionally requires the output to be exactly `limit` bytes.
// Errors are FormatError(path, "<what>: ...", offset).
Bytes zstd_decode(std::span<const std::byte> in, std::uint64_t limit, bool exact, const std::string& path,
                  std::uint64_t offset, const std::string& what);

// Incremental decoding of one zstd frame that must decode to exactly `total` bytes, into
// buffers the caller owns: a multi-GB frame streams through a small buffer instead of being
// materialised. The checks are zstd_decode's with exact = true: a frame declaring another
// size is refused at construction, one producing more or fewer bytes, or followed by
// trailing bytes, fails in read() or finish(). Errors name the offset where decoding stopped.
// The frame comes either as one span or from an Input that hands it out piece by piece (a
// frame in object storage, fetched a window at a time).
class ZstdStream {
 public:
  // Called with the number of frame bytes consumed so far (< the frame's size); returns the
  // next bytes of the frame: at least one, at most the rest, valid until the next call. The
  // first call must return at least min(frame size, 18) bytes (the frame header).
  using Input = std::function<std::span<const std::byte>(std::uint64_t at)>;
  ZstdStream(std::span<const std::byte> in, std::uint64_t total, std::string path, std::uint64_t offset,
             std::string what);
  ZstdStream(std::uint64_t in_size, Input input, std::uint64_t total, std::string path, std::uint64_t offset,
             std::string what);
  ~ZstdStream();
  ZstdStream(const ZstdStream&) = delete;
  ZstdStream& operator=(const ZstdStream&) = delete;
  // Decodes the next out.size() bytes (produced() + out.size() <= total).
  void read(std::span<std::byte> out);
  // Checks that the frame ends after `total` bytes with nothing after it.
  void finish();
  std::uint64_t produced() const { return produced_; }
  std::uint64_t consumed() const;  // input bytes consumed so far

 private:
  FormatError fail(const std::string& msg) const;
  bool more_input();  // moves to the next piece of an Input; false at the frame's end
  struct State;
  std::unique_ptr<State> s_;
  std::uint64_t total_, produced_ = 0;
  std::string path_;
  std::uint64_t offset_;
  std::string what_;
};

}  // namespace ckb
