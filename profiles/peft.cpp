// Implementation of profiles/peft.h.
#include "profiles/peft.h"

#include <algorithm>
#include <cmath>
#include <set>
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

PeftMerge peft_merge(const Checkpoint& base, const std::string& adapter_dir, std::optional<DType> out_dtype) {
  const std::string cfg_path = adapter_dir + "/adapter_config.json";
  const PeftConfig cfg = parse_peft_config(cfg_path);
  Checkpoint adapter = read_checkpoint(adapter_dir + "/adapter_model.safetensors");

  PeftMerge m;
  m.combined.format = base.format;
  m.combined.path = base.path;
  m.combined.metadata = base.metadata;
  m.combined.root = base.root;
  if (m.combined.root.find("adapter")) throw MappingError(base.path, "the base has a leaf named 'adapter'");
  m.combined.root.add("adapter", adapter.root);

  std::map<std::string, const Tensor*> base_t, adapter_t;
  for (const auto& [n, t] : tensor_list(base.root)) base_t[n] = t;
  for (const auto& [n, t] : tensor_list(adapter.root)) adapter_t[n] = t;
  auto base_key = [&](const std::string& module, const std::string& param) -> std::string {
    for (const std::string& k : {module + "." + param, kPrefix + module + "." + param, kPrefix + module + ".base_layer." + param})
      if (base_t.count(k)) return k;
    return "";
  };

  Recipe& r = m.recipe;
  r.name = "peft-lora-merge";
  r.description = "merge PEFT LoRA adapters from " + adapter_dir;
  std::vector<std::string> errors;
  std::set<std::string> claimed;
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
      errors.push_back("'" + name + "' has no partner '" + b_name + "'");
      continue;
    }
    claimed.insert(b_name);
    const std::string w = base_key(module, "weight");
    if (w.empty()) {
      errors.push_back("'" + name + "': the base has no weight for module '" + module + "'");
      continue;
    }
    if (a->info.shape.size() != 2) {
      errors.push_back("'" + name + "' has rank-" + std::to_string(a->info.shape.size()) + " factors (conv LoRA is not supported yet)");
      continue;
    }
    // PEFT saves the embedding's base layer with the adapter (save_embedding_layers): that
    // copy is the weight the adapter was trained on; it replaces the base's.
    const std::string saved_base = stem + "base_layer.weight";
    std::string merge_base = w;
    if (adapter_t.count(saved_base)) {
      claimed.insert(saved_base);
      if (adapter_t.at(saved_base)->info != base_t.at(w)->info) {
        errors.push_back("'" + saved_base + "' is " + shape_str(adapter_t.at(saved_base)->info.shape) + " but the base's '" + w +
                         "' is " + shape_str(base_t.at(w)->info.shape) + " (resized vocabulary is not supported yet)");
        continue;
      }
      drop_base(w, "replaced by the adapter's saved base layer '" + saved_base + "' (then merged)");
      merge_base = "adapter/" + saved_base;
    }
    LoraGroup g;
    g.base = w;
    g.lora_a = "adapter/" + name;
    g.lora_b = "adapter/" + b_name;
    g.module = module;
    g.rank = a->info.shape[0];  // A is [r, in] (lora_A) or [r, num_embeddings] (lora_embedding_A)
    const std::int64_t* rp = lookup(cfg.rank_pattern, module);
    const double* ap = lookup(cfg.alpha_pattern, module);
    const std::int64_t rank = rp ? *rp : cfg.r;
    const double alpha = ap ? *ap : cfg.alpha;
    if (rank != g.rank) {
      errors.push_back("'" + name + "' has rank " + std::to_string(g.rank) + " but adapter_config.json gives " + std::to_string(rank));
      continue;
    }
    g.scale = cfg.rslora ? alpha / std::sqrt(static_cast<double>(rank)) : alpha / static_cast<double>(rank);
    g.scale_rule = std::string(cfg.rslora ? "lora_alpha/sqrt(r)" : "lora_alpha/r") + " = " + std::to_string(alpha) + "/" +
                   std::to_string(rank) + (rp || ap ? " (rank_pattern/alpha_pattern)" : "");
    const Kind& kind = emb ? kEmbedding : cfg.fan_in_fan_out ? kLinearFanInFanOut : kLinear;
    self_check(kind.eqs);
    g.equation = delta_equation(kind.eqs);
    g.eqs = kind.eqs;
    Rule rule;
    rule.kind = Rule::Kind::EinsumAdd;
    rule.inputs = {Pattern(merge_base), Pattern(g.lora_a), Pattern(g.lora_b)};
    rule.outputs = {Pattern(g.base)};
    rule.equation = g.equation;
    rule.scale = g.scale;
    rule.dtype = out_dtype;
    if (merge_base != w) {
      g.scale_rule += ", base from the adapter's saved base layer";
      g.base_source = merge_base;
    }
    // DoRA: W' = m / ||W + s dW||_row * (W + s dW), the norm per output feature
    std::string mag;
    for (const std::string& k : {stem + "lora_magnitude_vector", stem + "lora_magnitude_vector.weight"})
      if (adapter_t.count(k)) mag = k;
    if (!mag.empty()) {
      if (emb) {
        errors.push_back("'" + mag + "': DoRA on an embedding is not supported yet");
        continue;
      }
      claimed.insert(mag);
      rule.inputs.push_back(Pattern("adapter/" + mag));
      rule.magnitude_axis = cfg.fan_in_fan_out ? 1 : 0;  // the output-feature axis of W
      g.scale_rule += ", DoRA magnitude " + mag;
      g.dora = true;
    } else if (cfg.dora) {
      errors.push_back("use_dora is set but '" + name + "' has no lora_magnitude_vector");
      continue;
    }
    add_rule(std::move(rule));
    // lora_bias: b += s * lora_B.bias
    const std::string b_bias = b_name.ends_with(".weight") ? b_name.substr(0, b_name.size() - 7) + ".bias" : "";
    if (!b_bias.empty() && adapter_t.count(b_bias)) {
      claimed.insert(b_bias);
      const std::string bias = base_key(module, "bias");
      if (bias.empty()) {
        errors.push_back("'" + b_bias + "' (lora_bias) but the base has no bias for module '" + module + "'");
        continue;
      }
      Rule br;
      br.kind = Rule::Kind::EinsumAdd;
      br.inputs = {Pattern(bias), Pattern("adapter/" + b_bias)};
      br.outputs = {Pattern(bias)};
      br.equation = "o->o";
      br.scale = g.scale;
      br.dtype = out_dtype;
      add_rule(std::move(br));
      g.scale_rule += ", lora_bias";
    }
    m.groups.push_back(std::move(g));
  }
  // modules_to_save: the adapter's trained copy replaces the base tensor of the same name.
  for (const auto& [name, t] : adapter_t) {
    if (claimed.count(name)) continue;
    const std::string bare = name.starts_with(kPrefix) ? name.substr(std::string(kPrefix).size()) : name;
    const auto dot = bare.rfind('.');
    const std::string module = dot == std::string::npos ? bare : bare.substr(0, dot);
    const bool saved = std::any_of(cfg.modules_to_save.begin(), cfg.modules_to_save.end(), [&](const std::string& s) {
      return module == s || module.ends_with("." + s);
    });
    if (name.find("lora_") != std::string::npos || !saved) {
      errors.push_back("adapter tensor '" + name + "' is " +
                       (name.find("lora_magnitude_vector") != std::string::npos ? "a DoRA magnitude of no LoRA module"
                        : name.find("lora_") != std::string::npos             ? "a LoRA tensor of an unsupported kind"
                                                                              : "neither a LoRA factor nor in modules_to_save"));
      continue;
    }
    const std::string target = base_key(module, bare.substr(dot + 1));
    if (target.empty()) {
      errors.push_back("modules_to_save tensor '" + name + "' has no base tensor to replace");
      continue;
    }
    drop_base(target, "replaced by the adapter's modules_to_save copy '" + name + "'");
    Rule map;
    map.kind = Rule::Kind::Map;
    map.inputs = {Pattern("adapter/" + name)};
    map.outputs = {Pattern(target)};
    add_rule(std::move(map));
  }
  if (!errors.empty()) {
    std::string msg = std::to_string(errors.size()) + " PEFT adapter problem(s):";
    for (const auto& e : errors) msg += "\n  " + e;
    throw MappingError(adapter_dir, msg);
  }
  // every base tensor not merged or replaced passes through; an adapter tensor no rule took
  // stays unused and fails the plan
  Rule identity;
  identity.kind = Rule::Kind::Map;
  identity.inputs = {Pattern::regex("^(?!adapter/)(.*)$")};
  identity.outputs = {Pattern("{1}")};
  add_rule(std::move(identity));
  return m;
}

}  // namespace ckb
