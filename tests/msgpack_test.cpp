// Tests for the Flax msgpack reader/writer: the flax-written fixture against its manifest, a
// byte-identical round trip, exact encodings of every msgpack form we write, Flax chunking
// (with a small threshold), decoding of all msgpack forms, and hostile input.
#include <cstring>

#include "core/errors.h"
#include "core/hash.h"
#include "formats/format.h"
#include "core/concat_source.h"
#include "formats/msgpack/msgpack.h"
#include "io/file.h"
#include "test_util.h"

namespace ckb {
namespace {
using test::error_of;

using test::fixture;
using test::read_file;
using test::write_file;

const std::string kParams = "flax_msgpack/params.msgpack";

// The fixture generator hashed np.ascontiguousarray(a), which turns the 0-d "scalar"
// (np.array(3.5, float32); stored with shape () in the file) into shape [1]. The bytes and
// sha256 are the same; only the recorded shape differs, so the manifest is corrected here.
nlohmann::json params_manifest() {
  auto m = test::load_json(fixture("flax_msgpack/manifest.json"));
  EXPECT_EQ(m["tensors"]["scalar"]["shape"], nlohmann::json::array({1}));
  m["tensors"]["scalar"]["shape"] = nlohmann::json::array();
  return m;
}

std::string be_bytes(std::uint64_t v, int width) {
  std::string s;
  for (int i = width - 1; i >= 0; --i) s += static_cast<char>((v >> (8 * i)) & 0xFF);
  return s;
}
std::string f32_le(std::initializer_list<float> v) {
  std::string s;
  for (float f : v) s.append(reinterpret_cast<const char*>(&f), 4);
  return s;
}
Tensor tensor_from(DType t, Shape shape, const std::string& bytes) {
  Bytes b(bytes.size());
  if (!bytes.empty()) std::memcpy(b.data(), bytes.data(), bytes.size());
  return make_memory_tensor({t, std::move(shape)}, std::move(b));
}
std::string write_tree(const Node& root, const std::string& path, std::uint64_t chunk = kFlaxMaxChunkBytes) {
  auto w = make_msgpack_writer(path, chunk);
  w->begin(root);
  std::size_t slot = 0;
  for (const auto& [name, t] : tensor_list(root)) {
    std::string b = test::bytes_of(*t);
    // write in two pieces, second first, to exercise out-of-order writes
    std::size_t half = b.size() / 2;
    auto all = std::as_bytes(std::span(b.data(), b.size()));
    w->write(slot, half, all.subspan(half));
    w->write(slot, 0, all.subspan(0, half));
    ++slot;
  }
  w->commit();
  return read_file(path);
}

TEST(MsgpackFixture, MatchesManifest) {
  const std::string path = fixture(kParams);
  EXPECT_EQ(detect_format(path).name, "msgpack");
  Checkpoint ck = read_checkpoint(path);
  EXPECT_EQ(ck.format, "msgpack");
  test::expect_matches_manifest(ck, params_manifest());
  // The list became a dict {"0", "1"}; tensors are zero-copy ranges of the file.
  const Node* as_list = ck.root.find("as_list");
  ASSERT_NE(as_list, nullptr);
  EXPECT_EQ(as_list->type_name(), "dict");
  EXPECT_EQ(as_list->size(), 2u);
  auto file = MappedFile::open(path);
  for (const auto& [name, t] : tensor_list(ck.root)) {
    const std::byte* p = t->source->contiguous();
    if (t->info.nbytes() == 0) continue;
    ASSERT_NE(p, nullptr) << name;
    // points into the file: compare with a fresh mapping's contents at the same offset
    EXPECT_EQ(std::string(t->source->describe()).find(path), 0u) << name;
  }
  const Tensor& bf = find_path(ck.root, "bf16_specials")->tensor();
  EXPECT_EQ(bf.info.dtype, DType::BF16);
}

TEST(MsgpackRoundTrip, FixtureIsByteIdentical) {
  test::TempDir dir;
  Checkpoint ck = read_checkpoint(fixture(kParams));
  write_checkpoint(ck, dir / "out.msgpack", format_by_name("msgpack"), {}, 4);
  const std::string out = read_file(dir / "out.msgpack");
  const std::string in = read_file(fixture(kParams));
  EXPECT_EQ(out.size(), in.size());
  EXPECT_EQ(sha256_hex(std::as_bytes(std::span(out.data(), out.size()))),
            sha256_hex(std::as_bytes(std::span(in.data(), in.size()))));
}

TEST(MsgpackRoundTrip, FixtureChunkedSmallReadsBack) {
  // Every array over 1000 bytes chunked (big: 393216 bytes -> 394 chunks of 250 floats).
  test::TempDir dir;
  Checkpoint ck = read_checkpoint(fixture(kParams));
  write_tree(ck.root, dir / "c.msgpack", 1000);
  Checkpoint back = read_checkpoint(dir / "c.msgpack");
  test::expect_matches_manifest(back, params_manifest());
  const Tensor& big = find_path(back.root, "big")->tensor();
  EXPECT_NE(dynamic_cast<const ConcatSource*>(big.source.get()), nullptr);
  EXPECT_EQ(big.source->describe().find("(394 chunks)") != std::string::npos, true) << big.source->describe();
  // Re-writing with the Flax threshold gives back the original file exactly.
  EXPECT_EQ(write_tree(back.root, dir / "again.msgpack"), read_file(fixture(kParams)));
}

TEST(MsgpackWriter, ChunksExactlyLikeFlax) {
  // Spec example: 10 float32 with MAX_CHUNK_SIZE = 16 -> chunks of 4, 4, 2 elements.
  test::TempDir dir;
  Node root = Node::dict();
  root.add("big", Node::tensor(tensor_from(DType::F32, {10}, f32_le({0, 1, 2, 3, 4, 5, 6, 7, 8, 9}))));
  std::string got = write_tree(root, dir / "c.msgpack", 16);
  auto ext = [](std::uint8_t len, int n, const std::string& data) {
    return test::byte_string({0xc7, len, 0x01, 0x93, 0x91, n}) + "\xa7" "float32" + test::byte_string({0xc4, static_cast<int>(data.size())}) + data;
  };
  std::string want = test::byte_string({0x81, 0xa3}) + "big" + test::byte_string({0x83, 0xb9}) + "__msgpack_chunked_array__" +
                     test::byte_string({0xc3, 0xa5}) + "shape" + test::byte_string({0x81, 0xa1, '0', 0x0a, 0xa6}) + "chunks" +
                     test::byte_string({0x83, 0xa1, '0'}) + ext(29, 4, f32_le({0, 1, 2, 3})) + test::byte_string({0xa1, '1'}) +
                     ext(29, 4, f32_le({4, 5, 6, 7})) + test::byte_string({0xa1, '2'}) + ext(21, 2, f32_le({8, 9}));
  EXPECT_EQ(got, want);
  Checkpoint back = read_checkpoint(dir / "c.msgpack");
  const Tensor& t = back.root.find("big")->tensor();
  EXPECT_EQ(t.info, (TensorInfo{DType::F32, {10}}));
  EXPECT_EQ(test::bytes_of(t), f32_le({0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
  // A read straddling all three chunks.
  std::string part(26, '\0');
  t.source->read(14, std::as_writable_bytes(std::span(part.data(), part.size())));
  EXPECT_EQ(part, f32_le({0, 1, 2, 3, 4, 5, 6, 7, 8, 9}).substr(14, 26));
  // Not over the threshold: not chunked. 2-D int8 [3, 5] with threshold 4: chunks 4,4,4,3.
  Node r2 = Node::dict();
  std::string i8 = "ABCDEFGHIJKLMNO";
  r2.add("m", Node::tensor(tensor_from(DType::I8, {3, 5}, i8)));
  write_tree(r2, dir / "m.msgpack", 4);
  Checkpoint b2 = read_checkpoint(dir / "m.msgpack");
  EXPECT_EQ(b2.root.find("m")->tensor().info, (TensorInfo{DType::I8, {3, 5}}));
  EXPECT_EQ(test::bytes_of(b2.root.find("m")->tensor()), i8);
  EXPECT_NE(b2.root.find("m")->tensor().source->describe().find("(4 chunks)"), std::string::npos);
  // At exactly the threshold (15 bytes, not more): one plain ext 1 of 32 bytes in all.
  const std::string plain = write_tree(r2, dir / "m2.msgpack", 15);
  EXPECT_EQ(plain, test::byte_string({0x81, 0xa1, 'm', 0xc7, 0x1a, 0x01, 0x93, 0x92, 0x03, 0x05, 0xa4}) + "int8" +
                       test::byte_string({0xc4, 0x0f}) + i8);
}

TEST(MsgpackWriter, ScalarsUseMsgpackPythonEncodings) {
  test::TempDir dir;
  Node root = Node::dict();
  const std::vector<std::pair<std::int64_t, std::string>> ints = {
      {0, test::byte_string({0x00})},
      {127, test::byte_string({0x7f})},
      {128, test::byte_string({0xcc, 0x80})},
      {256, test::byte_string({0xcd, 0x01, 0x00})},
      {70000, test::byte_string({0xce, 0x00, 0x01, 0x11, 0x70})},
      {std::int64_t{1} << 40, test::byte_string({0xcf, 0, 0, 0x01, 0, 0, 0, 0, 0})},
      {-1, test::byte_string({0xff})},
      {-32, test::byte_string({0xe0})},
      {-33, test::byte_string({0xd0, 0xdf})},
      {-200, test::byte_string({0xd1, 0xff, 0x38})},
      {-40000, test::byte_string({0xd2, 0xff, 0xff, 0x63, 0xc0})},
      {-(std::int64_t{1} << 40), test::byte_string({0xd3, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0})},
  };
  std::string want = test::byte_string({0xde, 0x00, static_cast<int>(ints.size() + 8)});
  for (std::size_t i = 0; i < ints.size(); ++i) {
    std::string k = "i" + std::to_string(i);
    root.add(k, Node(ints[i].first));
    want += static_cast<char>(0xa0 | k.size()) + k + ints[i].second;
  }
  root.add("f", Node(1.5));
  want += "\xa1" "f" + test::byte_string({0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0});
  root.add("t", Node(true));
  want += "\xa1" "t" "\xc3";
  root.add("n", Node::none());
  want += "\xa1" "n" "\xc0";
  std::string long_str(40, 'x');
  root.add("s", Node(long_str));
  want += "\xa1" "s" "\xd9\x28" + long_str;
  root.add("b", Node(RawBytes{"raw"}));
  want += "\xa1" "b" "\xc4\x03" "raw";
  Node list = Node::list();
  list.append(Node(std::int64_t{1}));
  list.append(Node(2.0));
  root.add("l", std::move(list));  // to_state_dict form: {"0": 1, "1": 2.0}
  want += "\xa1" "l" + test::byte_string({0x82, 0xa1, '0', 0x01, 0xa1, '1', 0xcb, 0x40, 0, 0, 0, 0, 0, 0, 0});
  root.add("e", Node::dict());
  want += "\xa1" "e" "\x80";
  root.add("z", Node::tensor(tensor_from(DType::BOOL, {0}, "")));
  want += "\xa1" "z" + test::byte_string({0xc7, 0x0a, 0x01, 0x93, 0x91, 0x00, 0xa4}) + "bool" + test::byte_string({0xc4, 0x00});
  EXPECT_EQ(write_tree(root, dir / "s.msgpack"), want);
  // and read back to the same values
  Checkpoint back = read_checkpoint(dir / "s.msgpack");
  for (std::size_t i = 0; i < ints.size(); ++i)
    EXPECT_EQ(std::get<std::int64_t>(back.root.find("i" + std::to_string(i))->value()), ints[i].first);
  EXPECT_EQ(std::get<double>(back.root.find("f")->value()), 1.5);
  EXPECT_EQ(std::get<std::string>(back.root.find("s")->value()), long_str);
  EXPECT_EQ(std::get<RawBytes>(back.root.find("b")->value()).data, "raw");
  EXPECT_EQ(std::get<double>(find_path(back.root, "l/1")->value()), 2.0);
  EXPECT_TRUE(back.root.find("e")->is_empty_container());
  EXPECT_EQ(back.root.find("z")->tensor().info, (TensorInfo{DType::BOOL, {0}}));
}

TEST(MsgpackDecoder, AllFormsDecodeAndReencodeExactly) {
  test::TempDir dir;
  std::string f;
  f += test::byte_string({0x89});
  f += "\xa1" "a" + test::byte_string({0x92, 0xca}) + be_bytes(0x3fc00000, 4) + test::byte_string({0xcf}) + be_bytes(1ull << 62, 8);  // [1.5f, 2^62]
  f += "\xa1" "t" + test::byte_string({0xc7, 0x03, 0x04, 0x92, 0x01, 0xc0});  // ext 4 tuple (1, None)
  // ext 3 numpy scalar float32 2.5, fixext16 (payload exactly 16 bytes)
  f += "\xa1" "s" + test::byte_string({0xd8, 0x03, 0x93, 0x90, 0xa7}) + "float32" + test::byte_string({0xc4, 0x04}) + f32_le({2.5f});
  double cre = 1.0, cim = -2.0;
  std::uint64_t bre, bim;
  std::memcpy(&bre, &cre, 8);
  std::memcpy(&bim, &cim, 8);
  f += "\xa1" "c" + test::byte_string({0xc7, 0x13, 0x02, 0x92, 0xcb}) + be_bytes(bre, 8) + "\xcb" + be_bytes(bim, 8);  // ext 2
  f += test::byte_string({0x07}) + "\xa1" "x";  // integer key 7 -> "7"
  f += "\xa1" "w" + test::byte_string({0xc7, 0x14, 0x01, 0x93, 0x92, 0x01, 0x02, 0xa5}) + "int32" + test::byte_string({0xc4, 0x08}) +
       be_bytes(0x0100000002000000ull, 8);  // int32 [1, 2] little-endian
  f += "\xa1" "n" + test::byte_string({0xd3}) + be_bytes(static_cast<std::uint64_t>(-5000000000LL), 8);
  f += "\xa1" "m" + test::byte_string({0x80});
  f += "\xa1" "q" + test::byte_string({0x90});
  write_file(dir / "all.msgpack", f);
  EXPECT_TRUE(format_by_name("msgpack").detect(dir / "all.msgpack"));
  Checkpoint ck = read_checkpoint(dir / "all.msgpack");
  const Node& a = *ck.root.find("a");
  EXPECT_EQ(a.type_name(), "list");
  EXPECT_EQ(std::get<double>(find_path(ck.root, "a/0")->value()), 1.5);
  EXPECT_EQ(std::get<std::int64_t>(find_path(ck.root, "a/1")->value()), std::int64_t{1} << 62);
  EXPECT_EQ(ck.root.find("t")->type_name(), "tuple");
  EXPECT_EQ(find_path(ck.root, "t/1")->type_name(), "none");
  const Tensor& s = ck.root.find("s")->tensor();
  EXPECT_EQ(s.info, (TensorInfo{DType::F32, {}}));
  EXPECT_EQ(test::bytes_of(s), f32_le({2.5f}));
  const Tensor& c = ck.root.find("c")->tensor();
  EXPECT_EQ(c.info, (TensorInfo{DType::C128, {}}));
  std::string cb(16, '\0');
  std::memcpy(cb.data(), &cre, 8);
  std::memcpy(cb.data() + 8, &cim, 8);
  EXPECT_EQ(test::bytes_of(c), cb);
  EXPECT_EQ(std::get<std::string>(ck.root.find("7")->value()), "x");
  EXPECT_EQ(test::bytes_of(ck.root.find("w")->tensor()), std::string("\x01\0\0\0\x02\0\0\0", 8));
  EXPECT_EQ(std::get<std::int64_t>(ck.root.find("n")->value()), -5000000000LL);
  // Written back with the attrs the reader left: identical bytes except the int key, which
  // becomes the string "7" (a0|1 '7' instead of 07).
  std::string want = f;
  want.replace(want.find(test::byte_string({0x07}) + "\xa1" "x"), 1, "\xa1" "7");
  EXPECT_EQ(write_tree(ck.root, dir / "again.msgpack"), want);

  // Wide forms: map16, str8/16 keys, array16/32, bin16/32, ext16/ext32, uint8/16/32, int8/16/32.
  std::string g = test::byte_string({0xde, 0x00, 0x04});
  g += test::byte_string({0xd9, 0x01}) + "k" + test::byte_string({0xdc, 0x00, 0x03, 0xcc, 0xff, 0xcd, 0x01, 0x00, 0xce}) + be_bytes(70000, 4);
  g += test::byte_string({0xda, 0x00, 0x01}) + "l" + test::byte_string({0xdd, 0, 0, 0, 3, 0xd0, 0x80, 0xd1, 0x80, 0x00, 0xd2}) + be_bytes(0x80000000u, 4);
  g += test::byte_string({0xdb, 0, 0, 0, 1}) + "b" + test::byte_string({0xdd, 0, 0, 0, 2, 0xc5, 0x00, 0x02}) + "hi" + test::byte_string({0xc6, 0, 0, 0, 1}) + "!";
  std::string payload = test::byte_string({0x93, 0x91, 0x01, 0xa5}) + "uint8" + test::byte_string({0xc4, 0x01, 0x2a});
  g += "\xa1" "e" + test::byte_string({0x92, 0xc8, 0x00, static_cast<int>(payload.size()), 0x01}) + payload + test::byte_string({0xc9, 0, 0, 0, static_cast<int>(payload.size()), 0x01}) + payload;
  write_file(dir / "wide.msgpack", g);
  Checkpoint w = read_checkpoint(dir / "wide.msgpack");
  EXPECT_EQ(std::get<std::int64_t>(find_path(w.root, "k/0")->value()), 255);
  EXPECT_EQ(std::get<std::int64_t>(find_path(w.root, "k/1")->value()), 256);
  EXPECT_EQ(std::get<std::int64_t>(find_path(w.root, "k/2")->value()), 70000);
  EXPECT_EQ(std::get<std::int64_t>(find_path(w.root, "l/0")->value()), -128);
  EXPECT_EQ(std::get<std::int64_t>(find_path(w.root, "l/1")->value()), -32768);
  EXPECT_EQ(std::get<std::int64_t>(find_path(w.root, "l/2")->value()), -2147483648LL);
  EXPECT_EQ(std::get<RawBytes>(find_path(w.root, "b/0")->value()).data, "hi");
  EXPECT_EQ(std::get<RawBytes>(find_path(w.root, "b/1")->value()).data, "!");
  EXPECT_EQ(test::bytes_of(find_path(w.root, "e/0")->tensor()), "*");
  EXPECT_EQ(test::bytes_of(find_path(w.root, "e/1")->tensor()), "*");
}

TEST(MsgpackBadInput, EachIsAFormatErrorNamingTheFile) {
  test::TempDir dir;
  auto expect_error = [&](const std::string& name, const std::string& bytes, const std::string& needle) {
    const std::string path = dir / name;
    write_file(path, bytes);
    std::string msg = error_of([&] { read_msgpack_file(path); });
    EXPECT_NE(msg.find(path), std::string::npos) << name << ": " << msg;
    EXPECT_NE(msg.find(needle), std::string::npos) << name << ": " << msg;
  };
  // 100000 nested arrays: rejected at the depth limit, no stack overflow.
  expect_error("deep.msgpack", "\x81\xa1" "a" + std::string(100000, '\x91') + "\xc0", "nesting deeper than 512");
  expect_error("deep_maps.msgpack", [] {
    std::string s;
    for (int i = 0; i < 100000; ++i) s += "\x81\xa1" "k";
    return s + "\xc0";
  }(), "nesting deeper than 512");
  expect_error("bin_past_eof.msgpack", "\x81\xa1" "a" + test::byte_string({0xc6, 0x00, 0x10, 0x00, 0x00}) + "xyz",
               "truncated msgpack bin payload");
  expect_error("ndarray_past_eof.msgpack",
               "\x81\xa1" "a" + test::byte_string({0xc7, 0x1d, 0x01, 0x93, 0x91, 0x04, 0xa7}) + "float32" + test::byte_string({0xc4, 0x10}) + "abc",
               "truncated msgpack ext payload");
  const std::string good = read_file(fixture(kParams));
  expect_error("truncated.msgpack", good.substr(0, good.size() / 2), "truncated");
  expect_error("trailing.msgpack", good + "\xc0", "1 unexpected bytes after the top-level");
  expect_error("not_map.msgpack", "\x91\x01", "not a map");
  expect_error("huge_map.msgpack", test::byte_string({0xdf, 0x7f, 0xff, 0xff, 0xff, 0xa1, 'a'}), "cannot fit");
  expect_error("huge_array.msgpack", "\x81\xa1" "a" + test::byte_string({0xdd, 0xff, 0xff, 0xff, 0xff, 0x01}), "cannot fit");
  expect_error("dup.msgpack", "\x82\xa1" "a" "\x01\xa1" "a" "\x02", "duplicate msgpack map key 'a'");
  expect_error("bad_key.msgpack", "\x81\xc0\x01", "neither a string nor an integer");
  expect_error("c1.msgpack", "\x81\xa1" "a" "\xc1", "0xc1");
  expect_error("u64.msgpack", "\x81\xa1" "a" + test::byte_string({0xcf, 0xff, 0, 0, 0, 0, 0, 0, 0}), "does not fit");
  std::string nd = test::byte_string({0x93, 0x91, 0x03, 0xa7}) + "float32" + test::byte_string({0xc4, 0x08}) + "12345678";
  expect_error("size_mismatch.msgpack", "\x81\xa1" "a" + test::byte_string({0xc7, static_cast<int>(nd.size()), 0x01}) + nd,
               "needs 12 bytes but its data has 8");
  std::string od = test::byte_string({0x93, 0x91, 0x01, 0xa6}) + "object" + test::byte_string({0xc4, 0x08}) + "12345678";
  expect_error("object.msgpack", "\x81\xa1" "a" + test::byte_string({0xc7, static_cast<int>(od.size()), 0x01}) + od,
               "unsupported ndarray dtype 'object'");
  std::string ovf = test::byte_string({0x93, 0x92, 0xcf}) + be_bytes(1ull << 62, 8) + test::byte_string({0x02, 0xa7}) + "float64" + test::byte_string({0xc4, 0x00});
  expect_error("overflow.msgpack", "\x81\xa1" "a" + test::byte_string({0xc7, static_cast<int>(ovf.size()), 0x01}) + ovf, "more than 2^64");
  expect_error("ext9.msgpack", "\x81\xa1" "a" + test::byte_string({0xd4, 0x09, 0x00}), "unsupported msgpack ext type 9");
  std::string chunk = test::byte_string({0xc7, 0x15, 0x01, 0x93, 0x91, 0x02, 0xa7}) + "float32" + test::byte_string({0xc4, 0x08}) + "12345678";
  expect_error("bad_chunks.msgpack",
               "\x81\xa1" "a" "\x83\xb9" "__msgpack_chunked_array__" "\xc3\xa5" "shape" "\x81\xa1" "0" "\x05" "\xa6" "chunks" "\x81\xa1" "0" + chunk,
               "chunks hold 2 elements but shape [5] needs 5");
}

TEST(MsgpackDetect, ConservativeSniffing) {
  test::TempDir dir;
  const Format& mp = format_by_name("msgpack");
  EXPECT_TRUE(mp.detect(fixture(kParams)));
  EXPECT_FALSE(mp.detect(fixture("safetensors_single/model.safetensors")));
  EXPECT_FALSE(mp.detect(fixture("npz/big.npy")));
  EXPECT_FALSE(mp.detect(fixture("npz/arrays.npz")));
  EXPECT_FALSE(mp.detect(fixture("flax_msgpack")));
  EXPECT_FALSE(mp.detect(dir / "missing"));
  write_file(dir / "empty_map", "\x80");
  EXPECT_TRUE(mp.detect(dir / "empty_map"));
  write_file(dir / "empty_map_junk", "\x80\x01");
  EXPECT_FALSE(mp.detect(dir / "empty_map_junk"));
  // A safetensors-like file whose length byte looks like fixmap 0x85.
  std::string st = test::byte_string({0x85, 0xa2, 0, 0, 0, 0, 0, 0}) + "{" + std::string(0xa285 - 1, ' ');
  write_file(dir / "st", st);
  EXPECT_FALSE(mp.detect(dir / "st"));
  write_file(dir / "intkey", "\x81\x01\x02");  // first key not a string
  EXPECT_FALSE(mp.detect(dir / "intkey"));
  write_file(dir / "ctl", "\x81\xa1\x01\x02");  // control character in the key
  EXPECT_FALSE(mp.detect(dir / "ctl"));
}

}  // namespace
}  // namespace ckb
