// Every Gemma attention shape through the built-in "openpi" recipe, per expert: the fused
// qkv_einsum [kJaxLayers, 3, N, D, H] openpi builds when num_kv_heads == num_heads (MHA) and
// q_einsum [kJaxLayers, N, D, H] + kv_einsum [kJaxLayers, 2, K, D, H] otherwise (GQA / MQA), each with or
// without LoRA, experts of different widths, head counts and head dims, one MHA beside one
// GQA (openpi's own Attention asserts equal heads across experts; the converter must not).
//
// The trees are built here with random values, and the reference is computed here too, in
// float64 with a naive loop einsum over openpi's runtime equations as lora.Einsum writes them
// (eqn, then eqn_a / eqn_b from _make_lora_eqns with axes (-2, -1) and label kJaxLayers, scaled by
// alpha/rank or alpha/sqrt(rank)) and FeedForward's unscaled dot(dot(x, A), B): nothing of the
// library's einsum or merge code is used for the expected values. Checked: a clean ledger,
// every module's runtime output reproduced from the converted PyTorch Linear weights
// (y = x W^T), the reverse giving the merged JAX tree back bit for bit, and the CLI
// (config.json sizes, --reverse from them, the detection message for an unshipped shape).
#include <cmath>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <optional>
#include <random>
#include <set>

#include "core/errors.h"
#include "formats/format.h"
#include "ops/ops.h"
#include "profiles/lora.h"
#include "profiles/openpi.h"
#include "recipe/diff.h"
#include "recipe/plan.h"
#include "recipe/recipe.h"
#include "test_util.h"

namespace ckb {
namespace {

const std::string kJaxLayers = "params/PaliGemma/llm/layers/";
const std::string kTorchLm = "paligemma_with_expert.paligemma.model.language_model.";
const std::string kTorchExpert = "paligemma_with_expert.gemma_expert.model.";

struct ExpertSpec {
  std::int64_t width, mlp, heads, kv_heads, head_dim;
  std::optional<LoraModuleConfig> attn, ffn;
  bool mha() const { return heads == kv_heads; }
};

// --- an independent float64 reference --------------------------------------------------

struct Arr {
  std::vector<double> v;
  Shape s;
};

// Naive einsum of two operands: every label assignment visited, products summed.
Arr einsum_ref(const std::string& eq, const Arr& a, const Arr& b) {
  const auto comma = eq.find(','), arrow = eq.find("->");
  const std::string la = eq.substr(0, comma), lb = eq.substr(comma + 1, arrow - comma - 1), lo = eq.substr(arrow + 2);
  EXPECT_EQ(la.size(), a.s.size()) << eq;
  EXPECT_EQ(lb.size(), b.s.size()) << eq;
  std::map<char, std::int64_t> size;
  for (std::size_t i = 0; i < la.size(); ++i) size[la[i]] = a.s[i];
  for (std::size_t i = 0; i < lb.size(); ++i) {
    if (size.count(lb[i])) {
      EXPECT_EQ(size[lb[i]], b.s[i]) << eq << " label " << lb[i];
    }
    size[lb[i]] = b.s[i];
  }
  std::string labels;
  for (const auto& [c, n] : size) labels += c;
  Arr out;
  std::uint64_t n_out = 1;
  for (char c : lo) out.s.push_back(size[c]), n_out *= static_cast<std::uint64_t>(size[c]);
  out.v.assign(n_out, 0.0);
  auto offset = [&](const std::string& ls, const Shape& sh, const std::map<char, std::int64_t>& at) {
    std::int64_t o = 0;
    for (std::size_t i = 0; i < ls.size(); ++i) o = o * sh[i] + at.at(ls[i]);
    return static_cast<std::size_t>(o);
  };
  std::map<char, std::int64_t> at;
  for (char c : labels) at[c] = 0;
  while (true) {
    out.v[offset(lo, out.s, at)] += a.v[offset(la, a.s, at)] * b.v[offset(lb, b.s, at)];
    std::size_t k = labels.size();
    while (k > 0 && ++at[labels[k - 1]] == size[labels[k - 1]]) at[labels[--k]] = 0;
    if (k == 0) break;
  }
  return out;
}

// The runtime's module: base + scale * LoRA path (lora.Einsum), or plain base without LoRA.
struct ModuleEqs {
  std::string eqn, eqn_a, eqn_b;
};
// openpi's equations with the stacking literal ("2", "3") written as the letter c.
const std::map<std::string, ModuleEqs> kEqs = {
    {"q_einsum", {"BTD,NDH->BTNH", "BTD,NDL->BTNL", "BTNL,NLH->BTNH"}},
    {"kv_einsum", {"BSD,cKDH->cBSKH", "BSD,cKDL->cBSKL", "cBSKL,cKLH->cBSKH"}},
    {"qkv_einsum", {"BSD,cKDH->cBSKH", "BSD,cKDL->cBSKL", "cBSKL,cKLH->cBSKH"}},
    {"attn_vec_einsum", {"BTNH,NHD->BTD", "BTNH,NHL->BTL", "BTL,NLD->BTD"}},
    {"ffn", {"BTD,DF->BTF", "BTD,DL->BTL", "BTL,LF->BTF"}},
};

Arr runtime(const std::string& module, const Arr& x, const Arr& w, const Arr* a, const Arr* b, double scale) {
  const ModuleEqs& e = kEqs.at(module);
  Arr y = einsum_ref(e.eqn, x, w);
  if (a) {
    const Arr d = einsum_ref(e.eqn_b, einsum_ref(e.eqn_a, x, *a), *b);
    for (std::size_t i = 0; i < y.v.size(); ++i) y.v[i] += scale * d.v[i];
  }
  return y;
}

// --- a synthetic openpi tree --------------------------------------------------------------

struct Synthetic {
  Checkpoint ck{"memory", "synthetic", Node::dict(), {}};
  std::map<std::string, Arr> values;  // every tensor, as stored (float32 values)
  std::vector<ExpertSpec> experts;
  std::int64_t depth = 2, vocab = 10;
  std::mt19937_64 rng{7};

