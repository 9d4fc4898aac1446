// Tests of the Orbax reader (formats/orbax) against the checkpoints real Orbax 0.12.4
// wrote: every tensor's dtype, shape and sha256 against manifest.json, the non-tensor
// leaves, path resolution (item, step, CheckpointManager root), and corrupt copies whose
// errors must name the array and the file.
#include <algorithm>
#include <filesystem>

#include "core/errors.h"
#include "core/hash.h"
#include "formats/format.h"
#include "test_util.h"

namespace ckb {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;


Checkpoint read(const std::string& path, ReadOptions opts = {}) {
  EXPECT_TRUE(format_by_name("orbax").detect(path)) << path;
  Checkpoint ck = read_checkpoint(path, opts);
  EXPECT_EQ(ck.format, "orbax");
  return ck;
}

// Checks scalars / strings / None leaves / empty nodes listed in a manifest.
void expect_extras(const Checkpoint& ck, const json& m) {
  if (m.contains("scalars"))
    for (const auto& [name, v] : m["scalars"].items()) {
      const Node* n = find_path(ck.root, name);
      ASSERT_NE(n, nullptr) << name;
      if (v.is_number_integer()) {
        ASSERT_EQ(n->type_name(), "int") << name;
        EXPECT_EQ(std::get<std::int64_t>(n->value()), v.get<std::int64_t>()) << name;
      } else {
        ASSERT_EQ(n->type_name(), "float") << name;
        EXPECT_EQ(std::get<double>(n->value()), v.get<double>()) << name;
      }
      EXPECT_EQ(n->attrs.at("orbax.value_type"), "scalar");
    }
  if (m.contains("strings"))
    for (const auto& [name, v] : m["strings"].items()) {
      const Node* n = find_path(ck.root, name);
      ASSERT_NE(n, nullptr) << name;
      ASSERT_EQ(n->type_name(), "string") << name;
      EXPECT_EQ(std::get<std::string>(n->value()), v.get<std::string>());
    }
  if (m.contains("none_leaves"))
    for (const auto& name : m["none_leaves"]) {
      const Node* n = find_path(ck.root, name.get<std::string>());
      ASSERT_NE(n, nullptr) << name;
      EXPECT_EQ(n->type_name(), "none") << name;
    }
  if (m.contains("empty_nodes"))
    for (const auto& name : m["empty_nodes"]) {
      const Node* n = find_path(ck.root, name.get<std::string>());
      ASSERT_NE(n, nullptr) << name;
      EXPECT_TRUE(n->is_empty_container()) << name;
    }
}

std::string sha_of(const Node* n) { return n && n->is_tensor() ? tensor_sha256(n->tensor()) : "<not a tensor>"; }

// KNOWN MANIFEST/DATA DIFFERENCES (reported to the lead; the fixtures are not edited):
// the generator hashed its NumPy inputs *before* JAX converted them, so for a few tensors
// the manifest describes bytes Orbax never stored:
//  - "i64": JAX without x64 stored int64 [-(2^62), 0, 2^62+5] as int32 [0, 0, 5] ("<i4").
//  - "scalar": a 0-d float32 (zarr shape []); the manifest says shape [1], same bytes.
//  - openpi projection kernels: NumPy float32/np.float64 promoted them to float64 in the
//    manifest; Orbax stored float32 ("<f4"), so only the shape can be compared.
// Each is taken out of the manifest and asserted against what is really on disk.
json without(json m, const std::vector<std::string>& names) {
  for (const auto& n : names) m["tensors"].erase(n);
  return m;
}
// A copy of `ck` without the leaves at the given '/'-paths.
Checkpoint without(const Checkpoint& ck, const std::vector<std::string>& names) {
  Checkpoint c = ck;
  for (const auto& n : names) {
    Node* parent = &c.root;
    std::string rest = n;
    for (auto p = rest.find('/'); p != std::string::npos; p = rest.find('/')) {
      parent = parent->find(rest.substr(0, p));
      rest = rest.substr(p + 1);
    }
    auto& ch = parent->container().children;
    auto it = std::find_if(ch.begin(), ch.end(), [&](const Child& x) { return x.key == rest; });
    EXPECT_NE(it, ch.end()) << n;
    if (it != ch.end()) ch.erase(it);
  }
  return c;
}

class OrbaxTensorSet : public ::testing::TestWithParam<std::string> {};

TEST_P(OrbaxTensorSet, MatchesManifest) {
  const std::string c = GetParam();
  const json m = test::load_json(test::fixture(c + "/manifest.json"));
  Checkpoint ck = read(test::fixture(c + "/ckpt"));
  test::expect_matches_manifest(without(ck, {"i64", "scalar"}), without(m, {"i64", "scalar"}));
  expect_extras(ck, m);
  // i64: int32 [0, 0, 5] on disk.
  const Node* i64 = find_path(ck.root, "i64");
  ASSERT_TRUE(i64 && i64->is_tensor());
  EXPECT_EQ(i64->tensor().info, (TensorInfo{DType::I32, {3}}));
  const std::int32_t i64_disk[3] = {0, 0, 5};
  EXPECT_EQ(sha_of(i64), sha256_hex(std::as_bytes(std::span(i64_disk))));
  // scalar: 0-d float32 3.5 -- same sha256 as the manifest, shape [].
  const Node* sc = find_path(ck.root, "scalar");
  ASSERT_TRUE(sc && sc->is_tensor());
  EXPECT_EQ(sc->tensor().info, (TensorInfo{DType::F32, {}}));
  EXPECT_EQ(sha_of(sc), m["tensors"]["scalar"]["sha256"].get<std::string>());
  // Container kinds and attrs.
  EXPECT_EQ(find_path(ck.root, "stack")->type_name(), "list");  // key_type 1
  EXPECT_EQ(find_path(ck.root, "layers")->type_name(), "dict");  // "0" with key_type 2
  EXPECT_EQ(find_path(ck.root, "big")->attrs.at("orbax.value_type"), "jax.Array");
  const bool v3 = c.find("zarr3") != std::string::npos;
  EXPECT_EQ(find_path(ck.root, "step")->attrs.at("orbax.dtype"), v3 ? "int64" : "<i8");
  EXPECT_EQ(find_path(ck.root, "empty_dict")->type_name(), "dict");
  // 16 tensors + step + run_name + nothing + empty_dict, in sorted key order.
  std::vector<std::string> order;
  visit_leaves(ck.root, [&](const Path& p, const Node&) { order.push_back(join_path(p)); });
  EXPECT_EQ(order.size(), 20u);
  EXPECT_TRUE(std::is_sorted(order.begin(), order.end())) << ::testing::PrintToString(order);
}

INSTANTIATE_TEST_SUITE_P(Orbax, OrbaxTensorSet,
                         ::testing::Values("orbax_ocdbt_zarr2", "orbax_ocdbt_zarr3", "orbax_plain_zarr2",
                                           "orbax_plain_zarr3"));

TEST(OrbaxFixtures, ShardedArraysOverA2x2Mesh) {
  for (const char* c : {"orbax_sharded_zarr2", "orbax_sharded_zarr3"}) {
    Checkpoint ck = read(test::fixture(std::string(c) + "/ckpt"));
    test::expect_matches_manifest(ck, test::load_json(test::fixture(std::string(c) + "/manifest.json")));
  }
}

TEST(OrbaxFixtures, ManagerRootLatestAndChosenStep) {
  const std::string root = test::fixture("orbax_manager/run");
  const json m = test::load_json(test::fixture("orbax_manager/manifest.json"));
  Checkpoint ck = read(root);
  test::expect_matches_manifest(ck, m);  // w = [2, 2, 2] from step 2
  EXPECT_EQ(ck.metadata.at("orbax.step"), "2");
  EXPECT_EQ(ck.metadata.at("orbax.item"), "params");
  ReadOptions one;
  one.step = 1;
  Checkpoint ck1 = read_checkpoint(root, one);
  const float ones[3] = {1, 1, 1};
  EXPECT_EQ(sha_of(find_path(ck1.root, "w")), sha256_hex(std::as_bytes(std::span(ones))));
  ReadOptions three;
  three.step = 3;
  EXPECT_THROW(read_checkpoint(root, three), UsageError);
  // The step directory and the item directory read the same.
  test::expect_matches_manifest(read(root + "/2"), m);
  test::expect_matches_manifest(read(root + "/2/params"), m);
}

TEST(OrbaxFixtures, OpenpiReleaseAndTrain) {
  const std::vector<std::string> f64_in_manifest = {"action_in_proj/kernel", "action_out_proj/kernel",
                                                    "action_time_mlp_in/kernel", "action_time_mlp_out/kernel",
                                                    "state_proj/kernel"};
  for (const char* c : {"openpi_pi0_tiny_lora", "openpi_pi0_tiny_full"}) {
    for (const auto& [sub, path, suffix] :
         {std::tuple<std::string, std::string, std::string>{"release", "release/params", ""},
          {"train", "train/checkpoints", "/value"}}) {
      const json m = test::load_json(test::fixture(std::string(c) + "/" + sub + "/manifest.json"));
      Checkpoint ck = read(test::fixture(std::string(c) + "/" + path));
      std::vector<std::string> odd;
      for (const auto& n : f64_in_manifest) odd.push_back("params/" + n + suffix);
      test::expect_matches_manifest(without(ck, odd), without(m, odd));
      for (const auto& n : odd) {
        const Node* t = find_path(ck.root, n);
        ASSERT_TRUE(t && t->is_tensor()) << n;
        EXPECT_EQ(m["tensors"][n]["dtype"], "F64") << n;  // the manifest's claim
        EXPECT_EQ(t->tensor().info.dtype, DType::F32) << n;  // what Orbax stored ("<f4")
        EXPECT_EQ(t->tensor().info.shape, m["tensors"][n]["shape"].get<Shape>()) << n;
      }
      EXPECT_EQ(tensor_list(ck.root).size(), m["tensors"].size());
      if (sub == "train") {
        EXPECT_EQ(ck.metadata.at("orbax.step"), "100");
      }
    }
  }
}

// maxtext_linen_nnx has no manifest.json: the checkpoints are checked against each other
// (the same values saved through different layouts must be byte-identical).
TEST(OrbaxFixtures, MaxtextCheckpointsAgreeAcrossLayouts) {
  const std::string base = test::fixture("maxtext_linen_nnx/");
  Checkpoint linen = read(base + "linen_full"), params = read(base + "linen_params"), fresh = read(base + "nnx_fresh_raw"),
             raw = read(base + "nnx_expected_raw"), pure = read(base + "nnx_expected_pure");
  EXPECT_EQ(linen.metadata.at("orbax.step"), "3");
  EXPECT_EQ(params.metadata.at("orbax.step"), "0");
  auto L = test::tensors_by_name(linen), P = test::tensors_by_name(params), F = test::tensors_by_name(fresh), R = test::tensors_by_name(raw), U = test::tensors_by_name(pure);
  EXPECT_EQ(L.size(), 38u);
  EXPECT_EQ(P.size(), 12u);
  EXPECT_EQ(F.size(), 45u);
  EXPECT_EQ(R.size(), 45u);
  EXPECT_EQ(U.size(), 45u);
  auto same = [](const Tensor* a, const Tensor* b) {
    return a && b && a->info == b->info && tensor_sha256(*a) == tensor_sha256(*b);
  };
  // Linen TrainState: step 3 (python scalar), opt_state[1] None; params-only: step 0, opt_state {}.
  EXPECT_EQ(std::get<std::int64_t>(find_path(linen.root, "step")->value()), 3);
  EXPECT_EQ(find_path(linen.root, "opt_state")->type_name(), "list");
  EXPECT_EQ(find_path(linen.root, "opt_state/1")->type_name(), "none");
  EXPECT_EQ(std::get<std::int64_t>(find_path(params.root, "step")->value()), 0);
  EXPECT_TRUE(find_path(params.root, "opt_state")->is_empty_container());
  int compared = 0;
  for (const auto& [name, t] : L) {
    if (name.rfind("params/params/", 0) == 0) {
      const std::string rest = name.substr(14);
      EXPECT_TRUE(same(t, R["model/" + rest + "/value"])) << name;
      EXPECT_TRUE(same(t, P[name])) << name;
      ++compared;
    } else if (name.rfind("opt_state/0/", 0) == 0) {  // mu/params/x -> mu/x, count
      std::string rest = name.substr(12);
      if (auto p = rest.find("/params/"); p != std::string::npos) rest.erase(p, 7);
      EXPECT_TRUE(same(t, R["optimizer/opt_state/0/" + rest + "/value"])) << name;
      ++compared;
    } else {
      EXPECT_TRUE(same(t, R["optimizer/" + name + "/value"])) << name;
      ++compared;
    }
  }
  EXPECT_EQ(compared, 38);
  const std::uint32_t three = 3;
  EXPECT_EQ(tensor_sha256(*R["optimizer/step/value"]), sha256_hex(std::as_bytes(std::span(&three, 1))));
  // Raw nnx.State vs to_pure_dict: the same values without the "value" level.
  for (const auto& [name, t] : R) {
    ASSERT_GE(name.size(), 6u);
    EXPECT_EQ(name.substr(name.size() - 6), "/value");
    EXPECT_TRUE(same(t, U[name.substr(0, name.size() - 6)])) << name;
  }
  // Fresh NNX state has the same structure; RNG keys carry their impl, key(0) data = [0, 0].
  for (const auto& [name, t] : R) ASSERT_TRUE(F.count(name) && F[name]->info == t->info) << name;
  int keys = 0;
  for (const Checkpoint* ck : {&fresh, &raw, &pure})
    visit_leaves(ck->root, [&](const Path& p, const Node& n) {
      if (!n.attrs.count("random_key_impl")) return;
      ++keys;
      EXPECT_EQ(n.attrs.at("random_key_impl"), "threefry2x32");
      EXPECT_EQ(n.tensor().info, (TensorInfo{DType::U32, {2}})) << join_path(p);
      EXPECT_NE(join_path(p).find("key"), std::string::npos);
    });
  EXPECT_EQ(keys, 9);
  const std::uint32_t key0[2] = {0, 0};
  EXPECT_EQ(tensor_sha256(*R["model/rngs/params/key/value"]), sha256_hex(std::as_bytes(std::span(key0))));
}

TEST(OrbaxPaths, DetectionAndStepSelection) {
  EXPECT_FALSE(format_by_name("orbax").detect(test::fixture("orbax_manager/manifest.json")));
  EXPECT_FALSE(format_by_name("orbax").detect(test::fixture("npz")));
  EXPECT_FALSE(format_by_name("orbax").detect("/nonexistent/path"));
  EXPECT_FALSE(format_by_name("orbax").detect(test::fixture("orbax_ocdbt_zarr2/ckpt/d")));
  test::TempDir dir;
  fs::copy(test::fixture("orbax_manager/run"), dir / "run", fs::copy_options::recursive);
  // An uncommitted step 3 and a temporary step 4 are ignored.
  fs::copy(dir / "run/1", dir / "run/3", fs::copy_options::recursive);
  fs::remove(dir / "run/3/commit_success.txt");
  fs::remove(dir / "run/3/_CHECKPOINT_METADATA");
  fs::copy(dir / "run/1", dir / "run/4.orbax-checkpoint-tmp-99", fs::copy_options::recursive);
  Checkpoint ck = read(dir / "run");
  EXPECT_EQ(ck.metadata.at("orbax.step"), "2");
  // A step directory with two items becomes a Dict keyed by item name.
  fs::copy(dir / "run/1/params", dir / "run/2/other", fs::copy_options::recursive);
  Checkpoint two = read(dir / "run/2");
  ASSERT_EQ(two.root.size(), 2u);
  EXPECT_EQ(two.root.container().children[0].key, "other");
  EXPECT_EQ(two.root.container().children[1].key, "params");
  const float ones[3] = {1, 1, 1}, twos[3] = {2, 2, 2};
  EXPECT_EQ(sha_of(find_path(two.root, "other/w")), sha256_hex(std::as_bytes(std::span(ones))));
  EXPECT_EQ(sha_of(find_path(two.root, "params/w")), sha256_hex(std::as_bytes(std::span(twos))));
  EXPECT_EQ(read(dir / "run").root.size(), 2u);
}

// Corrupt copies: each error must be a FormatError naming the array and the file.
struct Corrupt {
  test::TempDir dir;
  std::string root;
  explicit Corrupt(const std::string& c) : root(dir / "ckpt") {
    fs::copy(test::fixture(c + "/ckpt"), root, fs::copy_options::recursive);
  }
  // Reads the checkpoint and every tensor; returns the FormatError message.
  std::string error() {
    try {
      Checkpoint ck = read_checkpoint(root);
      for (const auto& [name, t] : tensor_list(ck.root)) tensor_sha256(*t);
    } catch (const FormatError& e) {
      return e.what();
    }
    return "<no FormatError>";
  }
};

void expect_names(const std::string& msg, const std::string& array, const std::string& file) {
  EXPECT_NE(msg.find("array '" + array + "'"), std::string::npos) << msg;
  EXPECT_NE(msg.find(file), std::string::npos) << msg;
}

TEST(OrbaxCorrupt, OcdbtManifestNodeAndDataFile) {
  {
    Corrupt c("orbax_ocdbt_zarr2");
    std::string m = test::read_file(c.root + "/manifest.ocdbt");
    m[50] ^= 0x04;
    test::write_file(c.root + "/manifest.ocdbt", m);
    const auto msg = c.error();
    expect_names(msg, "bf16_specials", c.root + "/manifest.ocdbt");
    EXPECT_NE(msg.find("crc32c mismatch"), std::string::npos) << msg;
  }
  {
    Corrupt c("orbax_ocdbt_zarr2");
    const std::string node = c.root + "/d/7b36828f0ed234fdf74b0fbb97d77b5d";
    std::string n = test::read_file(node);
    n[n.size() - 9] ^= 0x40;
    test::write_file(node, n);
    const auto msg = c.error();
    expect_names(msg, "bf16_specials", node);
    EXPECT_NE(msg.find("crc32c mismatch"), std::string::npos) << msg;
  }
  {  // the per-process data file holding the 'big' chunk, cut short
    Corrupt c("orbax_ocdbt_zarr2");
    const std::string data = c.root + "/ocdbt.process_0/d/9c372f7762a68e8b844e9774eee33e09";
    std::string d = test::read_file(data);
    test::write_file(data, d.substr(0, 1000));
    Checkpoint ck = read_checkpoint(c.root);  // lazy: metadata still reads
    const auto msg = c.error();
    expect_names(msg, "big", data);
    EXPECT_NE(msg.find("beyond the end"), std::string::npos) << msg;
  }
}

TEST(OrbaxCorrupt, PerArrayDirectories) {
  {  // a bad zstd frame
    Corrupt c("orbax_plain_zarr2");
    std::string z = test::read_file(c.root + "/big/0.0");
    for (std::size_t i = 20; i < 200; ++i) z[i] = static_cast<char>(i * 7);
    test::write_file(c.root + "/big/0.0", z);
    const auto msg = c.error();
    expect_names(msg, "big", c.root + "/big/0.0");
    EXPECT_NE(msg.find("zstd"), std::string::npos) << msg;
  }
  {  // .zarray lying about the shape (and chunk): the chunk decodes to fewer bytes
    Corrupt c("orbax_plain_zarr2");
    test::write_file(c.root + "/embed.weight/.zarray",
                     R"({"chunks":[64,32],"compressor":{"id":"zstd","level":1},"dimension_separator":".","dtype":"<f4","fill_value":null,"filters":null,"order":"C","shape":[64,32],"zarr_format":2})");
    const auto msg = c.error();
    expect_names(msg, "embed.weight", c.root + "/embed.weight/0.0");
    EXPECT_NE(msg.find("8192"), std::string::npos) << msg;
  }
  {  // .zarray claiming a bigger array than its chunks cover: chunk 1.0 is missing
    Corrupt c("orbax_plain_zarr2");
    test::write_file(c.root + "/embed.weight/.zarray",
                     R"({"chunks":[64,16],"compressor":{"id":"zstd","level":1},"dimension_separator":".","dtype":"<f4","fill_value":null,"filters":null,"order":"C","shape":[128,16],"zarr_format":2})");
    const auto msg = c.error();
    expect_names(msg, "embed.weight", c.root + "/embed.weight/1.0");
    EXPECT_NE(msg.find("missing"), std::string::npos) << msg;
  }
  {  // a missing chunk file
    Corrupt c("orbax_plain_zarr3");
    fs::remove(c.root + "/big/c/0/0");
    const auto msg = c.error();
    expect_names(msg, "big", c.root + "/big/c/0/0");
    EXPECT_NE(msg.find("missing"), std::string::npos) << msg;
  }
  {  // a zstd frame declaring 1 TiB of content
    Corrupt c("orbax_plain_zarr2");
    std::string huge = std::string("\x28\xB5\x2F\xFD\xE0", 5);
    for (int i = 0; i < 8; ++i) huge.push_back(static_cast<char>(((1ull << 40) >> (8 * i)) & 0xFF));
    huge += std::string("\x21\x00\x00", 3) + "abcd";
    test::write_file(c.root + "/i32/0.0", huge);
    const auto msg = c.error();
    expect_names(msg, "i32", c.root + "/i32/0.0");
    EXPECT_NE(msg.find("declares 1099511627776"), std::string::npos) << msg;
  }
  {  // the array directory is gone altogether
    Corrupt c("orbax_plain_zarr2");
    fs::remove_all(c.root + "/u8");
    const auto msg = c.error();
    expect_names(msg, "u8", c.root);
  }
}

}  // namespace
}  // namespace ckb
