// Tests for the .npz reader/writer: numpy-written stored and deflated archives against their
// manifest, zero-copy reads, write -> read round trips with member bytes identical to
// numpy's, refusal of trees npz cannot hold, and hostile archives.
#include <cstring>

#include "core/errors.h"
#include "core/hash.h"
#include "formats/format.h"
#include "formats/numpy/npy.h"
#include "io/file.h"
#include "io/output.h"
#include "io/zip.h"
#include "test_util.h"

namespace ckb {
namespace {
using test::error_of;

using test::fixture;
using test::read_file;
using test::write_file;

// The fixture generator hashed np.ascontiguousarray(a), which turns the 0-d "scalar"
// (stored with shape () in scalar.npy) into shape [1]; bytes and sha256 are unaffected.
nlohmann::json npz_manifest() {
  auto m = test::load_json(fixture("npz/manifest.json"));
  EXPECT_EQ(m["tensors"]["scalar"]["shape"], nlohmann::json::array({1}));
  m["tensors"]["scalar"]["shape"] = nlohmann::json::array();
  return m;
}

std::vector<std::string> keys_of(const Node& root) {
  std::vector<std::string> k;
  for (const auto& ch : root.container().children) k.push_back(ch.key);
  return k;
}

std::vector<std::string> member_names(const std::string& path) {
  ZipReader z(MappedFile::open(path));
  std::vector<std::string> n;
  for (const auto& e : z.entries()) n.push_back(e.name);
  return n;
}

// A zip with the given (name, bytes) stored members.
void write_zip(const std::string& path, const std::vector<std::pair<std::string, std::string>>& members) {
  AtomicFile out(path);
  std::vector<ZipWriter::Member> m;
  for (const auto& [name, data] : members) m.push_back({name, data.size()});
  ZipWriter zw(out, m, 64);
  for (std::size_t i = 0; i < members.size(); ++i)
    if (!members[i].second.empty())
      zw.write(i, 0, std::as_bytes(std::span(members[i].second.data(), members[i].second.size())));
  zw.finish();
  out.commit();
}


TEST(NpzFixture, StoredMatchesManifestCrcVerified) {
  const std::string path = fixture("npz/arrays.npz");
  EXPECT_EQ(detect_format(path).name, "npz");
  Checkpoint ck = read_checkpoint(path);
  EXPECT_EQ(ck.format, "npz");
  test::expect_matches_manifest(ck, npz_manifest());
  // Keys are the member names minus ".npy", in archive order.
  std::vector<std::string> want;
  for (const auto& n : member_names(path)) want.push_back(n.substr(0, n.size() - 4));
  EXPECT_EQ(keys_of(ck.root), want);
  EXPECT_EQ(want.size(), 13u);
  // Stored members are read by range through the CRC-32 verifying source (io/zip.h), not
  // handed out as raw pointers into the mapping (which no check could see).
  for (const auto& [name, t] : tensor_list(ck.root)) {
    if (t->info.nbytes() > 0) {
      EXPECT_EQ(t->source->contiguous(), nullptr) << name;
    }
  }
}

TEST(NpzFixture, DeflatedMatchesManifest) {
  const std::string path = fixture("npz/arrays_compressed.npz");
  EXPECT_EQ(detect_format(path).name, "npz");
  ZipReader z(MappedFile::open(path));
  for (const auto& e : z.entries()) EXPECT_EQ(e.method, 8) << e.name;
  Checkpoint ck = read_checkpoint(path);
  test::expect_matches_manifest(ck, npz_manifest());
  // Partial read from the middle of a deflated member equals the same range of the stored one.
  Checkpoint stored = read_checkpoint(fixture("npz/arrays.npz"));
  const Tensor& a = ck.root.find("big")->tensor();
  const Tensor& b = stored.root.find("big")->tensor();
  std::string x(1000, '\0'), y(1000, '\0');
  a.source->read(123457, std::as_writable_bytes(std::span(x.data(), x.size())));
  b.source->read(123457, std::as_writable_bytes(std::span(y.data(), y.size())));
  EXPECT_EQ(x, y);
}

TEST(NpzRoundTrip, MembersAreByteIdenticalToNumpys) {
  test::TempDir dir;
  const std::string orig = fixture("npz/arrays.npz");
  ZipReader numpy_zip(MappedFile::open(orig));
  for (const std::string src : {"npz/arrays.npz", "npz/arrays_compressed.npz"}) {
    Checkpoint ck = read_checkpoint(fixture(src));
    const std::string out = dir / "out.npz";
    write_checkpoint(ck, out, format_by_name("npz"), {}, 3);
    EXPECT_EQ(detect_format(out).name, "npz");
    Checkpoint back = read_checkpoint(out);
    test::expect_matches_manifest(back, npz_manifest());
    EXPECT_EQ(keys_of(back.root), keys_of(ck.root));
    EXPECT_EQ(member_names(out), member_names(orig));
    // Every member (npy header + data) is exactly what np.savez stored; data 64-aligned.
    ZipReader ours(MappedFile::open(out));
    for (const auto& e : ours.entries()) {
      EXPECT_EQ(e.method, 0) << e.name;
      const ZipEntry* n = numpy_zip.find(e.name);
      ASSERT_NE(n, nullptr) << e.name;
      auto a = ours.stored_bytes(e);
      auto b = numpy_zip.stored_bytes(*n);
      EXPECT_EQ(sha256_hex(a), sha256_hex(b)) << e.name;
      EXPECT_EQ(e.data_offset % 64, 0u) << e.name;
    }
  }
}

TEST(NpzRoundTrip, NestedTreeUsesSlashNamesAndEmptyArchive) {
  test::TempDir dir;
  Checkpoint ck;
  auto& model = ck.root.add("model", Node::dict());
  Bytes b(6);
  std::memcpy(b.data(), "\x01\x00\x02\x00\x03\x00", 6);
  model.add("w", Node::tensor(make_memory_tensor({DType::I16, {3}}, std::move(b))));
  write_checkpoint(ck, dir / "n.npz", format_by_name("npz"));
  EXPECT_EQ(member_names(dir / "n.npz"), std::vector<std::string>{"model/w.npy"});
  Checkpoint back = read_checkpoint(dir / "n.npz");
  EXPECT_EQ(keys_of(back.root), std::vector<std::string>{"model/w"});
  Bytes got = back.root.find("model/w")->tensor().read_all();
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(got.data()), 6), std::string("\x01\x00\x02\x00\x03\x00", 6));
  // No tensors at all: an empty archive that reads back as an empty tree.
  Checkpoint empty;
  write_checkpoint(empty, dir / "e.npz", format_by_name("npz"));
  EXPECT_TRUE(format_by_name("npz").detect(dir / "e.npz"));
  EXPECT_EQ(read_checkpoint(dir / "e.npz").root.size(), 0u);
}

