// Several PEFT adapters merged in one pass (`merge-lora BASE --adapter A --adapter B:0.5`,
// profiles/peft.h): W' = W + sum_i c_i s_i B_i A_i, computed here with a plain float64 loop
// and rounded once (float32 base: a cast; bf16 base: round-to-nearest-even written out here)
// and compared bit for bit with the output; the report lists each adapter with its scale and
// modules; the ledger is clean; --verify sums the terms. Also the DIR:SCALE spelling (a
// trailing ':<number>' only) and the refusals: an adapter for another base (shapes), DoRA
// with another adapter, a module the base does not have. Inputs: the shared PEFT fixture
// (tests/data/fixtures/peft_llama_lora, adapter A: r 4, alpha 8 on every projection) and an
// adapter B written here (rsLoRA, r 2, alpha 4, on three modules) with the project's
// safetensors writer.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <set>

#include "core/errors.h"
#include "formats/format.h"
#include "ops/ops.h"
#include "profiles/peft.h"
#include "recipe/plan.h"
#include "tests/test_util.h"

namespace ckb {
namespace {

namespace fs = std::filesystem;
using test::fixture;
using test::run_cli;
using test::TempDir;

std::string llama_lora() { return fixture("peft_llama_lora"); }
const std::string kPrefix = "base_model.model.";

struct Factors {
  Shape a_shape, b_shape;
  std::vector<double> a, b;  // row-major A [r, in], B [out, r]
};

// Adapter B: rank 2 factors with values made up here, on three modules of the fixture's base.
const std::map<std::string, std::pair<std::int64_t, std::int64_t>> kModulesB = {  // module -> (out, in)
    {"model.layers.0.self_attn.q_proj", {32, 32}},
    {"model.layers.0.self_attn.v_proj", {16, 32}},
    {"model.layers.1.mlp.down_proj", {32, 64}}};
constexpr std::int64_t kRankB = 2;
constexpr double kAlphaB = 4;

std::map<std::string, Factors> factors_b() {
  std::map<std::string, Factors> out;
  int salt = 0;
  for (const auto& [module, dims] : kModulesB) {
    Factors f;
    f.a_shape = {kRankB, dims.second};
    f.b_shape = {dims.first, kRankB};
    for (std::int64_t i = 0; i < kRankB * dims.second; ++i) f.a.push_back(static_cast<float>(0.25 * std::sin(0.7 * i + salt)));  // as stored (F32)
    for (std::int64_t i = 0; i < dims.first * kRankB; ++i) f.b.push_back(static_cast<float>(0.125 * std::cos(1.3 * i + 2 * salt)));
    out[module] = std::move(f);
    ++salt;
  }
  return out;
}

Tensor f32_from_doubles(const Shape& shape, const std::vector<double>& v) {
  return make_memory_tensor(TensorInfo{DType::F32, shape}, ops::from_doubles(v, DType::F32));
}

// Writes an adapter folder: adapter_config.json (the fixture's, edited) + the tensors.
std::string write_adapter(const std::string& dir, const std::function<void(nlohmann::json&)>& edit,
                          const std::vector<std::pair<std::string, Tensor>>& tensors) {
  fs::create_directories(dir);
  auto cfg = test::load_json(llama_lora() + "/adapter/adapter_config.json");
  edit(cfg);
  test::write_file(dir + "/adapter_config.json", cfg.dump(2));
  Checkpoint ck;
  for (const auto& [n, t] : tensors) ck.root.add(n, Node::tensor(t));
  write_checkpoint(ck, dir + "/adapter_model.safetensors", format_by_name("safetensors"), {}, 1);
  return dir;
}

std::string adapter_b(const std::string& dir) {
  std::vector<std::pair<std::string, Tensor>> ts;
  for (const auto& [module, f] : factors_b()) {
    ts.emplace_back(kPrefix + module + ".lora_A.weight", f32_from_doubles(f.a_shape, f.a));
    ts.emplace_back(kPrefix + module + ".lora_B.weight", f32_from_doubles(f.b_shape, f.b));
  }
  return write_adapter(dir, [](nlohmann::json& c) { c["r"] = kRankB, c["lora_alpha"] = kAlphaB, c["use_rslora"] = true; }, ts);
}

std::map<std::string, std::vector<double>> values_of(const std::string& path) {
  std::map<std::string, std::vector<double>> out;
  const Checkpoint ck = read_checkpoint(path);
  for (const auto& [n, t] : tensor_list(ck.root)) out[n] = ops::to_doubles(*t);
  return out;
}

// out x in: W + sum over terms of scale * B A, in float64.
void add_term(std::vector<double>& w, const std::vector<double>& a, const std::vector<double>& b, std::int64_t out,
              std::int64_t in, std::int64_t r, double scale) {
  for (std::int64_t o = 0; o < out; ++o)
    for (std::int64_t i = 0; i < in; ++i) {
      double d = 0;
      for (std::int64_t k = 0; k < r; ++k) d += b[static_cast<std::size_t>(o * r + k)] * a[static_cast<std::size_t>(k * in + i)];
      w[static_cast<std::size_t>(o * in + i)] += scale * d;
    }
}

// The float64 merge of the fixture's adapter (scale 1: alpha 8 / r 4) and adapter B (scale
// `c`: c * 4 / sqrt(2)) into `base` (name -> values; shapes from the fixture's config).
std::map<std::string, std::vector<double>> expected_merge(std::map<std::string, std::vector<double>> base, double c) {
  const auto a1 = values_of(llama_lora() + "/adapter/adapter_model.safetensors");
  std::set<std::string> touched;
  for (const auto& [name, v] : a1) {
    const auto at = name.find(".lora_A.weight");
    if (at == std::string::npos) continue;
    const std::string module = name.substr(kPrefix.size(), at - kPrefix.size());
    const auto& b = a1.at(kPrefix + module + ".lora_B.weight");
    const std::int64_t in = static_cast<std::int64_t>(v.size()) / 4, out = static_cast<std::int64_t>(b.size()) / 4;
    add_term(base.at(module + ".weight"), v, b, out, in, 4, 8.0 / 4.0);
  }
  for (const auto& [module, f] : factors_b())
    add_term(base.at(module + ".weight"), f.a, f.b, f.b_shape[0], f.a_shape[1], kRankB, c * kAlphaB / std::sqrt(2.0));
  return base;
}

TEST(PeftMultiAdapter, ParsesATrailingNumberAsTheScaleAndNothingElse) {
  auto p = [](const std::string& s) { return parse_peft_adapter(s); };
  EXPECT_EQ(p("runs/a").dir, "runs/a");
  EXPECT_EQ(p("runs/a").scale, 1.0);
  EXPECT_EQ(p("runs/a:0.5").dir, "runs/a");
  EXPECT_EQ(p("runs/a:0.5").scale, 0.5);
  EXPECT_EQ(p("a:-1").scale, -1.0);
  EXPECT_EQ(p("a:+2").scale, 2.0);
  EXPECT_EQ(p("a:2e-1").scale, 0.2);
  EXPECT_EQ(p("a:.25").scale, 0.25);
  EXPECT_EQ(p("a:3.").scale, 3.0);
  for (const std::string path : {"C:/models/a", "run:v2", "a:nan", "a:inf", "a:0x10", "a:1.5x", "a:", "a:1:b", ":0.5"}) {
    EXPECT_EQ(p(path).dir, path);
    EXPECT_EQ(p(path).scale, 1.0) << path;
  }
  // a folder whose own name ends in ':<number>' takes an explicit scale
  EXPECT_EQ(p("ckpt:3:1").dir, "ckpt:3");
  EXPECT_EQ(p("ckpt:3:1").scale, 1.0);
  const auto several = parse_peft_adapters("a\nb:0.5\nc:d");
  ASSERT_EQ(several.size(), 3u);
  EXPECT_EQ(several[0].dir, "a");
  EXPECT_EQ(several[1].dir, "b");
  EXPECT_EQ(several[1].scale, 0.5);
  EXPECT_EQ(several[2].dir, "c:d");
  EXPECT_THROW(p(""), UsageError);
  EXPECT_THROW(parse_peft_adapters("a\n"), UsageError);
  EXPECT_THROW(p("a:1e999"), UsageError);
}

TEST(PeftMultiAdapter, TwoAdaptersIntoAnF32BaseSumInFloat64RoundedOnceWithACleanLedger) {
  TempDir tmp;
  const std::string b = adapter_b(tmp / "b");
  auto r = run_cli("merge-lora " + llama_lora() + "/base --adapter " + llama_lora() + "/adapter --adapter " + b + ":0.5 " + tmp / "out" +
                   " --report " + tmp / "r.json --verify -q");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto got = values_of(tmp / "out/model.safetensors");
  const auto base = values_of(llama_lora() + "/base/model.safetensors");
  const auto want = expected_merge(base, 0.5);
  ASSERT_EQ(got.size(), want.size());
  std::size_t changed = 0;
  for (const auto& [name, w] : want) {
    ASSERT_TRUE(got.count(name)) << name;
    const auto& g = got.at(name);
    ASSERT_EQ(g.size(), w.size()) << name;
    for (std::size_t i = 0; i < w.size(); ++i) ASSERT_EQ(g[i], static_cast<double>(static_cast<float>(w[i]))) << name << " " << i;
    changed += g != base.at(name);
  }
  EXPECT_EQ(changed, 14u);  // every projection of both layers; adapter B adds to three of them

  const auto rep = test::load_json(tmp / "r.json");
  ASSERT_EQ(rep["adapters"].size(), 2u);
  EXPECT_EQ(rep["adapters"][0]["path"], llama_lora() + "/adapter");
  EXPECT_EQ(rep["adapters"][0]["scale"], 1.0);
  EXPECT_EQ(rep["adapters"][0]["modules"].size(), 14u);
  EXPECT_EQ(rep["adapters"][1]["path"], b);
  EXPECT_EQ(rep["adapters"][1]["scale"], 0.5);
  std::set<std::string> modules_b;
  for (const auto& m : rep["adapters"][1]["modules"]) modules_b.insert(m.get<std::string>());
  EXPECT_EQ(modules_b, (std::set<std::string>{"model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj",
                                               "model.layers.1.mlp.down_proj"}));
  EXPECT_EQ(rep["summary"]["merged_modules"], 17);
  // the ledger: every base tensor and every adapter factor consumed, nothing unused
  EXPECT_EQ(rep["ledger"]["ok"], true);
  EXPECT_TRUE(rep["ledger"]["problems"].empty());
  std::size_t factors = 0;
  for (const auto& [name, s] : rep["ledger"]["sources"].items()) {
    EXPECT_EQ(s["status"], "consumed") << name;
    factors += name.starts_with("adapter1/") || name.starts_with("adapter2/");
  }
  EXPECT_EQ(factors, 28u + 6u);
  EXPECT_EQ(rep["summary"]["verify"]["ok"], true);
  EXPECT_LT(rep["summary"]["verify"]["worst_rel"].get<double>(), 1e-6);
  EXPECT_NE(rep["notes"].dump().find("adapter " + b + " (scale 0.5): 3 module(s) merged"), std::string::npos) << rep["notes"];
}

TEST(PeftMultiAdapter, ABf16ShardedBaseIsRoundedOnceToBf16) {
  TempDir tmp;
  const std::string base = tmp / "base_bf16";
  auto r = run_cli("convert " + llama_lora() + "/base/model.safetensors " + base + "/ --dtype bf16 --shard-size 20KB -q");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  fs::copy_file(llama_lora() + "/base/config.json", base + "/config.json");
  const std::string b = adapter_b(tmp / "b");
  // scale -2: adapter B subtracted twice over
  r = run_cli("merge-lora " + base + " --adapter " + llama_lora() + "/adapter --adapter " + b + ":-2 -o " + tmp / "out -q");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::map<std::string, std::vector<double>> base_values, got;
  for (const auto& e : fs::directory_iterator(base))
    if (e.path().extension() == ".safetensors") base_values.merge(values_of(e.path().string()));
  for (const auto& e : fs::directory_iterator(tmp / "out"))
    if (e.path().extension() == ".safetensors") got.merge(values_of(e.path().string()));
  const auto want = expected_merge(base_values, -2.0);
  ASSERT_EQ(got.size(), want.size());
  std::size_t inexact_twice = 0;  // elements where rounding the first sum to bf16 first would differ
  for (const auto& [name, w] : want) {
    const auto& g = got.at(name);
    ASSERT_EQ(g.size(), w.size()) << name;
    for (std::size_t i = 0; i < w.size(); ++i) ASSERT_EQ(g[i], test::round_to_bf16(w[i])) << name << " " << i;
  }
  // The single rounding matters here: rounding after adapter A and again after B differs.
  const auto after_a = expected_merge(base_values, 0.0);
  for (const auto& [module, f] : factors_b()) {
    auto twice = after_a.at(module + ".weight");
    for (auto& x : twice) x = test::round_to_bf16(x);
    add_term(twice, f.a, f.b, f.b_shape[0], f.a_shape[1], kRankB, -2.0 * kAlphaB / std::sqrt(2.0));
    const auto& g = got.at(module + ".weight");
    for (std::size_t i = 0; i < g.size(); ++i) inexact_twice += test::round_to_bf16(twice[i]) != g[i];
  }
  EXPECT_GT(inexact_twice, 0u);
}

TEST(PeftMultiAdapter, PathsWithAColonAndTheAdapterAloneFormKeepWorking) {
  TempDir tmp;
  // folders named "run:v2" and "ckpt:3" (the latter needs its explicit ":1")
  fs::copy(llama_lora() + "/adapter", tmp / "run:v2");
  const std::string b = adapter_b(tmp / "ckpt:3");
  auto r = run_cli("merge-lora " + llama_lora() + "/base --adapter " + tmp / "run:v2" + " --adapter " + b + ":1 " + tmp / "out" +
                   " --report " + tmp / "r.json -q");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto rep = test::load_json(tmp / "r.json");
  EXPECT_EQ(rep["adapters"][0]["path"], tmp / "run:v2");
  EXPECT_EQ(rep["adapters"][1]["path"], b);
  EXPECT_EQ(rep["adapters"][1]["scale"], 1.0);
  const auto got = values_of(tmp / "out/model.safetensors");
  const auto want = expected_merge(values_of(llama_lora() + "/base/model.safetensors"), 1.0);
  for (const auto& [name, w] : want)
    for (std::size_t i = 0; i < w.size(); ++i) ASSERT_EQ(got.at(name)[i], static_cast<double>(static_cast<float>(w[i]))) << name;
}

TEST(PeftMultiAdapter, AnAdapterFolderAloneWhoseNameEndsInANumberIsNotReadAsAScale) {
  TempDir tmp;
  const std::string lora = tmp / "lora:2";
  fs::create_directories(lora);
  fs::copy_file(llama_lora() + "/adapter/adapter_model.safetensors", lora + "/adapter_model.safetensors");
  auto cfg = test::load_json(llama_lora() + "/adapter/adapter_config.json");
  cfg["base_model_name_or_path"] = llama_lora() + "/base";
  test::write_file(lora + "/adapter_config.json", cfg.dump());
  auto r = run_cli("merge-lora " + lora + " -o " + tmp / "out --report " + tmp / "r.json -q");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(test::load_json(tmp / "r.json")["adapters"][0]["scale"], 1.0);
  const auto got = values_of(tmp / "out/model.safetensors");
  const auto want = expected_merge(values_of(llama_lora() + "/base/model.safetensors"), 0.0);  // adapter A alone
  for (const auto& [name, w] : want)
    for (std::size_t i = 0; i < w.size(); ++i) ASSERT_EQ(got.at(name)[i], static_cast<double>(static_cast<float>(w[i]))) << name;
}

// GPT-2's Conv1D (fan_in_fan_out: W is [in, out]) with lora_bias, the same adapter given twice
// (scales 1 and -0.5): W + 0.5 s (B A)^T and b + 0.5 s lora_B.bias, s = 16/4, in float64.
TEST(PeftMultiAdapter, FanInFanOutWeightsAndLoraBiasesSumTheirTerms) {
  TempDir tmp;
  const std::string c = test::data_path("peft_cases/gpt2_fan_in_fan_out_bias");
  auto r = run_cli("merge-lora " + c + "/base/model.safetensors --adapter " + c + "/adapter --adapter " + c + "/adapter:-0.5 " +
                   tmp / "m.safetensors -q");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto got = values_of(tmp / "m.safetensors");
  auto want = values_of(c + "/base/model.safetensors");
  const auto ad = values_of(c + "/adapter/adapter_model.safetensors");
  const Checkpoint base = read_checkpoint(c + "/base/model.safetensors");
  std::size_t weights = 0, biases = 0;
  for (const auto& [name, a] : ad) {
    const auto at = name.find(".lora_A.weight");
    if (at == std::string::npos) continue;
    const std::string module = name.substr(kPrefix.size(), at - kPrefix.size());
    const auto& b = ad.at(kPrefix + module + ".lora_B.weight");
    const Shape& ws = find_path(base.root, module + ".weight")->tensor().info.shape;  // [in, out]
    auto& w = want.at(module + ".weight");
    const std::int64_t in = ws[0], out = ws[1];
    for (std::int64_t i = 0; i < in; ++i)
      for (std::int64_t o = 0; o < out; ++o) {
        double d = 0;
        for (std::int64_t k = 0; k < 4; ++k) d += b[static_cast<std::size_t>(o * 4 + k)] * a[static_cast<std::size_t>(k * in + i)];
        w[static_cast<std::size_t>(i * out + o)] += 0.5 * 4.0 * d;
      }
    ++weights;
    const auto& lb = ad.at(kPrefix + module + ".lora_B.bias");
    auto& bias = want.at(module + ".bias");
    for (std::size_t o = 0; o < bias.size(); ++o) bias[o] += 0.5 * 4.0 * lb[o];
    ++biases;
  }
  EXPECT_GT(weights, 0u);
  EXPECT_EQ(weights, biases);
  for (const auto& [name, w] : want)
    for (std::size_t i = 0; i < w.size(); ++i) ASSERT_EQ(got.at(name)[i], static_cast<double>(static_cast<float>(w[i]))) << name << " " << i;
}

// The recipe form the merge compiles to: einsum_add with "terms", written back as it was read.
TEST(PeftMultiAdapter, EinsumAddTermsSumInOneRuleAndRoundTrip) {
  const auto j = nlohmann::json::parse(R"({"rules": [
    {"einsum_add": {"base": "w", "equation": "or,ri->oi",
                    "terms": [{"operands": ["a1", "b1"], "scale": 0.5}, {"operands": ["a2", "b2"], "scale": -3.0}]},
     "to": "w", "dtype": "F64"}]})");
  // einsum operands in the order given: A [o, r] first here, then [r, i]
  Checkpoint ck;
  ck.root.add("w", Node::tensor(f32_from_doubles({2, 2}, {1, 2, 3, 4})));
  ck.root.add("a1", Node::tensor(f32_from_doubles({2, 1}, {1, 2})));
  ck.root.add("b1", Node::tensor(f32_from_doubles({1, 2}, {10, 20})));
  ck.root.add("a2", Node::tensor(f32_from_doubles({2, 1}, {1, -1})));
  ck.root.add("b2", Node::tensor(f32_from_doubles({1, 2}, {0.25, 0.5})));
  const Recipe recipe = parse_recipe(j, "test");
  EXPECT_EQ(recipe_to_json(recipe)["rules"][0]["einsum_add"], j["rules"][0]["einsum_add"]);
  const Plan plan = build_plan(ck, recipe);
  ASSERT_TRUE(plan.ok()) << plan.problems[0];
  // w + 0.5 * [[10, 20], [20, 40]] - 3 * [[0.25, 0.5], [-0.25, -0.5]]
  EXPECT_EQ(ops::to_doubles(find_path(plan.target, "w")->tensor()), (std::vector<double>{5.25, 10.5, 13.75, 25.5}));
  auto bad = j;
  bad["rules"][0]["einsum_add"]["terms"][1]["operands"] = {"a2"};
  EXPECT_THROW(parse_recipe(bad, "test"), MappingError);
}

