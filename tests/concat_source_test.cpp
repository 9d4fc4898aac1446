// core/concat_source.h: rows of several parts side by side (concat along an axis) and flat
// concatenation (Flax chunked arrays), read in pieces that straddle parts and rows.
#include "core/concat_source.h"

#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <string>

#include "core/errors.h"

namespace ckb {
namespace {

class TextSource final : public TensorSource {
 public:
  explicit TextSource(std::string s) : s_(std::move(s)) {}
  void read(std::uint64_t offset, std::span<std::byte> out) const override {
    ASSERT_LE(offset + out.size(), s_.size());
    std::memcpy(out.data(), s_.data() + offset, out.size());
  }
  const std::byte* contiguous() const override { return reinterpret_cast<const std::byte*>(s_.data()); }
  std::string describe() const override { return "text"; }

 private:
  std::string s_;
};

SourcePtr text(const std::string& s) { return std::make_shared<TextSource>(s); }

std::string read(const ConcatSource& c, std::uint64_t off, std::size_t n) {
  std::string out(n, '?');
  c.read(off, std::as_writable_bytes(std::span(out)));
  return out;
}

TEST(ConcatSource, RowsOfEachPartSideBySide) {
  // Two rows: part a gives 2 bytes per row, the empty part none, part b 3 bytes per row.
  ConcatSource c({{text("abcd"), 2}, {text(""), 0}, {text("XYZUVW"), 3}}, 2, "concat w");
  EXPECT_EQ(c.size(), 10u);
  EXPECT_EQ(read(c, 0, 10), "abXYZcdUVW");
  EXPECT_EQ(read(c, 1, 6), "bXYZcd");
  EXPECT_EQ(read(c, 4, 5), "ZcdUV");
  EXPECT_EQ(read(c, 9, 1), "W");
  EXPECT_EQ(c.contiguous(), nullptr);
}

TEST(ConcatSource, FlatChunksAndReadPastTheEnd) {
  ConcatSource c({{text("0123"), 4}, {text("4567"), 4}, {text("89"), 2}}, 1, "a.msgpack:big (3 chunks)");
  EXPECT_EQ(read(c, 0, 10), "0123456789");
  EXPECT_EQ(read(c, 3, 6), "345678");
  EXPECT_EQ(c.describe(), "a.msgpack:big (3 chunks)");
  try {
    read(c, 8, 3);
    FAIL() << "no error";
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("a.msgpack:big (3 chunks)"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("read past the end"), std::string::npos) << e.what();
  }
  ConcatSource one({{text("only"), 4}}, 1, "one");
  EXPECT_NE(one.contiguous(), nullptr);
}

}  // namespace
}  // namespace ckb