TEST(NpzWriter, RefusesNonTensorsAndUnnamableDtypes) {
  test::TempDir dir;
  const Format& npz = format_by_name("npz");
  Checkpoint ck;
  Bytes b(4);
  std::memset(b.data(), 0, 4);
  ck.root.add("w", Node::tensor(make_memory_tensor({DType::F32, {1}}, std::move(b))));
  ck.root.add("step", Node(std::int64_t{7}));
  ck.root.add("name", Node(std::string("x")));
  try {
    write_checkpoint(ck, dir / "x.npz", npz);
    ADD_FAILURE() << "no error";
  } catch (const MappingError& e) {
    EXPECT_NE(std::string(e.what()).find("not tensors: step (int), name (string)"), std::string::npos) << e.what();
  }
  // The Flax fixture has bfloat16 tensors: npz cannot name them.
  Checkpoint flax = read_checkpoint(fixture("flax_msgpack/params.msgpack"));
  try {
    write_checkpoint(flax, dir / "f.npz", npz);
    ADD_FAILURE() << "no error";
  } catch (const MappingError& e) {
    EXPECT_NE(std::string(e.what()).find("dtype BF16 has no NumPy"), std::string::npos) << e.what();
  }
  Checkpoint dots;
  Bytes c(1);
  dots.root.add("..", Node::tensor(make_memory_tensor({DType::U8, {1}}, std::move(c))));
  EXPECT_THROW(write_checkpoint(dots, dir / "d.npz", npz), MappingError);
  EXPECT_FALSE(path_exists(dir / "x.npz"));
  EXPECT_FALSE(path_exists(dir / "f.npz"));
}

