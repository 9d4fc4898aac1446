// Orbax's aggregate layout, pre-_METADATA Orbax items and T5X items, read from the checkpoints
// T5X and Orbax ship as test data (tests/data/wild/{t5x,orbax}, vendored with their
// MANIFEST.json of independently computed values: tools/gen_wild_orbax.py), through the
// library and through `ckptbridge inspect --json --hash`; plus targeted cases: placeholders,
// skip_deserialize, a missing placeholder array, TensorStore specs, and which zarr version a
// directory holding both `.zarray` and `zarr.json` is read as.
#include <algorithm>
#include <cstring>
#include <filesystem>

#include "core/errors.h"
#include "core/hash.h"
#include "formats/format.h"
#include "test_util.h"

namespace ckb {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::string wild(const std::string& rel) { return test::data_path("wild/" + rel); }

// A non-tensor leaf as `inspect --json` shows its "value".
json leaf_json(const Node& n) {
  if (n.is_container()) return n.container().kind == ContainerKind::Dict ? json::object() : json::array();
  if (std::holds_alternative<NoneValue>(n.value())) return nullptr;
  if (const auto* b = std::get_if<bool>(&n.value())) return *b;
  if (const auto* i = std::get_if<std::int64_t>(&n.value())) return *i;
  if (const auto* d = std::get_if<double>(&n.value())) return *d;
  if (const auto* s = std::get_if<std::string>(&n.value())) return *s;
  return "UNEXPECTED " + std::string(n.type_name());
}

void expect_leaves(const Checkpoint& ck, const json& want, const std::string& where) {
  json got = json::object();
  visit_leaves(ck.root, [&](const Path& p, const Node& n) {
    if (!n.is_tensor()) got[join_path(p)] = leaf_json(n);
  });
  EXPECT_EQ(got, want.is_null() ? json::object() : want) << where;
}

void check_manifest(const std::string& project) {
  const json m = test::load_json(wild(project + "/MANIFEST.json"));
  ASSERT_FALSE(m.at("cases").empty());
  for (const auto& c : m.at("cases")) {
    const std::string path = wild(project + "/" + c.at("path").get<std::string>());
    SCOPED_TRACE(path);
    if (c.at("expect") == "read") {
      Checkpoint ck = read_checkpoint(path);
      EXPECT_EQ(ck.format, c.at("format").get<std::string>());
      test::expect_matches_manifest(ck, c);
      expect_leaves(ck, c.value("leaves", json()), path);
    } else {
      const std::string err = test::error_of([&] { read_checkpoint(path); });
      for (const auto& s : c.at("message")) EXPECT_NE(err.find(s.get<std::string>()), std::string::npos) << err;
    }
  }
}

TEST(OrbaxLegacy, T5xTestdataMatchesManifest) { check_manifest("t5x"); }
TEST(OrbaxLegacy, OrbaxGoldensAndBuiltCasesMatchManifest) { check_manifest("orbax"); }

// The CLI on every case: `inspect --json --hash` reports the manifest's format, tensors and
// leaves (exit 0); refused cases exit 2 with the message.
TEST(OrbaxLegacy, InspectJsonHashOnEveryCase) {
  for (const std::string project : {"t5x", "orbax"}) {
    const json m = test::load_json(wild(project + "/MANIFEST.json"));
    for (const auto& c : m.at("cases")) {
      const std::string path = wild(project + "/" + c.at("path").get<std::string>());
      SCOPED_TRACE(path);
      auto r = test::run_cli("inspect --json --hash '" + path + "'");
      if (c.at("expect") == "refuse") {
        EXPECT_EQ(r.exit_code, 2) << r.err;
        for (const auto& s : c.at("message")) EXPECT_NE(r.err.find(s.get<std::string>()), std::string::npos) << r.err;
        continue;
      }
      ASSERT_EQ(r.exit_code, 0) << r.err;
      const json got = json::parse(r.out);
      EXPECT_EQ(got.at("format"), c.at("format"));
      EXPECT_EQ(got.at("tensors"), c.at("tensors"));
      json leaves = json::object();
      for (const auto& [name, v] : got.at("leaves").items()) leaves[name] = v.at("value");
      EXPECT_EQ(leaves, c.value("leaves", json::object()));
    }
  }
}

// ---- aggregate layout ---------------------------------------------------------------------

TEST(OrbaxLegacy, AggregateValuesComeFromTheMsgpackAndPlaceholdersFromZarr) {
  Checkpoint ck = read_checkpoint(wild("orbax/aggregate_some.checkpoint"));
  // a, b: PLACEHOLDER://a, ://b -> the zarr arrays beside the file; c/*: msgpack values.
  for (const char* name : {"a", "b"}) {
    const Node* n = find_path(ck.root, name);
    ASSERT_NE(n, nullptr);
    EXPECT_NE(n->tensor().source->describe().find(std::string("zarr array '") + name + "'"), std::string::npos);
    EXPECT_EQ(n->attrs.count("orbax.aggregate"), 0u);
  }
  for (const char* name : {"c/a", "c/e"}) EXPECT_EQ(find_path(ck.root, name)->attrs.at("orbax.aggregate"), "1");
  // b = arange(16) * 2 as int64 (Orbax's test tree), checked element by element.
  const Tensor& b = find_path(ck.root, "b")->tensor();
  std::vector<std::int64_t> v(16);
  b.source->read(0, {reinterpret_cast<std::byte*>(v.data()), v.size() * 8});
  for (int i = 0; i < 16; ++i) EXPECT_EQ(v[i], 2 * i);
}

TEST(OrbaxLegacy, SkipDeserializeTakesTheAggregateValueEvenWithNoArrays) {
  // aggregate_all: every leaf skip_deserialize, no zarr array at all (this used to fail with
  // "the array data is missing").
  Checkpoint ck = read_checkpoint(wild("orbax/aggregate_all.checkpoint"));
  const Tensor& e = find_path(ck.root, "c/e")->tensor();
  std::vector<std::int64_t> v(16);
  e.source->read(0, {reinterpret_cast<std::byte*>(v.data()), v.size() * 8});
  for (int i = 0; i < 16; ++i) EXPECT_EQ(v[i], 4 * i);
  EXPECT_EQ(e.info.shape, (Shape{4, 4}));
}

TEST(OrbaxLegacy, SkipDeserializeWithOnlyAPlaceholderIsRefused) {
  test::TempDir d;
  fs::copy(wild("orbax/aggregate_some.checkpoint"), d.path(), fs::copy_options::recursive);
  json meta = test::load_json(d / "_METADATA");
  meta["tree_metadata"]["('a',)"]["value_metadata"]["skip_deserialize"] = true;
  test::write_file(d / "_METADATA", meta.dump());
  const std::string err = test::error_of([&] { read_checkpoint(d.path()); });
  EXPECT_NE(err.find(d / "checkpoint"), std::string::npos) << err;
  EXPECT_NE(err.find("leaf 'a' is marked skip_deserialize"), std::string::npos) << err;
  EXPECT_NE(err.find("holds only a placeholder"), std::string::npos) << err;
}

TEST(OrbaxLegacy, MissingPlaceholderArrayNamesItAndThePlaceholder) {
  test::TempDir d;
  fs::copy(wild("orbax/aggregate_some.checkpoint"), d.path(), fs::copy_options::recursive);
  fs::remove_all(d / "b");
  const std::string err = test::error_of([&] { read_checkpoint(d.path()); });
  EXPECT_NE(err.find(d / "b/"), std::string::npos) << err;
  EXPECT_NE(err.find("array 'b' (PLACEHOLDER://b in " + d / "checkpoint)"), std::string::npos) << err;
  EXPECT_NE(err.find("no zarr metadata"), std::string::npos) << err;
  EXPECT_EQ(err.find("the array data is missing"), std::string::npos) << err;
  // The CLI: exit 2, the same message, nothing on stdout.
  auto r = test::run_cli("inspect '" + d.path() + "'");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("array 'b'"), std::string::npos) << r.err;
}

