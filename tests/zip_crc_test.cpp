// ZIP CRC-32 verification (io/zip_crc.h, io/zip.h) on real archives: a flipped byte in a
// stored .npz member, a bit flip in a deflated member that still inflates, the same for a
// torch zip .pt, CRC-32s that differ between the central directory and the local header or
// data descriptor, torch's "no CRC recorded" zeros, and ranges read in parallel and out of
// order. Expected CRC values are computed here with zlib over the original and the corrupted
// bytes (never taken from ckptbridge's output); offsets come from walking the zip records
// by hand.
#include <zlib.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <random>
#include <thread>

#include "core/errors.h"
#include "core/hash.h"
#include "formats/format.h"
#include "formats/numpy/npy.h"
#include "io/zip.h"
#include "io/zip_crc.h"
#include "test_util.h"
#include "engine/execute.h"

namespace ckb {
namespace {

using test::error_of;
using test::fixture;
using test::read_file;
using test::write_file;

std::uint32_t crc_of(std::string_view s) {
  return static_cast<std::uint32_t>(::crc32(0, reinterpret_cast<const Bytef*>(s.data()), static_cast<uInt>(s.size())));
}
std::string hex8(std::uint32_t v) {
  char b[16];
  std::snprintf(b, sizeof b, "0x%08x", v);
  return b;
}
std::uint32_t get32(const std::string& s, std::size_t at) {
  std::uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(s[at + static_cast<std::size_t>(i)]);
  return v;
}
std::uint16_t get16(const std::string& s, std::size_t at) {
  return static_cast<std::uint16_t>(static_cast<unsigned char>(s[at]) | (static_cast<unsigned char>(s[at + 1]) << 8));
}
void put32(std::string& s, std::size_t at, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) s[at + static_cast<std::size_t>(i)] = static_cast<char>((v >> (8 * i)) & 0xff);
}

// A member located by walking the archive's own records (EOCD without comment or zip64,
// central directory, local header), independently of io/zip.
struct Rec {
  std::size_t central;   // central directory header
  std::size_t local;     // local header
  std::size_t data;      // first data byte
  std::size_t csize, usize;
  std::uint16_t method, flags;
};
Rec locate(const std::string& zip, const std::string& name) {
  const std::size_t eocd = zip.size() - 22;
  EXPECT_EQ(get32(zip, eocd), 0x06054b50u);
  std::size_t p = get32(zip, eocd + 16);
  const std::size_t n = get16(zip, eocd + 10);
  for (std::size_t i = 0; i < n; ++i) {
    EXPECT_EQ(get32(zip, p), 0x02014b50u);
    const std::size_t nl = get16(zip, p + 28), xl = get16(zip, p + 30), cl = get16(zip, p + 32);
    if (zip.compare(p + 46, nl, name) == 0 && nl == name.size()) {
      Rec r{};
      r.central = p;
      r.local = get32(zip, p + 42);
      r.method = get16(zip, p + 10);
      r.flags = get16(zip, r.local + 6);
      r.csize = get32(zip, p + 20);
      r.usize = get32(zip, p + 24);
      r.data = r.local + 30 + get16(zip, r.local + 26) + get16(zip, r.local + 28);
      return r;
    }
    p += 46 + nl + xl + cl;
  }
  ADD_FAILURE() << "no member " << name;
  return {};
}

// zlib raw inflate of exactly `usize` bytes; nullopt unless the stream ends cleanly there.
std::optional<std::string> inflate_exact(std::string_view comp, std::size_t usize) {
  std::string out(usize + 1, '\0');
  z_stream zs{};
  inflateInit2(&zs, -MAX_WBITS);
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(comp.data()));
  zs.avail_in = static_cast<uInt>(comp.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  const int rc = inflate(&zs, Z_FINISH);
  const std::size_t got = zs.total_out;
  inflateEnd(&zs);
  if (rc != Z_STREAM_END || got != usize) return std::nullopt;
  out.resize(usize);
  return out;
}

std::string mismatch(const std::string& member, const std::string& path, std::uint32_t stored, std::uint32_t computed) {
  return "CRC-32 mismatch in member '" + member + "' of " + path + ": stored " + hex8(stored) + ", computed " +
         hex8(computed);
}

void read_every_tensor(const Checkpoint& ck) {
  for (const auto& [n, t] : tensor_list(ck.root)) tensor_sha256(*t);
}

// ---- the verifier itself ------------------------------------------------------------------

std::string pseudo_random(std::size_t n, unsigned seed) {
  std::mt19937 g(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(g() & 0xff);
  return s;
}

TEST(ZipCrcVerifier, RangesInAnyOrderFromManyThreadsAndReReads) {
  test::TempDir dir;
  const std::string data = pseudo_random(1 << 20, 1);
  write_file(dir / "m", data);
  auto file = MappedFile::open(dir / "m");
  const std::uint32_t want = crc_of(data);
  for (bool good : {true, false}) {
    ZipCrcVerifier v(file, "m.bin", 0, data.size(), good ? want : want ^ 0x10u);
    // 256 ranges of 4 KiB, shuffled, split over 8 threads, plus overlapping re-reads.
    std::vector<std::size_t> order(256);
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::shuffle(order.begin(), order.end(), std::mt19937(7));
    std::atomic<int> thrown{0};
    std::vector<std::thread> ts;
    for (int t = 0; t < 8; ++t)
      ts.emplace_back([&, t] {
        for (std::size_t k = static_cast<std::size_t>(t); k < order.size(); k += 8) {
          const std::size_t off = order[k] * 4096, len = std::min<std::size_t>(4096 + 1000, data.size() - off);
          try {
            v.cover(off, std::as_bytes(std::span(data.data() + off, len)));
          } catch (const FormatError&) {
            ++thrown;
          }
        }
      });
    for (auto& t : ts) t.join();
    if (good) {
      EXPECT_TRUE(v.verified());
      EXPECT_EQ(thrown.load(), 0);
      EXPECT_NO_THROW(v.cover(5, std::as_bytes(std::span(data.data() + 5, 10))));
    } else {
      EXPECT_FALSE(v.verified());
      EXPECT_GE(thrown.load(), 1);
      // Sticky: every later read fails with the same message.
      const std::string msg = error_of([&] { v.cover(0, std::as_bytes(std::span(data.data(), 1))); });
      EXPECT_NE(msg.find(mismatch("m.bin", dir / "m", want ^ 0x10u, want)), std::string::npos) << msg;
    }
  }
}

TEST(ZipCrcVerifier, PartialCoverageIsNotVerifiedAndScatteredReadsFallBackToOnePass) {
  test::TempDir dir;
  const std::string data = pseudo_random(10000, 2);
  write_file(dir / "m", data);
  auto file = MappedFile::open(dir / "m");
  ZipCrcVerifier half(file, "h", 0, data.size(), crc_of(data) ^ 1u);
  EXPECT_NO_THROW(half.cover(0, std::as_bytes(std::span(data.data(), data.size() / 2))));
  EXPECT_FALSE(half.verified());  // the wrong CRC is never detected: the member was not read whole
  // Every other byte, one at a time (a transposed view): past kMaxRuns separate ranges the
  // whole member is checked in one pass over the mapping.
  for (std::uint32_t expected : {crc_of(data), crc_of(data) ^ 1u}) {
    ZipCrcVerifier v(file, "s", 0, data.size(), expected);
    std::string msg = "NO ERROR";
    for (std::size_t i = 0; i <= 2 * ZipCrcVerifier::kMaxRuns; i += 2) {
      msg = error_of([&] { v.cover(i, std::as_bytes(std::span(data.data() + i, 1))); });
      if (msg != "NO ERROR") break;
    }
    EXPECT_EQ(v.verified(), expected == crc_of(data));
    if (expected != crc_of(data)) {
      EXPECT_NE(msg.find("computed " + hex8(crc_of(data))), std::string::npos) << msg;
    }
  }
  // An empty member: its CRC must be 0.
  EXPECT_TRUE(ZipCrcVerifier(file, "e", 0, 0, 0).verified());
  ZipCrcVerifier bad_empty(file, "e", 0, 0, 5);
  EXPECT_NE(error_of([&] { bad_empty.cover_mapped(0, 0); }).find("stored 0x00000005, computed 0x00000000"),
            std::string::npos);
}

// ---- stored npz members ----------------------------------------------------------------

TEST(NpzCrc, FlippedByteInAStoredMemberFailsNamingArchiveAndMember) {
  test::TempDir dir;
  const std::string orig = read_file(fixture("npz/arrays.npz"));
  const Rec r = locate(orig, "embed.weight.npy");
  ASSERT_EQ(r.method, 0);
  const std::string member = orig.substr(r.data, r.usize);
  const std::uint32_t stored = crc_of(member);
  ASSERT_EQ(get32(orig, r.central + 16), stored);  // the fixture is intact

  // In the array data, and in the .npy header's padding (still a valid header: ' ' -> '\t').
  for (std::size_t at : {std::size_t{200}, std::size_t{100}}) {
    std::string bad = orig;
    if (at == 100) {
      ASSERT_EQ(bad[r.data + at], ' ');
      bad[r.data + at] = '\t';
    } else {
      bad[r.data + at] = static_cast<char>(bad[r.data + at] ^ 0x01);
    }
    const std::string path = dir / ("flip" + std::to_string(at) + ".npz");
    write_file(path, bad);
    const std::string want = mismatch("embed.weight.npy", path, stored, crc_of(bad.substr(r.data, r.usize)));
    Checkpoint ck = read_npz_file(path);  // lazy: the header still parses
    const std::string msg = error_of([&] { tensor_sha256(ck.root.find("embed.weight")->tensor()); });
    EXPECT_NE(msg.find(want), std::string::npos) << msg;
    EXPECT_NE(msg.find("(offset " + std::to_string(r.data) + ")"), std::string::npos) << msg;
    // Other members are intact and read.
    EXPECT_NO_THROW(tensor_sha256(ck.root.find("f64")->tensor()));

    // The CLI: exit 2, the message, no output.
    const std::string out = dir / ("out" + std::to_string(at) + ".safetensors");
    auto res = test::run_cli("convert " + path + " " + out);
    EXPECT_EQ(res.exit_code, 2) << res.err;
    EXPECT_NE(res.err.find(want), std::string::npos) << res.err;
    EXPECT_FALSE(path_exists(out));
    auto leftovers = test::run_cli("convert " + path + " " + dir / "o.npz" + " --threads 1");
    EXPECT_EQ(leftovers.exit_code, 2) << leftovers.err;
    EXPECT_FALSE(path_exists(dir / "o.npz"));
  }
}

TEST(NpzCrc, ArrayWithoutDataIsVerifiedWhenOpened) {
  // A 0-element array: no read ever reaches its member, so its header is checked at open.
  test::TempDir dir;
  Checkpoint ck;
  ck.root.add("empty", Node::tensor(make_memory_tensor({DType::F32, {0, 3}}, Bytes(0))));
  write_checkpoint(ck, dir / "e.npz", format_by_name("npz"));
  std::string bytes = read_file(dir / "e.npz");
  const Rec r = locate(bytes, "empty.npy");
  const std::size_t pad = bytes.find("}", r.data) + 2;  // a padding space of the header
  ASSERT_EQ(bytes[pad], ' ');
  const std::uint32_t stored = crc_of(bytes.substr(r.data, r.usize));
  bytes[pad] = '\t';
  write_file(dir / "bad.npz", bytes);
  const std::string msg = error_of([&] { read_npz_file(dir / "bad.npz"); });
  EXPECT_NE(msg.find(mismatch("empty.npy", dir / "bad.npz", stored, crc_of(bytes.substr(r.data, r.usize)))),
            std::string::npos)
      << msg;
}

// ---- deflated npz members ----------------------------------------------------------------

// A single bit flip in the member's compressed bytes after which raw inflate still ends
// cleanly at the declared size with different bytes (searched deterministically from the
// middle of the stream on).
struct SilentFlip {
  std::size_t byte;
  int bit;
  std::string inflated;
};
std::optional<SilentFlip> find_silent_flip(const std::string& zip, const Rec& r, const std::string& good) {
  for (std::size_t i = r.csize / 2; i < r.csize; ++i)
    for (int b = 0; b < 8; ++b) {
      std::string comp = zip.substr(r.data, r.csize);
      comp[i] = static_cast<char>(comp[i] ^ (1 << b));
      auto out = inflate_exact(comp, r.usize);
      if (out && *out != good) return SilentFlip{r.data + i, b, *out};
    }
  return std::nullopt;
}

TEST(NpzCrc, BitFlipInADeflatedMemberThatStillInflates) {
  test::TempDir dir;
  const std::string orig = read_file(fixture("npz/arrays_compressed.npz"));
  const std::string stored_zip = read_file(fixture("npz/arrays.npz"));
  const Rec r = locate(orig, "big.npy");
  ASSERT_EQ(r.method, 8);
  const Rec s = locate(stored_zip, "big.npy");
  const std::string good = stored_zip.substr(s.data, s.usize);  // the same member, stored
  ASSERT_EQ(inflate_exact(std::string_view(orig).substr(r.data, r.csize), r.usize), good);
  auto flip = find_silent_flip(orig, r, good);
  ASSERT_TRUE(flip.has_value());
  std::string bad = orig;
  bad[flip->byte] = static_cast<char>(bad[flip->byte] ^ (1 << flip->bit));
  write_file(dir / "d.npz", bad);
  const std::string want = mismatch("big.npy", dir / "d.npz", crc_of(good), crc_of(flip->inflated));
  Checkpoint ck = read_npz_file(dir / "d.npz");
  EXPECT_NE(error_of([&] { read_every_tensor(ck); }).find(want), std::string::npos);
  ZipReader zr(MappedFile::open(dir / "d.npz"));
  EXPECT_NE(error_of([&] { zr.read(*zr.find("big.npy")); }).find(want), std::string::npos);
  auto res = test::run_cli("convert " + dir / "d.npz" + " " + dir / "o.safetensors");
  EXPECT_EQ(res.exit_code, 2) << res.err;
  EXPECT_NE(res.err.find(want), std::string::npos) << res.err;
  EXPECT_FALSE(path_exists(dir / "o.safetensors"));
}

// ---- torch zip ---------------------------------------------------------------------------

TEST(TorchZipCrc, FlippedStorageAndPickleBytes) {
  test::TempDir dir;
  const std::string orig = read_file(fixture("torch_zip/model.pt"));
  const Rec st = locate(orig, "model/data/0");
  ASSERT_EQ(st.method, 0);
  ASSERT_EQ(st.flags & 8, 8);  // torch writes data descriptors
  std::string bad = orig;
  bad[st.data + 1234] = static_cast<char>(bad[st.data + 1234] ^ 0x80);
  write_file(dir / "s.pt", bad);
  const std::string want =
      mismatch("model/data/0", dir / "s.pt", crc_of(orig.substr(st.data, st.usize)), crc_of(bad.substr(st.data, st.usize)));
  Checkpoint ck = read_checkpoint(dir / "s.pt");
  EXPECT_NE(error_of([&] { read_every_tensor(ck); }).find(want), std::string::npos);
  auto res = test::run_cli("convert " + dir / "s.pt" + " " + dir / "o.safetensors");
  EXPECT_EQ(res.exit_code, 2) << res.err;
  EXPECT_NE(res.err.find(want), std::string::npos) << res.err;
  EXPECT_FALSE(path_exists(dir / "o.safetensors"));

  // The pickle is read whole before it is parsed: the open itself fails.
  const Rec pk = locate(orig, "model/data.pkl");
  std::string badp = orig;
  const std::size_t at = badp.find("embed.weight", pk.data);
  ASSERT_LT(at, pk.data + pk.usize);
  badp[at] = 'E';
  write_file(dir / "p.pt", badp);
  EXPECT_NE(error_of([&] { read_checkpoint(dir / "p.pt"); })
                .find(mismatch("model/data.pkl", dir / "p.pt", crc_of(orig.substr(pk.data, pk.usize)),
                               crc_of(badp.substr(pk.data, pk.usize)))),
            std::string::npos);
}

TEST(TorchZipCrc, DataDescriptorDisagreeingWithTheCentralDirectory) {
  test::TempDir dir;
  std::string pt = read_file(fixture("torch_zip/model.pt"));
  const Rec st = locate(pt, "model/data/0");
  const std::size_t desc = st.data + st.csize;
  ASSERT_EQ(get32(pt, desc), 0x08074b50u);
  const std::uint32_t crc = get32(pt, desc + 4);
  ASSERT_EQ(crc, get32(pt, st.central + 16));
  put32(pt, desc + 4, crc ^ 0x100u);
  write_file(dir / "d.pt", pt);
  const std::string msg = error_of([&] { read_every_tensor(read_checkpoint(dir / "d.pt")); });
  EXPECT_NE(msg.find("CRC-32 of member 'model/data/0' of " + dir / "d.pt" + " differs between the central directory (" +
                     hex8(crc) + ") and the local header (" + hex8(crc ^ 0x100u) + ")"),
            std::string::npos)
      << msg;
}

// torch.save under torch.serialization.set_crc32_options(False) records CRC-32 0 everywhere;
// torch.load reads such files, and so does ckptbridge (without a check).
TEST(TorchZipCrc, ZeroCrcsMeanNoneRecorded) {
  test::TempDir dir;
  std::string pt = read_file(fixture("torch_zip/model.pt"));
  const std::size_t eocd = pt.size() - 22;
  std::size_t p = get32(pt, eocd + 16);
  for (std::size_t i = 0, n = get16(pt, eocd + 10); i < n; ++i) {
    const std::size_t local = get32(pt, p + 42);
    const std::size_t data = local + 30 + get16(pt, local + 26) + get16(pt, local + 28);
    const std::size_t desc = data + get32(pt, p + 20);
    if (get16(pt, local + 6) & 8) {  // torch writes a data descriptor for every non-empty record
      ASSERT_EQ(get32(pt, desc), 0x08074b50u);
      put32(pt, desc + 4, 0);
    }
    put32(pt, p + 16, 0);
    p += 46 + get16(pt, p + 28) + get16(pt, p + 30) + get16(pt, p + 32);
  }
  write_file(dir / "z.pt", pt);
  Checkpoint ck = read_checkpoint(dir / "z.pt");
  test::expect_matches_manifest(ck, test::load_json(fixture("torch_zip/manifest.json")));
  // The same zeros in an npz are a mismatch (NumPy's zipfile checks them too).
  std::string npz = read_file(fixture("npz/arrays.npz"));
  const Rec r = locate(npz, "f64.npy");
  put32(npz, r.central + 16, 0);
  put32(npz, r.local + 14, 0);
  write_file(dir / "z.npz", npz);
  EXPECT_NE(error_of([&] { read_every_tensor(read_npz_file(dir / "z.npz")); })
                .find(mismatch("f64.npy", dir / "z.npz", 0, crc_of(npz.substr(r.data, r.usize)))),
            std::string::npos);
}

// ---- which CRC counts --------------------------------------------------------------------

TEST(ZipCrc, CentralDirectoryIsAuthoritativeAndMustAgreeWithTheLocalHeader) {
  test::TempDir dir;
  const std::string orig = read_file(fixture("npz/arrays.npz"));
  const Rec r = locate(orig, "f64.npy");
  const std::uint32_t crc = crc_of(orig.substr(r.data, r.usize));
  ASSERT_EQ(get32(orig, r.local + 14), crc);
  const std::uint32_t other = crc ^ 0x8000u;
  struct Case {
    const char* name;
    bool central, local;
    std::string want;
  };
  const std::string differs = "CRC-32 of member 'f64.npy' of ";
  for (const Case& c : {Case{"central.npz", true, false, ""}, Case{"local.npz", false, true, ""},
                        Case{"both.npz", true, true, ""}}) {
    std::string z = orig;
    if (c.central) put32(z, r.central + 16, other);
    if (c.local) put32(z, r.local + 14, other);
    const std::string path = dir / c.name;
    write_file(path, z);
    std::string want;
    if (c.central && c.local) want = mismatch("f64.npy", path, other, crc);
    else
      want = differs + path + " differs between the central directory (" + hex8(c.central ? other : crc) +
             ") and the local header (" + hex8(c.local ? other : crc) + ")";
    // Detection still works (the archive's structure is fine); reading the member fails.
    EXPECT_EQ(detect_format(path).name, "npz");
    const std::string msg = error_of([&] { read_every_tensor(read_npz_file(path)); });
    EXPECT_NE(msg.find(want), std::string::npos) << c.name << ": " << msg;
  }
}

// ---- parallel range reads ------------------------------------------------------------------

TEST(NpzCrc, ParallelRangeReadsVerify) {
  test::TempDir dir;
  const std::size_t n = 1 << 20;  // 4 MiB of float32
  Bytes b(n * 4);
  auto* f = reinterpret_cast<float*>(b.data());
  for (std::size_t i = 0; i < n; ++i) f[i] = static_cast<float>(i) * 0.25f;
  const std::string want_sha = sha256_hex(b.span());
  Checkpoint ck;
  ck.root.add("w", Node::tensor(make_memory_tensor({DType::F32, {1024, 1024}}, std::move(b))));
  write_checkpoint(ck, dir / "big.npz", format_by_name("npz"));

  ExecOptions eo;
  eo.threads = 4;
  eo.chunk_bytes = 64 << 10;
  {
    Checkpoint in = read_npz_file(dir / "big.npz");
    const Tensor& t = in.root.find("w")->tensor();
    EXPECT_EQ(t.source->contiguous(), nullptr);  // read through the verifying source
    EXPECT_TRUE(t.source->parallel_reads());     // ... which the executor splits over workers
    execute(in.root, format_by_name("safetensors"), dir / "ok.safetensors", {}, eo);
    EXPECT_EQ(tensor_sha256(read_checkpoint(dir / "ok.safetensors").root.find("w")->tensor()), want_sha);
  }
  std::string z = read_file(dir / "big.npz");
  const Rec r = locate(z, "w.npy");
  const std::uint32_t stored = crc_of(z.substr(r.data, r.usize));
  z[r.data + r.usize / 2 + 3] = static_cast<char>(z[r.data + r.usize / 2 + 3] ^ 0x40);
  write_file(dir / "bad.npz", z);
  Checkpoint in = read_npz_file(dir / "bad.npz");
  const std::string msg =
      error_of([&] { execute(in.root, format_by_name("safetensors"), dir / "bad.safetensors", {}, eo); });
  EXPECT_NE(msg.find(mismatch("w.npy", dir / "bad.npz", stored, crc_of(z.substr(r.data, r.usize)))), std::string::npos)
      << msg;
  EXPECT_FALSE(path_exists(dir / "bad.safetensors"));
}

}  // namespace
}  // namespace ckb

