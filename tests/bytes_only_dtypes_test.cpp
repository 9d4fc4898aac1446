// The newer safetensors dtypes (F8_E8M0, F8_E4M3FNUZ, F8_E5M2FNUZ, F6_E2M3, F6_E3M2, F4)
// are read and carried as raw bytes through layout-only conversions; casts, arithmetic,
// element-addressing ops on packed types and formats without the type are refused naming the
// tensor. Inputs are assembled by hand and outputs parsed by hand (nlohmann + byte offsets),
// so the expected bytes do not come from ckptbridge.
#include <filesystem>
#include <map>

#include <nlohmann/json.hpp>

#include "core/dtype.h"
#include "core/errors.h"
#include "formats/format.h"
#include "test_util.h"

namespace ckb {
namespace {

using test::le64;

struct Raw {
  std::string dtype;
  std::vector<std::int64_t> shape;
  std::string bytes;
};

// Hand bytes: E8M0 1.0 2.0 NaN; FNUZ values; F6/F4 packed bit patterns as safetensors stores them.
const std::map<std::string, Raw> kTensors = {
    {"e8", {"F8_E8M0", {3}, "\x7f\x80\xff"}},
    {"fz", {"F8_E4M3FNUZ", {2}, "\x40\x80"}},
    {"gz", {"F8_E5M2FNUZ", {2}, "\x3c\xc0"}},
    {"f6a", {"F6_E2M3", {4}, "\x12\x34\x56"}},        // 4 x 6 bits = 3 bytes
    {"f6b", {"F6_E3M2", {2, 4}, "\x01\x02\x03\x04\x05\x06"}},  // 8 x 6 bits = 6 bytes
    {"f4", {"F4", {2, 3}, "\x21\x43\x65"}},            // 6 x 4 bits = 3 bytes
};

std::string make_file(const std::map<std::string, Raw>& ts) {
  nlohmann::ordered_json h = nlohmann::ordered_json::object();
  std::string data;
  for (const auto& [name, t] : ts) {
    h[name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {data.size(), data.size() + t.bytes.size()}}};
    data += t.bytes;
  }
  const std::string hs = h.dump();
  return le64(hs.size()) + hs + data;
}

// name -> (dtype, shape, bytes) of a safetensors file, parsed by hand.
std::map<std::string, Raw> parse_by_hand(const std::string& file) {
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(file[static_cast<std::size_t>(i)]);
  auto h = nlohmann::json::parse(file.substr(8, n));
  std::map<std::string, Raw> out;
  for (auto& [k, v] : h.items()) {
    if (k == "__metadata__") continue;
    const std::uint64_t b = v["data_offsets"][0], e = v["data_offsets"][1];
    out[k] = {v["dtype"], v["shape"].get<std::vector<std::int64_t>>(), file.substr(8 + n + b, e - b)};
  }
  return out;
}

void expect_same(const std::map<std::string, Raw>& got, const std::map<std::string, Raw>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (const auto& [k, w] : want) {
    ASSERT_TRUE(got.count(k)) << k;
    EXPECT_EQ(got.at(k).dtype, w.dtype) << k;
    EXPECT_EQ(got.at(k).shape, w.shape) << k;
    EXPECT_EQ(got.at(k).bytes, w.bytes) << k;
  }
}

#define EXPECT_HAS(hay, needle) EXPECT_NE((hay).find(needle), std::string::npos) << (hay)

TEST(BytesOnlyDTypes, SizesFollowSafetensorsBitsizes) {
  EXPECT_EQ(dtype_bits(DType::F4), 4u);
  EXPECT_EQ(dtype_bits(DType::F6_E2M3), 6u);
  EXPECT_EQ(dtype_bits(DType::F6_E3M2), 6u);
  EXPECT_EQ(dtype_bits(DType::F8_E8M0), 8u);
  EXPECT_EQ(dtype_size(DType::F8_E4M3FNUZ), 1u);
  EXPECT_EQ(dtype_storage_bytes(DType::F4, 6), 3u);
  EXPECT_EQ(dtype_storage_bytes(DType::F6_E2M3, 4), 3u);
  EXPECT_EQ(dtype_storage_bytes(DType::F4, 3), 2u);  // rounds up, never under-sizes
  EXPECT_THROW(dtype_size(DType::F4), MappingError);
  EXPECT_THROW(dtype_size(DType::F6_E3M2), MappingError);
  for (auto n : {"F8_E8M0", "F8_E4M3FNUZ", "F8_E5M2FNUZ", "F6_E2M3", "F6_E3M2", "F4"}) {
    auto t = dtype_from_name(n);
    ASSERT_TRUE(t) << n;
    EXPECT_EQ(dtype_name(*t), n);
    EXPECT_TRUE(dtype_is_bytes_only(*t));
    EXPECT_FALSE(dtype_is_float(*t));
  }
  EXPECT_FALSE(dtype_from_numpy_name(""));  // F4/F6 have no numpy name
}

TEST(BytesOnlyDTypes, ReadExactly) {
  test::TempDir d;
  test::write_file(d / "in.safetensors", make_file(kTensors));
  auto ck = read_checkpoint(d / "in.safetensors");
  for (const auto& [name, raw] : kTensors) {
    const Node* n = find_path(ck.root, name);
    ASSERT_NE(n, nullptr) << name;
    const Tensor& t = n->tensor();
    EXPECT_EQ(dtype_name(t.info.dtype), raw.dtype);
    EXPECT_EQ(t.info.shape, raw.shape);
    EXPECT_EQ(t.info.nbytes(), raw.bytes.size()) << name;
    Bytes b = t.read_all();
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(b.data()), b.size()), raw.bytes) << name;
  }
  auto r = test::run_cli("inspect " + d / "in.safetensors");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_HAS(r.out, "F6_E3M2");
}

