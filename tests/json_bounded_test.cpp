// core/json_bounded.h and every JSON file reader that uses it: duplicate keys and deep
// nesting are FormatErrors naming the file and the key, at each call site.
#include <filesystem>

#include "core/errors.h"
#include "core/json_bounded.h"
#include "formats/format.h"
#include "formats/orbax/orbax_metadata.h"
#include "formats/zarr/zarr_metadata.h"
#include "test_util.h"
#include "profiles/lora.h"
#include "profiles/peft.h"
#include "recipe/recipe.h"

namespace ckb {
namespace {

using test::error_of;

#define EXPECT_HAS(hay, needle) EXPECT_NE((hay).find(needle), std::string::npos) << (hay)

TEST(JsonBounded, ParsesOrdinaryJson) {
  auto j = parse_json_bounded(R"({"a":[1,{"b":2},{"b":3}],"c":{"b":4}})", "x.json");
  EXPECT_EQ(j["a"][2]["b"], 3);
  EXPECT_EQ(j["c"]["b"], 4);
  auto o = parse_ordered_json_bounded(R"({"z":1,"a":2})", "x.json");
  EXPECT_EQ(o.begin().key(), "z");
}

TEST(JsonBounded, DuplicateKeysNameFileKeyAndPlace) {
  EXPECT_EQ(error_of([] { parse_json_bounded(R"({"a":1,"b":2,"a":3})", "f.json"); }),
            "f.json: JSON object at the top level has the key 'a' twice");
  EXPECT_EQ(error_of([] { parse_json_bounded(R"({"x":{"y":[{"k":1},{"k":1,"k":2}]}})", "f.json"); }),
            "f.json: JSON object 'x/y/[]' has the key 'k' twice");
  EXPECT_EQ(error_of([] { parse_ordered_json_bounded(R"({"x":{"q":1,"q":1}})", "g.json", {.offset = 8}); }),
            "g.json (offset 8): JSON object 'x' has the key 'q' twice");
  // The same key in sibling objects is fine.
  EXPECT_NO_THROW(parse_json_bounded(R"({"a":{"k":1},"b":{"k":2},"c":[{"k":1},{"k":2}]})", "f.json"));
  // Sniffing may allow them.
  EXPECT_NO_THROW(parse_json_bounded(R"({"a":1,"a":2})", "f.json", {.reject_duplicate_keys = false}));
}

TEST(JsonBounded, DepthAndSyntax) {
  const std::string deep = std::string(100, '[') + std::string(100, ']');
  EXPECT_EQ(error_of([&] { parse_json_bounded(deep, "d.json"); }), "d.json: JSON nested deeper than 64 levels");
  EXPECT_NO_THROW(parse_json_bounded(deep, "d.json", {.max_depth = 256}));
  EXPECT_TRUE(parse_json_bounded("{\"a\":", "s.json", {.allow_exceptions = false}).is_discarded());
  EXPECT_THROW(parse_json_bounded("{\"a\":", "s.json"), nlohmann::json::parse_error);
}

// Each reader of a JSON file, given one with a repeated key.
TEST(JsonBounded, EveryCallSiteRefusesDuplicateKeys) {
  test::TempDir d;
  // safetensors header: the same tensor twice.
  const std::string h = R"({"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})";
  std::string st(8, '\0');
  st[0] = static_cast<char>(h.size());
  test::write_file(d / "dup.safetensors", st + h + "x");
  auto r = test::run_cli("inspect " + d / "dup.safetensors");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_HAS(r.err, d / "dup.safetensors (offset 8): JSON object at the top level has the key 'w' twice");
  // safetensors index.
  std::filesystem::create_directories(d / "sh");
  test::write_file(d / "sh/model.safetensors.index.json", R"({"weight_map":{"w":"a.safetensors","w":"b.safetensors"}})");
  r = test::run_cli("inspect " + d / "sh");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_HAS(r.err, "model.safetensors.index.json (offset 0): JSON object 'weight_map' has the key 'w' twice");
  // Orbax _METADATA.
  EXPECT_HAS(error_of([] { orbax::parse_tree_metadata(R"({"tree_metadata":{},"tree_metadata":{}})", "ck/_METADATA"); }),
             "ck/_METADATA: JSON object at the top level has the key 'tree_metadata' twice");
  // zarr v2 and v3 metadata.
  EXPECT_HAS(error_of([] {
               zarr::parse_zarray(R"({"zarr_format":2,"shape":[2],"shape":[4],"chunks":[2],"dtype":"<f4","compressor":null,"fill_value":0,"order":"C","filters":null})",
                                  "a/.zarray");
             }),
             "a/.zarray: JSON object at the top level has the key 'shape' twice");
  EXPECT_HAS(error_of([] { zarr::parse_zarr_json(R"({"zarr_format":3,"node_type":"array","node_type":"group"})", "a/zarr.json"); }),
             "a/zarr.json: JSON object at the top level has the key 'node_type' twice");
  // Recipe file.
  test::write_file(d / "r.json", R"({"recipe":"x","rules":[{"match":"a","match":"b"}]})");
  EXPECT_HAS(error_of([&] { load_recipe(d / "r.json"); }), d / "r.json: JSON object 'rules/[]' has the key 'match' twice");
  // PEFT adapter_config.json.
  test::write_file(d / "adapter_config.json", R"({"r":8,"lora_alpha":16,"r":4})");
  EXPECT_HAS(error_of([&] { parse_peft_config(d / "adapter_config.json"); }),
             d / "adapter_config.json: JSON object at the top level has the key 'r' twice");
  // Orbax item files read beside _METADATA: the string leaves and the array metadata.
  std::filesystem::copy(test::fixture("orbax_ocdbt_zarr3/ckpt"), d / "ob", std::filesystem::copy_options::recursive);
  test::write_file(d / "ob/_strings.json", R"({"run_name":"a","run_name":"b"})");
  EXPECT_HAS(error_of([&] { read_checkpoint(d / "ob"); }),
             d / "ob/_strings.json: JSON object at the top level has the key 'run_name' twice");
  test::write_file(d / "ob/_strings.json", R"({"run_name":"tiny-run"})");
  EXPECT_NO_THROW(read_checkpoint(d / "ob"));
  test::write_file(d / "ob/array_metadatas/process_0", R"({"array_metadatas":[],"array_metadatas":[]})");
  EXPECT_HAS(error_of([&] { read_checkpoint(d / "ob"); }),
             d / "ob/array_metadatas/process_0: JSON object at the top level has the key 'array_metadatas' twice");
  // openpi LoRA config.
  test::write_file(d / "openpi.json", R"({"experts":[],"experts":[]})");
  EXPECT_HAS(error_of([&] { openpi_config_file(d / "openpi.json"); }),
             d / "openpi.json: JSON object at the top level has the key 'experts' twice");
}

}  // namespace
}  // namespace ckb