TEST(NpzBadInput, EachIsAFormatErrorNamingTheFile) {
  test::TempDir dir;
  const std::string good = read_file(fixture("npz/big.npy"));
  auto expect_error = [&](const std::string& path, const std::string& needle, bool hash = false) {
    std::string msg = error_of([&] {
      Checkpoint ck = read_npz_file(path);
      if (hash) {
        for (const auto& [n, t] : tensor_list(ck.root)) tensor_sha256(*t);
      }
    });
    EXPECT_NE(msg.find(path), std::string::npos) << path << ": " << msg;
    EXPECT_NE(msg.find(needle), std::string::npos) << path << ": " << msg;
  };
  // Not all members are .npy: not detected as npz, and a FormatError when read as one.
  write_zip(dir / "txt.npz", {{"a.npy", good}, {"notes.txt", "hello"}});
  EXPECT_FALSE(format_by_name("npz").detect(dir / "txt.npz"));
  expect_error(dir / "txt.npz", "member 'notes.txt' is not a .npy array");
  // A member whose .npy data is cut short.
  write_zip(dir / "short.npz", {{"a.npy", good.substr(0, good.size() - 4)}});
  expect_error(dir / "short.npz", "npz member 'a.npy' is truncated");
  // A member with a header length past its end.
  write_zip(dir / "hdr.npz", {{"a.npy", good.substr(0, 40)}});
  expect_error(dir / "hdr.npz", "truncated .npy header");
  // Object arrays.
  std::string obj = good.substr(0, 128);
  obj.replace(obj.find("'<f4'"), 5, "'|O' ");
  write_zip(dir / "obj.npz", {{"o.npy", obj}});
  expect_error(dir / "obj.npz", "member 'o.npy' holds Python objects (dtype object); ckptbridge does not unpickle");
  // An archive cut in half loses its central directory.
  const std::string arch = read_file(fixture("npz/arrays.npz"));
  write_file(dir / "cut.npz", arch.substr(0, arch.size() / 2));
  expect_error(dir / "cut.npz", "end-of-central-directory");
  // Corrupt deflate data inside a member: the header still parses (lazy), the read fails.
  std::string comp = read_file(fixture("npz/arrays_compressed.npz"));
  {
    ZipReader z(MappedFile::open(fixture("npz/arrays_compressed.npz")));
    const ZipEntry* e = z.find("big.npy");
    ASSERT_NE(e, nullptr);
    for (std::uint64_t i = e->data_offset + e->compressed_size / 2; i < e->data_offset + e->compressed_size / 2 + 64; ++i)
      comp[i] = static_cast<char>(comp[i] ^ 0x5a);
  }
  write_file(dir / "bitrot.npz", comp);
  EXPECT_NO_THROW(read_npz_file(dir / "bitrot.npz"));
  expect_error(dir / "bitrot.npz", "big.npy", /*hash=*/true);
}

TEST(NpzDetect, TorchZipsAndOthersAreNotNpz) {
  const Format& npz = format_by_name("npz");
  EXPECT_FALSE(npz.detect(fixture("torch_zip/model.pt")));
  EXPECT_FALSE(npz.detect(fixture("npz/big.npy")));
  EXPECT_FALSE(npz.detect(fixture("flax_msgpack/params.msgpack")));
  EXPECT_FALSE(npz.detect(fixture("safetensors_single/model.safetensors")));
  EXPECT_FALSE(npz.detect(fixture("npz")));
  EXPECT_FALSE(npz.detect(fixture("npz/nope.npz")));
  test::TempDir dir;
  write_file(dir / "pk", "PK\x03\x04 garbage that is not a zip");
  EXPECT_FALSE(npz.detect(dir / "pk"));
}

}  // namespace
}  // namespace ckb
