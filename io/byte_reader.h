// A bounds-checked little-endian cursor over bytes that came from a file. Every read that
// would run past the end throws FormatError naming the file, the absolute offset and what
// was being read, so parsers written on top of it cannot overrun a buffer.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>

#include "core/errors.h"

namespace ckb {

class ByteReader {
 public:
  // `base` is the absolute file offset of data[0], for messages.
  ByteReader(std::span<const std::byte> data, std::string path, std::uint64_t base = 0)
      : data_(data), path_(std::move(path)), base_(base) {}

  std::size_t pos() const { return pos_; }
  std::uint64_t abs_pos() const { return base_ + pos_; }
  std::size_t remaining() const { return data_.size() - pos_; }
  bool at_end() const { return pos_ == data_.size(); }
  const std::string& path() const { return path_; }

  void need(std::size_t n, const char* what) const {
    if (n > remaining())
      throw FormatError(path_, std::string("truncated ") + what + ": need " + std::to_string(n) + " bytes, " +
                                   std::to_string(remaining()) + " left",
                        abs_pos());
  }
  std::span<const std::byte> take(std::size_t n, const char* what) {
    need(n, what);
    auto s = data_.subspan(pos_, n);
    pos_ += n;
    return s;
  }
  std::string_view take_str(std::size_t n, const char* what) {
    auto s = take(n, what);
    return {reinterpret_cast<const char*>(s.data()), s.size()};
  }
  void seek(std::size_t p, const char* what) {
    if (p > data_.size()) throw FormatError(path_, std::string("offset out of range for ") + what, base_ + p);
    pos_ = p;
  }
  void skip(std::size_t n, const char* what) { take(n, what); }

  template <class T>
  T le(const char* what) {
    auto s = take(sizeof(T), what);
    T v;
    std::memcpy(&v, s.data(), sizeof(T));
    return v;  // little-endian host (checked at build time in byte_reader.cpp)
  }
  template <class T>
  T be(const char* what) {
    auto s = take(sizeof(T), what);
    T v{};
    for (std::size_t i = 0; i < sizeof(T); ++i) v = static_cast<T>((v << 8) | static_cast<T>(std::to_integer<std::uint8_t>(s[i])));
    return v;
  }
  std::uint8_t u8(const char* what) { return std::to_integer<std::uint8_t>(take(1, what)[0]); }

  [[noreturn]] void fail(const std::string& msg) const { throw FormatError(path_, msg, abs_pos()); }

 private:
  std::span<const std::byte> data_;
  std::string path_;
  std::uint64_t base_;
  std::size_t pos_ = 0;
};

}  // namespace ckb