namespace ckb {
namespace {

// Two edits the mutation test found reading silently (NumPy refuses both): a member renamed
// in the central directory only, and an end-of-central-directory entry count lowered to 0.
std::string npz_with(const std::function<void(std::string&)>& edit) {
  std::string z = test::read_file(test::fixture("peft_llama_lora/logits.npz"));
  edit(z);
  return z;
}

TEST(ZipDirectory, CentralNameMustMatchTheLocalHeader) {
  test::TempDir dir;
  const std::string p = dir / "renamed.npz";
  test::write_file(p, npz_with([](std::string& z) {
    const auto cd = z.rfind(std::string("PK\x01\x02", 4));
    ASSERT_NE(cd, std::string::npos);
    z[cd + 46] ^= 0x20;  // first byte of the name: a case flip
  }));
  const std::string err = test::error_of([&] { read_checkpoint(p); });
  EXPECT_NE(err.find("differs from its local header"), std::string::npos) << err;
  EXPECT_NE(err.find(p), std::string::npos) << err;
}

TEST(ZipDirectory, EntryCountMustCoverTheDirectory) {
  test::TempDir dir;
  const std::string p = dir / "hidden.npz";
  test::write_file(p, npz_with([](std::string& z) {
    const auto eocd = z.rfind(std::string("PK\x05\x06", 4));
    ASSERT_NE(eocd, std::string::npos);
    for (int i = 8; i < 12; ++i) z[eocd + i] = 0;  // entries on this disk, entries in all
  }));
  const std::string err = test::error_of([&] { read_checkpoint(p); });
  EXPECT_NE(err.find("declares 0 entries, but the central directory has"), std::string::npos) << err;
}

}  // namespace
}  // namespace ckb
