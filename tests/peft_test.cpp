// The PEFT LoRA profile (profiles/peft.h) against PEFT's own merge_and_unload: the shared
// fixture's tiny Llama (tests/data/fixtures/peft_llama_lora) and golden cases written by PEFT
// (tests/data/peft_cases: DoRA; rsLoRA + rank/alpha patterns + an embedding + modules_to_save;
// GPT-2 Conv1D fan_in_fan_out + lora_bias): every merged weight within the float32 rounding
// PEFT's merge itself incurs, every other tensor exact; --verify against the online LoRA.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <map>

#include "core/errors.h"
#include "formats/format.h"
#include "tests/test_util.h"
#include "profiles/peft.h"
#include "recipe/plan.h"
#include "ops/einsum.h"
#include "ops/ops.h"

namespace ckb {
namespace {

using test::fixture;
using test::TempDir;

std::string dir() { return fixture("peft_llama_lora"); }

std::vector<double> values(const Tensor& t) { return ops::to_doubles(t); }

// A copy of the adapter with its config edited.
std::string edited_adapter(const TempDir& tmp, const std::function<void(nlohmann::json&)>& edit) {
  const std::string d = tmp / "adapter";
  std::filesystem::create_directories(d);
  std::filesystem::copy_file(dir() + "/adapter/adapter_model.safetensors", d + "/adapter_model.safetensors");
  auto cfg = test::load_json(dir() + "/adapter/adapter_config.json");
  edit(cfg);
  test::write_file(d + "/adapter_config.json", cfg.dump());
  return d;
}

// Our merge of `case_dir` (base/, adapter/) against PEFT's merge_and_unload (merged/): every
// tensor PEFT did not touch byte-identical, every merged one within the float32 rounding of
// PEFT's own arithmetic. PEFT forms delta = (B @ A) * s and W + delta (DoRA: then the row
// norm and the rescale) with every step rounded to float32 (u = 2^-24); ours is the float64
// result rounded once. Bound per tensor: 16 u (max|W| + max|W'| + s max sum|B||A|): the sums'
// magnitudes, since cancellation makes |W'| alone too small.
void expect_matches_peft(const std::string& case_dir, std::size_t modules) {
  SCOPED_TRACE(case_dir);
  Checkpoint base = read_checkpoint(case_dir + "/base/model.safetensors");
  Checkpoint peft = read_checkpoint(case_dir + "/merged/model.safetensors");
  PeftMerge m = peft_merge(base, case_dir + "/adapter", DType::F32);
  EXPECT_EQ(m.groups.size(), modules);
  Plan plan = build_plan(m.combined, m.recipe);
  ASSERT_TRUE(plan.ok()) << plan.problems[0];
  std::map<std::string, const LoraGroup*> merged;
  for (const auto& g : m.groups) merged[g.base] = &g;
  for (const auto& [name, t] : tensor_list(plan.target)) {
    const Node* want = find_path(peft.root, name);
    ASSERT_NE(want, nullptr) << name;
    ASSERT_EQ(t->info, want->tensor().info) << name;
    const auto ours = values(*t), theirs = values(want->tensor());
    auto it = merged.find(name);
    if (it == merged.end()) {  // untouched, or replaced by modules_to_save / a lora_bias sum
      double worst = 0, mag = 0;
      for (std::size_t i = 0; i < ours.size(); ++i)
        worst = std::max(worst, std::abs(ours[i] - theirs[i])), mag = std::max(mag, std::abs(theirs[i]));
      EXPECT_LE(worst, 4 * std::ldexp(1.0, -24) * mag) << name;
      continue;
    }
    const LoraGroup& g = *it->second;
    auto abs_values = [&](const std::string& n) {
      auto v = values(find_path(m.combined.root, n)->tensor());
      for (auto& x : v) x = std::abs(x);
      return v;
    };
    const Tensor& a = find_path(m.combined.root, g.lora_a)->tensor();
    const Tensor& b = find_path(m.combined.root, g.lora_b)->tensor();
    const auto aa = abs_values(g.lora_a), bb = abs_values(g.lora_b);
    const auto absdot = einsum_f64(parse_einsum(g.equation, {a.info.shape, b.info.shape}, g.equation), {aa.data(), bb.data()},
                                   {a.info.shape, b.info.shape});
    const auto w0 = values(find_path(m.combined.root, g.base_source.empty() ? g.base : g.base_source)->tensor());
    double mw0 = 0, mw = 0, md = 0, worst = 0;
    for (std::size_t i = 0; i < ours.size(); ++i) {
      mw0 = std::max(mw0, std::abs(w0[i]));
      mw = std::max(mw, std::abs(theirs[i]));
      md = std::max(md, g.scale * absdot[i]);
      worst = std::max(worst, std::abs(ours[i] - theirs[i]));
    }
    EXPECT_LE(worst, 16 * std::ldexp(1.0, -24) * (mw0 + mw + md)) << name;
    EXPECT_GT(worst + md, 0) << name;  // the adapter changes this weight
  }
}

TEST(Peft, MergeMatchesPeftsMergeAndUnloadWithinFloat32Rounding) {
  Checkpoint base = read_checkpoint(dir() + "/base/model.safetensors");
  PeftMerge m = peft_merge(base, dir() + "/adapter", DType::F32);
  for (const auto& g : m.groups) {
    EXPECT_DOUBLE_EQ(g.scale, 2.0) << g.base;  // lora_alpha 8 / r 4
    EXPECT_EQ(g.rank, 4);
  }
  expect_matches_peft(dir(), 14);  // 7 target modules x 2 layers
}

// Golden cases written by PEFT 0.21 itself (tools/make_peft_cases.py, tests/data/peft_cases).
TEST(Peft, DoraMatchesPeft) { expect_matches_peft(test::data_path("peft_cases/llama_dora"), 14); }

TEST(Peft, RsloraPatternsEmbeddingAndModulesToSaveMatchPeft) {
  const std::string d = test::data_path("peft_cases/llama_rslora_patterns");
  expect_matches_peft(d, 15);  // 14 linear + the embedding
  PeftMerge m = peft_merge(read_checkpoint(d + "/base/model.safetensors"), d + "/adapter", DType::F32);
  std::map<std::string, double> scale;
  for (const auto& g : m.groups) scale[g.base] = g.scale;
  EXPECT_DOUBLE_EQ(scale["model.layers.0.self_attn.q_proj.weight"], 8 / std::sqrt(2.0));   // rank_pattern q_proj: 2
  EXPECT_DOUBLE_EQ(scale["model.layers.1.self_attn.v_proj.weight"], 32 / std::sqrt(4.0));  // alpha_pattern v_proj: 32
  EXPECT_DOUBLE_EQ(scale["model.layers.1.mlp.down_proj.weight"], 8 / std::sqrt(6.0));      // a full-path pattern
  EXPECT_DOUBLE_EQ(scale["model.layers.0.mlp.down_proj.weight"], 8 / std::sqrt(4.0));
  // lm_head comes from modules_to_save: the base's is dropped by a reported rule
  Plan plan = build_plan(m.combined, m.recipe);
  bool dropped = false;
  for (const auto& src : plan.sources)
    if (src.name == "lm_head.weight") dropped = src.status == "dropped" && src.reason.find("modules_to_save") != std::string::npos;
  EXPECT_TRUE(dropped);
}

TEST(Peft, FanInFanOutConv1DWithLoraBiasMatchesPeft) {
  expect_matches_peft(test::data_path("peft_cases/gpt2_fan_in_fan_out_bias"), 8);  // c_attn, c_proj, c_fc, mlp c_proj x 2
}

// Cases written by the shared generator (tests/data/fixtures/gen/make_fixtures.py --heldout,
// PEFT 0.21 + transformers 5.17 on the GPU host). Module counts from each case's target_modules.
TEST(Peft, GeneratorCasesMatchPeft) {
  expect_matches_peft(fixture("peft_llama_rslora_patterns"), 14);  // q,k,v,o,gate,up,down x 2 layers
  expect_matches_peft(fixture("peft_llama_dora"), 6);              // q_proj, v_proj, down_proj x 2
  expect_matches_peft(fixture("peft_gpt2_fan_in_fan_out"), 6);     // c_attn, attn c_proj, mlp c_proj x 2
  // use_rslora with rank_pattern q_proj: 8 and alpha_pattern down_proj: 3
  const std::string d = fixture("peft_llama_rslora_patterns");
  PeftMerge m = peft_merge(read_checkpoint(d + "/base/model.safetensors"), d + "/adapter", DType::F32);
  std::map<std::string, double> scale;
  for (const auto& g : m.groups) scale[g.base] = g.scale;
  EXPECT_DOUBLE_EQ(scale["model.layers.0.self_attn.q_proj.weight"], 8 / std::sqrt(8.0));
  EXPECT_DOUBLE_EQ(scale["model.layers.1.mlp.down_proj.weight"], 3 / std::sqrt(4.0));
  EXPECT_DOUBLE_EQ(scale["model.layers.1.self_attn.k_proj.weight"], 8 / std::sqrt(4.0));
}

TEST(Peft, VerifyComparesWithTheOnlineLoraAndCatchesAnUnmergedWeight) {
  Checkpoint base = read_checkpoint(dir() + "/base/model.safetensors");
  PeftMerge m = peft_merge(base, dir() + "/adapter", DType::F32);
  Plan plan = build_plan(m.combined, m.recipe);
  ASSERT_TRUE(plan.ok());
  for (const auto& g : m.groups) {
    const Tensor& w = find_path(m.combined.root, g.base)->tensor();
    const Tensor& a = find_path(m.combined.root, g.lora_a)->tensor();
    const Tensor& b = find_path(m.combined.root, g.lora_b)->tensor();
    LoraVerification ok = verify_merge(g, find_path(plan.target, g.base)->tensor(), w, a, b);
    EXPECT_LT(ok.rel(), 1e-6) << g.base;   // float32 rounding of W'
    LoraVerification bad = verify_merge(g, w, w, a, b);  // LoRA silently dropped
    EXPECT_GT(bad.rel(), 1e-3) << g.base;
  }
}

TEST(Peft, ScalesFollowRsloraAndPatterns) {
  {
    TempDir tmp;
    PeftMerge m = peft_merge(read_checkpoint(dir() + "/base/model.safetensors"),
                             edited_adapter(tmp, [](nlohmann::json& c) { c["use_rslora"] = true; }), DType::F32);
    for (const auto& g : m.groups) EXPECT_DOUBLE_EQ(g.scale, 4.0) << g.base;  // 8 / sqrt(4)
  }
  {
    TempDir tmp;
    PeftMerge m = peft_merge(read_checkpoint(dir() + "/base/model.safetensors"),
                             edited_adapter(tmp, [](nlohmann::json& c) { c["alpha_pattern"] = {{"q_proj", 16}}; }), DType::F32);
    for (const auto& g : m.groups) EXPECT_DOUBLE_EQ(g.scale, g.module.ends_with("q_proj") ? 4.0 : 2.0) << g.base;
  }
  {
    TempDir tmp;  // a rank the factors do not have is an error naming the tensor
    const auto d = edited_adapter(tmp, [](nlohmann::json& c) { c["rank_pattern"] = {{"layers.1.mlp.up_proj", 8}}; });
    try {
      peft_merge(read_checkpoint(dir() + "/base/model.safetensors"), d, DType::F32);
      FAIL() << "no error";
    } catch (const MappingError& e) {
      EXPECT_NE(std::string(e.what()).find("model.layers.1.mlp.up_proj.lora_A.weight' has rank 4 but adapter_config.json gives 8"),
                std::string::npos) << e.what();
    }
  }
  {
    TempDir tmp;  // use_dora without magnitudes is an error, not a plain LoRA merge
    const auto d = edited_adapter(tmp, [](nlohmann::json& c) { c["use_dora"] = true; });
    EXPECT_THROW(peft_merge(read_checkpoint(dir() + "/base/model.safetensors"), d, DType::F32), MappingError);
  }
}

TEST(Peft, CliMergeWritesFloat32AndReports) {
  TempDir tmp;
  auto r = test::run_cli("merge-lora " + dir() + "/base/model.safetensors -o " + tmp / "m.safetensors" + " --adapter " +
                         dir() + "/adapter --verify --report " + tmp / "r.json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto rep = test::load_json(tmp / "r.json");
  EXPECT_EQ(rep["profile"], "peft");
  EXPECT_EQ(rep["merged"].size(), 14u);
  for (const auto& g : rep["merged"]) EXPECT_DOUBLE_EQ(g["scale"].get<double>(), 8.0 / 4);  // lora_alpha / r
  EXPECT_EQ(rep["ledger"]["ok"], true);
  EXPECT_EQ(rep["verify"].size(), 14u);
  EXPECT_EQ(rep["summary"]["verify"]["ok"], true);
  EXPECT_LT(rep["summary"]["verify"]["worst_rel"].get<double>(), 1e-6);
  for (const auto& v : rep["verify"])  // rounded once from float64: at most half a float32 ulp
    EXPECT_LE(v["fidelity"]["max_rel"].get<double>(), std::ldexp(1.0, -24)) << v["weight"];
}

}  // namespace
}  // namespace ckb
