// Implementation of profiles/peft.h.
#include "profiles/peft.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <stdexcept>
#include <regex>

#include <nlohmann/json.hpp>

#include "core/errors.h"
#include "core/json_bounded.h"
#include "formats/format.h"
#include "io/file.h"

namespace ckb {
namespace {

const char* kPrefix = "base_model.model.";

template <class T>
std::vector<std::pair<std::string, T>> pattern_map(const nlohmann::ordered_json& j, const char* key, const std::string& path) {
  std::vector<std::pair<std::string, T>> out;
  if (!j.contains(key) || j[key].is_null()) return out;
  if (!j[key].is_object()) throw FormatError(path, std::string("'") + key + "' must be an object");
  for (const auto& [k, v] : j[key].items()) {
    if (!v.is_number()) throw FormatError(path, std::string("'") + key + "' values must be numbers");
    out.emplace_back(k, v.template get<T>());
  }
  return out;
}

// PEFT's get_pattern_key: the first pattern whose regex matches the module name's tail.
template <class T>
const T* lookup(const std::vector<std::pair<std::string, T>>& patterns, const std::string& module) {
  for (const auto& [k, v] : patterns) {
    try {
      if (std::regex_match(module, std::regex("(.*\\.)?(" + k + ")"))) return &v;
    } catch (const std::regex_error&) {
      if (module == k || module.ends_with("." + k)) return &v;
    }
  }
  return nullptr;
}

struct Kind {
  const char* name;
  LoraEquations eqs;
};
// The forward passes PEFT runs (x: "b" batch rows): the base layer, then x -> A -> B.
const Kind kLinear{"Linear", {"bi,oi->bo", "bi,ri->br", "br,or->bo"}};
const Kind kLinearFanInFanOut{"Linear (fan_in_fan_out)", {"bi,io->bo", "bi,ri->br", "br,or->bo"}};
const Kind kEmbedding{"Embedding", {"bn,nd->bd", "bn,rn->br", "br,dr->bd"}};

}  // namespace

PeftConfig parse_peft_config(const std::string& path) {
  nlohmann::ordered_json j = parse_ordered_json_bounded(read_text_file(path), path, {.allow_exceptions = false});
  if (j.is_discarded() || !j.is_object()) throw FormatError(path, "not a JSON object");
  if (j.value("peft_type", "LORA") != "LORA")
    throw MappingError(path, "peft_type '" + j.value("peft_type", "") + "' is not LoRA");
  PeftConfig c;
  if (!j.contains("r") || !j["r"].is_number_integer()) throw FormatError(path, "needs an integer 'r'");
  c.r = j["r"].get<std::int64_t>();
  c.alpha = j.contains("lora_alpha") && j["lora_alpha"].is_number() ? j["lora_alpha"].get<double>() : 8.0;
  c.rslora = j.value("use_rslora", false);
  c.fan_in_fan_out = j.value("fan_in_fan_out", false);
  c.dora = j.value("use_dora", false);
  c.rank_pattern = pattern_map<std::int64_t>(j, "rank_pattern", path);
  c.alpha_pattern = pattern_map<double>(j, "alpha_pattern", path);
  if (j.contains("modules_to_save") && j["modules_to_save"].is_array())
    for (const auto& m : j["modules_to_save"]) c.modules_to_save.push_back(m.get<std::string>());
  return c;
}

PeftAdapter parse_peft_adapter(const std::string& text) {
  static const std::regex scaled(R"(^([\s\S]+):([+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)$)");
  std::smatch sm;
  PeftAdapter a{text, 1.0};
  if (std::regex_match(text, sm, scaled)) {
    a.dir = sm[1];
    try {
      a.scale = std::stod(sm[2]);
    } catch (const std::out_of_range&) {
      a.scale = HUGE_VAL;
    }
    if (!std::isfinite(a.scale)) throw UsageError("--adapter " + text + ": the scale " + std::string(sm[2]) + " is out of range");
  }
  if (a.dir.empty()) throw UsageError("--adapter needs a folder (DIR or DIR:SCALE), got '" + text + "'");
  return a;
}

std::vector<PeftAdapter> parse_peft_adapters(const std::string& joined) {
  std::vector<PeftAdapter> out;
  std::size_t pos = 0;
  while (true) {
    const std::size_t nl = joined.find('\n', pos);
    out.push_back(parse_peft_adapter(joined.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos)));
    if (nl == std::string::npos) return out;
    pos = nl + 1;
  }
}