TEST(BytesOnlyDTypes, SubByteSizesMustBeWholeBytes) {
  test::TempDir d;
  // F4 [3] is 12 bits: the safetensors library refuses it (MisalignedSlice).
  test::write_file(d / "odd.safetensors", make_file({{"w", {"F4", {3}, "\x21\x03"}}}));
  auto r = test::run_cli("inspect " + d / "odd.safetensors");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_HAS(r.err, "tensor 'w': F4 [3] is 12 bits, not a whole number of bytes");
  // F4 [4] is 2 bytes, not 4 (no one-byte-per-element reading).
  test::write_file(d / "wide.safetensors", make_file({{"w", {"F4", {4}, std::string("\x21\x43\x00\x00", 4)}}}));
  r = test::run_cli("inspect " + d / "wide.safetensors");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_HAS(r.err, "do not hold F4 [4] (2 bytes)");
}

TEST(BytesOnlyDTypes, LayoutOnlyConversionsCarryTheBytes) {
  test::TempDir d;
  test::write_file(d / "in.safetensors", make_file(kTensors));
  auto r = test::run_cli("convert " + d / "in.safetensors" + " " + d / "out.safetensors");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  expect_same(parse_by_hand(test::read_file(d / "out.safetensors")), kTensors);
  // A rename recipe.
  test::write_file(d / "rename.json", R"({"recipe":"rn","rules":[{"map":"{n}","to":"model.{n}"}]})");
  r = test::run_cli("convert " + d / "in.safetensors" + " " + d / "renamed.safetensors --recipe " + d / "rename.json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::map<std::string, Raw> want;
  for (const auto& [k, v] : kTensors) want["model." + k] = v;
  expect_same(parse_by_hand(test::read_file(d / "renamed.safetensors")), want);
  // Sharded output.
  r = test::run_cli("convert " + d / "in.safetensors" + " " + d / "sh --to safetensors --shard-size 8");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::map<std::string, Raw> shards;
  for (const auto& e : std::filesystem::directory_iterator(d / "sh"))
    if (e.path().extension() == ".safetensors") shards.merge(parse_by_hand(test::read_file(e.path().string())));
  expect_same(shards, kTensors);
  // A transpose of a whole-byte type is a byte permutation: E8M0 [2,3] -> [3,2].
  test::write_file(d / "m.safetensors", make_file({{"m", {"F8_E8M0", {2, 3}, "\x01\x02\x03\x04\x05\x06"}}}));
  test::write_file(d / "t.json", R"({"recipe":"t","rules":[{"map":"m","to":"m","ops":[{"transpose":[1,0]}]}]})");
  r = test::run_cli("convert " + d / "m.safetensors" + " " + d / "mt.safetensors --recipe " + d / "t.json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  expect_same(parse_by_hand(test::read_file(d / "mt.safetensors")), {{"m", {"F8_E8M0", {3, 2}, "\x01\x04\x02\x05\x03\x06"}}});
}

TEST(BytesOnlyDTypes, OrbaxHoldsTheFnuzFloat8sOnly) {
  test::TempDir d;
  const std::map<std::string, Raw> fnuz = {{"fz", kTensors.at("fz")}, {"gz", kTensors.at("gz")}};
  test::write_file(d / "fnuz.safetensors", make_file(fnuz));
  for (const char* zarr3 : {"", " --zarr-version 3"}) {
    std::filesystem::remove_all(d / "ob");
    std::filesystem::remove(d / "back.safetensors");
    auto r = test::run_cli("convert " + d / "fnuz.safetensors" + " " + d / "ob --to orbax" + zarr3);
    ASSERT_EQ(r.exit_code, 0) << zarr3 << r.err;
    r = test::run_cli("convert " + d / "ob" + " " + d / "back.safetensors");
    ASSERT_EQ(r.exit_code, 0) << zarr3 << r.err;
    expect_same(parse_by_hand(test::read_file(d / "back.safetensors")), fnuz);
  }
  test::write_file(d / "e8.safetensors", make_file({{"e8", kTensors.at("e8")}}));
  auto r = test::run_cli("convert " + d / "e8.safetensors" + " " + d / "ob2 --to orbax");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_HAS(r.err, "e8: F8_E8M0 tensor: orbax has no F8_E8M0 type to store it as");
  EXPECT_FALSE(std::filesystem::exists(d / "ob2"));
}

TEST(BytesOnlyDTypes, FormatsWithoutTheTypeRefuseNamingTheTensor) {
  test::TempDir d;
  test::write_file(d / "f4.safetensors", make_file({{"w4", kTensors.at("f4")}}));
  test::write_file(d / "fz.safetensors", make_file({{"wz", kTensors.at("fz")}}));
  for (const std::string to : {"npz", "torch", "msgpack", "npy"}) {
    for (const auto& [file, tensor, dtype] : {std::tuple{"f4", "w4", "F4"}, std::tuple{"fz", "wz", "F8_E4M3FNUZ"}}) {
      const std::string out = d / (std::string("o_") + file + "." + to);
      auto r = test::run_cli("convert " + d / (std::string(file) + ".safetensors") + " " + out + " --to " + to);
      EXPECT_EQ(r.exit_code, 2) << to << " " << r.err;
      EXPECT_HAS(r.err, std::string(tensor) + ": " + dtype + " tensor: " + to + " has no " + dtype + " type");
      EXPECT_FALSE(std::filesystem::exists(out)) << out;
    }
  }
}

TEST(BytesOnlyDTypes, CastsAndElementOpsAreRefused) {
  test::TempDir d;
  test::write_file(d / "in.safetensors", make_file(kTensors));
  auto r = test::run_cli("convert " + d / "in.safetensors" + " " + d / "o.safetensors --dtype BF16");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_HAS(r.err, "tensor: --dtype cannot cast it (ckptbridge carries");
  // A recipe cast from and to them.
  test::write_file(d / "f4.safetensors", make_file({{"w", kTensors.at("f4")}}));
  test::write_file(d / "c.json", R"({"recipe":"c","rules":[{"map":"w","to":"w","ops":[{"cast":"F32"}]}]})");
  r = test::run_cli("convert " + d / "f4.safetensors" + " " + d / "o1.safetensors --recipe " + d / "c.json");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_HAS(r.err, "F4 tensor: cannot be cast to F32");
  test::write_file(d / "u8.safetensors", make_file({{"w", {"U8", {2}, "\x01\x02"}}}));
  test::write_file(d / "c2.json", R"({"recipe":"c","rules":[{"map":"w","to":"w","ops":[{"cast":"F8_E8M0"}]}]})");
  r = test::run_cli("convert " + d / "u8.safetensors" + " " + d / "o2.safetensors --recipe " + d / "c2.json");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_HAS(r.err, "F8_E8M0 tensor: a U8 tensor cannot be cast to it");
  // A transpose of packed F4 would move nibbles, not bytes: refused.
  test::write_file(d / "t.json", R"({"recipe":"t","rules":[{"map":"w","to":"w","ops":[{"transpose":[1,0]}]}]})");
  r = test::run_cli("convert " + d / "f4.safetensors" + " " + d / "o3.safetensors --recipe " + d / "t.json");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_HAS(r.err, "F4 tensor: permute addresses single elements, which are 4 bits packed across bytes");
  test::write_file(d / "s.json", R"({"recipe":"s","rules":[{"map":"w","to":"w","ops":[{"slice":{"axis":0,"start":0,"stop":1}}]}]})");
  r = test::run_cli("convert " + d / "f4.safetensors" + " " + d / "o4.safetensors --recipe " + d / "s.json");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_HAS(r.err, "F4 tensor: slice addresses single elements");
  for (const char* o : {"o.safetensors", "o1.safetensors", "o2.safetensors", "o3.safetensors", "o4.safetensors"})
    EXPECT_FALSE(std::filesystem::exists(d / o)) << o;
}

TEST(BytesOnlyDTypes, DiffComparesRawBytes) {
  test::TempDir d;
  test::write_file(d / "a.safetensors", make_file(kTensors));
  auto changed = kTensors;
  changed["f4"].bytes = "\x21\x43\x66";
  test::write_file(d / "b.safetensors", make_file(changed));
  auto r = test::run_cli("diff " + d / "a.safetensors" + " " + d / "a.safetensors --json");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  r = test::run_cli("diff " + d / "a.safetensors" + " " + d / "b.safetensors --json");
  EXPECT_NE(r.exit_code, 0);
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["leaves"]["f4"]["status"], "different");
  EXPECT_EQ(j["leaves"]["f4"]["mismatches"], 1);
  EXPECT_EQ(j["leaves"]["e8"]["status"], "equal");
}

}  // namespace
}  // namespace ckb
