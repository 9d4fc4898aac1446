// LoRA merge derived from einsum equations, checked against openpi's runtime: the probes
// recorded by openpi's own lora.Einsum / FeedForward modules (tests/data/fixtures/
// openpi_pi0_tiny_lora/probes.npz), and wrong merge variants shown to miss them.
#include <cmath>
#include <cstring>
#include <iostream>

#include "core/errors.h"
#include "formats/format.h"
#include "test_util.h"
#include "ops/einsum.h"
#include "profiles/lora.h"
#include "ops/ops.h"
#include "recipe/plan.h"

namespace ckb {
namespace {
using test::fixture;

TEST(Lora, MakeLoraEqnsMatchesOpenpi) {
  auto q = make_lora_eqns("BTD,NDH->BTNH");
  EXPECT_EQ(q.eqn_a, "BTD,NDL->BTNL");
  EXPECT_EQ(q.eqn_b, "BTNL,NLH->BTNH");
  auto kv = make_lora_eqns("BSD,2KDH->2BSKH");
  EXPECT_EQ(kv.eqn_a, "BSD,2KDL->2BSKL");
  EXPECT_EQ(kv.eqn_b, "2BSKL,2KLH->2BSKH");
  auto av = make_lora_eqns("BTNH,NHD->BTD");
  EXPECT_EQ(av.eqn_a, "BTNH,NHL->BTL");
  EXPECT_EQ(av.eqn_b, "BTL,NLD->BTD");
  EXPECT_THROW(make_lora_eqns("BTL,LD->BTD"), MappingError);  // label L already used
}

TEST(Lora, DeltaEquationsComposeTheRuntimeEinsums) {
  // q: heads matched elementwise; attn_vec: lora_b's head axis gets its own letter (summed alone).
  EXPECT_EQ(delta_equation(make_lora_eqns("BTD,NDH->BTNH")), "NDL,NLH->NDH");
  std::string av = delta_equation(make_lora_eqns("BTNH,NHD->BTD"));
  EXPECT_EQ(av.substr(0, 4), "NHL,");
  EXPECT_NE(av[4], 'N');
  EXPECT_EQ(av.substr(5), "LD->NHD");
  // A scanned layer axis in front.
  std::string q1 = delta_equation(make_lora_eqns("BTD,NDH->BTNH"), 1);
  EXPECT_EQ(q1.size(), std::string("xNDL,xNLH->xNDH").size());
  for (const char* eq : {"BTD,NDH->BTNH", "BSD,2KDH->2BSKH", "BSD,3KDH->3BSKH", "BTNH,NHD->BTD", "BTD,DF->BTF"})
    EXPECT_NO_THROW(self_check(make_lora_eqns(eq))) << eq;
  // A runtime whose second step does not produce the base output cannot be merged.
  EXPECT_THROW(delta_equation({"BTD,DF->BTF", "BTD,DL->BTL", "BTL,LF->BTL"}), MappingError);
}

// y = einsum(eqn, x, W[layer][index]) with digit labels mapped to letters.
std::vector<double> apply_probe(const nlohmann::json& probe, const Tensor& x, const Tensor& merged) {
  std::string eqn = probe["eqn"];
  for (char& c : eqn)
    if (c == '2') c = 'c';
  Tensor w = ops::index(merged, 0, probe["layer"].get<int>(), "w");
  if (probe.contains("weight_index") && !probe["weight_index"].is_null()) w = ops::index(w, 0, probe["weight_index"].get<int>(), "w");
  auto xv = ops::to_doubles(x), wv = ops::to_doubles(w);
  auto spec = parse_einsum(eqn, {x.info.shape, w.info.shape}, eqn);
  return einsum_f64(spec, {xv.data(), wv.data()}, {x.info.shape, w.info.shape});
}

struct ProbeResult {
  double worst_rel = 0;
  std::map<std::string, double> rel;  // per probe key
};

ProbeResult run_probes(const Node& merged_root, const std::string& prefix) {
  auto model = test::load_json(fixture("openpi_pi0_tiny_lora/model.json"));
  auto probes = read_checkpoint(fixture("openpi_pi0_tiny_lora/probes.npz"));
  ProbeResult r;
  for (const auto& p : model["probes"]) {
    std::string key = p["key"];
    const Node* w = find_path(merged_root, prefix + p["weight"].get<std::string>());
    if (!w) w = find_path(merged_root, prefix + p["weight"].get<std::string>() + "/value");
    EXPECT_NE(w, nullptr) << key;
    if (!w) continue;
    auto y = ops::to_doubles(probes.root.find(key + "/y")->tensor());
    auto got = apply_probe(p, probes.root.find(key + "/x")->tensor(), w->tensor());
    double err = 0, mag = 0;
    for (std::size_t i = 0; i < y.size(); ++i) {
      err = std::max(err, std::fabs(got[i] - y[i]));
      mag = std::max(mag, std::fabs(y[i]));
    }
    r.rel[key] = err / mag;
    r.worst_rel = std::max(r.worst_rel, err / mag);
  }
  return r;
}

Plan merge(const Checkpoint& ck, std::vector<LoraGroup>* groups = nullptr) {
  LoraMergeOptions o;
  o.experts = openpi_config_file(fixture("openpi_pi0_tiny_lora/model.json"));
  auto recipe = openpi_merge_recipe(ck, o, groups);
  auto plan = build_plan(ck, recipe);
  EXPECT_TRUE(plan.ok()) << (plan.problems.empty() ? "" : plan.problems[0]);
  return plan;
}

TEST(Lora, ReleaseMergeReproducesEveryProbe) {
  auto ck = read_checkpoint(fixture("openpi_pi0_tiny_lora/release/params"));
  std::vector<LoraGroup> groups;
  auto plan = merge(ck, &groups);
  EXPECT_EQ(groups.size(), 10u);  // 2 experts x (q, kv, attn_vec, gating, linear)
  auto led = plan.ledger_json();
  for (const auto& [name, e] : led["sources"].items()) {
    EXPECT_EQ(e["status"], "consumed") << name;
  }
  for (const auto& [name, e] : led["targets"].items()) EXPECT_EQ(name.find("lora"), std::string::npos) << name;
  auto r = run_probes(plan.target, "params/");
  EXPECT_EQ(r.rel.size(), 24u);
  for (const auto& [k, rel] : r.rel) EXPECT_LT(rel, 2e-6) << k;  // float32 rounding of y
  std::cout << "worst relative error over " << r.rel.size() << " probes: " << r.worst_rel << "\n";
  // Merged weights are float32.
  for (const auto& g : groups) EXPECT_EQ(find_path(plan.target, g.base)->tensor().info.dtype, DType::F32) << g.base;
}

TEST(Lora, WrongMergeVariantsMissTheProbes) {
  auto ck = read_checkpoint(fixture("openpi_pi0_tiny_lora/release/params"));
  std::vector<LoraGroup> groups;
  LoraMergeOptions o;
  o.experts = openpi_config_file(fixture("openpi_pi0_tiny_lora/model.json"));
  auto recipe = openpi_merge_recipe(ck, o, &groups);
  for (auto& rule : recipe.rules) {
    if (rule.kind != Rule::Kind::EinsumAdd) continue;
    const auto& base = rule.inputs[0].text();
    if (base.find("attn_vec_einsum") != std::string::npos) {
      // Per-head merge: lora_b's head axis matched to lora_a's instead of summed on its own.
      auto comma = rule.equation.find(','), arrow = rule.equation.find("->");
      std::string a = rule.equation.substr(0, comma), b = rule.equation.substr(comma + 1, arrow - comma - 1);
      b[1] = a[1];  // after the layer label: lora_b's head label := lora_a's
      rule.equation = a + "," + b + rule.equation.substr(arrow);
    }
    if (base.find("/mlp") != std::string::npos) rule.scale = 2.0;  // alpha/rank applied to FeedForward
  }
  auto plan = build_plan(ck, recipe);
  ASSERT_TRUE(plan.ok()) << plan.problems[0];
  auto r = run_probes(plan.target, "params/");
  double best_wrong = 1e9;
  for (const auto& [k, rel] : r.rel)
    if (k.find("attn_vec") != std::string::npos || k.find("mlp") != std::string::npos) best_wrong = std::min(best_wrong, rel);
  std::cout << "smallest relative error of a wrong-variant probe: " << best_wrong << "\n";
  for (const auto& [k, rel] : r.rel) {
    bool wrong = k.find("attn_vec") != std::string::npos || k.find("mlp") != std::string::npos;
    if (wrong) {
      EXPECT_GT(rel, 0.05) << k << " should miss with the wrong merge";
    } else {
      EXPECT_LT(rel, 2e-6) << k;
    }
  }
}

TEST(Lora, TrainCheckpointDiffersFromReleaseByBf16RoundingOfTheBase) {
  auto rel = read_checkpoint(fixture("openpi_pi0_tiny_lora/release/params"));
  auto train = read_checkpoint(fixture("openpi_pi0_tiny_lora/train/checkpoints/100"));
  std::vector<LoraGroup> groups;
  auto pr = merge(rel);
  auto pt = merge(train, &groups);
  ASSERT_EQ(groups.size(), 10u);
  for (const auto& g : groups) {
    std::string key = g.base.substr(0, g.base.size() - 6);  // strip "/value"
    auto w = ops::to_doubles(find_path(rel.root, key)->tensor());
    auto wb = ops::to_doubles(find_path(train.root, g.base)->tensor());  // the bf16 base
    auto mr = ops::to_doubles(find_path(pr.target, key)->tensor());
    auto mt = ops::to_doubles(find_path(pt.target, g.base)->tensor());
    ASSERT_EQ(mr.size(), mt.size());
    for (std::size_t i = 0; i < mr.size(); ++i) {
      double want = wb[i] - w[i];  // exactly the base's bf16 rounding ...
      double tol = 2 * std::ldexp(std::max(std::fabs(mr[i]), std::fabs(mt[i])), -24);  // ... up to f32 rounding of both merges
      ASSERT_NEAR(mt[i] - mr[i], want, tol) << g.base << " [" << i << "]";
    }
  }
}

TEST(Lora, MissingConfigAndRankMismatchAreErrors) {
  auto ck = read_checkpoint(fixture("openpi_pi0_tiny_lora/release/params"));
  LoraMergeOptions o;
  o.experts = {openpi_config_file(fixture("openpi_pi0_tiny_lora/model.json"))[0]};  // expert 1 missing
  try {
    openpi_merge_recipe(ck, o);
    FAIL();
  } catch (const MappingError& e) {
    EXPECT_NE(std::string(e.what()).find("expert 1"), std::string::npos) << e.what();
  }
  o.experts = openpi_variants("gemma_2b_lora,gemma_300m_lora");  // rank 16/32, the fixture has 4/2
  try {
    openpi_merge_recipe(ck, o);
    FAIL();
  } catch (const MappingError& e) {
    EXPECT_NE(std::string(e.what()).find("has rank 4 but the config for expert 0 says 16"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace ckb