namespace {

// One base weight and the terms the adapters add to it (one rule, rounded once).
struct WeightMerge {
  std::string weight, merge_base;  // merge_base: the weight, or an adapter's saved base layer
  const Kind* kind = nullptr;
  std::vector<std::string> operands;  // A, B per term
  std::vector<double> scales;
  std::vector<std::size_t> adapters;  // the adapter of each term
  std::string magnitude;              // DoRA (one adapter only)
  std::string saved_base;             // the adapter tensor merge_base reads, if any
  int magnitude_axis = -1;
};
struct BiasMerge {
  std::string bias;
  std::vector<std::string> operands;
  std::vector<double> scales;
};

bool uses_dora(const PeftConfig& cfg, const std::map<std::string, const Tensor*>& tensors) {
  if (cfg.dora) return true;
  return std::any_of(tensors.begin(), tensors.end(), [](const auto& t) { return t.first.find("lora_magnitude_vector") != std::string::npos; });
}

}  // namespace

PeftMerge peft_merge(const Checkpoint& base, const std::vector<PeftAdapter>& adapters, std::optional<DType> out_dtype) {
  if (adapters.empty()) throw UsageError("peft: no adapter given");
  const bool several = adapters.size() > 1;
  PeftMerge m;
  m.combined.format = base.format;
  m.combined.path = base.path;
  m.combined.metadata = base.metadata;
  m.combined.root = base.root;

  std::map<std::string, const Tensor*> base_t;
  for (const auto& [n, t] : tensor_list(base.root)) base_t[n] = t;
  auto base_key = [&](const std::string& module, const std::string& param) -> std::string {
    for (const std::string& k : {module + "." + param, kPrefix + module + "." + param, kPrefix + module + ".base_layer." + param})
      if (base_t.count(k)) return k;
    return "";
  };

  Recipe& r = m.recipe;
  r.name = "peft-lora-merge";
  r.description = "merge PEFT LoRA adapters from";
  std::vector<std::string> errors;
  std::string error_path;  // the adapter folder of the first problem
  std::vector<WeightMerge> weights;
  std::map<std::string, std::size_t> weight_index;
  std::vector<BiasMerge> biases;
  std::map<std::string, std::size_t> bias_index;
  std::map<std::string, std::size_t> replaced;  // base tensor -> adapter replacing it (modules_to_save)
  std::vector<std::pair<std::string, std::string>> replacements;  // (adapter tensor, base tensor)
  std::vector<std::string> prefixes;
  static const std::regex lora_re(R"((?:base_model\.model\.)?(.*)\.(lora_A|lora_embedding_A)(?:\.weight)?)");
  auto add_rule = [&](Rule rule) {
    rule.index = static_cast<int>(r.rules.size());
    r.rules.push_back(std::move(rule));
  };
  auto drop_base = [&](const std::string& name, const std::string& reason) {
    Rule drop;
    drop.kind = Rule::Kind::Drop;
    drop.inputs = {Pattern(name)};
    drop.reason = reason;
    add_rule(std::move(drop));
  };

  for (std::size_t ai = 0; ai < adapters.size(); ++ai) {
    const PeftAdapter& ad = adapters[ai];
    const std::string& adapter_dir = ad.dir;
    const PeftConfig cfg = parse_peft_config(adapter_dir + "/adapter_config.json");
    Checkpoint adapter = read_checkpoint(adapter_dir + "/adapter_model.safetensors");
    const std::string prefix = several ? "adapter" + std::to_string(ai + 1) : "adapter";
    if (m.combined.root.find(prefix)) throw MappingError(base.path, "the base has a leaf named '" + prefix + "'");
    m.combined.root.add(prefix, adapter.root);
    prefixes.push_back(prefix);
    r.description += (ai ? ", " : " ") + adapter_dir;
    const std::string in = prefix + "/";
    auto problem = [&](const std::string& e) {
      if (errors.empty()) error_path = adapter_dir;
      errors.push_back(several ? adapter_dir + ": " + e : e);
    };

    std::map<std::string, const Tensor*> adapter_t;
    for (const auto& [n, t] : tensor_list(adapter.root)) adapter_t[n] = t;
    if (several && uses_dora(cfg, adapter_t)) {
      problem("uses DoRA, which cannot be merged together with other adapters: a DoRA merge rescales each weight to "
              "its own magnitude, so the result would depend on the order; merge it alone, then merge the next adapter "
              "into that output");
      continue;
    }
    nlohmann::ordered_json report = {{"path", adapter_dir}, {"scale", ad.scale}, {"modules", nlohmann::ordered_json::array()},
                                     {"replaced", nlohmann::ordered_json::array()}};
    std::set<std::string> claimed;
    for (const auto& [name, a] : adapter_t) {
      std::smatch sm;
      if (!std::regex_match(name, sm, lora_re)) continue;
      const std::string module = sm[1];
      const bool emb = sm[2] == "lora_embedding_A";
      const std::string stem = name.substr(0, static_cast<std::size_t>(sm.position(2)));  // "...module."
      const std::string b_name = std::string(name).replace(static_cast<std::size_t>(sm.position(2)),
                                                            static_cast<std::size_t>(sm.length(2)), emb ? "lora_embedding_B" : "lora_B");
      claimed.insert(name);
      if (!adapter_t.count(b_name)) {
        problem("'" + name + "' has no partner '" + b_name + "'");
        continue;
      }
      claimed.insert(b_name);
      const Tensor* b = adapter_t.at(b_name);
      const std::string w = base_key(module, "weight");
      if (w.empty()) {
        problem("'" + name + "': the base has no weight for module '" + module + "'");
        continue;
      }
      if (a->info.shape.size() != 2) {
        problem("'" + name + "' has rank-" + std::to_string(a->info.shape.size()) + " factors (conv LoRA is not supported yet)");
        continue;
      }
      const Kind& kind = emb ? kEmbedding : cfg.fan_in_fan_out ? kLinearFanInFanOut : kLinear;
      // The delta's shape from the factors (A [r, in], B [out, r]; embedding A [r, n], B [d, r])
      // in the base weight's layout.
      const Shape& as = a->info.shape;
      const Shape& bs = b->info.shape;
      const Shape& ws = base_t.at(w)->info.shape;
      const Shape want = emb || cfg.fan_in_fan_out ? Shape{as[1], bs.size() == 2 ? bs[0] : -1} : Shape{bs.size() == 2 ? bs[0] : -1, as[1]};
      if (bs.size() != 2 || bs[1] != as[0] || want != ws) {
        problem("'" + name + "' " + shape_str(as) + " and '" + b_name + "' " + shape_str(bs) +
                (bs.size() != 2 || bs[1] != as[0] ? " do not pair (B's second axis must be A's rank)"
                                                  : " give a delta of " + shape_str(want)) +
                " but the base's '" + w + "' is " + shape_str(ws) + " (an adapter for another base model?)");
        continue;
      }
      // PEFT saves the embedding's base layer with the adapter (save_embedding_layers): that
      // copy is the weight the adapter was trained on; it replaces the base's.
      const std::string saved_base = stem + "base_layer.weight";
      if (adapter_t.count(saved_base)) {
        claimed.insert(saved_base);
        if (adapter_t.at(saved_base)->info != base_t.at(w)->info) {
          problem("'" + saved_base + "' is " + shape_str(adapter_t.at(saved_base)->info.shape) + " but the base's '" + w +
                  "' is " + shape_str(base_t.at(w)->info.shape) + " (resized vocabulary is not supported yet)");
          continue;
        }
      }
      LoraGroup g;
      g.base = w;
      g.lora_a = in + name;
      g.lora_b = in + b_name;
      g.module = module;
      g.rank = as[0];
      const std::int64_t* rp = lookup(cfg.rank_pattern, module);
      const double* ap = lookup(cfg.alpha_pattern, module);
      const std::int64_t rank = rp ? *rp : cfg.r;
      const double alpha = ap ? *ap : cfg.alpha;
      if (rank != g.rank) {
        problem("'" + name + "' has rank " + std::to_string(g.rank) + " but adapter_config.json gives " + std::to_string(rank));
        continue;
      }
      const double s = cfg.rslora ? alpha / std::sqrt(static_cast<double>(rank)) : alpha / static_cast<double>(rank);
      g.scale = ad.scale * s;
      g.scale_rule = (ad.scale != 1.0 ? std::to_string(ad.scale) + " (--adapter scale) * " : std::string()) +
                     (cfg.rslora ? "lora_alpha/sqrt(r)" : "lora_alpha/r") + " = " + std::to_string(alpha) + "/" +
                     std::to_string(rank) + (rp || ap ? " (rank_pattern/alpha_pattern)" : "");
      self_check(kind.eqs);
      g.equation = delta_equation(kind.eqs);
      g.eqs = kind.eqs;
      // DoRA: W' = m / ||W + s dW||_row * (W + s dW), the norm per output feature
      std::string mag;
      for (const std::string& k : {stem + "lora_magnitude_vector", stem + "lora_magnitude_vector.weight"})
        if (adapter_t.count(k)) mag = k;
      if (!mag.empty()) {
        if (emb) {
          problem("'" + mag + "': DoRA on an embedding is not supported yet");
          continue;
        }
        claimed.insert(mag);
        g.scale_rule += ", DoRA magnitude " + mag;
        g.dora = true;
      } else if (cfg.dora) {
        problem("use_dora is set but '" + name + "' has no lora_magnitude_vector");
        continue;
      }
      auto [wit, fresh] = weight_index.try_emplace(w, weights.size());
      if (fresh) {
        weights.emplace_back();
        weights.back().weight = weights.back().merge_base = w;
        weights.back().kind = &kind;
      }
      WeightMerge& wm = weights[wit->second];
      if (wm.kind != &kind) {
        problem("'" + name + "' merges into '" + w + "' as " + kind.name + " but adapter " + adapters[wm.adapters[0]].dir +
                " as " + wm.kind->name + " (fan_in_fan_out differs)");
        continue;
      }
      const bool has_saved = adapter_t.count(saved_base) > 0;
      if (!fresh && (has_saved || !wm.saved_base.empty())) {
        problem("'" + w + "' is changed by several adapters and one of them saves its own copy of it ('" +
                (has_saved ? in + saved_base : wm.saved_base) + "'): which base they apply to is ambiguous");
        continue;
      }
      if (has_saved) {
        wm.saved_base = in + saved_base;
        wm.merge_base = wm.saved_base;
        g.scale_rule += ", base from the adapter's saved base layer";
        g.base_source = wm.merge_base;
      }
      wm.operands.push_back(g.lora_a);
      wm.operands.push_back(g.lora_b);
      wm.scales.push_back(g.scale);
      wm.adapters.push_back(ai);
      if (!mag.empty()) {
        wm.magnitude = in + mag;
        wm.magnitude_axis = cfg.fan_in_fan_out ? 1 : 0;  // the output-feature axis of W
      }
      // lora_bias: b += s * lora_B.bias
      const std::string b_bias = b_name.ends_with(".weight") ? b_name.substr(0, b_name.size() - 7) + ".bias" : "";
      if (!b_bias.empty() && adapter_t.count(b_bias)) {
        claimed.insert(b_bias);
        const std::string bias = base_key(module, "bias");
        if (bias.empty()) {
          problem("'" + b_bias + "' (lora_bias) but the base has no bias for module '" + module + "'");
          continue;
        }
        auto [bit, bfresh] = bias_index.try_emplace(bias, biases.size());
        if (bfresh) biases.emplace_back().bias = bias;
        biases[bit->second].operands.push_back(in + b_bias);
        biases[bit->second].scales.push_back(g.scale);
        g.scale_rule += ", lora_bias";
      }
      report["modules"].push_back(module);
      m.groups.push_back(std::move(g));
    }
    // modules_to_save: the adapter's trained copy replaces the base tensor of the same name.
    for (const auto& [name, t] : adapter_t) {
      if (claimed.count(name)) continue;
      const std::string bare = name.starts_with(kPrefix) ? name.substr(std::string(kPrefix).size()) : name;
      const auto dot = bare.rfind('.');
      const std::string module = dot == std::string::npos ? bare : bare.substr(0, dot);
      const bool saved = std::any_of(cfg.modules_to_save.begin(), cfg.modules_to_save.end(), [&](const std::string& x) {
        return module == x || module.ends_with("." + x);
      });
      if (name.find("lora_") != std::string::npos || !saved) {
        problem("adapter tensor '" + name + "' is " +
                (name.find("lora_magnitude_vector") != std::string::npos ? "a DoRA magnitude of no LoRA module"
                 : name.find("lora_") != std::string::npos             ? "a LoRA tensor of an unsupported kind"
                                                                       : "neither a LoRA factor nor in modules_to_save"));
        continue;
      }
      const std::string target = base_key(module, bare.substr(dot + 1));
      if (target.empty()) {
        problem("modules_to_save tensor '" + name + "' has no base tensor to replace");
        continue;
      }
      if (auto [it, fresh] = replaced.try_emplace(target, ai); !fresh) {
        problem("modules_to_save tensor '" + name + "' replaces '" + target + "', which adapter " + adapters[it->second].dir +
                " replaces too");
        continue;
      }
      replacements.emplace_back(in + name, target);
      report["replaced"].push_back(target);
    }
    m.adapters.push_back(std::move(report));
  }
  for (const auto& wm : weights)
    if (replaced.count(wm.weight))
      errors.push_back("'" + wm.weight + "' is both merged (LoRA) and replaced (modules_to_save) by the adapters");
  if (!errors.empty()) {
    std::string msg = std::to_string(errors.size()) + " PEFT adapter problem(s):";
    for (const auto& e : errors) msg += "\n  " + e;
    throw MappingError(error_path.empty() ? adapters[0].dir : error_path, msg);
  }
  for (const auto& wm : weights) {
    if (wm.merge_base != wm.weight) drop_base(wm.weight, "replaced by the adapter's saved base layer '" + wm.merge_base + "' (then merged)");
    Rule rule;
    rule.kind = Rule::Kind::EinsumAdd;
    rule.inputs = {Pattern(wm.merge_base)};
    for (const auto& o : wm.operands) rule.inputs.push_back(Pattern(o));
    rule.outputs = {Pattern(wm.weight)};
    rule.equation = delta_equation(wm.kind->eqs);
    rule.scale = wm.scales[0];
    if (wm.scales.size() > 1) rule.term_scales = wm.scales;
    rule.dtype = out_dtype;
    if (!wm.magnitude.empty()) {
      rule.inputs.push_back(Pattern(wm.magnitude));
      rule.magnitude_axis = wm.magnitude_axis;
    }
    add_rule(std::move(rule));
  }
  for (const auto& b : biases) {
    Rule br;
    br.kind = Rule::Kind::EinsumAdd;
    br.inputs = {Pattern(b.bias)};
    for (const auto& o : b.operands) br.inputs.push_back(Pattern(o));
    br.outputs = {Pattern(b.bias)};
    br.equation = "o->o";
    br.scale = b.scales[0];
    if (b.scales.size() > 1) br.term_scales = b.scales;
    br.dtype = out_dtype;
    add_rule(std::move(br));
  }
  for (const auto& [from, target] : replacements) {
    drop_base(target, "replaced by the adapter's modules_to_save copy '" + from + "'");
    Rule map;
    map.kind = Rule::Kind::Map;
    map.inputs = {Pattern(from)};
    map.outputs = {Pattern(target)};
    add_rule(std::move(map));
  }
  // every base tensor not merged or replaced passes through; an adapter tensor no rule took
  // stays unused and fails the plan
  Rule identity;
  identity.kind = Rule::Kind::Map;
  identity.inputs = {Pattern::regex("^(?!adapter[0-9]*/)(.*)$")};
  identity.outputs = {Pattern("{1}")};
  add_rule(std::move(identity));
  return m;
}

}  // namespace ckb
