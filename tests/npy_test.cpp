// Tests for the .npy reader/writer: numpy-written fixtures against their manifest, byte-exact
// round trips, header parsing (versions, endianness, Fortran order) and hostile input.
#include <cstring>

#include "core/errors.h"
#include "core/hash.h"
#include "formats/format.h"
#include "formats/numpy/npy.h"
#include "io/file.h"
#include "test_util.h"

namespace ckb {
namespace {
using test::error_of;

using test::fixture;
using test::read_file;
using test::write_file;

// The manifest restricted to one entry, renamed to `as` (big.npy -> "big", fortran.npy -> "fortran").
nlohmann::json extra_file_manifest(const std::string& file, const std::string& as) {
  auto m = test::load_json(fixture("npz/manifest.json"));
  std::string entry = m.at("extra_files").at(file).get<std::string>();
  entry = entry.substr(0, entry.find(' '));  // "i32 (fortran_order)" -> "i32"
  nlohmann::json out;
  out["tensors"][as] = m.at("tensors").at(entry);
  return out;
}

// An .npy byte string with the given header text (padded numpy-style) and data.
std::string make_npy(const std::string& header, const std::string& data, int major = 1) {
  std::string h = header;
  const std::size_t prefix = major == 1 ? 10 : 12;
  while ((prefix + h.size() + 1) % 64) h += ' ';
  h += '\n';
  std::string out = "\x93NUMPY";
  out += static_cast<char>(major);
  out += '\0';
  for (std::size_t i = 0; i < (major == 1 ? 2u : 4u); ++i) out += static_cast<char>((h.size() >> (8 * i)) & 0xFF);
  return out + h + data;
}

template <class T>
std::vector<T> values_npy(const Tensor& t) {
  Bytes b = t.read_all();
  std::vector<T> v(b.size() / sizeof(T));
  std::memcpy(v.data(), b.data(), b.size());
  return v;
}


TEST(NpyFixture, BigMatchesManifest) {
  const std::string path = fixture("npz/big.npy");
  EXPECT_EQ(detect_format(path).name, "npy");
  Checkpoint ck = read_checkpoint(path);
  EXPECT_EQ(ck.format, "npy");
  ASSERT_EQ(ck.root.size(), 1u);
  EXPECT_EQ(ck.root.container().children[0].key, "big");
  test::expect_matches_manifest(ck, extra_file_manifest("big.npy", "big"));
  // zero-copy: the tensor is the mmap'd file range after the 128-byte header
  const Tensor& t = ck.root.find("big")->tensor();
  EXPECT_NE(t.source->contiguous(), nullptr);
}

TEST(NpyFixture, FortranOrderReadsAsCOrder) {
  Checkpoint ck = read_checkpoint(fixture("npz/fortran.npy"));
  test::expect_matches_manifest(ck, extra_file_manifest("fortran.npy", "fortran"));
  const Tensor& t = ck.root.find("fortran")->tensor();
  EXPECT_EQ(t.info.shape, (Shape{3, 4}));
  EXPECT_EQ(t.source->contiguous(), nullptr);  // column-major data is re-ordered on read
  // The file's first stored values are column 0: -6, -2, 2 ; C order starts with row 0.
  auto v = values_npy<std::int32_t>(t);
  const std::string raw = read_file(fixture("npz/fortran.npy")).substr(128);
  std::vector<std::int32_t> stored(12);
  std::memcpy(stored.data(), raw.data(), 48);
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 4; ++j) EXPECT_EQ(v[static_cast<std::size_t>(i * 4 + j)], stored[static_cast<std::size_t>(j * 3 + i)]);
}

TEST(NpyRoundTrip, BigIsByteIdentical) {
  test::TempDir dir;
  Checkpoint ck = read_checkpoint(fixture("npz/big.npy"));
  write_checkpoint(ck, dir / "big.npy", format_by_name("npy"));
  EXPECT_EQ(read_file(dir / "big.npy"), read_file(fixture("npz/big.npy")));
}

TEST(NpyRoundTrip, FortranIsWrittenInCOrder) {
  test::TempDir dir;
  Checkpoint ck = read_checkpoint(fixture("npz/fortran.npy"));
  write_checkpoint(ck, dir / "out.npy", format_by_name("npy"), {}, 2);
  std::string out = read_file(dir / "out.npy");
  std::string in = read_file(fixture("npz/fortran.npy"));
  // Same header except fortran_order, then C-order data.
  std::string expect_header = in.substr(0, 128);
  expect_header.replace(expect_header.find("True, "), 6, "False, ");
  expect_header.erase(expect_header.rfind(' '), 1);
  EXPECT_EQ(out.substr(0, 128), expect_header);
  ASSERT_EQ(out.size(), 128u + 48u);
  Checkpoint back = read_checkpoint(dir / "out.npy");
  test::expect_matches_manifest(back, extra_file_manifest("fortran.npy", "out"));
  EXPECT_NE(back.root.find("out")->tensor().source->contiguous(), nullptr);
}

TEST(NpyHeader, WriterMatchesNumpyForShapes) {
  // Headers as numpy 2.x np.save writes them (growth-axis spaces, 64-byte alignment).
  std::string h0 = npy_header_bytes({DType::F64, {}}, "s");
  EXPECT_EQ(h0, std::string("\x93NUMPY\x01\x00\x76\x00", 10) + "{'descr': '<f8', 'fortran_order': False, 'shape': (), }" +
                    std::string(62, ' ') + "\n");
  std::string h1 = npy_header_bytes({DType::U8, {10}}, "u");
  EXPECT_EQ(h1.size(), 128u);
  EXPECT_EQ(h1.substr(10, 58 + 19 + 1), "{'descr': '|u1', 'fortran_order': False, 'shape': (10,), }" + std::string(20, ' '));
  EXPECT_EQ(h1.back(), '\n');
  // parse what we write, for every dtype numpy can name
  for (DType t : kAllDTypes) {
    if (!npy_descr(t)) {
      EXPECT_THROW(npy_header_bytes({t, {2}}, "x"), MappingError) << dtype_name(t);
      continue;
    }
    std::string h = npy_header_bytes({t, {2, 3}}, "x");
    EXPECT_EQ(h.size() % 64, 0u);
    NpyHeader p = parse_npy_header(std::as_bytes(std::span(h.data(), h.size())), "mem");
    EXPECT_EQ(p.info, (TensorInfo{t, {2, 3}})) << dtype_name(t);
    EXPECT_EQ(p.data_offset, h.size());
    EXPECT_EQ(p.nbytes, 6 * dtype_size(t));
    EXPECT_FALSE(p.big_endian);
  }
}

TEST(NpyHeader, BigEndianFortranIsSwappedAndReordered) {
  test::TempDir dir;
  // >i2, shape (2, 3), Fortran order: stored column-major, big-endian.
  // C-order values: [[1, 2, 3], [4, 5, 6]] -> column-major 1 4 2 5 3 6.
  std::string data;
  for (int v : {1, 4, 2, 5, 3, 6}) {
    data += static_cast<char>(0);
    data += static_cast<char>(v);
  }
  write_file(dir / "be.npy", make_npy("{'descr': '>i2', 'fortran_order': True, 'shape': (2, 3), }", data));
  Checkpoint ck = read_checkpoint(dir / "be.npy");
  const Tensor& t = ck.root.find("be")->tensor();
  EXPECT_EQ(t.info, (TensorInfo{DType::I16, {2, 3}}));
  EXPECT_EQ(values_npy<std::int16_t>(t), (std::vector<std::int16_t>{1, 2, 3, 4, 5, 6}));
  // Partial, unaligned read through the swap source (C order bytes 3..6).
  std::byte part[4];
  t.source->read(3, part);
  EXPECT_EQ(std::to_integer<int>(part[0]), 0);  // high byte of 2
  EXPECT_EQ(std::to_integer<int>(part[1]), 3);  // low byte of 3
  EXPECT_EQ(std::to_integer<int>(part[2]), 0);
  EXPECT_EQ(std::to_integer<int>(part[3]), 4);
}

TEST(NpyHeader, BigEndianComplexSwapsEachHalf) {
  test::TempDir dir;
  float re = 1.5f, im = -2.25f;
  std::string data(8, '\0');
  std::memcpy(data.data(), &re, 4);
  std::memcpy(data.data() + 4, &im, 4);
  std::reverse(data.begin(), data.begin() + 4);
  std::reverse(data.begin() + 4, data.end());
  write_file(dir / "c.npy", make_npy("{'descr': '>c8', 'fortran_order': False, 'shape': (), }", data));
  Checkpoint ck = read_checkpoint(dir / "c.npy");
  EXPECT_EQ(ck.root.find("c")->tensor().info, (TensorInfo{DType::C64, {}}));
  EXPECT_EQ(values_npy<float>(ck.root.find("c")->tensor()), (std::vector<float>{1.5f, -2.25f}));
}

TEST(NpyHeader, VersionsAndLayoutVariantsParse) {
  // v2 and v3 use a 4-byte length; keys in any order, double quotes, no trailing comma, 'L'.
  for (int major : {2, 3}) {
    std::string f = make_npy("{'shape': (2L,), \"fortran_order\": False, 'descr': '<u2'}", std::string("\x01\x00\x02\x01", 4), major);
    NpyHeader h = parse_npy_header(std::as_bytes(std::span(f.data(), f.size())), "mem");
    EXPECT_EQ(h.major, major);
    EXPECT_EQ(h.info, (TensorInfo{DType::U16, {2}}));
    EXPECT_EQ(h.data_offset, 128u);
  }
  std::string bf = make_npy("{'descr': '<V2', 'fortran_order': False, 'shape': (1,), }", "ab");
  auto span = std::as_bytes(std::span(bf.data(), bf.size()));
  EXPECT_NE(error_of([&] { parse_npy_header(span, "bf.npy"); }).find("'<V2'"), std::string::npos);
  EXPECT_EQ(parse_npy_header(span, "bf.npy", 0, {.v2_as_bf16 = true}).info.dtype, DType::BF16);
}

TEST(NpyBadInput, EachIsAFormatErrorNamingTheFile) {
  test::TempDir dir;
  const std::string good = read_file(fixture("npz/big.npy"));
  auto expect_error = [&](const std::string& name, const std::string& bytes, const std::string& needle) {
    const std::string path = dir / name;
    write_file(path, bytes);
    std::string msg = error_of([&] { read_checkpoint(path); });
    EXPECT_NE(msg.find(path), std::string::npos) << name << ": " << msg;
    EXPECT_NE(msg.find(needle), std::string::npos) << name << ": " << msg;
  };
  expect_error("trunc_data.npy", good.substr(0, good.size() - 1), "truncated .npy data");
  expect_error("trunc_header.npy", good.substr(0, 60), "truncated .npy header");
  std::string long_len = good.substr(0, 128);
  long_len[8] = '\xff';
  long_len[9] = '\x7f';
  expect_error("hlen_past_end.npy", long_len, "truncated .npy header");
  std::string huge = good.substr(0, 128);
  huge[6] = 2;
  huge.insert(10, 2, '\0');
  huge[8] = '\0';
  huge[9] = '\0';
  huge[10] = '\0';
  huge[11] = '\x10';
  expect_error("hlen_huge.npy", huge, "exceeds the limit");
  expect_error("overflow.npy",
               make_npy("{'descr': '<f8', 'fortran_order': False, 'shape': (4611686018427387904, 4), }", ""),
               "overflows");
  expect_error("bytes_overflow.npy",
               make_npy("{'descr': '<c16', 'fortran_order': False, 'shape': (4611686018427387904, 2), }", ""),
               "overflows a 64-bit byte count");
  expect_error("dim_too_big.npy",
               make_npy("{'descr': '<f8', 'fortran_order': False, 'shape': (99999999999999999999,), }", ""),
               "64 bits");
  expect_error("object.npy", make_npy("{'descr': '|O', 'fortran_order': False, 'shape': (1,), }", "12345678"),
               "'|O'");
  expect_error("struct.npy",
               make_npy("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }", "1234"),
               "structured dtypes");
  expect_error("string.npy", make_npy("{'descr': '<U4', 'fortran_order': False, 'shape': (1,), }", std::string(16, 'a')),
               "'<U4'");
  expect_error("missing_key.npy", make_npy("{'descr': '<f4', 'shape': (1,), }", "abcd"), "missing key 'fortran_order'");
  expect_error("extra_key.npy", make_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': 1}", "abcd"),
               "unexpected key 'x'");
  expect_error("not_tuple.npy", make_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1), }", "abcd"),
               "not a tuple");
  expect_error("code.npy", make_npy("{'descr': '<f4', 'fortran_order': __import__('os'), 'shape': (1,), }", "abcd"),
               "fortran_order is not True or False");
  expect_error("negative.npy", make_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }", "abcd"),
               "non-negative integer");
  std::string v9 = good;
  v9[6] = 9;
  expect_error("version.npy", v9, "unsupported .npy version 9.0");
  // The error carries the offset of the problem: for truncated data, the data offset.
  write_file(dir / "t.npy", good.substr(0, 200));
  try {
    read_checkpoint(dir / "t.npy");
    ADD_FAILURE() << "no error";
  } catch (const FormatError& e) {
    EXPECT_EQ(e.offset(), std::optional<std::uint64_t>(128));
  }
}