TEST(PeftMultiAdapter, RefusesAnotherBasesAdapterDoraWithOthersAndAnUnknownModule) {
  TempDir tmp;
  const std::string base = llama_lora() + "/base";
  // an adapter for another base: the rsLoRA case's model has mlp width 48, not 64
  const std::string other = test::data_path("peft_cases/llama_rslora_patterns/adapter");
  auto r = run_cli("merge-lora " + base + " --adapter " + llama_lora() + "/adapter --adapter " + other + " " + tmp / "o1");
  EXPECT_EQ(r.exit_code, 2);  // a mapping error
  EXPECT_NE(r.err.find(other + ": 'base_model.model.model.layers.0.mlp.down_proj.lora_A.weight' [4, 48] and "
                       "'base_model.model.model.layers.0.mlp.down_proj.lora_B.weight' [32, 4] give a delta of [32, 48] but "
                       "the base's 'model.layers.0.mlp.down_proj.weight' is [32, 64] (an adapter for another base model?)"),
            std::string::npos)
      << r.err;
  EXPECT_FALSE(fs::exists(tmp / "o1"));

  // DoRA only alone
  const std::string dora = test::data_path("peft_cases/llama_dora/adapter");
  r = run_cli("merge-lora " + base + " --adapter " + llama_lora() + "/adapter --adapter " + dora + ":0.5 " + tmp / "o2");
  EXPECT_EQ(r.exit_code, 2);  // a mapping error
  EXPECT_NE(r.err.find(dora + ": uses DoRA, which cannot be merged together with other adapters"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("merge it alone, then merge the next adapter into that output"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(tmp / "o2"));

  // a module the base does not have
  const auto f = factors_b().at("model.layers.0.self_attn.q_proj");
  const std::string unknown = write_adapter(tmp / "unknown", [](nlohmann::json& c) { c["r"] = kRankB; },
                                            {{kPrefix + "model.layers.0.self_attn.qq_proj.lora_A.weight", f32_from_doubles(f.a_shape, f.a)},
                                             {kPrefix + "model.layers.0.self_attn.qq_proj.lora_B.weight", f32_from_doubles(f.b_shape, f.b)}});
  r = run_cli("merge-lora " + base + " --adapter " + llama_lora() + "/adapter --adapter " + unknown + " " + tmp / "o3");
  EXPECT_EQ(r.exit_code, 2);  // a mapping error
  EXPECT_NE(r.err.find(unknown + ": 'base_model.model.model.layers.0.self_attn.qq_proj.lora_A.weight': the base has no weight "
                       "for module 'model.layers.0.self_attn.qq_proj'"),
            std::string::npos)
      << r.err;
  EXPECT_FALSE(fs::exists(tmp / "o3"));

  // in the library: the same refusal as a MappingError
  EXPECT_THROW(peft_merge(read_checkpoint(base + "/model.safetensors"), {{llama_lora() + "/adapter", 1.0}, {dora, 1.0}}, std::nullopt),
               MappingError);
  EXPECT_THROW(peft_merge(read_checkpoint(base + "/model.safetensors"), std::vector<PeftAdapter>{}, std::nullopt), UsageError);
}

}  // namespace
}  // namespace ckb
