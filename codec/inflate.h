// Bounded inflate (RFC 1951 deflate, raw or in a zlib or gzip wrapper), the one decoder for
// every deflate stream ckptbridge meets: zip members (raw; torch .pt, .npz), zarr zlib and
// gzip chunks, the .npy header at the start of a deflated .npz member. Input comes from
// untrusted files, so output never grows past the size the caller expects: the stream is
// decoded into buffers the caller owns (or one of the expected size), and a stream that wants
// to produce more is refused. Every error is FormatError(path, "<what>: ...", offset), so it
// names the file, the member or chunk, and the byte offset of its compressed data.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "core/errors.h"
#include "core/tensor.h"

namespace ckb {

enum class DeflateWrap { Raw, Zlib, Gzip };

// Incremental decoding of one deflate stream that must decode to exactly `total` bytes, into
// buffers the caller owns (a large zip member is checksummed window by window as it is
// produced; an npz header is read without inflating the rest of the member).
class InflateStream {
 public:
  InflateStream(DeflateWrap wrap, std::span<const std::byte> in, std::uint64_t total, std::string path,
                std::uint64_t offset, std::string what);
  ~InflateStream();
  InflateStream(const InflateStream&) = delete;
  InflateStream& operator=(const InflateStream&) = delete;
  // Decodes the next out.size() bytes (produced() + out.size() <= total). Throws FormatError
  // when the stream is corrupt or ends before them ("corrupt stream: truncated ...").
  void read(std::span<std::byte> out);
  // Checks that the stream ends after `total` bytes (one that would produce more "inflates
  // beyond its declared size of N bytes") and, unless `allow_trailing`, that no input
  // follows it.
  void finish(bool allow_trailing = false);
  std::uint64_t produced() const { return produced_; }
  std::uint64_t consumed() const;  // input bytes consumed so far

 private:
  friend Bytes inflate_decode(DeflateWrap, std::span<const std::byte>, std::uint64_t, bool, const std::string&,
                              std::uint64_t, const std::string&);
  // Decodes into `out` until it is full or the stream ends; returns the bytes written.
  std::size_t pump(std::span<std::byte> out);
  FormatError fail(const std::string& msg) const;
  struct State;
  std::unique_ptr<State> s_;
  std::uint64_t total_, produced_ = 0;
  bool ended_ = false;
  std::string path_;
  std::uint64_t offset_;
  std::string what_;
};

// Decodes one whole stream (trailing input is an error) producing at most `limit` bytes;
// `exact` = true requires exactly `limit` bytes (then decoded in place, no copy).
Bytes inflate_decode(DeflateWrap wrap, std::span<const std::byte> in, std::uint64_t limit, bool exact,
                     const std::string& path, std::uint64_t offset, const std::string& what);

}  // namespace ckb
