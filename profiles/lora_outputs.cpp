// Implementation of profiles/lora_outputs.h.
#include "profiles/lora_outputs.h"

#include <map>
#include <sstream>

#include "core/errors.h"
#include "formats/format.h"

namespace ckb {

nlohmann::ordered_json lora_groups_json(const std::vector<LoraGroup>& groups) {
  auto a = nlohmann::ordered_json::array();
  for (const auto& g : groups)
    a.push_back({{"weight", g.base}, {"lora_a", g.lora_a}, {"lora_b", g.lora_b}, {"module", g.module},
                 {"expert", g.expert}, {"rank", g.rank}, {"scale", g.scale}, {"scale_rule", g.scale_rule},
                 {"delta_equation", g.equation}});
  return a;
}

DType merged_dtype_option(const std::map<std::string, std::string>& options) {
  auto it = options.find("merged-dtype");
  if (it == options.end()) return DType::F32;
  auto dt = dtype_from_name(it->second);
  if (!dt) dt = dtype_from_numpy_name(it->second);
  if (!dt || !dtype_is_float(*dt)) throw UsageError("--dtype must be a floating-point dtype, got '" + it->second + "'");
  return *dt;
}

AfterWriteResult verify_lora_output(const std::vector<LoraGroup>& groups, const Checkpoint& source,
                                    const std::string& written_path, std::optional<std::int64_t> step, DType out,
                                    nlohmann::ordered_json& report) {
  AfterWriteResult r;
  ReadOptions ro;
  ro.step = step;
  Checkpoint written = read_checkpoint(written_path, ro);
  std::map<std::string, const Tensor*> out_t, src_t;
  for (const auto& [n, t] : tensor_list(written.root)) out_t[n] = t;
  for (const auto& [n, t] : tensor_list(source.root)) src_t[n] = t;
  const double tol = out == DType::F32 || out == DType::F64 ? 1e-4 : 5e-2;
  double worst = 0;
  std::string worst_name;
  report["verify"] = nlohmann::ordered_json::array();
  // the groups of each weight (several when adapters are summed), in the order first seen
  std::vector<std::vector<const LoraGroup*>> by_weight;
  std::map<std::string, std::size_t> index;
  for (const auto& g : groups) {
    auto [it, fresh] = index.try_emplace(g.base, by_weight.size());
    if (fresh) by_weight.emplace_back();
    by_weight[it->second].push_back(&g);
  }
  for (const auto& terms : by_weight) {
    const LoraGroup& g = *terms[0];
    if (g.dora) {  // the online DoRA path is the merge formula itself; nothing independent to compare
      report["verify"].push_back({{"weight", g.base}, {"skipped", "DoRA"}});
      continue;
    }
    auto it = out_t.find(g.base);
    if (it == out_t.end()) throw MappingError(written_path, "verify: the output has no tensor '" + g.base + "'");
    auto source_tensor = [&](const std::string& name) -> const Tensor& {
      auto s = src_t.find(name);
      if (s == src_t.end()) throw MappingError(source.path, "verify: the source has no tensor '" + name + "'");
      return *s->second;
    };
    std::vector<const Tensor*> as, bs;
    for (const LoraGroup* t : terms) as.push_back(&source_tensor(t->lora_a)), bs.push_back(&source_tensor(t->lora_b));
    LoraVerification v = verify_merge(terms, *it->second, source_tensor(g.base_source.empty() ? g.base : g.base_source), as, bs);
    report["verify"].push_back({{"weight", g.base}, {"max_abs", v.max_abs}, {"max_ref", v.max_ref}, {"rel", v.rel()},
                                {"fidelity", {{"max_abs", v.weight_max_abs}, {"max_rel", v.weight_max_rel}}}});
    if (v.rel() >= worst) worst = v.rel(), worst_name = g.base;
  }
  const bool ok = worst <= tol;
  report["summary"]["verify"] = {{"worst_rel", worst}, {"worst", worst_name}, {"tolerance", tol}, {"ok", ok}};
  std::ostringstream msg;
  if (worst_name.empty()) {
    msg << "verify: every merged module is DoRA; nothing independent to compare";
  } else {
    msg << "verify: merged weights vs online LoRA on random inputs, worst relative difference " << worst << " ("
        << worst_name << "; tolerance " << tol << ")" << (ok ? "" : " -- FAILED");
  }
  (ok ? r.notes : r.failures).push_back(msg.str());
  return r;
}

}  // namespace ckb
