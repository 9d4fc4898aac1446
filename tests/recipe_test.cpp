// Recipes and plans: every rule kind, ledger statuses, failing plans with clear messages,
// and automatic inversion giving back the original bytes.
#include <cstring>

#include "core/errors.h"
#include "core/hash.h"
#include "test_util.h"
#include "ops/ops.h"
#include "recipe/pattern.h"
#include "recipe/plan.h"
#include "recipe/recipe.h"

namespace ckb {
namespace {

Tensor pattern_tensor(DType dt, Shape shape, int seed) {
  TensorInfo info{dt, shape};
  Bytes b(info.nbytes());
  for (std::size_t i = 0; i < b.size(); ++i) b.data()[i] = static_cast<std::byte>((i * 13 + static_cast<std::size_t>(seed) * 101) & 0xff);
  return make_memory_tensor(info, std::move(b));
}

Checkpoint hf_like() {
  Checkpoint ck;
  for (int l = 0; l < 3; ++l) {
    ck.root.add("model.layers." + std::to_string(l) + ".q_proj.weight", Node::tensor(pattern_tensor(DType::BF16, {8, 4}, l)));
    ck.root.add("model.layers." + std::to_string(l) + ".k_proj.weight", Node::tensor(pattern_tensor(DType::BF16, {8, 4}, 10 + l)));
  }
  ck.root.add("model.embed.weight", Node::tensor(pattern_tensor(DType::F32, {16, 4}, 99)));
  ck.root.add("lm_head.weight", Node::tensor(pattern_tensor(DType::F32, {16, 4}, 99)));
  ck.root.add("epoch", Node(std::int64_t{3}));
  return ck;
}

const char* kScanRecipe = R"({"recipe": "scan", "sizes": {"h": 2},
  "rules": [
    {"stack": "model.layers.{i:int}.q_proj.weight", "over": "i", "axis": 0, "to": "scan/q",
     "comment": "unused key ignored"},
    {"map": "model.layers.{i:int}.k_proj.weight", "to": "layers_{i}/k", "ops": [{"rearrange": "(n h) d -> d n h"}]},
    {"map": "model.embed.weight", "to": "embed", "ops": [{"cast": "BF16", "from": "F32"}]},
    {"drop": "lm_head.weight", "reason": "tied to model.embed.weight", "reverse": {"copy_of": "model.embed.weight"}},
    {"map": "epoch", "to": "meta/epoch"}
  ]})";

TEST(Pattern, MatchFormatAndKinds) {
  Pattern p("layers.{i:int}.{name}.w");
  auto c = p.match("layers.12.attn.w");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->at("i"), "12");
  EXPECT_EQ(c->at("name"), "attn");
  EXPECT_FALSE(p.match("layers.x.attn.w"));
  EXPECT_FALSE(p.match("layers.1.a.b.w"));  // {name} stops at '.'
  EXPECT_EQ(Pattern("out/{name}/{i}").format(*c), "out/attn/12");
  auto any = Pattern("{p:*}/kernel").match("a/b.c/kernel");
  ASSERT_TRUE(any);
  EXPECT_EQ(any->at("p"), "a/b.c");
  EXPECT_THROW(Pattern("a{b"), MappingError);
  EXPECT_THROW(Pattern("{x:float}"), MappingError);
  EXPECT_EQ(Pattern("x").format({}), "x");
}