TEST(OrbaxLegacy, AggregateValueUnknownToMetadataIsRefused) {
  test::TempDir d;
  fs::copy(wild("orbax/aggregate_all.checkpoint"), d.path(), fs::copy_options::recursive);
  json meta = test::load_json(d / "_METADATA");
  meta["tree_metadata"].erase("('b',)");
  test::write_file(d / "_METADATA", meta.dump());
  const std::string err = test::error_of([&] { read_checkpoint(d.path()); });
  EXPECT_NE(err.find("holds a value for 'b' that _METADATA does not list"), std::string::npos) << err;
}

// ---- msgpack by hand (maps of strings) for the OCDBT cases --------------------------------

std::string mp_str(const std::string& s) {
  if (s.size() < 32) return std::string(1, static_cast<char>(0xa0 | s.size())) + s;
  return std::string("\xd9", 1) + static_cast<char>(s.size()) + s;
}
std::string mp_map(const std::vector<std::pair<std::string, std::string>>& kv) {  // values already encoded
  std::string out(1, static_cast<char>(0x80 | kv.size()));
  for (const auto& [k, v] : kv) out += mp_str(k) + v;
  return out;
}

// A pre-_METADATA item over an OCDBT database: the fixture Orbax 0.12.4 wrote
// (orbax_ocdbt_zarr2), its _METADATA replaced by an aggregate file of placeholders.
TEST(OrbaxLegacy, LegacyPlaceholdersResolveInsideOcdbt) {
  test::TempDir d;
  fs::copy(test::fixture("orbax_ocdbt_zarr2/ckpt"), d.path(), fs::copy_options::recursive);
  fs::remove(d / "_METADATA");
  test::write_file(d / "checkpoint",
                   mp_map({{"embed", mp_map({{"weight", mp_str("PLACEHOLDER://embed.weight")}})},
                           {"big", mp_str("PLACEHOLDER://big")},
                           {"i16", mp_str("PLACEHOLDER://i16")}}));
  Checkpoint ck = read_checkpoint(d.path());
  EXPECT_EQ(ck.format, "orbax");
  const json want = test::load_json(test::fixture("orbax_ocdbt_zarr2/manifest.json"))["tensors"];
  json sub = {{"tensors", {{"embed/weight", want["embed/weight"]}, {"big", want["big"]}, {"i16", want["i16"]}}}};
  test::expect_matches_manifest(ck, sub);
  EXPECT_NE(find_path(ck.root, "big")->tensor().source->describe().find("ocdbt"), std::string::npos);
}

