// io/sequential_read.h (a file range read front to back in pieces fetched ahead) and the
// piecewise input of codec/zstd_decode.h's ZstdStream, which decodes a frame handed out a
// piece at a time (how a zstd chunk in object storage streams). Expected bytes are the
// inputs themselves; frames come from libzstd's one-shot compressor.
#include <gtest/gtest.h>
#include <zstd.h>

#include <stdexcept>

#include "codec/zstd_decode.h"
#include "core/errors.h"
#include "io/sequential_read.h"
#include "test_util.h"

namespace ckb {
namespace sequential_read_test {

std::string pattern(std::size_t n, std::uint32_t seed) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) {
    seed = seed * 1664525u + 1013904223u;
    s[i] = static_cast<char>('a' + (seed >> 24) % 7);  // compressible
  }
  return s;
}

std::string text(std::span<const std::byte> b) { return {reinterpret_cast<const char*>(b.data()), b.size()}; }

std::string compressed(const std::string& in) {
  std::string out(ZSTD_compressBound(in.size()), '\0');
  const std::size_t n = ZSTD_compress(out.data(), out.size(), in.data(), in.size(), 3);
  EXPECT_FALSE(ZSTD_isError(n));
  out.resize(n);
  return out;
}

TEST(SequentialRead, PiecesAreTheRangeInOrderAndJumpsGoForwardOnly) {
  test::TempDir tmp;
  const std::string content = pattern(1000, 7);
  test::write_file(tmp / "f", content);
  auto file = MappedFile::open(tmp / "f");
  SequentialRead r(file, 100, 503, "range", /*piece=*/64, /*ahead=*/2);
  EXPECT_EQ(r.size(), 503u);
  EXPECT_EQ(text(r.from(0)), content.substr(100, 64));
  EXPECT_EQ(text(r.from(10)), content.substr(110, 54));   // the rest of piece 0
  EXPECT_EQ(text(r.from(448)), content.substr(548, 55));  // a jump to the last (short) piece
  EXPECT_THROW(r.from(200), std::logic_error);            // behind the current piece
  SequentialRead all(file, 3, 997, "range", 64, 1);
  std::string got(997, '\0');
  all.read(0, std::as_writable_bytes(std::span<char>(got.data(), 500)));
  all.read(500, std::as_writable_bytes(std::span<char>(got.data() + 500, 497)));
  EXPECT_EQ(got, content.substr(3));
  EXPECT_THROW(all.from(997), std::logic_error);
}

TEST(SequentialRead, ARangeOutsideTheFileIsRefusedNamingIt) {
  test::TempDir tmp;
  test::write_file(tmp / "f", std::string(100, 'x'));
  auto file = MappedFile::open(tmp / "f");
  try {
    SequentialRead r(file, 90, 11, "chunk 'w/0'");
    FAIL() << "no error";
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find(tmp / "f"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("chunk 'w/0'"), std::string::npos) << e.what();
  }
}

// The frame handed out in pieces of `piece` bytes (the first at least the 18-byte header).
ZstdStream::Input pieces_of(const std::string& frame, std::size_t piece) {
  return [&frame, piece](std::uint64_t at) {
    const std::size_t n = std::min<std::size_t>(at == 0 ? std::max<std::size_t>(piece, 18) : piece, frame.size() - at);
    return std::as_bytes(std::span<const char>(frame.data() + at, n));
  };
}

TEST(ZstdStreamInput, AFrameInPiecesDecodesAsAWhole) {
  const std::string in = pattern(300000, 3), frame = compressed(in);
  for (std::size_t piece : {std::size_t{1}, std::size_t{7}, std::size_t{4096}, frame.size()}) {
    ZstdStream z(frame.size(), pieces_of(frame, piece), in.size(), "f", 0, "chunk");
    std::string out(in.size(), '\0');
    auto o = std::as_writable_bytes(std::span<char>(out.data(), out.size()));
    z.read(o.first(1000));
    z.read(o.subspan(1000));
    z.finish();
    EXPECT_EQ(out, in) << piece;
    EXPECT_EQ(z.consumed(), frame.size()) << piece;
  }
}

TEST(ZstdStreamInput, TruncatedOrTrailingInputIsAnError) {
  const std::string in = pattern(200000, 5), frame = compressed(in);
  const std::string cut = frame.substr(0, frame.size() - 10), longer = frame + "xyz";
  std::string out(in.size(), '\0');
  auto o = std::as_writable_bytes(std::span<char>(out.data(), out.size()));
  {
    ZstdStream z(cut.size(), pieces_of(cut, 999), in.size(), "f", 40, "chunk");
    try {
      z.read(o);
      FAIL() << "no error";
    } catch (const FormatError& e) {
      EXPECT_NE(std::string(e.what()).find("chunk: zstd frame truncated"), std::string::npos) << e.what();
    }
  }
  ZstdStream z(longer.size(), pieces_of(longer, 999), in.size(), "f", 40, "chunk");
  z.read(o);
  EXPECT_EQ(out, in);
  try {
    z.finish();
    FAIL() << "no error";
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("3 trailing bytes after the zstd frame"), std::string::npos) << e.what();
  }
}

}  // namespace sequential_read_test
}  // namespace ckb