TEST(Plan, EveryRuleKindAndLedger) {
  auto ck = hf_like();
  auto recipe = parse_recipe(nlohmann::json::parse(kScanRecipe), "test");
  auto plan = build_plan(ck, recipe);
  ASSERT_TRUE(plan.ok()) << plan.problems[0];
  auto led = plan.ledger_json();
  EXPECT_EQ(led["sources"]["model.layers.1.q_proj.weight"]["status"], "consumed");
  EXPECT_EQ(led["sources"]["model.layers.1.q_proj.weight"]["targets"][0], "scan/q");
  EXPECT_EQ(led["sources"]["lm_head.weight"]["status"], "dropped");
  EXPECT_EQ(led["sources"]["lm_head.weight"]["reason"], "tied to model.embed.weight");
  EXPECT_EQ(led["targets"]["scan/q"]["shape"], (Shape{3, 8, 4}));
  EXPECT_EQ(led["targets"]["layers_2/k"]["shape"], (Shape{4, 4, 2}));
  EXPECT_EQ(led["targets"]["embed"]["dtype"], "BF16");
  // Target tree is nested by '/'.
  ASSERT_NE(find_path(plan.target, "meta/epoch"), nullptr);
  EXPECT_EQ(std::get<std::int64_t>(find_path(plan.target, "meta/epoch")->value()), 3);
  // The stacked tensor holds the layers' bytes in order.
  auto stacked = find_path(plan.target, "scan/q")->tensor().read_all();
  auto l1 = ck.root.find("model.layers.1.q_proj.weight")->tensor().read_all();
  EXPECT_EQ(std::memcmp(stacked.data() + 64, l1.data(), 64), 0);
}

TEST(Plan, InverseRecipeRestoresEveryByte) {
  auto ck = hf_like();
  // Same recipe without the lossy cast: the inverse must give back identical bytes.
  auto j = nlohmann::json::parse(kScanRecipe);
  j["rules"][2]["ops"] = nlohmann::json::array();
  auto recipe = parse_recipe(j, "test");
  auto fwd = build_plan(ck, recipe);
  ASSERT_TRUE(fwd.ok());
  Checkpoint mid;
  mid.root = fwd.target;
  auto inv = invert(recipe);
  auto back = build_plan(mid, inv);
  ASSERT_TRUE(back.ok()) << back.problems[0];
  for (const auto& [name, t] : tensor_list(ck.root)) {
    const Node* n = find_path(back.target, name);
    ASSERT_NE(n, nullptr) << name;
    EXPECT_EQ(n->tensor().info, t->info) << name;
    EXPECT_EQ(tensor_sha256(n->tensor()), tensor_sha256(*t)) << name;
  }
  auto led = back.ledger_json();
  EXPECT_EQ(led["targets"]["lm_head.weight"]["status"], "filled");
  EXPECT_EQ(led["targets"]["lm_head.weight"]["how"], "copy of model.embed.weight");
}

TEST(Plan, InversionRefusesLossyRules) {
  auto r = parse_recipe(nlohmann::json::parse(R"({"rules": [{"map": "a", "to": "b", "ops": [{"cast": "F32"}]}]})"), "t");
  try {
    invert(r);
    FAIL();
  } catch (const MappingError& e) {
    EXPECT_NE(std::string(e.what()).find("cast has no 'from'"), std::string::npos) << e.what();
  }
  auto d = parse_recipe(nlohmann::json::parse(R"({"rules": [{"drop": "a", "reason": "x"}]})"), "t");
  EXPECT_THROW(invert(d), MappingError);
}

TEST(Plan, FailingPlansNameTheTensors) {
  auto ck = hf_like();
  // Unused sources.
  auto partial = build_plan(ck, parse_recipe(nlohmann::json::parse(R"({"rules": [{"map": "epoch", "to": "epoch"}]})"), "t"));
  EXPECT_FALSE(partial.ok());
  EXPECT_EQ(partial.problems.size(), 8u);
  EXPECT_NE(partial.problems[0].find("unused source 'model.layers.0.q_proj.weight' (tensor BF16 [8, 4])"), std::string::npos)
      << partial.problems[0];
  EXPECT_THROW(partial.check(), MappingError);
  // Shape mismatch in an op.
  auto bad = build_plan(ck, parse_recipe(nlohmann::json::parse(
      R"({"rules": [{"map": "model.embed.weight", "to": "e", "ops": [{"rearrange": "a b c -> c b a"}]}, {"drop": "{x:*}", "reason": "r"}]})"), "t"));
  ASSERT_EQ(bad.problems.size(), 1u);
  EXPECT_NE(bad.problems[0].find("expects rank 3 but the tensor is [16, 4]"), std::string::npos) << bad.problems[0];
  // Stack with a gap.
  Checkpoint gap;
  gap.root.add("l.0.w", Node::tensor(pattern_tensor(DType::F32, {2}, 0)));
  gap.root.add("l.2.w", Node::tensor(pattern_tensor(DType::F32, {2}, 1)));
  auto g = build_plan(gap, parse_recipe(nlohmann::json::parse(R"({"rules": [{"stack": "l.{i:int}.w", "over": "i", "to": "w"}]})"), "t"));
  ASSERT_FALSE(g.ok());
  EXPECT_NE(g.problems[0].find("index 1 is missing"), std::string::npos) << g.problems[0];
  // Two rules producing one target.
  auto twice = build_plan(gap, parse_recipe(nlohmann::json::parse(R"({"rules": [{"map": "l.{i:int}.w", "to": "w"}]})"), "t"));
  ASSERT_FALSE(twice.ok());
  EXPECT_NE(twice.problems[0].find("target 'w' is produced twice"), std::string::npos) << twice.problems[0];
}