TEST(NpyWriter, RefusesWhatNpyCannotHold) {
  test::TempDir dir;
  const Format& npy = format_by_name("npy");
  Checkpoint two;
  Bytes b1(4), b2(2);
  std::memset(b1.data(), 0, 4);
  std::memset(b2.data(), 0, 2);
  two.root.add("a", Node::tensor(make_memory_tensor({DType::F32, {1}}, std::move(b1))));
  two.root.add("b", Node::tensor(make_memory_tensor({DType::BF16, {1}}, std::move(b2))));
  try {
    write_checkpoint(two, dir / "two.npy", npy);
    ADD_FAILURE() << "no error";
  } catch (const MappingError& e) {
    EXPECT_NE(std::string(e.what()).find("a (tensor), b (tensor)"), std::string::npos) << e.what();
  }
  Checkpoint bf;
  bf.root.add("w", Node::tensor(two.root.find("b")->tensor()));
  try {
    write_checkpoint(bf, dir / "bf.npy", npy);
    ADD_FAILURE() << "no error";
  } catch (const MappingError& e) {
    EXPECT_NE(std::string(e.what()).find("w: dtype BF16 has no NumPy"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(path_exists(dir / "two.npy"));
  EXPECT_FALSE(path_exists(dir / "bf.npy"));
}

TEST(NpyDetect, OnlyNpyMagic) {
  const Format& npy = format_by_name("npy");
  EXPECT_TRUE(npy.detect(fixture("npz/fortran.npy")));
  EXPECT_FALSE(npy.detect(fixture("npz/arrays.npz")));
  EXPECT_FALSE(npy.detect(fixture("flax_msgpack/params.msgpack")));
  EXPECT_FALSE(npy.detect(fixture("npz")));                  // a directory
  EXPECT_FALSE(npy.detect(fixture("npz/does-not-exist")));   // missing
}

}  // namespace
}  // namespace ckb
