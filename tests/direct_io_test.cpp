// io/direct_io.h and its use by AtomicFile: large writes at unaligned offsets from unaligned
// memory, head/tail split, concurrent writers, and the CKB_IO=buffered switch. Expected file
// contents are built independently in memory, byte by byte.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <random>
#include <thread>
#include <vector>

#include "io/direct_io.h"
#include "io/output.h"
#include "test_util.h"

namespace ckb {
namespace {

std::vector<std::byte> direct_io_pattern(std::size_t n, unsigned seed) {
  std::vector<std::byte> v(n);
  std::mt19937 rng(seed);
  for (auto& b : v) b = static_cast<std::byte>(rng() & 0xff);
  return v;
}

std::vector<std::byte> direct_io_file_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::vector<char> c((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  std::vector<std::byte> out(c.size());
  std::memcpy(out.data(), c.data(), c.size());
  return out;
}

class DirectIoEnv {
 public:
  explicit DirectIoEnv(const char* value) {
    if (const char* old = std::getenv("CKB_IO")) old_ = old, had_ = true;
    if (value) ::setenv("CKB_IO", value, 1);
    else ::unsetenv("CKB_IO");
  }
  ~DirectIoEnv() {
    if (had_) ::setenv("CKB_IO", old_.c_str(), 1);
    else ::unsetenv("CKB_IO");
  }

 private:
  std::string old_;
  bool had_ = false;
};

TEST(DirectIo, SplitsIntoHeadAlignedBodyAndTail) {
  DirectIoEnv env(nullptr);
  test::TempDir dir;
  const std::string path = dir / "f.bin";
  { std::ofstream(path, std::ios::binary).put('\0'); }
  DirectWriter w(path);
  if (!w.active()) GTEST_FAIL() << "the test folder's filesystem refuses O_DIRECT: " << path;
  const std::size_t n = (3u << 20) + 777;
  auto data = direct_io_pattern(n + 1, 1);
  const std::uint64_t off = 100;
  // Memory one byte past an allocation's start: unaligned unlike the file offset, so the body
  // goes through the bounce buffer.
  const auto rest = w.write(off, std::span(data).subspan(1, n));
  EXPECT_EQ(rest.head_offset, 100u);
  EXPECT_EQ(rest.head.size(), 4096u - 100u);
  EXPECT_EQ(rest.head.data(), data.data() + 1);
  const std::uint64_t end = off + n;
  EXPECT_EQ(rest.tail_offset, end / 4096 * 4096);
  EXPECT_EQ(rest.tail.size(), end % 4096);
  // The body is on disk; the head and tail are not (the file is sparse there).
  auto got = direct_io_file_bytes(path);
  ASSERT_EQ(got.size(), end / 4096 * 4096);
  EXPECT_TRUE(std::equal(got.begin() + 4096, got.end(), data.begin() + 1 + (4096 - 100)));
  EXPECT_EQ(got[4095], std::byte{0});
}

TEST(DirectIo, SmallWritesAndBufferedModeComeBackWhole) {
  test::TempDir dir;
  const std::string path = dir / "f.bin";
  { std::ofstream(path, std::ios::binary).put('\0'); }
  auto data = direct_io_pattern(2u << 20, 2);
  {
    DirectIoEnv env(nullptr);
    DirectWriter w(path);
    const auto small = w.write(4096, std::span(data).first(DirectWriter::kMinDirect - 1));
    EXPECT_EQ(small.head.size(), DirectWriter::kMinDirect - 1);
    EXPECT_TRUE(small.tail.empty());
  }
  DirectIoEnv env("buffered");
  EXPECT_FALSE(direct_io_allowed());
  DirectWriter w(path);
  EXPECT_FALSE(w.active());
  const auto all = w.write(0, data);
  EXPECT_EQ(all.head_offset, 0u);
  EXPECT_EQ(all.head.size(), data.size());
  EXPECT_TRUE(all.tail.empty());
}

// Many threads writing disjoint, unaligned pieces of one AtomicFile (as the executor does),
// large and small, from aligned and unaligned memory: the committed file is exactly the
// expected bytes, in both I/O modes.
void atomic_file_pieces_equal_expected(const char* mode) {
  DirectIoEnv env(mode);
  test::TempDir dir;
  const std::string path = dir / "out.bin";
  const std::size_t total = 24u << 20;
  auto expected = direct_io_pattern(total, 3);
  std::vector<std::pair<std::size_t, std::size_t>> pieces;  // offset, length
  std::mt19937 rng(4);
  for (std::size_t off = 0; off < total;) {
    std::size_t len = (rng() % 3 == 0) ? rng() % 5000 + 1 : (rng() % (3u << 20)) + 1;
    len = std::min(len, total - off);
    pieces.emplace_back(off, len);
    off += len;
  }
  {
    AtomicFile f(path);
    f.truncate(total);
    std::atomic<std::size_t> next{0};
    auto work = [&] {
      std::vector<std::byte> copy;
      for (std::size_t k = next++; k < pieces.size(); k = next++) {
        const auto [off, len] = pieces[k];
        // Every other piece from a private copy at a different memory alignment.
        if (k % 2) {
          copy.assign(expected.begin() + off, expected.begin() + off + len);
          f.pwrite(off, std::span<const std::byte>(copy));
        } else {
          f.pwrite(off, std::span<const std::byte>(expected).subspan(off, len));
        }
      }
    };
    std::vector<std::thread> ts;
    for (int i = 0; i < 4; ++i) ts.emplace_back(work);
    for (auto& t : ts) t.join();
    f.commit();
  }
  const auto got = direct_io_file_bytes(path);
  ASSERT_EQ(got.size(), total);
  EXPECT_TRUE(got == expected);
}

TEST(DirectIo, AtomicFileConcurrentPiecesDirect) { atomic_file_pieces_equal_expected(nullptr); }
TEST(DirectIo, AtomicFileConcurrentPiecesBuffered) { atomic_file_pieces_equal_expected("buffered"); }

}  // namespace
}  // namespace ckb