TEST(Plan, ExpectedLayoutReportsMissingUnexpectedAndMismatches) {
  auto ck = hf_like();
  auto recipe = parse_recipe(nlohmann::json::parse(kScanRecipe), "test");
  auto good = build_plan(ck, recipe);
  Checkpoint expect;
  expect.root = good.target;
  PlanOptions po;
  po.expect = &expect;
  EXPECT_TRUE(build_plan(ck, recipe, po).ok());
  // Change one expected shape, remove one, add one.
  auto* scan = expect.root.find("scan");
  scan->container().children.clear();
  scan->add("q", Node::tensor(pattern_tensor(DType::BF16, {3, 4, 8}, 0)));
  expect.root.find("meta")->container().children.clear();
  expect.root.find("meta")->add("step", Node(std::int64_t{1}));
  auto p = build_plan(ck, recipe, po);
  ASSERT_EQ(p.problems.size(), 3u);
  EXPECT_NE(p.problems[0].find("target 'scan/q' is BF16 [3, 8, 4] but the expected layout has BF16 [3, 4, 8]"), std::string::npos) << p.problems[0];
  EXPECT_NE(p.problems[1].find("unexpected target 'meta/epoch'"), std::string::npos) << p.problems[1];
  EXPECT_NE(p.problems[2].find("missing target 'meta/step'"), std::string::npos) << p.problems[2];
}

TEST(Plan, SplitFillAndEinsumAdd) {
  Checkpoint ck;
  float w[4] = {1, 2, 3, 4}, a[2] = {1, 2}, b[2] = {10, 100};
  auto mk = [](const float* v, std::size_t n, Shape s) {
    Bytes by(n * 4);
    std::memcpy(by.data(), v, n * 4);
    return make_memory_tensor({DType::F32, s}, std::move(by));
  };
  ck.root.add("blk/w", Node::tensor(mk(w, 4, {2, 2})));
  ck.root.add("blk/lora_a", Node::tensor(mk(a, 2, {2, 1})));
  ck.root.add("blk/lora_b", Node::tensor(mk(b, 2, {1, 2})));
  ck.root.add("qk", Node::tensor(mk(w, 4, {4})));
  auto r = parse_recipe(nlohmann::json::parse(R"({"rules": [
    {"einsum_add": {"base": "{m}/w", "operands": ["{m}/lora_a", "{m}/lora_b"], "equation": "ir,ro->io", "scale": 0.5}, "to": "{m}/merged"},
    {"split": "qk", "axis": 0, "to": ["q", "k"]},
    {"concat": ["{m}/w", "{m}/w2"], "axis": 1, "to": "{m}/never"},
    {"fill": "bias", "dtype": "F32", "shape": [2], "value": 0.25}]})"), "t");
  auto p = build_plan(ck, r);
  ASSERT_TRUE(p.ok()) << p.problems[0];
  auto merged = find_path(p.target, "blk/merged")->tensor().read_all();
  float m[4];
  std::memcpy(m, merged.data(), 16);
  EXPECT_EQ(m[0], 1 + 0.5f * 10);
  EXPECT_EQ(m[1], 2 + 0.5f * 100);
  EXPECT_EQ(m[2], 3 + 0.5f * 20);
  EXPECT_EQ(m[3], 4 + 0.5f * 200);
  auto k = find_path(p.target, "k")->tensor().read_all();
  float kv[2];
  std::memcpy(kv, k.data(), 8);
  EXPECT_EQ(kv[0], 3);
  EXPECT_EQ(kv[1], 4);
  auto led = p.ledger_json();
  EXPECT_FALSE(led["targets"].contains("blk/never"));  // blk/w was claimed by the einsum_add rule first
  EXPECT_EQ(led["targets"]["bias"]["status"], "filled");
  EXPECT_EQ(led["sources"]["blk/lora_b"]["targets"][0], "blk/merged");
}

