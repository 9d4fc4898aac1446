// The built-in "openpi" recipe (profiles/openpi.h, openpi.md §4.2): openpi's JAX parameter
// tree -> PI0Pytorch names and layouts, from the released and the training layout, with and
// without LoRA. Every JAX tensor must be consumed, every PyTorch key and shape must be the
// table's, and the values must land where the table says (including o_proj where N*H != D,
// which openpi's own script gets wrong).
#include <cmath>
#include <cstring>
#include <iostream>
#include <filesystem>
#include <set>

#include "core/errors.h"
#include "formats/format.h"
#include "test_util.h"
#include "profiles/lora.h"
#include "profiles/openpi.h"
#include "recipe/plan.h"
#include "recipe/recipe.h"
#include "recipe/diff.h"
#include "ops/ops.h"

namespace ckb {
namespace {

const std::string P = "paligemma_with_expert.paligemma.model.";
const std::string V = P + "vision_tower.vision_model.";
const std::string Lm = P + "language_model.";
const std::string E = "paligemma_with_expert.gemma_expert.model.";

Plan openpi_plan(const std::string& fixture, bool with_config) {
  Checkpoint src = read_checkpoint(test::fixture(fixture));
  std::vector<OpenpiExpertConfig> experts;
  if (with_config) experts = openpi_config_file(test::fixture(fixture.substr(0, fixture.find('/')) + "/model.json"));
  OpenpiPrepared prep = openpi_prepare(src, experts);
  PlanOptions po;
  po.sizes = prep.sizes;
  return build_plan(prep.checkpoint, load_recipe("openpi"), po);
}

std::vector<float> floats_openpi(const Node* n) {
  EXPECT_TRUE(n && n->is_tensor());
  const Tensor& t = n->tensor();
  Bytes b = t.read_all();
  std::vector<float> v(t.info.numel());
  if (t.info.dtype == DType::F32) {
    std::memcpy(v.data(), b.data(), b.size());
  } else {  // bf16
    for (std::size_t i = 0; i < v.size(); ++i) {
      std::uint16_t h;
      std::memcpy(&h, b.data() + 2 * i, 2);
      const std::uint32_t u = static_cast<std::uint32_t>(h) << 16;
      std::memcpy(&v[i], &u, 4);
    }
  }
  return v;
}

std::set<std::string> expected_keys(int depth, int vision_depth) {
  std::set<std::string> k = {V + "embeddings.patch_embedding.weight", V + "embeddings.patch_embedding.bias",
                             V + "embeddings.position_embedding.weight", V + "post_layernorm.weight",
                             V + "post_layernorm.bias", P + "multi_modal_projector.linear.weight",
                             P + "multi_modal_projector.linear.bias", Lm + "embed_tokens.weight", Lm + "norm.weight",
                             E + "norm.weight", "paligemma_with_expert.paligemma.lm_head.weight",
                             "paligemma_with_expert.gemma_expert.lm_head.weight"};
  for (int i = 0; i < vision_depth; ++i) {
    const std::string l = V + "encoder.layers." + std::to_string(i) + ".";
    for (const char* s : {"layer_norm1", "layer_norm2", "mlp.fc1", "mlp.fc2", "self_attn.q_proj", "self_attn.k_proj",
                          "self_attn.v_proj", "self_attn.out_proj"})
      k.insert(l + s + ".weight"), k.insert(l + s + ".bias");
  }
  for (const std::string& pre : {Lm, E})
    for (int i = 0; i < depth; ++i)
      for (const char* s : {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
                            "mlp.up_proj", "mlp.down_proj", "input_layernorm", "post_attention_layernorm"})
        k.insert(pre + "layers." + std::to_string(i) + "." + s + ".weight");
  for (const char* p : {"action_in_proj", "action_out_proj", "state_proj", "action_time_mlp_in", "action_time_mlp_out"})
    k.insert(std::string(p) + ".weight"), k.insert(std::string(p) + ".bias");
  return k;
}

TEST(Openpi, EveryLayoutPlansCleanlyWithTheTablesKeysAndShapes) {
  for (const char* f : {"openpi_pi0_tiny_full/release/params", "openpi_pi0_tiny_full/train/checkpoints",
                        "openpi_pi0_tiny_lora/release/params", "openpi_pi0_tiny_lora/train/checkpoints"}) {
    SCOPED_TRACE(f);
    Plan plan = openpi_plan(f, true);
    ASSERT_TRUE(plan.ok()) << ::testing::PrintToString(plan.problems);
    std::set<std::string> got;
    for (const auto& [name, t] : tensor_list(plan.target)) got.insert(name);
    EXPECT_EQ(got, expected_keys(2, 2));
    auto shape = [&](const std::string& k) { return find_path(plan.target, k)->tensor().info.shape; };
    // gemma: width 64 / 32, 8 heads of 16, one kv head, mlp 128 / 96; SigLIP: width 32, 2 heads of 16.
    EXPECT_EQ(shape(Lm + "layers.1.self_attn.q_proj.weight"), (Shape{128, 64}));
    EXPECT_EQ(shape(Lm + "layers.1.self_attn.k_proj.weight"), (Shape{16, 64}));
    EXPECT_EQ(shape(Lm + "layers.1.self_attn.o_proj.weight"), (Shape{64, 128}));
    EXPECT_EQ(shape(Lm + "layers.1.mlp.gate_proj.weight"), (Shape{128, 64}));
    EXPECT_EQ(shape(Lm + "layers.1.mlp.down_proj.weight"), (Shape{64, 128}));
    EXPECT_EQ(shape(E + "layers.0.self_attn.q_proj.weight"), (Shape{128, 32}));
    EXPECT_EQ(shape(E + "layers.0.mlp.up_proj.weight"), (Shape{96, 32}));
    EXPECT_EQ(shape(V + "embeddings.patch_embedding.weight"), (Shape{32, 3, 14, 14}));
    EXPECT_EQ(shape(V + "embeddings.position_embedding.weight"), (Shape{4, 32}));
    EXPECT_EQ(shape(V + "encoder.layers.1.self_attn.q_proj.weight"), (Shape{32, 32}));
    EXPECT_EQ(shape(V + "encoder.layers.1.self_attn.out_proj.weight"), (Shape{32, 32}));
    EXPECT_EQ(shape("paligemma_with_expert.gemma_expert.lm_head.weight"), (Shape{256, 32}));
    EXPECT_EQ(shape("state_proj.weight"), (Shape{32, 8}));
  }
}

TEST(Openpi, ValuesLandWhereTheTableSays) {
  const std::string f = "openpi_pi0_tiny_full/release/params";
  Plan plan = openpi_plan(f, false);
  ASSERT_TRUE(plan.ok());
  Checkpoint src = read_checkpoint(test::fixture(f));
  const std::string L = "params/PaliGemma/llm/layers/";
  auto w = floats_openpi(find_path(src.root, L + "attn/q_einsum/w"));        // [2, 8, 64, 16]
  auto q = floats_openpi(find_path(plan.target, Lm + "layers.1.self_attn.q_proj.weight"));
  auto av = floats_openpi(find_path(src.root, L + "attn/attn_vec_einsum/w"));  // [2, 8, 16, 64]
  auto o = floats_openpi(find_path(plan.target, Lm + "layers.1.self_attn.o_proj.weight"));
  auto kv = floats_openpi(find_path(src.root, L + "attn/kv_einsum/w"));        // [2, 2, 1, 64, 16]
  auto v = floats_openpi(find_path(plan.target, Lm + "layers.1.self_attn.v_proj.weight"));
  for (int n = 0; n < 8; ++n)
    for (int h = 0; h < 16; ++h)
      for (int d = 0; d < 64; ++d) {
        ASSERT_EQ(q[(n * 16 + h) * 64 + d], w[((1 * 8 + n) * 64 + d) * 16 + h]);   // q[nH+h, d] = w[1, n, d, h]
        ASSERT_EQ(o[d * 128 + n * 16 + h], av[((1 * 8 + n) * 16 + h) * 64 + d]);  // o[d, nH+h] = av[1, n, h, d]
      }
  for (int h = 0; h < 16; ++h)
    for (int d = 0; d < 64; ++d) ASSERT_EQ(v[h * 64 + d], kv[(((1 * 2 + 1) * 1 + 0) * 64 + d) * 16 + h]);
  auto pk = floats_openpi(find_path(src.root, "params/PaliGemma/img/embedding/kernel"));  // [14, 14, 3, 32]
  auto pw = floats_openpi(find_path(plan.target, V + "embeddings.patch_embedding.weight"));  // [32, 3, 14, 14]
  for (int oc = 0; oc < 32; oc += 7)
    for (int c = 0; c < 3; ++c)
      for (int y = 0; y < 14; y += 5)
        for (int x = 0; x < 14; x += 3) ASSERT_EQ(pw[((oc * 3 + c) * 14 + y) * 14 + x], pk[((y * 14 + x) * 3 + c) * 32 + oc]);
  // The tied head is the embedding; the expert's head is an explicit zero fill.
  EXPECT_EQ(floats_openpi(find_path(plan.target, "paligemma_with_expert.paligemma.lm_head.weight")),
            floats_openpi(find_path(plan.target, Lm + "embed_tokens.weight")));
  for (float x : floats_openpi(find_path(plan.target, "paligemma_with_expert.gemma_expert.lm_head.weight"))) ASSERT_EQ(x, 0.0f);
}

TEST(Openpi, LoraIsMergedFirstAndRequiresItsConfig) {
  const std::string f = "openpi_pi0_tiny_lora/train/checkpoints";
  Checkpoint src = read_checkpoint(test::fixture(f));
  EXPECT_THROW(openpi_prepare(src, {}), MappingError);
  Plan plan = openpi_plan(f, true);
  ASSERT_TRUE(plan.ok());
  // q_proj of expert 1, layer 0, equals merge-lora's merged q_einsum_1 laid out as the table says.
  LoraMergeOptions lo;
  lo.experts = openpi_config_file(test::fixture("openpi_pi0_tiny_lora/model.json"));
  Plan merged = build_plan(src, openpi_merge_recipe(src, lo));
  ASSERT_TRUE(merged.ok());
  auto w = floats_openpi(find_path(merged.target, "params/PaliGemma/llm/layers/attn/q_einsum_1/w/value"));  // [2, 8, 32, 16]
  const Node* qn = find_path(plan.target, E + "layers.0.self_attn.q_proj.weight");
  ASSERT_TRUE(qn);
  EXPECT_EQ(qn->tensor().info.dtype, DType::F32);
  auto q = floats_openpi(qn);
  for (int n = 0; n < 8; ++n)
    for (int h = 0; h < 16; ++h)
      for (int d = 0; d < 32; ++d) ASSERT_EQ(q[(n * 16 + h) * 32 + d], w[((0 * 8 + n) * 32 + d) * 16 + h]);
}

// PyTorch -> openpi JAX from the same recipe, inverted: the released layout comes back bit
// for bit. The head counts cannot be read off a PyTorch q_proj [N*H, D], so they are sizes;
// the two lm_head tensors are dropped by the inverted fills.
TEST(Openpi, ReverseRoundTripIsBitExact) {
  for (const char* f : {"openpi_pi0_tiny_full/release/params", "openpi_pi0_tiny_lora/release/params"}) {
    SCOPED_TRACE(f);
    Plan fwd = openpi_plan(f, true);
    ASSERT_TRUE(fwd.ok());
    Checkpoint torch_side{"safetensors", "mem", fwd.target, {}};
    PlanOptions po;
    po.sizes = {{"n0", 8}, {"h0", 16}, {"k0", 1}, {"n1", 8}, {"h1", 16}, {"k1", 1}, {"vn", 2}, {"vh", 16}};
    Plan back = build_plan(torch_side, invert(load_recipe("openpi")), po);
    ASSERT_TRUE(back.ok()) << ::testing::PrintToString(back.problems);
    EXPECT_EQ(back.stages[0].ledger_json()["counts"]["sources_dropped"], 2);
    if (std::string(f).find("full") != std::string::npos) {  // no LoRA: the source itself comes back
      Checkpoint src = read_checkpoint(test::fixture(f));
      auto d = diff_trees(src.root, back.target, {});
      EXPECT_EQ(d.leaves.size(), 50u);
      for (const auto& l : d.leaves) EXPECT_EQ(l.status, "equal") << l.name;
    } else {  // LoRA: exactly the merged weights come back, with no LoRA factors left
      Checkpoint src = read_checkpoint(test::fixture(f));
      LoraMergeOptions lo;
      lo.experts = openpi_config_file(test::fixture("openpi_pi0_tiny_lora/model.json"));
      Plan merged = build_plan(src, openpi_merge_recipe(src, lo));
      ASSERT_TRUE(merged.ok());
      auto d = diff_trees(merged.target, back.target, {});
      EXPECT_EQ(d.leaves.size(), 50u);
      for (const auto& l : d.leaves) EXPECT_EQ(l.status, "equal") << l.name;
    }
  }
}

// The command into a folder: weights + config.json (with the sizes the reverse needs) + a copy
// of the assets/ found beside the checkpoint; `--reverse` then needs no --size.
TEST(Openpi, CliWritesConfigAndAssetsAndReverseReadsThem) {
  test::TempDir tmp;
  std::filesystem::copy(test::fixture("openpi_pi0_tiny_full/release"), tmp / "ckpt", std::filesystem::copy_options::recursive);
  std::filesystem::create_directories(tmp / "ckpt/assets/robot");
  test::write_file(tmp / "ckpt/assets/robot/norm_stats.json", "{}");
  std::filesystem::create_directories(tmp / "out");
  auto r = test::run_cli("convert " + (tmp / "ckpt/params") + " " + (tmp / "out/") + " --recipe openpi");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto cfg = test::load_json(tmp / "out/config.json");
  EXPECT_EQ(cfg["action_dim"], 8);
  EXPECT_EQ(cfg["pi05"], false);
  EXPECT_EQ(cfg["sizes"], nlohmann::json({{"n0", 8}, {"h0", 16}, {"k0", 1}, {"n1", 8}, {"h1", 16}, {"k1", 1}, {"vn", 2}, {"vh", 16}}));
  EXPECT_EQ(test::read_file(tmp / "out/assets/robot/norm_stats.json"), "{}");
  r = test::run_cli("convert " + (tmp / "out/model.safetensors") + " " + (tmp / "back") + " --to orbax --recipe openpi --reverse");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = test::run_cli("diff " + (tmp / "ckpt/params") + " " + (tmp / "back"));
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("50 equal"), std::string::npos) << r.out;
}

// openpi's runtime LoRA outputs (probes.npz: x and y of every LoRA module) reproduced from
// the converted PyTorch weights the way PyTorch applies them: y = x @ W.T, with x and y
// flattened to the Linear's in/out features (q: BTD -> BT(NH), kv: k and v projections
// stacked, o: BT(NH) -> BTD, gating: gate / up, linear: down).
TEST(Openpi, ConvertedWeightsReproduceTheRuntimesLoraProbes) {
  Plan plan = openpi_plan("openpi_pi0_tiny_lora/release/params", true);
  ASSERT_TRUE(plan.ok());
  auto model = test::load_json(test::fixture("openpi_pi0_tiny_lora/model.json"));
  auto probes = read_checkpoint(test::fixture("openpi_pi0_tiny_lora/probes.npz"));
  double worst = 0;
  int checked = 0;
  for (const auto& p : model["probes"]) {
    const std::string key = p["key"], module = p["module"];
    const std::string pre = (p["expert"].get<int>() == 0 ? Lm : E) + "layers." + std::to_string(p["layer"].get<int>()) + ".";
    std::vector<std::string> ws;
    if (module == "q_einsum") ws = {"self_attn.q_proj"};
    else if (module == "kv_einsum") ws = {"self_attn.k_proj", "self_attn.v_proj"};
    else if (module == "attn_vec_einsum") ws = {"self_attn.o_proj"};
    else if (module == "mlp_gating0") ws = {"mlp.gate_proj"};
    else if (module == "mlp_gating1") ws = {"mlp.up_proj"};
    else if (module == "mlp_linear") ws = {"mlp.down_proj"};
    ASSERT_FALSE(ws.empty()) << module;
    auto x = ops::to_doubles(probes.root.find(key + "/x")->tensor());
    auto y = ops::to_doubles(probes.root.find(key + "/y")->tensor());
    std::vector<double> got;
    for (const auto& w : ws) {
      const Node* n = find_path(plan.target, pre + w + ".weight");
      ASSERT_TRUE(n) << pre + w;
      const auto& s = n->tensor().info.shape;  // [out, in]
      const auto W = ops::to_doubles(n->tensor());
      const std::size_t out = static_cast<std::size_t>(s[0]), in = static_cast<std::size_t>(s[1]), rows = x.size() / in;
      ASSERT_EQ(rows * in, x.size()) << key;
      for (std::size_t r = 0; r < rows; ++r)
        for (std::size_t o = 0; o < out; ++o) {
          double acc = 0;
          for (std::size_t i = 0; i < in; ++i) acc += x[r * in + i] * W[o * in + i];
          got.push_back(acc);
        }
    }
    ASSERT_EQ(got.size(), y.size()) << key;
    double err = 0, mag = 0;
    for (std::size_t i = 0; i < y.size(); ++i) err = std::max(err, std::fabs(got[i] - y[i])), mag = std::max(mag, std::fabs(y[i]));
    EXPECT_LT(err / mag, 2e-6) << key;  // float32 rounding of y, as for the JAX-layout merge
    worst = std::max(worst, err / mag);
    ++checked;
  }
  EXPECT_EQ(checked, 24);
  std::cout << "worst relative error over " << checked << " probes in PyTorch space: " << worst << "\n";
}

}  // namespace
}  // namespace ckb
