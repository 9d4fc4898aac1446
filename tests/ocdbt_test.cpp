// Tests of the OCDBT reader (io/ocdbt): crc32c and varint vectors, the worked examples of
// formats.md §2.4 / §2.10, hand-built databases that exercise interior nodes, subtree
// prefixes and every constraint the reader enforces, and the real Orbax databases.
#include <zstd.h>

#include <cstring>
#include <filesystem>

#include "core/errors.h"
#include "io/byte_reader.h"
#include "codec/crc32c.h"
#include "io/ocdbt/framing.h"
#include "io/ocdbt/ocdbt_kvstore.h"
#include "io/ocdbt/varint.h"
#include "test_util.h"

namespace ckb {
namespace {

using ocdbt::OcdbtKvStore;

std::span<const std::byte> as_bytes(const std::string& s) { return std::as_bytes(std::span(s.data(), s.size())); }

void put_le(std::string& s, std::uint64_t v, int n) {
  for (int i = 0; i < n; ++i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}

// Frames `body` as in formats.md §2.3 (compression 0 raw, 1 zstd of the body) with the
// writer's encoder, so the worked examples below also pin the writer's framing bytes.
// A compression value other than 0/1 is framed by hand (the encoder cannot produce one).
std::string frame(std::uint32_t magic, const std::string& body, int compression = 0) {
  if (compression <= 1) return ocdbt::encode_framed(magic, body, compression == 1 ? std::optional<int>(3) : std::nullopt);
  std::string s = ocdbt::encode_framed(magic, body, std::nullopt);
  s[13] = static_cast<char>(compression);
  s.resize(s.size() - 4);
  put_le(s, ocdbt::crc32c(as_bytes(s)), 4);
  return s;
}

std::string table(const std::vector<std::string>& paths) {  // base_len 0, prefix 0
  std::string s = ocdbt::encode_varint(paths.size());
  for (std::size_t i = 1; i < paths.size(); ++i) s += ocdbt::encode_varint(0);
  for (const auto& p : paths) s += ocdbt::encode_varint(p.size());
  for (std::size_t i = 0; i < paths.size(); ++i) s += ocdbt::encode_varint(0);
  for (const auto& p : paths) s += p;
  return s;
}

struct TLeaf {
  std::string key, value;
  bool out_of_line = false;
  std::uint64_t offset = 0;
};

std::string leaf_body(const std::vector<TLeaf>& e, const std::string& file = "d/f") {
  std::string s(1, '\0');
  s += table({file});
  s += ocdbt::encode_varint(e.size());
  for (std::size_t i = 1; i < e.size(); ++i) s += ocdbt::encode_varint(0);
  for (const auto& x : e) s += ocdbt::encode_varint(x.key.size());
  for (const auto& x : e) s += x.key;
  for (const auto& x : e) s += ocdbt::encode_varint(x.value.size());
  for (const auto& x : e) s.push_back(x.out_of_line ? 1 : 0);
  for (const auto& x : e)
    if (x.out_of_line) s += ocdbt::encode_varint(0);
  for (const auto& x : e)
    if (x.out_of_line) s += ocdbt::encode_varint(x.offset);
  for (const auto& x : e)
    if (!x.out_of_line) s += x.value;
  return s;
}

struct TChild {
  std::string key;
  std::uint64_t subtree_prefix, offset, length;
};

std::string interior_body(int height, const std::vector<TChild>& c) {
  std::string s(1, static_cast<char>(height));
  s += table({"d/f"});
  s += ocdbt::encode_varint(c.size());
  for (std::size_t i = 1; i < c.size(); ++i) s += ocdbt::encode_varint(0);
  for (const auto& x : c) s += ocdbt::encode_varint(x.key.size());
  for (const auto& x : c) s += ocdbt::encode_varint(x.subtree_prefix);
  for (const auto& x : c) s += x.key;
  for (std::size_t k = 0; k < c.size(); ++k) s += ocdbt::encode_varint(0);
  for (const auto& x : c) s += ocdbt::encode_varint(x.offset);
  for (const auto& x : c) s += ocdbt::encode_varint(x.length);
  for (int col = 0; col < 3; ++col)
    for (std::size_t k = 0; k < c.size(); ++k) s += ocdbt::encode_varint(1);
  return s;
}

std::string manifest_body(int root_height, std::uint64_t off, std::uint64_t len, const std::string& file = "d/f") {
  std::string s(16, '\x11');  // uuid
  s.push_back(0);             // kind single
  s += ocdbt::encode_varint(1024) + ocdbt::encode_varint(100000000);
  s.push_back(4);  // arity
  s += ocdbt::encode_varint(0);
  s += table({file});
  s += ocdbt::encode_varint(1) + ocdbt::encode_varint(1);
  s.push_back(static_cast<char>(root_height));
  s += ocdbt::encode_varint(0) + ocdbt::encode_varint(off) + ocdbt::encode_varint(len);
  s += ocdbt::encode_varint(2) + ocdbt::encode_varint(len) + ocdbt::encode_varint(0);
  put_le(s, 1234567890, 8);
  s += ocdbt::encode_varint(0);
  return s;
}

// Writes <dir>/d/f = data and <dir>/manifest.ocdbt = framed manifest.
void write_db(const test::TempDir& dir, const std::string& data, const std::string& manifest) {
  std::filesystem::create_directories(dir / "d");
  test::write_file(dir / "d/f", data);
  test::write_file(dir / "manifest.ocdbt", manifest);
}

std::string value_str(const std::optional<KvValue>& v) { return v ? std::string(v->text()) : "<absent>"; }

template <class F>
std::string format_error_of(F&& f) {
  try {
    f();
  } catch (const FormatError& e) {
    return e.what();
  }
  return "<no FormatError>";
}

TEST(OcdbtCrc32c, KnownVectors) {
  EXPECT_EQ(ocdbt::crc32c(as_bytes("123456789")), 0xE3069283u);
  EXPECT_EQ(ocdbt::crc32c({}), 0u);
  EXPECT_EQ(ocdbt::crc32c(as_bytes(std::string(32, '\0'))), 0x8A9136AAu);  // RFC 3720 B.4
  EXPECT_EQ(ocdbt::crc32c(as_bytes(std::string(32, '\xff'))), 0x62A8AB43u);
  // Continuation equals one pass, at every split point (exercises the 8-byte loop and tail).
  const std::string text = "The quick brown fox jumps over the lazy dog, twice over.";
  const auto whole = ocdbt::crc32c(as_bytes(text));
  for (std::size_t k = 0; k <= text.size(); ++k)
    EXPECT_EQ(ocdbt::crc32c(as_bytes(text.substr(k)), ocdbt::crc32c(as_bytes(text.substr(0, k)))), whole) << k;
  // §3.2.3: the 16-byte shard index 00x8 11 00x7 has crc32c bytes 79 ee 3a 8f.
  std::string idx(16, '\0');
  idx[8] = 0x11;
  EXPECT_EQ(ocdbt::crc32c(as_bytes(idx)), 0x8F3AEE79u);
}

TEST(OcdbtVarint, DecodesAndRejectsMalformed) {
  struct V {
    std::string bytes;
    std::uint64_t value;
  };
  const std::vector<V> cases = {{test::byte_string({0x00}), 0},
                                {test::byte_string({0x7F}), 127},
                                {test::byte_string({0x80, 0x01}), 128},
                                {test::byte_string({0xAC, 0x02}), 300},
                                {test::byte_string({0x80, 0x08}), 1024},                    // max_inline_value_bytes
                                {test::byte_string({0x80, 0xC2, 0xD7, 0x2F}), 100000000},   // max_decoded_node_bytes
                                {test::byte_string({0x8F, 0x05}), 655},                     // §2.4 length
                                {test::byte_string({0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01}), ~0ull}};
  for (const auto& c : cases) {
    ByteReader r(as_bytes(c.bytes), "mem");
    EXPECT_EQ(ocdbt::read_varint(r, "v"), c.value);
    EXPECT_TRUE(r.at_end());
    EXPECT_EQ(ocdbt::encode_varint(c.value), c.bytes);
  }
  auto bad = [](const std::string& b) {
    ByteReader r(as_bytes(b), "mem");
    return format_error_of([&] { ocdbt::read_varint(r, "v"); });
  };
  EXPECT_NE(bad(test::byte_string({0x80})).find("truncated varint"), std::string::npos);
  EXPECT_NE(bad(test::byte_string({0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x02})).find("overflows"),
            std::string::npos);
  EXPECT_NE(bad(std::string(10, '\x80') + '\x01').find("mem"), std::string::npos);
  const std::string big = ocdbt::encode_varint(65536);
  ByteReader r(as_bytes(big), "mem");
  EXPECT_THROW(ocdbt::read_varint16(r, "len"), FormatError);
}

// formats.md §2.10: "a" -> "xy" inline, "bc" -> "hello" out of line, node at offset 5.
TEST(OcdbtWorkedExample, MinimalDatabaseFromTheSpec) {
  const std::string file = "d/0123456789abcdef0123456789abcdef";
  const std::string body = leaf_body({{"a", "xy"}, {"bc", "hello", true, 0}}, file);
  const std::string node = frame(ocdbt::kBtreeNodeMagic, body);
  ASSERT_EQ(node.size(), 71u);
  // The spec lists the node bytes, ending with crc32c 12 2d e8 e7.
  const std::string expect_head = test::byte_string({0x0c, 0xdb, 0x20, 0xde, 0x47, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x22, 0x00});
  EXPECT_EQ(node.substr(0, expect_head.size()), expect_head);
  EXPECT_EQ(node.substr(node.size() - 4), test::byte_string({0x12, 0x2d, 0xe8, 0xe7}));
  std::string mbody(16, '\x42');
  mbody.push_back(0);
  mbody += ocdbt::encode_varint(2) + ocdbt::encode_varint(8u << 20);
  mbody.push_back(4);
  mbody += ocdbt::encode_varint(0) + table({file});
  mbody += test::byte_string({0x01, 0x01, 0x00, 0x00, 0x05, 0x47, 0x02, 0x47, 0x05});
  put_le(mbody, 1700000000000000000ull, 8);
  mbody.push_back(0);
  const std::string manifest = frame(ocdbt::kManifestMagic, mbody);
  ASSERT_EQ(manifest.size(), 97u);

  test::TempDir dir;
  std::filesystem::create_directories(dir / "d");
  test::write_file(dir / file, "hello" + node);
  test::write_file(dir / "manifest.ocdbt", manifest);
  EXPECT_TRUE(OcdbtKvStore::looks_like_database(dir.path()));
  OcdbtKvStore db(dir.path());
  EXPECT_EQ(db.list(), (std::vector<std::string>{"a", "bc"}));
  EXPECT_EQ(value_str(db.get("a")), "xy");
  EXPECT_EQ(value_str(db.get("bc")), "hello");
  EXPECT_EQ(db.get("bc")->offset, 0u);
  EXPECT_EQ(db.get("bc")->file, dir / file);
  EXPECT_FALSE(db.get("b"));
  EXPECT_FALSE(db.get("c"));
  EXPECT_FALSE(db.get(""));
  const auto& m = db.manifest();
  EXPECT_EQ(m.config.max_inline_value_bytes, 2u);
  EXPECT_EQ(m.config.max_decoded_node_bytes, 8u << 20);
  ASSERT_EQ(m.versions.size(), 1u);
  EXPECT_EQ(m.latest().generation, 1u);
  EXPECT_EQ(m.latest().root.offset, 5u);
  EXPECT_EQ(m.latest().root.length, 71u);
  EXPECT_EQ(m.latest().num_keys, 2u);
  EXPECT_EQ(m.latest().num_indirect_value_bytes, 5u);
}

// formats.md §2.4: the merged root manifest of a real Orbax checkpoint.
TEST(OcdbtWorkedExample, RealOrbaxRootManifest) {
  const std::string root = test::fixture("orbax_ocdbt_zarr2/ckpt");
  OcdbtKvStore db(root);
  const auto& m = db.manifest();
  EXPECT_EQ(m.config.manifest_kind, 0);
  EXPECT_EQ(m.config.max_inline_value_bytes, 1024u);
  EXPECT_EQ(m.config.max_decoded_node_bytes, 100000000u);
  EXPECT_EQ(m.config.version_tree_arity_log2, 4);
  EXPECT_EQ(m.config.compression_method, 1u);
  EXPECT_EQ(m.config.zstd_level, 0);
  ASSERT_EQ(m.files.size(), 1u);
  EXPECT_EQ(m.files[0].base_path, "");
  EXPECT_EQ(m.files[0].relative_path, "d/7b36828f0ed234fdf74b0fbb97d77b5d");
  ASSERT_EQ(m.versions.size(), 1u);
  EXPECT_EQ(m.latest().generation, 1u);
  EXPECT_EQ(m.latest().root_height, 0);
  EXPECT_EQ(m.latest().num_keys, 34u);
  EXPECT_TRUE(m.version_nodes.empty());
  // The per-process database holds several generations; the latest is the last inline one.
  OcdbtKvStore proc(root + "/ocdbt.process_0");
  EXPECT_EQ(proc.manifest().versions.size(), 5u);
  EXPECT_EQ(proc.manifest().latest().generation, 5u);
}

// The merged root re-references the per-process data files: both views hold the same keys
// and byte-identical values, and out-of-line values resolve into ocdbt.process_0/d/.
TEST(OcdbtFixtures, MergedRootMatchesProcessDatabase) {
  for (const char* c : {"orbax_ocdbt_zarr2", "orbax_ocdbt_zarr3", "orbax_sharded_zarr2", "orbax_sharded_zarr3"}) {
    const std::string root = test::fixture(std::string(c) + "/ckpt");
    OcdbtKvStore merged(root), proc(root + "/ocdbt.process_0");
    const auto keys = merged.list();
    EXPECT_EQ(keys, proc.list()) << c;
    EXPECT_TRUE(std::is_sorted(keys.begin(), keys.end()));
    EXPECT_EQ(keys.size(), merged.manifest().latest().num_keys) << c;
    for (const auto& k : keys) {
      auto a = merged.get(k), b = proc.get(k);
      ASSERT_TRUE(a && b) << k;
      EXPECT_EQ(a->text(), b->text()) << c << " " << k;
    }
  }
  OcdbtKvStore db(test::fixture("orbax_ocdbt_zarr2/ckpt"));
  auto big = db.get("big/0.0");
  ASSERT_TRUE(big);
  EXPECT_NE(big->file.find("/ocdbt.process_0/d/"), std::string::npos) << big->file;
  EXPECT_EQ(big->bytes.size(), 363436u);
  EXPECT_EQ(value_str(db.get("i32/.zarray")).substr(0, 12), "{\"chunks\":[3");
  EXPECT_FALSE(db.get("big/0.1"));
  EXPECT_FALSE(db.get("zzz"));
}

// Two-level tree with subtree common prefixes stripped from the children (§2.7).
TEST(OcdbtBtree, InteriorNodesAndSubtreePrefixes) {
  const std::string leaf1 = frame(ocdbt::kBtreeNodeMagic, leaf_body({{".zarray", "{1}"}, {"0", "AAAA", true, 0}}), 1);
  const std::string leaf2 = frame(ocdbt::kBtreeNodeMagic, leaf_body({{"0", "w0"}, {"1", "w1"}}));
  std::string data = "AAAA";
  const std::uint64_t off1 = data.size();
  data += leaf1;
  const std::uint64_t off2 = data.size();
  data += leaf2;
  const std::string root = frame(ocdbt::kBtreeNodeMagic,
                                 interior_body(1, {{"params.bias/.zarray", 12, off1, leaf1.size()},
                                                   {"w/0", 2, off2, leaf2.size()}}));
  const std::uint64_t off_root = data.size();
  data += root;
  test::TempDir dir;
  write_db(dir, data, frame(ocdbt::kManifestMagic, manifest_body(1, off_root, root.size()), 1));
  OcdbtKvStore db(dir.path());
  EXPECT_EQ(db.list(), (std::vector<std::string>{"params.bias/.zarray", "params.bias/0", "w/0", "w/1"}));
  EXPECT_EQ(value_str(db.get("params.bias/.zarray")), "{1}");
  EXPECT_EQ(value_str(db.get("params.bias/0")), "AAAA");
  EXPECT_EQ(value_str(db.get("w/1")), "w1");
  EXPECT_FALSE(db.get("params.bias/1"));
  EXPECT_FALSE(db.get("params.a"));  // before the first entry
  EXPECT_FALSE(db.get("w/2"));
}

// Each constraint of formats.md §2.10 "Constraints the reader enforces".
TEST(OcdbtBtree, EnforcedConstraints) {
  auto open_with_root = [](const std::string& node_body, int root_height = 0, const std::string& extra = "") {
    test::TempDir dir;
    const std::string node = frame(ocdbt::kBtreeNodeMagic, node_body);
    write_db(dir, extra + node, frame(ocdbt::kManifestMagic, manifest_body(root_height, extra.size(), node.size())));
    return format_error_of([&] { OcdbtKvStore(dir.path()).list(); });
  };
  // keys strictly increasing
  EXPECT_NE(open_with_root(leaf_body({{"b", "1"}, {"a", "2"}})).find("invalid key order"), std::string::npos);
  EXPECT_NE(open_with_root(leaf_body({{"a", "1"}, {"a", "2"}})).find("invalid key order"), std::string::npos);
  // num_entries >= 1
  EXPECT_NE(open_with_root(std::string(1, '\0') + table({"d/f"}) + ocdbt::encode_varint(0)).find("empty b-tree node"),
            std::string::npos);
  // inline values <= 1 MiB
  EXPECT_NE(open_with_root(leaf_body({{"a", std::string((1u << 20) + 1, 'x')}})).find("exceeds 1 MiB"),
            std::string::npos);
  // no trailing bytes
  EXPECT_NE(open_with_root(leaf_body({{"a", "1"}}) + "Z").find("trailing"), std::string::npos);
  // offset + length <= 2^63-1
  {
    std::string body(1, '\0');
    body += table({"d/f"}) + ocdbt::encode_varint(1) + ocdbt::encode_varint(1) + "a";
    body += ocdbt::encode_varint(16) + std::string(1, '\1') + ocdbt::encode_varint(0) +
            ocdbt::encode_varint((1ull << 63) - 8);
    EXPECT_NE(open_with_root(body).find("exceeds 2^63-1"), std::string::npos);
  }
  // subtree common prefix <= key length
  EXPECT_NE(open_with_root(interior_body(1, {{"ab", 3, 0, 10}}), 1).find("subtree common prefix"), std::string::npos);
  // stored child height = parent height - 1
  {
    const std::string leaf = frame(ocdbt::kBtreeNodeMagic, leaf_body({{"k", "v"}}));
    EXPECT_NE(open_with_root(interior_body(2, {{"k", 0, 0, leaf.size()}}), 2, leaf).find("height"), std::string::npos);
  }
  // child first key >= the parent entry key
  {
    const std::string leaf = frame(ocdbt::kBtreeNodeMagic, leaf_body({{"a", "v"}}));
    EXPECT_NE(open_with_root(interior_body(1, {{"b", 0, 0, leaf.size()}}), 1, leaf).find("below its parent"),
              std::string::npos);
  }
  // CRC and length
  {
    test::TempDir dir;
    std::string node = frame(ocdbt::kBtreeNodeMagic, leaf_body({{"a", "1"}}));
    node[20] ^= 1;
    write_db(dir, node, frame(ocdbt::kManifestMagic, manifest_body(0, 0, node.size())));
    EXPECT_NE(format_error_of([&] { OcdbtKvStore(dir.path()).list(); }).find("crc32c mismatch"), std::string::npos);
    std::string m = frame(ocdbt::kManifestMagic, manifest_body(0, 0, node.size()));
    m[4] = static_cast<char>(m[4] + 1);  // stored length no longer matches the file
    test::write_file(dir / "manifest.ocdbt", m);
    EXPECT_NE(format_error_of([&] { OcdbtKvStore(dir.path()).list(); }).find("stored length"), std::string::npos);
  }
  // a node reference past the end of its data file
  {
    test::TempDir dir;
    const std::string node = frame(ocdbt::kBtreeNodeMagic, leaf_body({{"a", "1"}}));
    write_db(dir, node.substr(0, 30), frame(ocdbt::kManifestMagic, manifest_body(0, 0, node.size())));
    const auto msg = format_error_of([&] { OcdbtKvStore(dir.path()).list(); });
    EXPECT_NE(msg.find("beyond the end"), std::string::npos) << msg;
    EXPECT_NE(msg.find(dir / "d/f"), std::string::npos) << msg;
  }
}

TEST(OcdbtFraming, BadZstdBodyAndUnknownFields) {
  // A node whose zstd body is garbage but whose CRC is right: the zstd decoder must fail.
  std::string node = frame(ocdbt::kBtreeNodeMagic, leaf_body({{"a", "1"}}), 1);
  for (std::size_t i = 14; i + 4 < node.size(); ++i) node[i] = static_cast<char>(0xA5);
  node.resize(node.size() - 4);
  put_le(node, ocdbt::crc32c(as_bytes(node)), 4);
  test::TempDir dir;
  write_db(dir, node, frame(ocdbt::kManifestMagic, manifest_body(0, 0, node.size())));
  const auto msg = format_error_of([&] { OcdbtKvStore(dir.path()).get("a"); });
  EXPECT_NE(msg.find("zstd"), std::string::npos) << msg;
  EXPECT_NE(msg.find(dir / "d/f"), std::string::npos) << msg;
  // Unknown compression format and bad magic.
  std::string m = frame(ocdbt::kManifestMagic, manifest_body(0, 0, 1), 7);
  test::write_file(dir / "manifest.ocdbt", m);
  EXPECT_NE(format_error_of([&] { OcdbtKvStore(dir.path()).list(); }).find("unknown compression"), std::string::npos);
  test::write_file(dir / "manifest.ocdbt", frame(ocdbt::kBtreeNodeMagic, manifest_body(0, 0, 1)));
  EXPECT_NE(format_error_of([&] { OcdbtKvStore(dir.path()).list(); }).find("bad magic"), std::string::npos);
  EXPECT_FALSE(OcdbtKvStore::looks_like_database(dir.path()));
  EXPECT_FALSE(OcdbtKvStore::looks_like_database(dir / "nowhere"));
}

TEST(OcdbtFixtures, CorruptCopiesNameTheFile) {
  test::TempDir dir;
  std::filesystem::copy(test::fixture("orbax_ocdbt_zarr2/ckpt"), dir / "ckpt", std::filesystem::copy_options::recursive);
  const std::string root = dir / "ckpt";
  {  // a flipped byte in manifest.ocdbt
    std::string m = test::read_file(root + "/manifest.ocdbt");
    m[40] ^= 0x10;
    test::write_file(root + "/manifest.ocdbt", m);
    const auto msg = format_error_of([&] { OcdbtKvStore(root).list(); });
    EXPECT_NE(msg.find(root + "/manifest.ocdbt"), std::string::npos) << msg;
    EXPECT_NE(msg.find("crc32c mismatch"), std::string::npos) << msg;
    m[40] ^= 0x10;
    test::write_file(root + "/manifest.ocdbt", m);
  }
  {  // a flipped byte in the root B+tree node
    const std::string node_file = root + "/d/7b36828f0ed234fdf74b0fbb97d77b5d";
    std::string n = test::read_file(node_file);
    n[n.size() / 2] ^= 0x01;
    test::write_file(node_file, n);
    const auto msg = format_error_of([&] { OcdbtKvStore(root).get("big/0.0"); });
    EXPECT_NE(msg.find(node_file), std::string::npos) << msg;
    EXPECT_NE(msg.find("crc32c mismatch"), std::string::npos) << msg;
  }
}

}  // namespace
}  // namespace ckb