// Scanned layers on axis 1 <-> per-layer transposed weights in one rule each way: unstack
// applies its ops to every slice, and its inverse applies the inverse ops before stacking.
TEST(Plan, UnstackWithOpsAndItsInverse) {
  Checkpoint ck;
  ck.root.add("mlp/wi", Node::tensor(pattern_tensor(DType::F32, {4, 3, 6}, 7)));  // [D, L, F]
  auto recipe = parse_recipe(nlohmann::json::parse(R"({"rules": [
    {"unstack": "mlp/wi", "over": "i", "axis": 1, "to": "layers.{i}.up.weight",
     "ops": [{"rearrange": "d f -> f d"}]}]})"), "t");
  auto fwd = build_plan(ck, recipe);
  ASSERT_TRUE(fwd.ok()) << ::testing::PrintToString(fwd.problems);
  const Tensor& src = ck.root.find("mlp/wi")->tensor();
  const Bytes all = src.read_all();
  const float* w = reinterpret_cast<const float*>(all.data());
  for (int l = 0; l < 3; ++l) {
    const Node* n = find_path(fwd.target, "layers." + std::to_string(l) + ".up.weight");
    ASSERT_TRUE(n);
    EXPECT_EQ(n->tensor().info.shape, (Shape{6, 4}));
    const Bytes got = n->tensor().read_all();
    const float* g = reinterpret_cast<const float*>(got.data());
    for (int f = 0; f < 6; ++f)
      for (int d = 0; d < 4; ++d) EXPECT_EQ(g[f * 4 + d], w[(d * 3 + l) * 6 + f]);  // up[l][f, d] = wi[d, l, f]
  }
  EXPECT_NE(fwd.targets[0].how.find("rearrange 'd f -> f d'"), std::string::npos) << fwd.targets[0].how;
  Checkpoint mid{"t", "mid", fwd.target, {}};
  auto back = build_plan(mid, invert(recipe));
  ASSERT_TRUE(back.ok()) << ::testing::PrintToString(back.problems);
  const Node* r = find_path(back.target, "mlp/wi");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->tensor().info.shape, (Shape{4, 3, 6}));
  EXPECT_EQ(tensor_sha256(r->tensor()), tensor_sha256(src));
  EXPECT_EQ(recipe_to_json(invert(recipe))["rules"][0]["ops"][0]["rearrange"], "f d -> d f");
}