// The aggregate layout over OCDBT: the fixture's _METADATA kept, an aggregate file whose
// placeholders point into the database.
TEST(OrbaxLegacy, AggregateWithMetadataOverOcdbt) {
  test::TempDir d;
  fs::copy(test::fixture("orbax_ocdbt_zarr2/ckpt"), d.path(), fs::copy_options::recursive);
  test::write_file(d / "checkpoint", mp_map({{"big", mp_str("PLACEHOLDER://big")}, {"i16", mp_str("PLACEHOLDER://i16")}}));
  Checkpoint ck = read_checkpoint(d.path());
  // All tensors but the manifest's two known quirks (tests/orbax_test.cpp: "i64" is int32 on
  // disk, "scalar" is 0-d where the manifest says [1]).
  json m = test::load_json(test::fixture("orbax_ocdbt_zarr2/manifest.json"));
  m["tensors"].erase("i64");
  m["tensors"].erase("scalar");
  for (const char* name : {"i64", "scalar"}) ck.root.container().children.erase(
      std::find_if(ck.root.container().children.begin(), ck.root.container().children.end(),
                   [&](const Child& c) { return c.key == name; }));
  test::expect_matches_manifest(ck, m);
  EXPECT_NE(find_path(ck.root, "big")->tensor().source->describe().find("ocdbt"), std::string::npos);
}

// ---- zarr v2 / v3 choice ------------------------------------------------------------------

std::vector<float> floats_of(const Checkpoint& ck, const std::string& name) {
  const Tensor& t = find_path(ck.root, name)->tensor();
  std::vector<float> v(t.info.numel());
  t.source->read(0, {reinterpret_cast<std::byte*>(v.data()), v.size() * 4});
  return v;
}

// "w" holds A = arange(6) as zarr v2 and B = A * 10 + 0.5 as zarr v3 (tools/gen_wild_orbax.py).
std::vector<float> want_a() { return {0, 1, 2, 3, 4, 5}; }
std::vector<float> want_b() { return {0.5f, 10.5f, 20.5f, 30.5f, 40.5f, 50.5f}; }

TEST(OrbaxLegacy, BothZarrVersionsFollowMetadata) {
  EXPECT_EQ(floats_of(read_checkpoint(wild("orbax/gen/both_declared_v3")), "w"), want_b());
  EXPECT_EQ(floats_of(read_checkpoint(wild("orbax/gen/both_declared_v2")), "w"), want_a());
}

TEST(OrbaxLegacy, BothZarrVersionsWithoutMetadataReadV2LikeOrbax) {
  EXPECT_EQ(floats_of(read_checkpoint(wild("orbax/gen/both_undeclared")), "w"), want_a());
  // Only zarr.json: the v3 array is read.
  test::TempDir d;
  fs::copy(wild("orbax/gen/both_undeclared"), d.path(), fs::copy_options::recursive);
  fs::remove(d / "w/.zarray");
  EXPECT_EQ(floats_of(read_checkpoint(d.path()), "w"), want_b());
}