  void add(const std::string& name, Shape shape, double sd) {
    std::normal_distribution<double> nd(0.0, sd);
    std::uint64_t n = 1;
    for (auto d : shape) n *= static_cast<std::uint64_t>(d);
    std::vector<float> f(n);
    Arr a{{}, shape};
    for (auto& x : f) x = static_cast<float>(nd(rng)), a.v.push_back(x);
    Bytes b(n * 4);
    std::memcpy(b.data(), f.data(), b.size());
    Node* cur = &ck.root;
    std::size_t from = 0;
    for (std::size_t to; (to = name.find('/', from)) != std::string::npos; from = to + 1) {
      const std::string k = name.substr(from, to - from);
      Node* next = cur->find(k);
      cur = next ? next : &cur->add(k, Node::dict());
    }
    cur->add(name.substr(from), Node::tensor(make_memory_tensor({DType::F32, shape}, std::move(b))));
    values[name] = std::move(a);
  }
};

std::string sfx(std::size_t e) { return e == 0 ? "" : "_" + std::to_string(e); }

// An einsum weight [kJaxLayers, ...] and, with LoRA, its factors as lora.Einsum shapes them: lora_a
// has the rank in place of the last axis, lora_b in place of the second to last.
void einsum_module(Synthetic& s, const std::string& base, Shape w, const std::optional<LoraModuleConfig>& lora) {
  s.add(base + "/w", w, 0.3);
  if (!lora) return;
  Shape a = w, b = w;
  a.back() = lora->rank;
  b[b.size() - 2] = lora->rank;
  s.add(base + "/lora_a", a, 0.5);
  s.add(base + "/lora_b", b, 0.5);
}

Synthetic make_tree(const std::vector<ExpertSpec>& experts) {
  Synthetic s;
  s.experts = experts;
  const std::int64_t Ld = s.depth;
  s.add("params/PaliGemma/llm/embedder/input_embedding", {s.vocab, experts[0].width}, 1.0);
  for (std::size_t e = 0; e < experts.size(); ++e) {
    const ExpertSpec& x = experts[e];
    const std::string a = kJaxLayers + "attn/", m = kJaxLayers + "mlp" + sfx(e) + "/";
    if (x.mha()) {
      einsum_module(s, a + "qkv_einsum" + sfx(e), {Ld, 3, x.heads, x.width, x.head_dim}, x.attn);
    } else {
      einsum_module(s, a + "q_einsum" + sfx(e), {Ld, x.heads, x.width, x.head_dim}, x.attn);
      einsum_module(s, a + "kv_einsum" + sfx(e), {Ld, 2, x.kv_heads, x.width, x.head_dim}, x.attn);
    }
    einsum_module(s, a + "attn_vec_einsum" + sfx(e), {Ld, x.heads, x.head_dim, x.width}, x.attn);
    s.add(m + "gating_einsum", {Ld, 2, x.width, x.mlp}, 0.3);
    s.add(m + "linear", {Ld, x.mlp, x.width}, 0.3);
    if (x.ffn) {  // FeedForward's factors
      s.add(m + "gating_einsum_lora_a", {Ld, 2, x.width, x.ffn->rank}, 0.5);
      s.add(m + "gating_einsum_lora_b", {Ld, 2, x.ffn->rank, x.mlp}, 0.5);
      s.add(m + "linear_lora_a", {Ld, x.mlp, x.ffn->rank}, 0.5);
      s.add(m + "linear_lora_b", {Ld, x.ffn->rank, x.width}, 0.5);
    }
    s.add(kJaxLayers + "pre_attention_norm" + sfx(e) + "/scale", {Ld, x.width}, 0.1);
    s.add(kJaxLayers + "pre_ffw_norm" + sfx(e) + "/scale", {Ld, x.width}, 0.1);
    s.add("params/PaliGemma/llm/final_norm" + sfx(e) + "/scale", {x.width}, 0.1);
  }
  return s;
}

std::vector<OpenpiExpertConfig> configs_of(const std::vector<ExpertSpec>& experts) {
  std::vector<OpenpiExpertConfig> out;
  for (const auto& x : experts) out.push_back({x.attn, x.ffn});
  return out;
}

// Leading-index slice of a stored tensor: t[i0, i1, ...].
Arr slice(const Arr& t, std::vector<std::int64_t> lead) {
  Arr out;
  out.s.assign(t.s.begin() + static_cast<std::ptrdiff_t>(lead.size()), t.s.end());
  std::uint64_t inner = 1, off = 0;
  for (auto d : out.s) inner *= static_cast<std::uint64_t>(d);
  for (std::size_t i = 0; i < lead.size(); ++i) off = off * static_cast<std::uint64_t>(t.s[i]) + static_cast<std::uint64_t>(lead[i]);
  out.v.assign(t.v.begin() + static_cast<std::ptrdiff_t>(off * inner), t.v.begin() + static_cast<std::ptrdiff_t>((off + 1) * inner));
  return out;
}

Arr random_input(std::mt19937_64& rng, Shape s) {
  std::normal_distribution<double> nd;
  Arr a{{}, s};
  std::uint64_t n = 1;
  for (auto d : s) n *= static_cast<std::uint64_t>(d);
  for (std::uint64_t i = 0; i < n; ++i) a.v.push_back(static_cast<float>(nd(rng)));
  return a;
}

// x [rows, in] through PyTorch Linear weights (each [out, in]), outputs concatenated
// weight after weight: the layout of a stacked einsum output ("cBSKH") flattened.
std::vector<double> linear(const Node& target, const std::vector<std::string>& weights, const std::vector<double>& x) {
  std::vector<double> got;
  for (const auto& name : weights) {
    const Node* n = find_path(target, name);
    EXPECT_TRUE(n && n->is_tensor()) << name;
    if (!n || !n->is_tensor()) return {};
    const Shape& s = n->tensor().info.shape;
    const auto W = ops::to_doubles(n->tensor());
    const std::size_t out = static_cast<std::size_t>(s[0]), in = static_cast<std::size_t>(s[1]), rows = x.size() / in;
    EXPECT_EQ(rows * in, x.size()) << name;
    for (std::size_t r = 0; r < rows; ++r)
      for (std::size_t o = 0; o < out; ++o) {
        double acc = 0;
        for (std::size_t i = 0; i < in; ++i) acc += x[r * in + i] * W[o * in + i];
        got.push_back(acc);
      }
  }
  return got;
}

double scale_of(const LoraModuleConfig& c) {
  return c.rslora ? c.alpha / std::sqrt(static_cast<double>(c.rank)) : c.alpha / static_cast<double>(c.rank);
}

// max |got - want| / max |want|
double rel_err(const std::vector<double>& got, const std::vector<double>& want) {
  EXPECT_EQ(got.size(), want.size());
  double err = 0, mag = 0;
  for (std::size_t i = 0; i < want.size() && i < got.size(); ++i)
    err = std::max(err, std::fabs(got[i] - want[i])), mag = std::max(mag, std::fabs(want[i]));
  return mag > 0 ? err / mag : err;
}

struct Probe {
  std::string what;
  double rel = 0;        // converted PyTorch weights vs the online runtime
  double lora_rel = 0;   // how much LoRA changes the output (0 without LoRA)
};

// Every module of every layer of every expert: the runtime's online output (reference) vs
// the converted PyTorch weights applied as torch.nn.Linear does.
std::vector<Probe> probe_all(const Synthetic& s, const Node& target) {
  std::vector<Probe> out;
  std::mt19937_64 rng(99);
  const std::int64_t B = 2, T = 3;
  for (std::size_t e = 0; e < s.experts.size(); ++e) {
    const ExpertSpec& x = s.experts[e];
    const std::string pre = e == 0 ? kTorchLm : kTorchExpert;
    const std::string a = kJaxLayers + "attn/", m = kJaxLayers + "mlp" + sfx(e) + "/";
    auto check = [&](const std::string& what, const std::string& module, const std::string& base, std::vector<std::int64_t> lead,
                     const Arr& in, const std::optional<LoraModuleConfig>& lora, bool scaled, const std::vector<std::string>& torch,
                     const std::string& a_name, const std::string& b_name) {
      const Arr w = slice(s.values.at(base), lead);
      std::optional<Arr> la, lb;
      if (lora) la = slice(s.values.at(a_name), lead), lb = slice(s.values.at(b_name), lead);
      const double sc = lora ? (scaled ? scale_of(*lora) : 1.0) : 0.0;
      const Arr y = runtime(module, in, w, la ? &*la : nullptr, lb ? &*lb : nullptr, sc);
      Probe p{what};
      p.rel = rel_err(linear(target, torch, in.v), y.v);
      if (lora) p.lora_rel = rel_err(runtime(module, in, w, nullptr, nullptr, 0).v, y.v);
      out.push_back(p);
    };
    for (std::int64_t l = 0; l < s.depth; ++l) {
      const std::string layer = pre + "layers." + std::to_string(l) + ".";
      const std::string tag = "expert " + std::to_string(e) + " layer " + std::to_string(l) + " ";
      const Arr xd = random_input(rng, {B, T, x.width});
      if (x.mha()) {
        const std::string base = a + "qkv_einsum" + sfx(e);
        check(tag + "qkv_einsum", "qkv_einsum", base + "/w", {l}, xd, x.attn, true,
              {layer + "self_attn.q_proj.weight", layer + "self_attn.k_proj.weight", layer + "self_attn.v_proj.weight"},
              base + "/lora_a", base + "/lora_b");
      } else {
        const std::string q = a + "q_einsum" + sfx(e), kv = a + "kv_einsum" + sfx(e);
        check(tag + "q_einsum", "q_einsum", q + "/w", {l}, xd, x.attn, true, {layer + "self_attn.q_proj.weight"}, q + "/lora_a",
              q + "/lora_b");
        check(tag + "kv_einsum", "kv_einsum", kv + "/w", {l}, xd, x.attn, true,
              {layer + "self_attn.k_proj.weight", layer + "self_attn.v_proj.weight"}, kv + "/lora_a", kv + "/lora_b");
      }
      const std::string o = a + "attn_vec_einsum" + sfx(e);
      check(tag + "attn_vec_einsum", "attn_vec_einsum", o + "/w", {l}, random_input(rng, {B, T, x.heads, x.head_dim}), x.attn, true,
            {layer + "self_attn.o_proj.weight"}, o + "/lora_a", o + "/lora_b");
      check(tag + "gate", "ffn", m + "gating_einsum", {l, 0}, xd, x.ffn, false, {layer + "mlp.gate_proj.weight"},
            m + "gating_einsum_lora_a", m + "gating_einsum_lora_b");
      check(tag + "up", "ffn", m + "gating_einsum", {l, 1}, xd, x.ffn, false, {layer + "mlp.up_proj.weight"},
            m + "gating_einsum_lora_a", m + "gating_einsum_lora_b");
      check(tag + "down", "ffn", m + "linear", {l}, random_input(rng, {B, T, x.mlp}), x.ffn, false,
            {layer + "mlp.down_proj.weight"}, m + "linear_lora_a", m + "linear_lora_b");
    }
  }
  return out;
}

std::set<std::string> expected_llm_keys(const Synthetic& s) {
  std::set<std::string> k = {kTorchLm + "embed_tokens.weight", kTorchLm + "norm.weight", kTorchExpert + "norm.weight",
                             "paligemma_with_expert.paligemma.lm_head.weight",
                             "paligemma_with_expert.gemma_expert.lm_head.weight"};
  for (const std::string& pre : {kTorchLm, kTorchExpert})
    for (std::int64_t i = 0; i < s.depth; ++i)
      for (const char* n : {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
                            "mlp.up_proj", "mlp.down_proj", "input_layernorm", "post_attention_layernorm"})
        k.insert(pre + "layers." + std::to_string(i) + "." + n + ".weight");
  return k;
}

// The cases: one MHA expert beside one GQA expert, LoRA on one of them only, the other way
// round with LoRA on both (rslora on the MHA one, attention-only LoRA on the MQA one), and
// two plain MHA experts. Widths, head counts and head dims differ between the experts.
struct AttentionCase {
  const char* name;
  std::vector<ExpertSpec> experts;
};
const AttentionCase kCases[] = {
    {"mha_lora_beside_gqa_plain",
     {{24, 16, 3, 3, 5, LoraModuleConfig{2, 3.0, true}, LoraModuleConfig{3, 2.0, false}}, {16, 12, 4, 2, 6, {}, {}}}},
    {"mqa_attn_lora_beside_mha_lora",
     {{20, 8, 2, 1, 4, LoraModuleConfig{3, 5.0, false}, {}},
      {12, 10, 2, 2, 7, LoraModuleConfig{2, 4.0, true}, LoraModuleConfig{2, 1.0, false}}}},
    {"two_plain_mha", {{18, 10, 3, 3, 4, {}, {}}, {10, 6, 2, 2, 3, {}, {}}}},
};

TEST(OpenpiAttention, EveryShapeMapsMergesAndReversesPerExpert) {
  for (const AttentionCase& c : kCases) {
    SCOPED_TRACE(c.name);
    const Synthetic s = make_tree(c.experts);
    const OpenpiPrepared prep = openpi_prepare(s.ck, configs_of(c.experts));
    // The recipe's sizes come from each expert's own attention shape.
    for (std::size_t e = 0; e < c.experts.size(); ++e) {
      const ExpertSpec& x = c.experts[e];
      const std::string k = std::to_string(e);
      EXPECT_EQ(prep.sizes.at("n" + k), x.heads);
      EXPECT_EQ(prep.sizes.at("k" + k), x.kv_heads);
      EXPECT_EQ(prep.sizes.at("h" + k), x.head_dim);
      EXPECT_EQ(prep.sizes.count("qkv" + k), x.mha() ? 1u : 0u);
      if (x.mha()) {
        EXPECT_EQ(prep.sizes.at("qkv" + k), 1);
      }
    }
    EXPECT_EQ(prep.sizes.at("width_1"), c.experts[1].width);
    EXPECT_EQ(prep.sizes.at("vocab"), s.vocab);
    PlanOptions po;
    po.sizes = prep.sizes;
    const Plan fwd = build_plan(prep.checkpoint, load_recipe("openpi"), po);
    ASSERT_TRUE(fwd.ok()) << ::testing::PrintToString(fwd.problems);
    const auto counts = fwd.ledger_json()["counts"];
    EXPECT_EQ(counts.value("sources_unused", 0), 0);
    std::set<std::string> got;
    for (const auto& [name, t] : tensor_list(fwd.target)) got.insert(name);
    EXPECT_EQ(got, expected_llm_keys(s));
    for (std::size_t e = 0; e < c.experts.size(); ++e) {
      const ExpertSpec& x = c.experts[e];
      const std::string pre = (e == 0 ? kTorchLm : kTorchExpert) + "layers.1.self_attn.";
      auto shape = [&](const std::string& k) { return find_path(fwd.target, pre + k + ".weight")->tensor().info.shape; };
      EXPECT_EQ(shape("q_proj"), (Shape{x.heads * x.head_dim, x.width}));
      EXPECT_EQ(shape("k_proj"), (Shape{x.kv_heads * x.head_dim, x.width}));
      EXPECT_EQ(shape("v_proj"), (Shape{x.kv_heads * x.head_dim, x.width}));
      EXPECT_EQ(shape("o_proj"), (Shape{x.width, x.heads * x.head_dim}));
    }
    EXPECT_EQ(find_path(fwd.target, "paligemma_with_expert.gemma_expert.lm_head.weight")->tensor().info.shape,
              (Shape{s.vocab, c.experts[1].width}));

    // The runtime's outputs from the converted weights, within float32 rounding.
    double worst = 0;
    int with_lora = 0;
    for (const Probe& p : probe_all(s, fwd.target)) {
      EXPECT_LT(p.rel, 2e-6) << p.what;
      worst = std::max(worst, p.rel);
      if (p.lora_rel > 0) {
        EXPECT_GT(p.lora_rel, 1e-2) << p.what << ": the LoRA factors must matter for the check to mean anything";
        ++with_lora;
      }
    }
    std::cout << c.name << ": worst relative error " << worst << " over the PyTorch weights, " << with_lora
              << " probes with LoRA\n";

    // Reverse, sized only by what config.json keeps: the merged JAX tree bit for bit, and the
    // weights of LoRA-free modules are the source's own bytes.
    const nlohmann::ordered_json cfg = openpi_pytorch_config(prep, DType::F32);
    PlanOptions back_po;
    for (const auto& [k, v] : cfg["sizes"].items()) back_po.sizes[k] = v.get<std::int64_t>();
    const Checkpoint torch_side{"safetensors", "mem", fwd.target, {}};
    const Plan back = build_plan(torch_side, invert(load_recipe("openpi")), back_po);
    ASSERT_TRUE(back.ok()) << ::testing::PrintToString(back.problems);
    const auto d = diff_trees(prep.checkpoint.root, back.target, {});
    std::size_t plain_leaves = 0;
    for (const auto& [name, v] : s.values) plain_leaves += name.find("lora") == std::string::npos;
    EXPECT_EQ(d.leaves.size(), plain_leaves);
    for (const auto& l : d.leaves) EXPECT_EQ(l.status, "equal") << l.name << " " << l.detail;
    for (const auto& [name, v] : s.values) {
      if (name.find("lora") != std::string::npos) continue;
      const Node* n = find_path(back.target, name);
      ASSERT_TRUE(n && n->is_tensor()) << name;
      const auto b = ops::to_doubles(n->tensor());
      const std::string mod = name.substr(0, name.rfind('/'));
      const bool merged = s.values.count(mod + "/lora_a") || s.values.count(name + "_lora_a");
      if (!merged) {
        EXPECT_EQ(b, v.v) << name;
        continue;
      }
      // A merged weight: W + s * dW in float64, rounded once to float32 (half an ulp).
      std::size_t e = name.find("_1/") != std::string::npos || name.find("mlp_1/") != std::string::npos ? 1 : 0;
      const bool attn = name.find("/attn/") != std::string::npos;
      const LoraModuleConfig lc = *(attn ? c.experts[e].attn : c.experts[e].ffn);
      const std::string a_name = s.values.count(mod + "/lora_a") ? mod + "/lora_a" : name + "_lora_a";
      const std::string b_name = s.values.count(mod + "/lora_b") ? mod + "/lora_b" : name + "_lora_b";
      const Arr& A = s.values.at(a_name);
      const Arr& Bm = s.values.at(b_name);
      // dW = A (.. x r) times B (.. r x last) over the rank, for each leading index; for
      // attn_vec_einsum B is summed over the heads first (its eqn_b sums N over B alone).
      const bool vec = name.find("attn_vec_einsum") != std::string::npos;
      const std::int64_t r = lc.rank, last = v.s.back(), in = v.s[v.s.size() - 2];
      const double sc = attn ? scale_of(lc) : 1.0;
      std::size_t outer = v.v.size() / static_cast<std::size_t>(in * last);
      for (std::size_t o = 0; o < outer; ++o)
        for (std::int64_t i = 0; i < in; ++i)
          for (std::int64_t j = 0; j < last; ++j) {
            double dw = 0;
            for (std::int64_t q = 0; q < r; ++q) {
              const double av = A.v[(o * static_cast<std::size_t>(in) + static_cast<std::size_t>(i)) * static_cast<std::size_t>(r) +
                                    static_cast<std::size_t>(q)];
              double bv = 0;
              if (vec) {  // o = layer * N + n: sum B[layer, n', q, j] over n'
                const std::size_t N = static_cast<std::size_t>(v.s[1]), layer = o / N;
                for (std::size_t n2 = 0; n2 < N; ++n2)
                  bv += Bm.v[((layer * N + n2) * static_cast<std::size_t>(r) + static_cast<std::size_t>(q)) * static_cast<std::size_t>(last) +
                             static_cast<std::size_t>(j)];
              } else {
                bv = Bm.v[(o * static_cast<std::size_t>(r) + static_cast<std::size_t>(q)) * static_cast<std::size_t>(last) +
                          static_cast<std::size_t>(j)];
              }
              dw += av * bv;
            }
            const std::size_t at = (o * static_cast<std::size_t>(in) + static_cast<std::size_t>(i)) * static_cast<std::size_t>(last) +
                                   static_cast<std::size_t>(j);
            const double exact = v.v[at] + sc * dw;
            ASSERT_LE(std::fabs(b[at] - exact), std::fabs(exact) * 0x1p-24 * 1.000001 + 1e-300) << name << " at " << at;
          }
    }
  }
}

// Which form a PyTorch q_proj goes back to is the `when` of the recipe's rules: with qkv0 the
// MHA expert returns as one qkv_einsum, without it as q_einsum + kv_einsum of the same values.
TEST(OpenpiAttention, ReverseFormFollowsTheQkvSize) {
  const Synthetic s = make_tree(kCases[2].experts);
  const OpenpiPrepared prep = openpi_prepare(s.ck, {});
  PlanOptions po;
  po.sizes = prep.sizes;
  const Plan fwd = build_plan(prep.checkpoint, load_recipe("openpi"), po);
  ASSERT_TRUE(fwd.ok()) << ::testing::PrintToString(fwd.problems);
  const Checkpoint torch_side{"safetensors", "mem", fwd.target, {}};
  PlanOptions split = po;
  split.sizes.erase("qkv1");
  const Plan back = build_plan(torch_side, invert(load_recipe("openpi")), split);
  ASSERT_TRUE(back.ok()) << ::testing::PrintToString(back.problems);
  EXPECT_NE(find_path(back.target, kJaxLayers + "attn/qkv_einsum/w"), nullptr);
  EXPECT_EQ(find_path(back.target, kJaxLayers + "attn/qkv_einsum_1/w"), nullptr);
  const Node* q = find_path(back.target, kJaxLayers + "attn/q_einsum_1/w");
  const Node* kv = find_path(back.target, kJaxLayers + "attn/kv_einsum_1/w");
  ASSERT_TRUE(q && kv);
  EXPECT_EQ(q->tensor().info.shape, (Shape{2, 2, 10, 3}));
  EXPECT_EQ(kv->tensor().info.shape, (Shape{2, 2, 2, 10, 3}));
  // q_einsum_1 = qkv_einsum_1[:, 0], kv_einsum_1 = qkv_einsum_1[:, 1:3]
  const Arr& qkv = s.values.at(kJaxLayers + "attn/qkv_einsum_1/w");
  const auto qv = ops::to_doubles(q->tensor()), kvv = ops::to_doubles(kv->tensor());
  for (std::int64_t l = 0; l < 2; ++l) {
    const auto want_q = slice(qkv, {l, 0}).v;
    EXPECT_EQ(std::vector<double>(qv.begin() + l * 60, qv.begin() + (l + 1) * 60), want_q);
    std::vector<double> want_kv = slice(qkv, {l, 1}).v;
    const auto v2 = slice(qkv, {l, 2}).v;
    want_kv.insert(want_kv.end(), v2.begin(), v2.end());
    EXPECT_EQ(std::vector<double>(kvv.begin() + l * 120, kvv.begin() + (l + 1) * 120), want_kv);
  }
}

// The command line: a fused-qkv LoRA expert beside a plain GQA expert; config.json keeps the
// attention form, --reverse needs no flag and gives merge-lora's merged tree back bit for bit;
// without --openpi-config the error prints what was measured and the JSON to fill in.
TEST(OpenpiAttention, CliConvertsAndReversesAnMhaExpertAndNamesWhatItDetected) {
  namespace fs = std::filesystem;
  test::TempDir tmp;
  const Synthetic s = make_tree(kCases[0].experts);
  write_checkpoint(s.ck, tmp / "tree.msgpack", format_by_name("msgpack"), {}, 1);
  test::write_file(tmp / "lora.json",
                   R"({"experts": [{"attn": {"rank": 2, "alpha": 3.0, "rslora": true}, "ffn": {"rank": 3, "alpha": 2.0}}, {}]})");

  auto r = test::run_cli("convert " + (tmp / "tree.msgpack") + " " + (tmp / "out/") + " --recipe openpi");
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("expert 0: no shipped variant (width 24, depth 2, mlp 16, heads 3, kv heads 3, head dim 5, fused "
                       "qkv_einsum, LoRA ranks attn_vec_einsum=2 gating_einsum=3 linear=3 qkv_einsum=2)"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("expert 1: no shipped variant (width 16, depth 2, mlp 12, heads 4, kv heads 2, head dim 6, no LoRA)"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find(R"({"experts": [{"attn": {"rank": 2, "alpha": ALPHA, "rslora": false}, "ffn": {"rank": 3, "alpha": ALPHA}}, {}]})"),
            std::string::npos)
      << r.err;
  EXPECT_FALSE(fs::exists(tmp / "out/model.safetensors"));

  r = test::run_cli("convert " + (tmp / "tree.msgpack") + " " + (tmp / "out/") + " --recipe openpi --openpi-config " +
                    (tmp / "lora.json"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("fused qkv_einsum"), std::string::npos) << r.err;
  auto cfg = test::load_json(tmp / "out/config.json");
  EXPECT_EQ(cfg["sizes"], nlohmann::json({{"n0", 3}, {"h0", 5}, {"k0", 3}, {"qkv0", 1}, {"n1", 4}, {"h1", 6}, {"k1", 2}}));
  EXPECT_EQ(cfg["lora_merged"].size(), 4u);

  r = test::run_cli("merge-lora " + (tmp / "tree.msgpack") + " " + (tmp / "merged.msgpack") + " --openpi-config " +
                    (tmp / "lora.json"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = test::run_cli("convert " + (tmp / "out/model.safetensors") + " " + (tmp / "back.msgpack") + " --recipe openpi --reverse");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = test::run_cli("diff " + (tmp / "merged.msgpack") + " " + (tmp / "back.msgpack"));
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("16 leaves: 16 equal"), std::string::npos) << r.out;
}


// --- the fixtures written by openpi's own modules -------------------------------------------
//
// openpi_mha_lora_expert0_only: two MHA experts (4 heads = 4 kv heads of 12: openpi writes
// qkv_einsum / qkv_einsum_1), widths 48 / 24, LoRA (attn + ffn, rank 4, alpha 12) on expert 0
// only. openpi_pi05_gqa_rslora: two GQA experts (4 heads, 2 kv heads of 8), widths 48 / 32, depth
// 3, expert 0 attention LoRA rank 5 alpha 3, expert 1 pi05 adaRMS with rsLoRA attention rank 3
// alpha 5 and FFN rank 3 alpha 7. Neither is a shipped variant: the LoRA config is model.json.

struct FixtureCase {
  const char* name;
  int depth;
  bool pi05;
  int probes, probes_with_lora;
  nlohmann::json sizes;  // what config.json must keep for --reverse
};
const FixtureCase kFixtures[] = {
    {"openpi_mha_lora_expert0_only", 2, false, 20, 10,
     {{"n0", 4}, {"h0", 12}, {"k0", 4}, {"qkv0", 1}, {"n1", 4}, {"h1", 12}, {"k1", 4}, {"qkv1", 1}, {"vn", 2}, {"vh", 16}}},
    {"openpi_pi05_gqa_rslora", 3, true, 36, 27,
     {{"n0", 4}, {"h0", 8}, {"k0", 2}, {"n1", 4}, {"h1", 8}, {"k1", 2}, {"vn", 2}, {"vh", 16}}},
};

std::set<std::string> fixture_keys(const FixtureCase& c) {
  const std::string P = "paligemma_with_expert.paligemma.model.", V = P + "vision_tower.vision_model.";
  std::set<std::string> k = {V + "embeddings.patch_embedding.weight", V + "embeddings.patch_embedding.bias",
                             V + "embeddings.position_embedding.weight", V + "post_layernorm.weight",
                             V + "post_layernorm.bias", P + "multi_modal_projector.linear.weight",
                             P + "multi_modal_projector.linear.bias", kTorchLm + "embed_tokens.weight", kTorchLm + "norm.weight",
                             "paligemma_with_expert.paligemma.lm_head.weight",
                             "paligemma_with_expert.gemma_expert.lm_head.weight"};
  for (int i = 0; i < 2; ++i) {
    const std::string l = V + "encoder.layers." + std::to_string(i) + ".";
    for (const char* s : {"layer_norm1", "layer_norm2", "mlp.fc1", "mlp.fc2", "self_attn.q_proj", "self_attn.k_proj",
                          "self_attn.v_proj", "self_attn.out_proj"})
      k.insert(l + s + ".weight"), k.insert(l + s + ".bias");
  }
  for (const std::string& pre : {kTorchLm, kTorchExpert})
    for (int i = 0; i < c.depth; ++i) {
      const std::string l = pre + "layers." + std::to_string(i) + ".";
      for (const char* s : {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
                            "mlp.up_proj", "mlp.down_proj"})
        k.insert(l + s + ".weight");
      if (c.pi05 && pre == kTorchExpert) {  // adaRMS: the norms are Dense modulations
        for (const char* s : {"input_layernorm.dense", "post_attention_layernorm.dense"})
          k.insert(l + s + ".weight"), k.insert(l + s + ".bias");
      } else {
        k.insert(l + "input_layernorm.weight"), k.insert(l + "post_attention_layernorm.weight");
      }
    }
  if (c.pi05) k.insert(kTorchExpert + "norm.dense.weight"), k.insert(kTorchExpert + "norm.dense.bias");
  else k.insert(kTorchExpert + "norm.weight");
  std::vector<std::string> proj = {"action_in_proj", "action_out_proj"};
  for (const char* p : c.pi05 ? std::vector<const char*>{"time_mlp_in", "time_mlp_out"}
                              : std::vector<const char*>{"state_proj", "action_time_mlp_in", "action_time_mlp_out"})
    proj.push_back(p);
  for (const auto& p : proj) k.insert(p + ".weight"), k.insert(p + ".bias");
  return k;
}

// Both layouts of both fixtures: a clean ledger, the table's keys, every runtime probe
// reproduced from the PyTorch weights (release: float32 rounding; train: its frozen base is
// bfloat16, so up to that rounding), and the reverse giving the merged JAX tree back bit for
// bit, sized only by config.json's sizes.
TEST(OpenpiAttention, FixturesFromOpenpisModulesConvertReproduceTheProbesAndReverse) {
  for (const FixtureCase& c : kFixtures) {
    const auto model = test::load_json(test::fixture(std::string(c.name) + "/model.json"));
    const auto probes = read_checkpoint(test::fixture(std::string(c.name) + "/probes.npz"));
    const auto experts = openpi_config_file(test::fixture(std::string(c.name) + "/model.json"));
    for (const char* layout : {"release/params", "train/checkpoints"}) {
      SCOPED_TRACE(std::string(c.name) + "/" + layout);
      const bool train = std::string(layout).starts_with("train");
      const Checkpoint src = read_checkpoint(test::fixture(std::string(c.name) + "/" + layout));
      const OpenpiPrepared prep = openpi_prepare(src, experts);
      PlanOptions po;
      po.sizes = prep.sizes;
      const Plan fwd = build_plan(prep.checkpoint, load_recipe("openpi"), po);
      ASSERT_TRUE(fwd.ok()) << ::testing::PrintToString(fwd.problems);
      EXPECT_EQ(fwd.ledger_json()["counts"].value("sources_unused", 0), 0);
      std::set<std::string> got;
      for (const auto& [name, t] : tensor_list(fwd.target)) got.insert(name);
      EXPECT_EQ(got, fixture_keys(c));
      const auto cfg = openpi_pytorch_config(prep, DType::F32);
      EXPECT_EQ(nlohmann::json(cfg["sizes"]), c.sizes);
      EXPECT_EQ(cfg["pi05"], c.pi05);

      double worst = 0;
      int checked = 0, with_lora = 0;
      for (const auto& p : model["probes"]) {
        const std::string key = p["key"], module = p["module"];
        const std::string pre = (p["expert"].get<int>() == 0 ? kTorchLm : kTorchExpert) + "layers." + std::to_string(p["layer"].get<int>()) + ".";
        std::vector<std::string> ws;
        if (module == "qkv_einsum") ws = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"};
        else if (module == "q_einsum") ws = {"self_attn.q_proj"};
        else if (module == "kv_einsum") ws = {"self_attn.k_proj", "self_attn.v_proj"};
        else if (module == "attn_vec_einsum") ws = {"self_attn.o_proj"};
        else if (module == "mlp_gating0") ws = {"mlp.gate_proj"};
        else if (module == "mlp_gating1") ws = {"mlp.up_proj"};
        else if (module == "mlp_linear") ws = {"mlp.down_proj"};
        ASSERT_FALSE(ws.empty()) << module;
        for (auto& w : ws) w = pre + w + ".weight";
        const bool lora = p.contains("lora_a");
        const Node* y = probes.root.find(key + (lora ? "/y" : "/y_base"));
        ASSERT_TRUE(y) << key;
        const double rel = rel_err(linear(fwd.target, ws, ops::to_doubles(probes.root.find(key + "/x")->tensor())),
                                   ops::to_doubles(y->tensor()));
        EXPECT_LT(rel, train ? 1e-2 : 2e-6) << key;
        worst = std::max(worst, rel);
        ++checked;
        with_lora += lora;
      }
      EXPECT_EQ(checked, c.probes);
      EXPECT_EQ(with_lora, c.probes_with_lora);
      std::cout << c.name << "/" << layout << ": worst relative error over " << checked << " probes (" << with_lora
                << " with LoRA) in PyTorch space: " << worst << "\n";

      PlanOptions back_po;
      for (const auto& [k, v] : cfg["sizes"].items()) back_po.sizes[k] = v.get<std::int64_t>();
      const Checkpoint torch_side{"safetensors", "mem", fwd.target, {}};
      const Plan back = build_plan(torch_side, invert(load_recipe("openpi")), back_po);
      ASSERT_TRUE(back.ok()) << ::testing::PrintToString(back.problems);
      LoraMergeOptions lo;
      lo.experts = experts;
      const Plan merged = build_plan(src, openpi_merge_recipe(src, lo));
      ASSERT_TRUE(merged.ok()) << ::testing::PrintToString(merged.problems);
      Node merged_root = merged.target;
      unwrap_value_leaves(merged_root);
      const auto d = diff_trees(merged_root, back.target, {});
      const auto manifest = test::load_json(test::fixture(std::string(c.name) + "/" + (train ? "train" : "release") + "/manifest.json"));
      std::size_t plain = 0;
      for (const auto& [name, t] : manifest["tensors"].items()) plain += name.find("lora") == std::string::npos;
      EXPECT_EQ(d.leaves.size(), plain);
      for (const auto& l : d.leaves) EXPECT_EQ(l.status, "equal") << l.name << " " << l.detail;
    }
  }
}

// The command line on the released MHA fixture: without a LoRA config the error says what
// was detected (both experts fused qkv_einsum, LoRA on expert 0 only) and prints the JSON to
// fill in; with model.json it converts, config.json keeps qkv0 / qkv1, and --reverse (no
// flags) gives merge-lora's merged tree back bit for bit.
TEST(OpenpiAttention, CliOnTheMhaFixtureNamesWhatItDetectedAndReversesBitForBit) {
  test::TempDir tmp;
  const std::string f = test::fixture("openpi_mha_lora_expert0_only");
  auto r = test::run_cli("convert " + f + "/release/params " + (tmp / "out/") + " --recipe openpi");
  EXPECT_EQ(r.exit_code, 2) << r.err;
  for (const char* want :
       {"expert 0: no shipped variant (width 48, depth 2, mlp 64, heads 4, kv heads 4, head dim 12, fused qkv_einsum, LoRA ranks "
        "attn_vec_einsum=4 gating_einsum=4 linear=4 qkv_einsum=4)",
        "expert 1: no shipped variant (width 24, depth 2, mlp 40, heads 4, kv heads 4, head dim 12, fused qkv_einsum, no LoRA)",
        R"({"experts": [{"attn": {"rank": 4, "alpha": ALPHA, "rslora": false}, "ffn": {"rank": 4, "alpha": ALPHA}}, {}]})"})
    EXPECT_NE(r.err.find(want), std::string::npos) << want << "\n" << r.err;
  r = test::run_cli("convert " + f + "/release/params " + (tmp / "out/") + " --recipe openpi --openpi-config " + f + "/model.json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto cfg = test::load_json(tmp / "out/config.json");
  EXPECT_EQ(cfg["sizes"]["qkv0"], 1);
  EXPECT_EQ(cfg["sizes"]["qkv1"], 1);
  EXPECT_EQ(cfg["lora_merged"].size(), 4u);
  r = test::run_cli("merge-lora " + f + "/release/params " + (tmp / "merged.msgpack") + " --openpi-config " + f + "/model.json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = test::run_cli("convert " + (tmp / "out/model.safetensors") + " " + (tmp / "back.msgpack") + " --recipe openpi --reverse");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = test::run_cli("diff " + (tmp / "merged.msgpack") + " " + (tmp / "back.msgpack"));
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("48 leaves: 48 equal"), std::string::npos) << r.out;
}

// The pi05 GQA fixture without a config: what was detected, pi05 included, and the JSON with
// attention-only LoRA on expert 0.
TEST(OpenpiAttention, CliOnThePi05FixtureNamesWhatItDetected) {
  test::TempDir tmp;
  const std::string f = test::fixture("openpi_pi05_gqa_rslora");
  auto r = test::run_cli("convert " + f + "/train/checkpoints " + (tmp / "out/") + " --recipe openpi");
  EXPECT_EQ(r.exit_code, 2) << r.err;
  for (const char* want :
       {"expert 0: no shipped variant (width 48, depth 3, mlp 80, heads 4, kv heads 2, head dim 8, LoRA ranks attn_vec_einsum=5 "
        "kv_einsum=5 q_einsum=5)",
        "expert 1: no shipped variant (width 32, depth 3, mlp 48, heads 4, kv heads 2, head dim 8, LoRA ranks attn_vec_einsum=3 "
        "gating_einsum=3 kv_einsum=3 linear=3 q_einsum=3)",
        "model: pi05 (adaRMS time conditioning)",
        R"({"experts": [{"attn": {"rank": 5, "alpha": ALPHA, "rslora": false}}, {"attn": {"rank": 3, "alpha": ALPHA, "rslora": false}, "ffn": {"rank": 3, "alpha": ALPHA}}]})"})
    EXPECT_NE(r.err.find(want), std::string::npos) << want << "\n" << r.err;
  r = test::run_cli("convert " + f + "/train/checkpoints " + (tmp / "out/") + " --recipe openpi --openpi-config " + f + "/model.json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(test::load_json(tmp / "out/config.json")["lora_merged"].size(), 8u);
}

}  // namespace
}  // namespace ckb