// A staged recipe: stage 0 splits openpi's fused kv_einsum [L, 2, K, D, H] into k and v,
// stage 1 unstacks the layers and lays each out as PyTorch's [K*H, D]. Each stage has its
// ledger; the inverse runs the inverted stages in reverse order and restores every byte.
TEST(Plan, StagedRecipeAndItsInverse) {
  Checkpoint ck;
  ck.root.add("kv/w", Node::tensor(pattern_tensor(DType::F32, {3, 2, 1, 4, 5}, 3)));  // L=3 K=1 D=4 H=5
  // The inverse rearrange must split (c k h) again: the sizes say how (one kv head).
  auto recipe = parse_recipe(nlohmann::json::parse(R"({"recipe": "kv", "sizes": {"c": 1, "k": 1}, "stages": [
    {"rules": [{"split": "kv/w", "axis": 1, "to": ["kv/k", "kv/v"]}]},
    {"rules": [{"unstack": "kv/{c}", "over": "i", "axis": 0, "to": "layers.{i}.{c}_proj.weight",
                "ops": [{"rearrange": "c k d h -> (c k h) d"}]}]}]})"), "t");
  ASSERT_EQ(recipe.stages.size(), 2u);
  auto fwd = build_plan(ck, recipe);
  ASSERT_TRUE(fwd.ok()) << ::testing::PrintToString(fwd.problems);
  ASSERT_EQ(fwd.stages.size(), 2u);
  EXPECT_EQ(fwd.sources[0].name, "kv/w");
  EXPECT_EQ(fwd.targets.size(), 6u);
  auto ledger = fwd.ledger_json();
  EXPECT_EQ(ledger["stages"].size(), 2u);
  EXPECT_EQ(ledger["stages"][0]["targets"]["kv/v"]["shape"], nlohmann::json({3, 1, 1, 4, 5}));
  const Bytes all = ck.root.find("kv/w")->tensor().read_all();
  const float* w = reinterpret_cast<const float*>(all.data());
  const Node* v2 = find_path(fwd.target, "layers.2.v_proj.weight");
  ASSERT_TRUE(v2);
  EXPECT_EQ(v2->tensor().info.shape, (Shape{5, 4}));
  const Bytes got = v2->tensor().read_all();
  const float* g = reinterpret_cast<const float*>(got.data());
  for (int h = 0; h < 5; ++h)
    for (int d = 0; d < 4; ++d) EXPECT_EQ(g[h * 4 + d], w[((2 * 2 + 1) * 4 + d) * 5 + h]);  // w[2, 1, 0, d, h]
  Checkpoint mid{"t", "mid", fwd.target, {}};
  auto back = build_plan(mid, invert(recipe));
  ASSERT_TRUE(back.ok()) << ::testing::PrintToString(back.problems);
  EXPECT_EQ(tensor_sha256(find_path(back.target, "kv/w")->tensor()), tensor_sha256(ck.root.find("kv/w")->tensor()));
  // A failing stage is named, and later stages are not planned.
  Checkpoint extra = ck;
  extra.root.add("stray", Node::tensor(pattern_tensor(DType::F32, {2}, 1)));
  auto bad = build_plan(extra, recipe);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.problems[0].find("stage 0"), std::string::npos) << bad.problems[0];
  EXPECT_NE(bad.problems[0].find("stray"), std::string::npos) << bad.problems[0];
  EXPECT_EQ(bad.stages.size(), 1u);
}

}  // namespace
}  // namespace ckb

