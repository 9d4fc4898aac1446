// Implementation of profiles/lora.h.
#include "profiles/lora.h"

#include <cmath>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <regex>
#include <set>

#include "core/errors.h"
#include "core/json_bounded.h"
#include "io/file.h"
#include "ops/einsum.h"
#include "ops/ops.h"

namespace ckb {
namespace {

struct Eq {
  std::vector<std::string> in;
  std::string out;
};

Eq split_eq(const std::string& eq, const std::string& what) {
  Eq e;
  auto arrow = eq.find("->");
  if (arrow == std::string::npos) throw MappingError(what, "equation '" + eq + "' needs '->'");
  std::string lhs = eq.substr(0, arrow);
  e.out = eq.substr(arrow + 2);
  std::size_t start = 0;
  while (true) {
    auto c = lhs.find(',', start);
    e.in.push_back(lhs.substr(start, c == std::string::npos ? std::string::npos : c - start));
    if (c == std::string::npos) break;
    start = c + 1;
  }
  return e;
}

std::string join_eq(const std::vector<std::string>& in, const std::string& out) {
  std::string s;
  for (std::size_t i = 0; i < in.size(); ++i) s += (i ? "," : "") + in[i];
  return s + "->" + out;
}

std::string strip_spaces(std::string s) {
  s.erase(std::remove(s.begin(), s.end(), ' '), s.end());
  return s;
}

// Maps labels that are not letters (openpi writes literal stacking axes "2"/"3") to unused
// letters, consistently across the three equations.
LoraEquations letters_only(const LoraEquations& e) {
  std::set<char> used;
  for (const auto* s : {&e.eqn, &e.eqn_a, &e.eqn_b})
    for (char c : *s) used.insert(c);
  std::map<char, char> map;
  auto fresh = [&] {
    for (char c = 'a'; c <= 'z'; ++c)
      if (!used.count(c)) return used.insert(c), c;
    for (char c = 'A'; c <= 'Z'; ++c)
      if (!used.count(c)) return used.insert(c), c;
    throw MappingError(e.eqn, "too many labels");
  };
  LoraEquations out = e;
  for (auto* s : {&out.eqn, &out.eqn_a, &out.eqn_b})
    for (char& c : *s) {
      if (c == ',' || c == '-' || c == '>' || std::isalpha(static_cast<unsigned char>(c))) continue;
      if (!map.count(c)) map[c] = fresh();
      c = map[c];
    }
  return out;
}

char fresh_letter(std::set<char>& used) {
  for (char c = 'a'; c <= 'z'; ++c)
    if (!used.count(c)) return used.insert(c), c;
  for (char c = 'A'; c <= 'Z'; ++c)
    if (!used.count(c)) return used.insert(c), c;
  throw MappingError("einsum", "ran out of labels");
}

}  // namespace

LoraEquations make_lora_eqns(const std::string& eqn_in, int axis_a, int axis_b, char label) {
  std::string eqn = strip_spaces(eqn_in);
  if (eqn.find(label) != std::string::npos)
    throw MappingError(eqn, std::string("LoRA label '") + label + "' already occurs in the equation");
  Eq e = split_eq(eqn, eqn);
  if (e.in.size() != 2) throw MappingError(eqn, "a LoRA base equation has exactly two operands");
  const std::string& lhs = e.in[0];
  const std::string& rhs = e.in[1];
  auto at = [&](int i) {
    int n = static_cast<int>(rhs.size());
    int k = i < 0 ? i + n : i;
    if (k < 0 || k >= n) throw MappingError(eqn, "LoRA axis " + std::to_string(i) + " out of range");
    return rhs[static_cast<std::size_t>(k)];
  };
  char a = at(axis_a), b = at(axis_b);
  auto repl = [](std::string s, char from, char to) {
    for (char& c : s)
      if (c == from) c = to;
    return s;
  };
  LoraEquations r;
  r.eqn = eqn;
  r.eqn_a = join_eq({lhs, repl(rhs, b, label)}, repl(e.out, b, label));
  r.eqn_b = join_eq({repl(e.out, b, label), repl(rhs, a, label)}, e.out);
  return r;
}

std::string delta_equation(const LoraEquations& raw, int extra_leading) {
  LoraEquations e = letters_only({strip_spaces(raw.eqn), strip_spaces(raw.eqn_a), strip_spaces(raw.eqn_b)});
  const std::string what = raw.eqn + " | " + raw.eqn_a + " | " + raw.eqn_b;
  Eq base = split_eq(e.eqn, what), ea = split_eq(e.eqn_a, what), eb = split_eq(e.eqn_b, what);
  if (base.in.size() != 2 || ea.in.size() != 2 || eb.in.size() != 2)
    throw MappingError(what, "LoRA equations must each have two operands");
  if (ea.in[0] != base.in[0]) throw MappingError(what, "eqn_a must take the same input as the base equation");
  if (eb.in[0] != ea.out) throw MappingError(what, "eqn_b must take eqn_a's output");
  if (eb.out != base.out) throw MappingError(what, "eqn_b must produce the base equation's output");
  const std::string& X = base.in[0];
  const std::string& W = base.in[1];
  const std::string& Z = ea.out;
  const std::string& O = base.out;
  std::string A = ea.in[1], B = eb.in[1];
  std::set<char> used;
  for (const auto* s : {&e.eqn, &e.eqn_a, &e.eqn_b})
    for (char c : *s) used.insert(c);
  auto has = [](const std::string& s, char c) { return s.find(c) != std::string::npos; };
  // Labels the runtime sums over one factor alone get a private letter.
  for (char& c : A)
    if (!has(X, c) && !has(Z, c)) c = fresh_letter(used);
  for (char& c : B)
    if (!has(Z, c) && !has(O, c)) c = fresh_letter(used);
  for (char c : W)
    if (!has(A, c) && !has(B, c))
      throw MappingError(what, std::string("weight label '") + c + "' appears in neither LoRA factor; the LoRA path is not a "
                                                                   "weight of this shape");
  std::string lead;
  for (int i = 0; i < extra_leading; ++i) lead += fresh_letter(used);
  return lead + A + "," + lead + B + "->" + lead + W;
}

void self_check(const LoraEquations& raw) {
  LoraEquations e = letters_only({strip_spaces(raw.eqn), strip_spaces(raw.eqn_a), strip_spaces(raw.eqn_b)});
  const std::string delta = delta_equation(e, 0);
  Eq base = split_eq(e.eqn, e.eqn), ea = split_eq(e.eqn_a, e.eqn), eb = split_eq(e.eqn_b, e.eqn), ed = split_eq(delta, e.eqn);
  // Distinct small sizes per label so a transposed axis cannot go unnoticed.
  std::map<char, std::int64_t> size;
  std::int64_t next = 2;
  for (const auto& s : {base.in[0], base.in[1], ea.in[1], eb.in[1], ed.in[0], ed.in[1], base.out})
    for (char c : s)
      if (!size.count(c)) size[c] = next++ % 4 + 2;
  auto shape_of = [&](const std::string& labels) {
    Shape s;
    for (char c : labels) s.push_back(size[c]);
    return s;
  };
  std::mt19937 g(1234);
  std::normal_distribution<double> nd;
  auto rnd = [&](const Shape& s) {
    std::uint64_t n = 1;
    for (auto d : s) n *= static_cast<std::uint64_t>(d);
    std::vector<double> v(n);
    for (auto& x : v) x = nd(g);
    return v;
  };
  Shape xs = shape_of(base.in[0]), as = shape_of(ea.in[1]), bs = shape_of(eb.in[1]), zs = shape_of(ea.out);
  auto x = rnd(xs), a = rnd(as), b = rnd(bs);
  auto z = einsum_f64(parse_einsum(e.eqn_a, {xs, as}, e.eqn_a), {x.data(), a.data()}, {xs, as});
  auto y1 = einsum_f64(parse_einsum(e.eqn_b, {zs, bs}, e.eqn_b), {z.data(), b.data()}, {zs, bs});
  auto dw = einsum_f64(parse_einsum(delta, {as, bs}, delta), {a.data(), b.data()}, {as, bs});
  Shape ws = shape_of(base.in[1]);
  auto y2 = einsum_f64(parse_einsum(e.eqn, {xs, ws}, e.eqn), {x.data(), dw.data()}, {xs, ws});
  double err = 0, mag = 0;
  for (std::size_t i = 0; i < y1.size(); ++i) {
    err = std::max(err, std::fabs(y1[i] - y2[i]));
    mag = std::max(mag, std::fabs(y1[i]));
  }
  if (y1.size() != y2.size() || err > 1e-9 * (1 + mag))
    throw MappingError(raw.eqn, "the merged delta '" + delta + "' does not reproduce the runtime's LoRA path (" + raw.eqn_a +
                                    " then " + raw.eqn_b + "); max error " + std::to_string(err));
}

LoraVerification verify_merge(const LoraGroup& g, const Tensor& merged, const Tensor& base, const Tensor& a,
                              const Tensor& b, std::uint64_t seed) {
  return verify_merge(std::vector<const LoraGroup*>{&g}, merged, base, {&a}, {&b}, seed);
}

LoraVerification verify_merge(const std::vector<const LoraGroup*>& terms, const Tensor& merged, const Tensor& base,
                              const std::vector<const Tensor*>& as, const std::vector<const Tensor*>& bs, std::uint64_t seed) {
  const LoraGroup& g = *terms.at(0);
  LoraEquations e = letters_only({strip_spaces(g.eqs.eqn), strip_spaces(g.eqs.eqn_a), strip_spaces(g.eqs.eqn_b)});
  std::set<char> used;
  for (const auto* s : {&e.eqn, &e.eqn_a, &e.eqn_b})
    for (char c : *s) used.insert(c);
  std::string lead;
  for (int i = 0; i < g.extra_leading; ++i) lead += fresh_letter(used);
  auto with_lead = [&](const std::string& eq) {
    Eq q = split_eq(eq, eq);
    for (auto& s : q.in) s = lead + s;
    return join_eq(q.in, lead + q.out);
  };
  const std::string eqn = with_lead(e.eqn), eqn_a = with_lead(e.eqn_a), eqn_b = with_lead(e.eqn_b);
  Eq base_eq = split_eq(eqn, eqn), ea = split_eq(eqn_a, eqn_a);
  // label sizes from the tensors; labels only the input has (batch, tokens) get size 2
  std::map<char, std::int64_t> size;
  auto take = [&](const std::string& labels, const Shape& shape, const std::string& what) {
    if (labels.size() != shape.size())
      throw MappingError(what, "rank " + std::to_string(shape.size()) + " does not fit '" + labels + "'");
    for (std::size_t i = 0; i < labels.size(); ++i) size[labels[i]] = shape[i];
  };
  take(base_eq.in[1], base.info.shape, g.base);
  take(ea.in[1], as.at(0)->info.shape, g.lora_a);
  take(split_eq(eqn_b, eqn_b).in[1], bs.at(0)->info.shape, g.lora_b);
  Shape xs;
  for (char c : base_eq.in[0]) xs.push_back(size.count(c) ? size[c] : 2);
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> nd;
  std::uint64_t n = 1;
  for (auto d : xs) n *= static_cast<std::uint64_t>(d);
  std::vector<double> x(n);
  for (auto& v : x) v = nd(rng);
  const auto w = ops::to_doubles(base), wm = ops::to_doubles(merged);
  auto run = [](const std::string& eq, const std::vector<double>& p, const Shape& ps, const std::vector<double>& q,
                const Shape& qs) { return einsum_f64(parse_einsum(eq, {ps, qs}, eq), {p.data(), q.data()}, {ps, qs}); };
  const auto y0 = run(eqn, x, xs, w, base.info.shape);
  const auto ym = run(eqn, x, xs, wm, merged.info.shape);
  // the float64 merge and the online output: base + sum over the terms (several adapters)
  std::vector<double> exact = w, online = y0;
  const std::string delta = delta_equation(g.eqs, g.extra_leading);
  for (std::size_t k = 0; k < terms.size(); ++k) {
    const Tensor& a = *as.at(k);
    const Tensor& b = *bs.at(k);
    take(ea.in[1], a.info.shape, terms[k]->lora_a);
    take(split_eq(eqn_b, eqn_b).in[1], b.info.shape, terms[k]->lora_b);
    Shape zs;
    for (char c : ea.out) zs.push_back(size.count(c) ? size[c] : 2);
    const auto av = ops::to_doubles(a), bv = ops::to_doubles(b);
    const auto z = run(eqn_a, x, xs, av, a.info.shape);
    const auto dy = run(eqn_b, z, zs, bv, b.info.shape);
    const auto dw = run(delta, av, a.info.shape, bv, b.info.shape);
    for (std::size_t i = 0; i < exact.size() && i < dw.size(); ++i) exact[i] += terms[k]->scale * dw[i];
    for (std::size_t i = 0; i < online.size(); ++i) online[i] += terms[k]->scale * dy[i];
  }
  LoraVerification v;
  for (std::size_t i = 0; i < exact.size() && i < wm.size(); ++i) {
    const double err = std::fabs(wm[i] - exact[i]);
    v.weight_max_abs = std::max(v.weight_max_abs, err);
    if (exact[i] != 0) v.weight_max_rel = std::max(v.weight_max_rel, err / std::fabs(exact[i]));
  }
  for (std::size_t i = 0; i < online.size(); ++i) {
    v.max_abs = std::max(v.max_abs, std::fabs(ym[i] - online[i]));
    v.max_ref = std::max(v.max_ref, std::fabs(online[i]));
  }
  return v;
}

std::vector<OpenpiExpertConfig> openpi_experts(const std::string& variant, const std::string& config_file) {
  if (!variant.empty() && !config_file.empty()) throw UsageError("pass at most one of --variant and --openpi-config");
  if (!variant.empty()) return openpi_variants(variant);
  if (!config_file.empty()) return openpi_config_file(config_file);
  return {};
}

// --- openpi profile ----------------------------------------------------------------------

std::vector<OpenpiExpertConfig> openpi_variants(const std::string& list) {
  static const std::map<std::string, OpenpiExpertConfig> table = {
      {"gemma_2b_lora", {LoraModuleConfig{16, 16.0, false}, LoraModuleConfig{16, 16.0, false}}},
      {"gemma_300m_lora", {LoraModuleConfig{32, 32.0, false}, LoraModuleConfig{32, 32.0, false}}},
      {"gemma_2b", {}},
      {"gemma_300m", {}},
      {"dummy", {}},
  };
  std::vector<OpenpiExpertConfig> out;
  std::size_t start = 0;
  while (start <= list.size()) {
    auto comma = list.find(',', start);
    std::string name = list.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    auto it = table.find(name);
    if (it == table.end())
      throw UsageError("unknown openpi variant '" + name + "' (known: gemma_2b_lora, gemma_300m_lora, gemma_2b, gemma_300m, dummy)");
    out.push_back(it->second);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

std::vector<OpenpiExpertConfig> openpi_config_file(const std::string& path) {
  nlohmann::json j;
  try {
    j = parse_json_bounded(read_text_file(path), path);
  } catch (const nlohmann::json::exception& e) {
    throw UsageError(path + ": not valid JSON: " + e.what());
  }
  auto module = [&](const nlohmann::json& m) -> std::optional<LoraModuleConfig> {
    if (m.is_null()) return std::nullopt;
    LoraModuleConfig c;
    c.rank = m.at("rank").get<std::int64_t>();
    c.alpha = m.value("alpha", 1.0);
    c.rslora = m.value("rslora", false);
    return c;
  };
  std::vector<OpenpiExpertConfig> out;
  const nlohmann::json* list = j.contains("experts") ? &j["experts"] : j.contains("configs") ? &j["configs"] : nullptr;
  if (!list || !list->is_array()) throw UsageError(path + ": expected {\"experts\": [...]}");
  for (const auto& e : *list) {
    const auto& src = e.contains("lora") ? e["lora"] : e;
    OpenpiExpertConfig c;
    if (src.contains("attn")) c.attn = module(src["attn"]);
    if (src.contains("ffn")) c.ffn = module(src["ffn"]);
    out.push_back(c);
  }
  return out;
}

namespace {

struct ModuleKind {
  const char* name;
  const char* eqn;
  bool attention;  // lora.Einsum (scaled) vs lora.FeedForward._dot (unscaled)
};

// The runtime's equations: gemma.py's attention einsums (lora.Einsum) and FeedForward's
// per-branch dots, whose LoRA path is dot(dot(x, A), B).
const ModuleKind kModules[] = {
    {"q_einsum", "BTD,NDH->BTNH", true},
    {"kv_einsum", "BSD,2KDH->2BSKH", true},
    {"qkv_einsum", "BSD,3KDH->3BSKH", true},
    {"attn_vec_einsum", "BTNH,NHD->BTD", true},
    {"gating_einsum", "BTD,DF->BTF", false},
    {"linear", "BTF,FD->BTD", false},
};

std::string strip_value(const std::string& n) { return n.ends_with("/value") ? n.substr(0, n.size() - 6) : n; }

}  // namespace

Recipe openpi_merge_recipe(const Checkpoint& src, const LoraMergeOptions& opts, std::vector<LoraGroup>* groups_out) {
  std::map<std::string, std::pair<std::string, const Tensor*>> by_key;  // name without /value -> stored name
  for (const auto& [name, t] : tensor_list(src.root)) by_key[strip_value(name)] = {name, t};
  static const std::regex einsum_re(R"((.*)/(q_einsum|kv_einsum|qkv_einsum|attn_vec_einsum)(?:_(\d+))?/lora_a)");
  static const std::regex ffn_re(R"((.*)/mlp(?:_(\d+))?/(gating_einsum|linear)_lora_a)");
  Recipe r;
  r.name = "openpi-lora-merge";
  r.description = "merge openpi LoRA (lora.Einsum scaled, lora.FeedForward unscaled) into the base weights";
  std::vector<LoraGroup> groups;
  std::set<std::string> claimed, in_group;
  std::vector<std::string> errors;
  for (const auto& [key, stored] : by_key) {
    std::smatch m;
    LoraGroup g;
    std::string base_key, b_key;
    if (std::regex_match(key, m, einsum_re)) {
      g.module = m[2];
      g.expert = m[3].matched ? std::stoi(m[3]) : 0;
      std::string mod = m[1].str() + "/" + m[2].str() + (m[3].matched ? "_" + m[3].str() : "");
      base_key = mod + "/w";
      b_key = mod + "/lora_b";
    } else if (std::regex_match(key, m, ffn_re)) {
      g.module = m[3];
      g.expert = m[2].matched ? std::stoi(m[2]) : 0;
      std::string mod = m[1].str() + "/mlp" + (m[2].matched ? "_" + m[2].str() : "");
      base_key = mod + "/" + m[3].str();
      b_key = mod + "/" + m[3].str() + "_lora_b";
    } else {
      continue;
    }
    if (!by_key.count(base_key) || !by_key.count(b_key)) {
      errors.push_back("LoRA tensor '" + stored.first + "' has no " + (by_key.count(base_key) ? "lora_b '" + b_key : "base weight '" + base_key) + "'");
      continue;
    }
    g.base = by_key[base_key].first;
    g.lora_a = stored.first;
    g.lora_b = by_key[b_key].first;
    in_group.insert(g.lora_a);
    in_group.insert(g.lora_b);
    const Tensor& w = *by_key[base_key].second;
    const Tensor& a = *stored.second;
    g.rank = a.info.shape.empty() ? 0 : a.info.shape.back();
    const ModuleKind* kind = nullptr;
    for (const auto& k : kModules)
      if (g.module == k.name) kind = &k;
    const bool attn = kind->attention;
    if (g.expert >= static_cast<int>(opts.experts.size()) ||
        !(attn ? opts.experts[static_cast<std::size_t>(g.expert)].attn : opts.experts[static_cast<std::size_t>(g.expert)].ffn)) {
      errors.push_back("'" + g.lora_a + "' is " + (attn ? "attention" : "MLP") + " LoRA of expert " + std::to_string(g.expert) +
                       " (rank " + std::to_string(g.rank) + ") but no LoRA config was given for it: pass --variant (one per "
                       "expert, e.g. gemma_2b_lora,gemma_300m_lora) or --openpi-config");
      continue;
    }
    const LoraModuleConfig& c = *(attn ? opts.experts[static_cast<std::size_t>(g.expert)].attn : opts.experts[static_cast<std::size_t>(g.expert)].ffn);
    if (c.rank != g.rank) {
      errors.push_back("'" + g.lora_a + "' has rank " + std::to_string(g.rank) + " but the config for expert " +
                       std::to_string(g.expert) + " says " + std::to_string(c.rank));
      continue;
    }
    if (attn) {
      g.scale = c.rslora ? c.alpha / std::sqrt(static_cast<double>(c.rank)) : c.alpha / static_cast<double>(c.rank);
      g.scale_rule = std::string(c.rslora ? "alpha/sqrt(rank)" : "alpha/rank") + " = " + std::to_string(c.alpha) + "/" +
                     std::to_string(c.rank);
    } else {
      g.scale = 1.0;
      g.scale_rule = "FeedForward adds LoRA unscaled (alpha " + std::to_string(c.alpha) + " not applied)";
    }
    LoraEquations eqs = make_lora_eqns(kind->eqn);
    self_check(eqs);
    Eq base = split_eq(strip_spaces(kind->eqn), kind->eqn);
    int extra = static_cast<int>(w.info.shape.size()) - static_cast<int>(base.in[1].size());
    if (extra < 0) {
      errors.push_back("'" + g.base + "' has rank " + std::to_string(w.info.shape.size()) + ", less than " + g.module +
                       "'s weight rank " + std::to_string(base.in[1].size()));
      continue;
    }
    g.equation = delta_equation(eqs, extra);
    g.eqs = eqs;
    g.extra_leading = extra;
    claimed.insert(g.lora_a);
    claimed.insert(g.lora_b);
    groups.push_back(g);
    Rule rule;
    rule.kind = Rule::Kind::EinsumAdd;
    rule.index = static_cast<int>(r.rules.size());
    rule.inputs = {Pattern(g.base), Pattern(g.lora_a), Pattern(g.lora_b)};
    rule.outputs = {Pattern(g.base)};
    rule.equation = g.equation;
    rule.scale = g.scale;
    rule.dtype = opts.out_dtype;
    r.rules.push_back(std::move(rule));
  }
  // Any LoRA-named tensor that no group took is an error, never passed through.
  for (const auto& [key, stored] : by_key)
    if (key.find("lora") != std::string::npos && !claimed.count(stored.first) && !in_group.count(stored.first))
      if (std::none_of(errors.begin(), errors.end(), [&](const std::string& e) { return e.find(stored.first) != std::string::npos; }))
        errors.push_back("LoRA tensor '" + stored.first + "' belongs to no recognised LoRA module (openpi lora.Einsum or FeedForward)");
  if (!errors.empty()) {
    std::string msg = std::to_string(errors.size()) + " LoRA problem(s):";
    for (const auto& e : errors) msg += "\n  " + e;
    throw MappingError(src.path, msg);
  }
  Rule identity;
  identity.kind = Rule::Kind::Map;
  identity.index = static_cast<int>(r.rules.size());
  identity.inputs = {Pattern("{path:*}")};
  identity.outputs = {Pattern("{path}")};
  r.rules.push_back(identity);
  if (groups_out) *groups_out = std::move(groups);
  return r;
}

}  // namespace ckb
