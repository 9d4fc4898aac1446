// The PEFT LoRA profile (transform/peft.h) against PEFT's own merge_and_unload of a tiny
// Llama (tests/data/fixtures/peft_llama_lora): every merged weight within the float32
// rounding PEFT's merge itself incurs, every other tensor byte-identical; scales from
// use_rslora / alpha_pattern / rank_pattern; unsupported kinds refused by name.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <map>

#include "core/errors.h"
#include "formats/format.h"
#include "tests/test_util.h"
#include "transform/peft.h"
#include "transform/plan.h"
#include "transform/ops.h"

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

TEST(Peft, MergeMatchesPeftsMergeAndUnloadWithinFloat32Rounding) {
  Checkpoint base = read_checkpoint(dir() + "/base/model.safetensors");
  Checkpoint peft = read_checkpoint(dir() + "/merged/model.safetensors");
  PeftMerge m = peft_merge(base, dir() + "/adapter", DType::F32);
  EXPECT_EQ(m.groups.size(), 14u);  // 7 target modules x 2 layers
  for (const auto& g : m.groups) {
    EXPECT_DOUBLE_EQ(g.scale, 2.0) << g.base;  // lora_alpha 8 / r 4
    EXPECT_EQ(g.rank, 4);
  }
  Plan plan = build_plan(m.combined, m.recipe);
  ASSERT_TRUE(plan.ok()) << plan.problems[0];
  // per merged weight: s * sum_l |B[o,l]| |A[l,i]|, the scale of the terms PEFT's B @ A adds up
  std::map<std::string, std::vector<double>> absdot;
  for (const auto& g : m.groups) {
    const Tensor& a = find_path(m.combined.root, g.lora_a)->tensor();
    const Tensor& b = find_path(m.combined.root, g.lora_b)->tensor();
    const auto av = values(a), bv = values(b);
    const auto r = static_cast<std::size_t>(a.info.shape[0]), in = static_cast<std::size_t>(a.info.shape[1]),
               out = static_cast<std::size_t>(b.info.shape[0]);
    auto& d = absdot[g.base];
    d.assign(out * in, 0.0);
    for (std::size_t o = 0; o < out; ++o)
      for (std::size_t i = 0; i < in; ++i)
        for (std::size_t l = 0; l < r; ++l) d[o * in + i] += g.scale * std::abs(bv[o * r + l] * av[l * in + i]);
  }
  std::size_t checked = 0;
  for (const auto& [name, t] : tensor_list(plan.target)) {
    const Node* want = find_path(peft.root, name);
    ASSERT_NE(want, nullptr) << name;
    ASSERT_EQ(t->info, want->tensor().info) << name;
    const auto ours = values(*t), theirs = values(want->tensor()), w0 = values(find_path(base.root, name)->tensor());
    for (std::size_t i = 0; i < ours.size(); ++i) {
      if (!absdot.count(name)) {
        ASSERT_EQ(ours[i], theirs[i]) << name;  // untouched tensors pass through exactly
        continue;
      }
      // PEFT: delta = (B @ A) * s and W + delta, every step rounded to float32 (u = 2^-24);
      // ours is the float64 result rounded once. Bound: (r + 2) u times the magnitudes the
      // sums involve (|W|, |W'| and s * sum |B||A|; cancellation makes |W'| alone too small).
      const double bound = 6.0 * std::ldexp(1.0, -24) * (std::abs(w0[i]) + std::abs(theirs[i]) + absdot[name][i]) + 1e-45;
      ASSERT_LE(std::abs(ours[i] - theirs[i]), bound) << name << "[" << i << "]";
      ++checked;
    }
  }
  EXPECT_GT(checked, 10000u);
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
    TempDir tmp;  // DoRA is refused, not merged as plain LoRA
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
  EXPECT_EQ(rep["merged"][0]["scale_rule"], "lora_alpha/r = 8.000000/4");
  EXPECT_EQ(rep["ledger"]["ok"], true);
  EXPECT_EQ(rep["verify"].size(), 14u);
  EXPECT_EQ(rep["summary"]["verify"]["ok"], true);
  EXPECT_LT(rep["summary"]["verify"]["worst_rel"].get<double>(), 1e-6);
}

}  // namespace
}  // namespace ckb