namespace ckb {
namespace {

TEST(Recipe, NonTensorFillsPrngKeysAttrsAndScalarToTensor) {
  Checkpoint ck = hf_like();
  Recipe r = parse_recipe(nlohmann::json::parse(R"({"recipe": "extras", "rules": [
    {"map": "epoch", "to": "state/epoch", "ops": [{"cast": "U32"}], "attrs": {"orbax.value_type": "jax.Array"}},
    {"map": "{p:*}", "to": "{p}"},
    {"fill": "state/hole", "leaf": null},
    {"fill": "state/empty", "leaf": {}},
    {"fill": "state/seven", "leaf": 7, "attrs": {"orbax.value_type": "scalar"}},
    {"fill": "state/keys", "prng_key": {"impl": "threefry2x32", "seed": 0}, "shape": [4]}]})"), "test");
  Plan p = build_plan(ck, r);
  ASSERT_TRUE(p.ok()) << p.problems[0];
  const Node* epoch = find_path(p.target, "state/epoch");
  ASSERT_TRUE(epoch && epoch->is_tensor());  // a Python int became a 0-d uint32 tensor
  EXPECT_EQ(epoch->tensor().info, (TensorInfo{DType::U32, {}}));
  Bytes e = epoch->tensor().read_all();
  std::uint32_t v = 0;
  std::memcpy(&v, e.data(), 4);
  EXPECT_EQ(v, 3u);
  EXPECT_EQ(epoch->attrs.at("orbax.value_type"), "jax.Array");
  EXPECT_TRUE(std::holds_alternative<NoneValue>(find_path(p.target, "state/hole")->value()));
  EXPECT_TRUE(find_path(p.target, "state/empty")->is_empty_container());
  EXPECT_EQ(std::get<std::int64_t>(find_path(p.target, "state/seven")->value()), 7);
  EXPECT_EQ(find_path(p.target, "state/seven")->attrs.at("orbax.value_type"), "scalar");
  const Node* keys = find_path(p.target, "state/keys");
  EXPECT_EQ(keys->tensor().info, (TensorInfo{DType::U32, {4, 2}}));
  EXPECT_EQ(keys->attrs.at("random_key_impl"), "threefry2x32");
  // printing and re-parsing keeps every new field; inversion drops the fills and the attrs
  Recipe again = parse_recipe(recipe_to_json(r), "again");
  EXPECT_EQ(recipe_to_json(again), recipe_to_json(r));
  Recipe inv = invert(parse_recipe(nlohmann::json::parse(R"({"rules": [
    {"map": "{p:*}", "to": "x/{p}", "attrs": {"k": "v"}}, {"fill": "x/hole", "leaf": null}]})"), "inv"));
  EXPECT_TRUE(inv.rules[0].attrs.empty());
  EXPECT_EQ(inv.rules[1].kind, Rule::Kind::Drop);
}


// `when`: one recipe holds two layouts of the same tensor and a size picks one, in both
// directions; the inverse keeps the condition, printing keeps it, a malformed one is refused.
TEST(Recipe, WhenSelectsRulesBySizeInBothDirections) {
  const auto j = nlohmann::json::parse(R"({"recipe": "alt", "rules": [
    {"split": "w", "axis": 0, "to": ["a", "b"], "when": "fused"},
    {"map": "w", "to": "whole", "when": "!fused"}]})");
  const Recipe r = parse_recipe(j, "alt.json");
  EXPECT_EQ(recipe_to_json(r)["rules"][0]["when"], "fused");
  EXPECT_EQ(recipe_to_json(r)["rules"][1]["when"], "!fused");
  Checkpoint ck;
  ck.root.add("w", Node::tensor(pattern_tensor(DType::F32, {4, 3}, 5)));
  const Plan plain = build_plan(ck, r);  // size absent: the "!fused" rule
  ASSERT_TRUE(plain.ok()) << ::testing::PrintToString(plain.problems);
  EXPECT_NE(find_path(plain.target, "whole"), nullptr);
  EXPECT_EQ(find_path(plain.target, "a"), nullptr);
  PlanOptions zero;
  zero.sizes = {{"fused", 0}};
  EXPECT_NE(find_path(build_plan(ck, r, zero).target, "whole"), nullptr);
  PlanOptions fused;
  fused.sizes = {{"fused", 1}};
  const Plan split = build_plan(ck, r, fused);
  ASSERT_TRUE(split.ok()) << ::testing::PrintToString(split.problems);
  EXPECT_EQ(find_path(split.target, "a")->tensor().info.shape, (Shape{2, 3}));
  EXPECT_EQ(find_path(split.target, "whole"), nullptr);
  // Inverted: with the size, a and b concatenate back; without it, "whole" maps back. Same bytes.
  const Recipe inv = invert(r);
  EXPECT_EQ(inv.rules[0].when, "fused");
  const Checkpoint from_split{"memory", "m", split.target, {}}, from_plain{"memory", "m", plain.target, {}};
  const Plan back1 = build_plan(from_split, inv, fused), back2 = build_plan(from_plain, inv);
  ASSERT_TRUE(back1.ok() && back2.ok());
  const std::string want = test::bytes_of(find_path(ck.root, "w")->tensor());
  EXPECT_EQ(test::bytes_of(find_path(back1.target, "w")->tensor()), want);
  EXPECT_EQ(test::bytes_of(find_path(back2.target, "w")->tensor()), want);
  // The wrong size for the tree leaves the source unused: the plan fails instead of guessing.
  EXPECT_FALSE(build_plan(from_plain, inv, fused).ok());
  try {
    parse_recipe(nlohmann::json::parse(R"({"rules": [{"map": "w", "to": "x", "when": "fused size"}]})"), "bad.json");
    ADD_FAILURE() << "no error";
  } catch (const MappingError& e) {
    EXPECT_NE(std::string(e.what()).find("'when' is a size name, or '!' and a size name"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("bad.json: rule 0"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace ckb