TEST(OrbaxLegacy, DeclaredVersionMissingIsRefused) {
  test::TempDir d;
  fs::copy(wild("orbax/gen/both_declared_v2"), d.path(), fs::copy_options::recursive);
  fs::remove(d / "w/.zarray");
  const std::string err = test::error_of([&] { read_checkpoint(d.path()); });
  EXPECT_NE(err.find(d / "w/.zarray"), std::string::npos) << err;
  EXPECT_NE(err.find("array 'w'"), std::string::npos) << err;
  EXPECT_NE(err.find("(use_zarr3: false) declares zarr v2, but the array has only a zarr v3 'zarr.json'"),
            std::string::npos)
      << err;
  // With only zarr.json left, declaring zarr3 reads it.
  json meta = test::load_json(d / "_METADATA");
  meta["use_zarr3"] = true;
  test::write_file(d / "_METADATA", meta.dump());
  EXPECT_EQ(floats_of(read_checkpoint(d.path()), "w"), want_b());
}

// ---- T5X TensorStore specs ----------------------------------------------------------------

TEST(OrbaxLegacy, T5xSpecWithoutZarrayUsesTheSpecsMetadata) {
  Checkpoint ck = read_checkpoint(wild("t5x/tiny_t5/checkpoint_1"));
  const Node* k = find_path(ck.root, "optimizer/state/param_states/kernel");
  ASSERT_NE(k, nullptr);
  EXPECT_EQ(k->attrs.at("t5x.zarr_metadata"), "tensorstore spec");
  EXPECT_EQ(k->attrs.at("t5x.tensorstore_path"), "state.param_states.kernel");
  // The step scalar: int32 1 (gzip of 01 00 00 00).
  const Tensor& s = find_path(ck.root, "optimizer/state/param_states/step")->tensor();
  std::int32_t step = 0;
  s.source->read(0, {reinterpret_cast<std::byte*>(&step), 4});
  EXPECT_EQ(step, 1);
  // bias = five float32 ones.
  EXPECT_EQ(floats_of(ck, "optimizer/state/param_states/bias"), std::vector<float>(5, 1.0f));
}

TEST(OrbaxLegacy, T5xSpecWithZarrayReadsIt) {
  test::TempDir d;
  fs::copy(wild("t5x/tiny_t5/checkpoint_1"), d.path(), fs::copy_options::recursive);
  test::write_file(d / "state.param_states.bias/.zarray",
                   R"({"chunks":[5],"compressor":{"id":"gzip","level":1},"dimension_separator":".","dtype":"<f4",)"
                   R"("fill_value":null,"filters":null,"order":"C","shape":[5],"zarr_format":2})");
  Checkpoint ck = read_checkpoint(d.path());
  const Node* b = find_path(ck.root, "optimizer/state/param_states/bias");
  EXPECT_EQ(b->attrs.count("t5x.zarr_metadata"), 0u);
  EXPECT_EQ(floats_of(ck, "optimizer/state/param_states/bias"), std::vector<float>(5, 1.0f));
  // A .zarray that disagrees with the spec's shape is refused, naming both.
  test::write_file(d / "state.param_states.bias/.zarray",
                   R"({"chunks":[4],"compressor":{"id":"gzip","level":1},"dtype":"<f4",)"
                   R"("fill_value":null,"filters":null,"order":"C","shape":[4],"zarr_format":2})");
  const std::string err = test::error_of([&] { read_checkpoint(d.path()); });
  EXPECT_NE(err.find("TensorStore spec of 'optimizer.state.param_states.bias'"), std::string::npos) << err;
  EXPECT_NE(err.find("the spec's shape [5] differs from the stored array's [4]"), std::string::npos) << err;
}

TEST(OrbaxLegacy, T5xSpecArrayWithoutMetadataAndChunkIsRefused) {
  test::TempDir d;
  fs::copy(wild("t5x/tiny_t5/checkpoint_1"), d.path(), fs::copy_options::recursive);
  fs::remove(d / "state.param_states.kernel/0.0");
  const std::string err = test::error_of([&] {
    Checkpoint ck = read_checkpoint(d.path());
    for (const auto& [name, t] : tensor_list(ck.root)) tensor_sha256(*t);
  });
  EXPECT_NE(err.find(d / "state.param_states.kernel/0.0"), std::string::npos) << err;
  EXPECT_NE(err.find("missing"), std::string::npos) << err;
}

TEST(OrbaxLegacy, T5xSingleFileMsgpackAndTfCheckpointFileAreNotOrbaxItems) {
  // A TensorFlow "checkpoint" text file does not make its directory an item.
  test::TempDir d;
  test::write_file(d / "checkpoint", "model_checkpoint_path: \"model.ckpt-0\"\n");
  EXPECT_FALSE(format_by_name("orbax").detect(d.path()));
  EXPECT_FALSE(format_by_name("orbax").detect(d / "checkpoint"));
}

}  // namespace
}  // namespace ckb
