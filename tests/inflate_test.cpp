// codec/inflate.h: exact and bounded decoding of raw/zlib/gzip deflate streams, and the
// errors for streams that are larger, shorter, corrupt or followed by bytes.
#include "codec/inflate.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include <cstring>
#include <string>

#include "test_util.h"

namespace ckb {
namespace {

// Deflates `text` with zlib (windowBits -15 raw, 15 zlib, 31 gzip).
std::string deflate_text(const std::string& text, int window_bits) {
  z_stream zs{};
  EXPECT_EQ(deflateInit2(&zs, 6, Z_DEFLATED, window_bits, 8, Z_DEFAULT_STRATEGY), Z_OK);
  std::string out(deflateBound(&zs, text.size()) + 32, '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(text.data()));
  zs.avail_in = static_cast<uInt>(text.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&zs, Z_FINISH), Z_STREAM_END);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

std::span<const std::byte> bytes(const std::string& s) { return std::as_bytes(std::span(s)); }
std::string text_inflate(const Bytes& b) { return std::string(reinterpret_cast<const char*>(b.data()), b.size()); }

std::string sample() {
  std::string s;
  for (int i = 0; i < 5000; ++i) s += "row " + std::to_string(i * 7919 % 1000) + ";";
  return s;
}

std::string inflate_error_of(DeflateWrap wrap, const std::string& in, std::uint64_t limit, bool exact) {
  try {
    inflate_decode(wrap, bytes(in), limit, exact, "m.zarr/0.0", 4096, "chunk 0.0");
  } catch (const FormatError& e) {
    EXPECT_EQ(e.offset(), std::optional<std::uint64_t>(4096));
    return e.what();
  }
  return "";
}

TEST(Inflate, DecodesEachWrapExactlyAndBounded) {
  const std::string s = sample();
  const std::pair<DeflateWrap, int> wraps[] = {{DeflateWrap::Raw, -15}, {DeflateWrap::Zlib, 15}, {DeflateWrap::Gzip, 31}};
  for (auto [wrap, bits] : wraps) {
    const std::string z = deflate_text(s, bits);
    EXPECT_EQ(text_inflate(inflate_decode(wrap, bytes(z), s.size(), true, "p", 0, "w")), s);
    EXPECT_EQ(text_inflate(inflate_decode(wrap, bytes(z), s.size() + 100, false, "p", 0, "w")), s);
  }
}

TEST(Inflate, RefusesLargerShorterCorruptAndTrailing) {
  const std::string s = sample();
  const std::string z = deflate_text(s, 15);
  const std::string n = std::to_string(s.size());
  EXPECT_NE(inflate_error_of(DeflateWrap::Zlib, z, s.size() - 1, true).find("m.zarr/0.0 (offset 4096): chunk 0.0: inflates beyond its declared size of " +
                                                                     std::to_string(s.size() - 1) + " bytes"),
            std::string::npos);
  EXPECT_NE(inflate_error_of(DeflateWrap::Zlib, z, s.size() - 1, false).find("inflates beyond its declared size"), std::string::npos);
  EXPECT_NE(inflate_error_of(DeflateWrap::Zlib, z, s.size() + 1, true).find("chunk 0.0: corrupt stream: ends after " + n + " of " +
                                                                    std::to_string(s.size() + 1) + " bytes"),
            std::string::npos);
  EXPECT_NE(inflate_error_of(DeflateWrap::Zlib, z.substr(0, z.size() / 2), s.size(), true).find("corrupt stream: truncated after"),
            std::string::npos);
  std::string bad = z;
  bad[1] = static_cast<char>(bad[1] ^ 1);  // the header's check bits no longer match
  EXPECT_NE(inflate_error_of(DeflateWrap::Zlib, bad, s.size(), true).find("corrupt stream: incorrect header check"),
            std::string::npos);
  EXPECT_NE(inflate_error_of(DeflateWrap::Zlib, z + "abc", s.size(), true).find("3 trailing bytes after the stream"),
            std::string::npos);
  EXPECT_NE(inflate_error_of(DeflateWrap::Gzip, "", 10, false).find("corrupt stream: truncated after 0 bytes"), std::string::npos);
}

TEST(Inflate, StreamsIntoCallerWindowsAndReadsAPrefix) {
  const std::string s = sample();
  const std::string z = deflate_text(s, -15);
  InflateStream st(DeflateWrap::Raw, bytes(z), s.size(), "a.npz", 64, "member 'x.npy'");
  std::string got(s.size(), '\0');
  for (std::size_t pos = 0; pos < got.size(); pos += 1000) {
    const std::size_t n = std::min<std::size_t>(1000, got.size() - pos);
    st.read(std::as_writable_bytes(std::span(got.data() + pos, n)));
    EXPECT_EQ(st.produced(), pos + n);
  }
  st.finish();
  EXPECT_EQ(got, s);
  EXPECT_EQ(st.consumed(), z.size());

  InflateStream prefix(DeflateWrap::Raw, bytes(z), s.size(), "a.npz", 64, "member 'x.npy'");
  std::string head(10, '\0');
  prefix.read(std::as_writable_bytes(std::span(head)));
  EXPECT_EQ(head, s.substr(0, 10));
}

}  // namespace
}  // namespace ckb
