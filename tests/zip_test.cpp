// Unit tests for io/zip: writer/reader round trip, alignment, forced zip64, deflated and
// data-descriptor members, and corrupt archives (bad EOCD, central directory, hostile names,
// zip bombs) that must fail with FormatError instead of crashing.
#include <zlib.h>

#include <cstring>
#include <thread>

#include "core/errors.h"
#include "io/zip.h"
#include "test_util.h"

namespace ckb {
namespace {

std::span<const std::byte> as_bytes_of(const std::string& s) { return std::as_bytes(std::span(s.data(), s.size())); }
std::string to_string(const Bytes& b) { return std::string(reinterpret_cast<const char*>(b.data()), b.size()); }
std::string to_string(std::span<const std::byte> b) { return std::string(reinterpret_cast<const char*>(b.data()), b.size()); }

std::uint32_t crc_of_zip(const std::string& s) {
  return static_cast<std::uint32_t>(::crc32(0, reinterpret_cast<const Bytef*>(s.data()), static_cast<uInt>(s.size())));
}

// Writes `members` through ZipWriter, feeding each member in 3 pieces in reverse order from
// several threads, and commits to `path`.
void write_zip_zip(const std::string& path, const std::vector<std::pair<std::string, std::string>>& members,
               bool force_zip64, std::uint64_t alignment = 64) {
  AtomicFile out(path);
  std::vector<ZipWriter::Member> ms;
  for (const auto& [n, d] : members) ms.push_back({n, d.size()});
  ZipWriter zw(out, ms, alignment, force_zip64);
  std::vector<std::thread> threads;
  for (std::size_t i = 0; i < members.size(); ++i) {
    threads.emplace_back([&, i] {
      const std::string& d = members[i].second;
      std::size_t a = d.size() / 3, b = 2 * d.size() / 3;
      zw.write(i, b, as_bytes_of(d).subspan(b));
      zw.write(i, a, as_bytes_of(d).subspan(a, b - a));
      zw.write(i, 0, as_bytes_of(d).subspan(0, a));
    });
  }
  for (auto& t : threads) t.join();
  zw.finish();
  out.commit();
}

std::vector<std::pair<std::string, std::string>> sample_members() {
  std::string big(100000, '\0');
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>((i * 7919) & 0xff);
  return {{"arch/data.pkl", "pickle-bytes"}, {"arch/data/0", big}, {"arch/empty", ""}, {"arch/version", "3\n"}};
}

void expect_round_trip(bool force_zip64) {
  test::TempDir dir;
  auto members = sample_members();
  write_zip_zip(dir / "a.zip", members, force_zip64);
  ZipReader zr(MappedFile::open(dir / "a.zip"));
  ASSERT_EQ(zr.entries().size(), members.size());
  for (std::size_t i = 0; i < members.size(); ++i) {
    const ZipEntry& e = zr.entries()[i];
    EXPECT_EQ(e.name, members[i].first);
    EXPECT_EQ(e.method, 0);
    EXPECT_EQ(e.uncompressed_size, members[i].second.size());
    EXPECT_EQ(e.data_offset % 64, 0u) << e.name;
    EXPECT_EQ(e.crc32, crc_of_zip(members[i].second)) << e.name;
    EXPECT_EQ(to_string(zr.stored_bytes(e)), members[i].second);
    EXPECT_EQ(to_string(zr.read(e)), members[i].second);
  }
  const ZipEntry* big = zr.find("arch/data/0");
  ASSERT_NE(big, nullptr);
  auto src = zr.member_source(*big, 10, 20);
  std::string part(20, '\0');
  src->read(0, std::as_writable_bytes(std::span(part.data(), part.size())));
  EXPECT_EQ(part, members[1].second.substr(10, 20));
  EXPECT_EQ(zr.find("nope"), nullptr);

  std::string raw = test::read_file(dir / "a.zip");
  // Padding field "FB" filled with 'Z' right before the aligned data of data.pkl.
  EXPECT_NE(raw.find("FB"), std::string::npos);
  const bool has_zip64_eocd = raw.find(std::string("PK\x06\x06", 4)) != std::string::npos;
  EXPECT_EQ(has_zip64_eocd, force_zip64);
}

TEST(Zip, RoundTripStoredAligned) { expect_round_trip(false); }
TEST(Zip, RoundTripForcedZip64) { expect_round_trip(true); }

TEST(Zip, WriterRejectsIncompleteMembers) {
  test::TempDir dir;
  AtomicFile out(dir / "x.zip");
  ZipWriter zw(out, {{"a", 10}}, 64, false);
  std::string five = "12345";
  zw.write(0, 0, as_bytes_of(five));
  EXPECT_THROW(zw.write(0, 8, as_bytes_of(five)), UsageError);
  EXPECT_THROW(zw.finish(), UsageError);
  EXPECT_THROW(ZipWriter(out, {{"../evil", 1}}, 64, false), FormatError);
}

TEST(Zip, ReadsTorchFixtureLayout) {
  ZipReader zr(MappedFile::open(test::fixture("torch_zip/model.pt")));
  const ZipEntry* pkl = zr.find("model/data.pkl");
  ASSERT_NE(pkl, nullptr);
  EXPECT_EQ(pkl->uncompressed_size, 1535u);
  const ZipEntry* d0 = zr.find("model/data/0");
  ASSERT_NE(d0, nullptr);
  EXPECT_EQ(d0->uncompressed_size, 4096u);
  EXPECT_EQ(d0->data_offset % 64, 0u);
  EXPECT_EQ(to_string(zr.read(*zr.find("model/byteorder"))), "little");
}

TEST(Zip, ReadsDeflatedNpzFixture) {
  ZipReader stored(MappedFile::open(test::fixture("npz/arrays.npz")));
  ZipReader deflated(MappedFile::open(test::fixture("npz/arrays_compressed.npz")));
  ASSERT_EQ(stored.entries().size(), deflated.entries().size());
  for (std::size_t i = 0; i < stored.entries().size(); ++i) {
    const auto& s = stored.entries()[i];
    const auto& d = deflated.entries()[i];
    EXPECT_EQ(s.name, d.name);
    EXPECT_EQ(d.method, 8);
    EXPECT_EQ(to_string(deflated.read(d)), to_string(stored.read(s))) << s.name;
    // Lazy source over the deflated member skipping a 128-byte header.
    auto src = deflated.member_source(d, 128, d.uncompressed_size - 128);
    std::string tail(d.uncompressed_size - 128, '\0');
    src->read(0, std::as_writable_bytes(std::span(tail.data(), tail.size())));
    EXPECT_EQ(tail, to_string(stored.stored_bytes(s)).substr(128));
  }
  EXPECT_THROW(deflated.stored_bytes(deflated.entries()[0]), FormatError);
}

// ---- hand-assembled archives -------------------------------------------------------------

void p16(std::string& s, std::uint16_t v) { s.append({static_cast<char>(v & 0xff), static_cast<char>(v >> 8)}); }
void p32(std::string& s, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

std::string raw_deflate(const std::string& in) {
  z_stream zs{};
  EXPECT_EQ(deflateInit2(&zs, 6, Z_DEFLATED, -MAX_WBITS, 8, Z_DEFAULT_STRATEGY), Z_OK);
  std::string out(deflateBound(&zs, in.size()) + 16, '\0');
  zs.next_in = const_cast<Bytef*>(reinterpret_cast<const Bytef*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&zs, Z_FINISH), Z_STREAM_END);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

struct RawMember {
  std::string name;
  std::string payload;  // bytes as stored in the file
  std::uint16_t method = 0;
  std::uint32_t crc = 0;
  std::uint32_t usize = 0;
  bool descriptor = false;  // local header sizes 0 + data descriptor, like torch/miniz
};

// A minimal classic zip (no zip64) with the given members.
std::string assemble(const std::vector<RawMember>& ms) {
  std::string out, cd;
  for (const auto& m : ms) {
    std::uint32_t lho = static_cast<std::uint32_t>(out.size());
    p32(out, 0x04034b50);
    p16(out, 20);
    p16(out, m.descriptor ? 0x0008 : 0);
    p16(out, m.method);
    p32(out, 0);
    p32(out, m.descriptor ? 0 : m.crc);
    p32(out, m.descriptor ? 0 : static_cast<std::uint32_t>(m.payload.size()));
    p32(out, m.descriptor ? 0 : m.usize);
    p16(out, static_cast<std::uint16_t>(m.name.size()));
    p16(out, 0);
    out += m.name + m.payload;
    if (m.descriptor) {
      p32(out, 0x08074b50);
      p32(out, m.crc);
      p32(out, static_cast<std::uint32_t>(m.payload.size()));
      p32(out, m.usize);
    }
    p32(cd, 0x02014b50);
    p16(cd, 20);
    p16(cd, 20);
    p16(cd, m.descriptor ? 0x0008 : 0);
    p16(cd, m.method);
    p32(cd, 0);
    p32(cd, m.crc);
    p32(cd, static_cast<std::uint32_t>(m.payload.size()));
    p32(cd, m.usize);
    p16(cd, static_cast<std::uint16_t>(m.name.size()));
    p16(cd, 0);
    p16(cd, 0);
    p16(cd, 0);
    p16(cd, 0);
    p32(cd, 0);
    p32(cd, lho);
    cd += m.name;
  }
  std::uint32_t cd_off = static_cast<std::uint32_t>(out.size());
  out += cd;
  p32(out, 0x06054b50);
  p16(out, 0);
  p16(out, 0);
  p16(out, static_cast<std::uint16_t>(ms.size()));
  p16(out, static_cast<std::uint16_t>(ms.size()));
  p32(out, static_cast<std::uint32_t>(cd.size()));
  p32(out, cd_off);
  p16(out, 0);
  return out;
}

RawMember stored_member(std::string name, std::string data, bool descriptor = false) {
  RawMember m;
  m.name = std::move(name);
  m.crc = crc_of_zip(data);
  m.usize = static_cast<std::uint32_t>(data.size());
  m.payload = std::move(data);
  m.descriptor = descriptor;
  return m;
}
RawMember deflated_member(std::string name, const std::string& data, std::uint32_t declared) {
  RawMember m;
  m.name = std::move(name);
  m.method = 8;
  m.crc = crc_of_zip(data);
  m.usize = declared;
  m.payload = raw_deflate(data);
  return m;
}

// Opens `bytes` as a zip and returns the FormatError message ("" if it opened and read fine).
std::string open_error(const std::string& bytes) {
  test::TempDir dir;
  test::write_file(dir / "z.zip", bytes);
  try {
    ZipReader zr(MappedFile::open(dir / "z.zip"));
    for (const auto& e : zr.entries()) zr.read(e);
  } catch (const FormatError& e) {
    EXPECT_EQ(e.path(), dir / "z.zip");
    return e.what();
  }
  return "";
}

TEST(Zip, DataDescriptorSizesComeFromCentralDirectory) {
  test::TempDir dir;
  test::write_file(dir / "d.zip", assemble({stored_member("a/data.pkl", "hello world", true)}));
  ZipReader zr(MappedFile::open(dir / "d.zip"));
  ASSERT_EQ(zr.entries().size(), 1u);
  EXPECT_EQ(to_string(zr.read(zr.entries()[0])), "hello world");
}

TEST(Zip, DeflateRoundTripAndBombs) {
  std::string data(50000, 'x');
  for (std::size_t i = 0; i < data.size(); i += 97) data[i] = static_cast<char>(i & 0x7f);
  EXPECT_EQ(open_error(assemble({deflated_member("ok", data, 50000)})), "");
  // Declared smaller than the real output: inflation must stop, not grow.
  EXPECT_NE(open_error(assemble({deflated_member("bomb", data, 1000)})).find("beyond its declared size"),
            std::string::npos);
  // Declared larger: truncated stream.
  EXPECT_NE(open_error(assemble({deflated_member("short", data, 60000)})).find("corrupt"), std::string::npos);
  // CRC mismatch.
  auto bad = deflated_member("crc", data, 50000);
  bad.crc ^= 1;
  EXPECT_NE(open_error(assemble({bad})).find("CRC-32 mismatch"), std::string::npos);
  auto bad_stored = stored_member("crc2", "abc");
  bad_stored.crc ^= 1;
  EXPECT_NE(open_error(assemble({bad_stored})).find("CRC-32 mismatch"), std::string::npos);
}

TEST(Zip, HostileNamesAreRejected) {
  EXPECT_NE(open_error(assemble({stored_member("../evil", "x")})).find("'..' component"), std::string::npos);
  EXPECT_NE(open_error(assemble({stored_member("a/../../evil", "x")})).find("'..' component"), std::string::npos);
  EXPECT_NE(open_error(assemble({stored_member("/etc/passwd", "x")})).find("absolute path"), std::string::npos);
  EXPECT_NE(open_error(assemble({stored_member(std::string("a\0b", 3), "x")})).find("NUL"), std::string::npos);
  EXPECT_NE(open_error(assemble({stored_member("a", "x"), stored_member("a", "y")})).find("duplicate"),
            std::string::npos);
  EXPECT_EQ(open_error(assemble({stored_member("a/..b/c..", "x")})), "");
}

TEST(Zip, CorruptEndRecordsAndDirectory) {
  const std::string good = assemble({stored_member("a/data.pkl", "hello"), stored_member("a/data/0", "0123456789")});
  ASSERT_EQ(open_error(good), "");
  EXPECT_NE(open_error("PK\x03\x04 short").find("too small"), std::string::npos);
  // No EOCD signature anywhere.
  std::string no_eocd = good;
  no_eocd[no_eocd.size() - 22] = 'X';
  EXPECT_NE(open_error(no_eocd).find("end-of-central-directory"), std::string::npos);
  // Central directory offset past the end.
  std::string bad_off = good;
  bad_off[bad_off.size() - 3] = '\x7f';
  EXPECT_NE(open_error(bad_off).find("outside the file"), std::string::npos);
  // Entry count larger than the directory can hold.
  std::string bad_count = good;
  bad_count[bad_count.size() - 12] = '\x50';
  bad_count[bad_count.size() - 14] = '\x50';
  EXPECT_NE(open_error(bad_count).find("entries"), std::string::npos);
  // Central directory signature smashed.
  std::string bad_sig = good;
  std::size_t cd = bad_sig.find(std::string("PK\x01\x02", 4));
  bad_sig[cd + 2] = 9;
  EXPECT_NE(open_error(bad_sig).find("central directory entry signature"), std::string::npos);
  // Local header offset pointing into the directory / past data.
  std::string bad_lho = good;
  bad_lho[cd + 42] = '\x70';
  EXPECT_NE(open_error(bad_lho).find("out of range"), std::string::npos);
  // Member size running into the central directory.
  std::string bad_size = good;
  bad_size[cd + 20] = '\x70';
  bad_size[cd + 24] = '\x70';
  EXPECT_NE(open_error(bad_size).find("runs past the central directory"), std::string::npos);
  // Zip64 sentinel without a locator.
  std::string no_loc = good;
  for (int i = 0; i < 4; ++i) no_loc[no_loc.size() - 6 + i] = '\xff';
  EXPECT_NE(open_error(no_loc).find("zip64 locator"), std::string::npos);
  // Every truncation of a valid zip fails cleanly (or still opens if only the tail moved).
  for (std::size_t n = 0; n < good.size(); ++n) (void)open_error(good.substr(0, n));
}

}  // namespace
}  // namespace ckb
