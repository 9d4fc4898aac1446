// zlib streaming inflate with a hard output limit, for codec/inflate.h.
#include "codec/inflate.h"

#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <limits>

namespace ckb {

struct InflateStream::State {
  z_stream zs{};
  std::span<const std::byte> in;
  std::uint64_t in_pos = 0;  // input bytes handed to zlib so far
  ~State() { inflateEnd(&zs); }
};

namespace {
constexpr std::size_t kStep = 1u << 30;  // zlib counts in uInt
}

InflateStream::InflateStream(DeflateWrap wrap, std::span<const std::byte> in, std::uint64_t total, std::string path,
                             std::uint64_t offset, std::string what)
    : total_(total), path_(std::move(path)), offset_(offset), what_(std::move(what)) {
  auto s = std::make_unique<State>();
  s->in = in;
  const int bits = wrap == DeflateWrap::Raw ? -MAX_WBITS : wrap == DeflateWrap::Gzip ? 16 + MAX_WBITS : MAX_WBITS;
  if (inflateInit2(&s->zs, bits) != Z_OK) throw fail("zlib inflateInit2 failed");
  s_ = std::move(s);
}

InflateStream::~InflateStream() = default;

FormatError InflateStream::fail(const std::string& msg) const { return FormatError(path_, what_ + ": " + msg, offset_); }

std::uint64_t InflateStream::consumed() const { return s_->in_pos - s_->zs.avail_in; }

std::size_t InflateStream::pump(std::span<std::byte> out) {
  z_stream& zs = s_->zs;
  std::size_t done = 0;
  while (done < out.size() && !ended_) {
    if (zs.avail_in == 0 && s_->in_pos < s_->in.size()) {
      const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(kStep, s_->in.size() - s_->in_pos));
      zs.next_in = const_cast<Bytef*>(reinterpret_cast<const Bytef*>(s_->in.data() + s_->in_pos));
      zs.avail_in = static_cast<uInt>(n);
      s_->in_pos += n;
    }
    const std::size_t step = std::min(kStep, out.size() - done);
    zs.next_out = reinterpret_cast<Bytef*>(out.data() + done);
    zs.avail_out = static_cast<uInt>(step);
    const int rc = inflate(&zs, Z_NO_FLUSH);
    const std::size_t got = step - zs.avail_out;
    done += got;
    produced_ += got;
    if (rc == Z_STREAM_END) ended_ = true;
    else if (rc == Z_BUF_ERROR && zs.avail_in == 0 && s_->in_pos == s_->in.size())
      throw fail("corrupt stream: truncated after " + std::to_string(produced_) + " bytes");
    else if (rc != Z_OK && rc != Z_BUF_ERROR)
      throw fail(std::string("corrupt stream: ") + (zs.msg ? zs.msg : "zlib error " + std::to_string(rc)));
  }
  return done;
}

void InflateStream::read(std::span<std::byte> out) {
  if (out.size() > total_ - produced_) throw fail("read past the declared size of " + std::to_string(total_) + " bytes");
  if (pump(out) != out.size())
    throw fail("corrupt stream: ends after " + std::to_string(produced_) + " of " + std::to_string(total_) +
               " bytes");
}

void InflateStream::finish(bool allow_trailing) {
  if (produced_ < total_)
    throw fail("corrupt stream: ends after " + std::to_string(produced_) + " of " + std::to_string(total_) +
               " bytes");
  if (!ended_) {
    std::byte probe{};  // one scratch byte: a stream that fills it is larger than declared
    if (pump({&probe, 1}) != 0)
      throw fail("inflates beyond its declared size of " + std::to_string(total_) + " bytes");
  }
  if (!allow_trailing && consumed() != s_->in.size())
    throw fail(std::to_string(s_->in.size() - consumed()) + " trailing bytes after the stream");
}

Bytes inflate_decode(DeflateWrap wrap, std::span<const std::byte> in, std::uint64_t limit, bool exact,
                     const std::string& path, std::uint64_t offset, const std::string& what) {
  if (limit >= std::numeric_limits<std::size_t>::max() / 2)
    throw FormatError(path, what + ": expected size of " + std::to_string(limit) + " bytes is absurd", offset);
  if (exact) {
    Bytes out(static_cast<std::size_t>(limit));
    InflateStream s(wrap, in, limit, path, offset, what);
    s.read(out.span());
    s.finish();
    return out;
  }
  // Up to `limit` bytes: decode into limit + 1 so an overrun is seen, then keep what came.
  Bytes buf(static_cast<std::size_t>(limit + 1));
  InflateStream s(wrap, in, limit + 1, path, offset, what);
  const std::size_t n = s.pump(buf.span());
  if (n > limit) throw s.fail("inflates beyond its declared size of " + std::to_string(limit) + " bytes");
  if (s.consumed() != in.size()) throw s.fail(std::to_string(in.size() - s.consumed()) + " trailing bytes after the stream");
  Bytes out(n);
  if (n) std::memcpy(out.data(), buf.data(), n);
  return out;
}

}  // namespace ckb
