// `ckptbridge merge-lora BASE -o OUT --profile openpi [--variant V,...|--openpi-config F]`
// or `merge-lora BASE -o OUT --adapter DIR` (profile peft, profiles/peft.h):
// folds LoRA adapters into their base weights the way the training runtime applied them
// (profiles/lora.h), writes float32 merged weights by default, and fails if any LoRA tensor
// is left unmerged. The report lists every merged module with its scale rule and equation.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/pipeline.h"
#include "cli/util.h"
#include "core/errors.h"
#include "formats/format.h"
#include "io/file.h"
#include "engine/execute.h"
#include "io/output.h"
#include "profiles/lora.h"
#include "profiles/peft.h"

namespace ckb::cli {
namespace {

using ojson = nlohmann::ordered_json;

struct MergeCmd {
  std::string base, out, profile, adapter, variant, openpi_config, to, dtype = "F32", report;
  bool overwrite = false, quiet = false, verify = false;
  std::int64_t step = -1;
  unsigned threads = 0;
};

std::string format_for(const std::string& dst, const std::string& to) {
  if (!to.empty()) return to;
  auto f = format_from_extension(dst);
  if (f.empty()) throw UsageError("cannot tell the output format from '" + dst + "'; pass --to FORMAT");
  return f;
}

int run(const MergeCmd& o) {
  const std::string profile = !o.profile.empty() ? o.profile : o.adapter.empty() ? "openpi" : "peft";
  if (profile != "openpi" && profile != "peft")
    throw UsageError("profile '" + profile + "' is not implemented (available: openpi, peft)");
  if ((profile == "peft") != !o.adapter.empty())
    throw UsageError("--adapter DIR (adapter_config.json + adapter_model.safetensors) goes with --profile peft");
  if (profile == "peft" && (!o.variant.empty() || !o.openpi_config.empty()))
    throw UsageError("--variant and --openpi-config apply to --profile openpi");
  if (profile == "openpi" && o.variant.empty() == o.openpi_config.empty())
    throw UsageError("openpi checkpoints do not store LoRA alpha: pass exactly one of --variant (e.g. "
                     "gemma_2b_lora,gemma_300m_lora, one per expert) or --openpi-config FILE.json");
  const Format& fmt = format_by_name(format_for(o.out, o.to));
  auto dt = dtype_from_name(o.dtype);
  if (!dt) dt = dtype_from_numpy_name(o.dtype);
  if (!dt || !dtype_is_float(*dt)) throw UsageError("--dtype must be a floating-point dtype, got '" + o.dtype + "'");
  if (path_exists(o.out) && !o.overwrite) throw UsageError("output " + o.out + " exists; pass --overwrite to replace it");
  if (same_file(o.base, o.out)) throw UsageError("refusing to overwrite the input " + o.base);

  Checkpoint src = open_checkpoint(o.base, o.step);
  std::vector<LoraGroup> groups;
  Recipe recipe;
  if (profile == "openpi") {
    LoraMergeOptions lo;
    lo.experts = openpi_experts(o.variant, o.openpi_config);
    lo.out_dtype = *dt;
    recipe = openpi_merge_recipe(src, lo, &groups);
  } else {
    PeftMerge pm = peft_merge(src, o.adapter, *dt);
    src = std::move(pm.combined);
    recipe = std::move(pm.recipe);
    groups = std::move(pm.groups);
  }
  Plan plan = build_plan(src, recipe);
  ojson report;
  report["source"] = {{"path", o.base}, {"format", src.format}};
  if (!o.adapter.empty()) report["adapter"] = o.adapter;
  report["profile"] = profile;
  report["merged"] = ojson::array();
  for (const auto& g : groups)
    report["merged"].push_back({{"weight", g.base}, {"lora_a", g.lora_a}, {"lora_b", g.lora_b}, {"module", g.module},
                                {"expert", g.expert}, {"rank", g.rank}, {"scale", g.scale}, {"scale_rule", g.scale_rule},
                                {"delta_equation", g.equation}});
  report["ledger"] = plan.ledger_json();
  auto write_report = [&] {
    if (o.report.empty()) return;
    std::ofstream out(o.report);
    out << report.dump(1) << "\n";
  };
  if (!plan.ok()) {
    write_report();
    plan.check();
  }
  ExecOptions eo;
  eo.threads = o.threads;
  eo.progress = !o.quiet && ::isatty(2);
  eo.cancel = &cancel_token();
  for (const auto& p : remove_stale_temporaries(o.out))
    std::cerr << "removed stale temporary " << p << " (process " << temporary_owner(p) << " is gone)\n";
  ExecResult res = execute(plan.target, fmt, o.out, {}, eo);
  report["summary"] = {{"merged_modules", groups.size()}, {"tensors", res.names.size()}, {"bytes", res.bytes}, {"seconds", res.seconds},
                       {"missing_chunks", warn_missing_chunks(missing_chunks(src))}};
  bool verified = true;
  if (o.verify) {
    // The written weights against the online LoRA of the source, on a random input each.
    Checkpoint written = read_checkpoint(o.out);
    std::map<std::string, const Tensor*> out_t, src_t;
    for (const auto& [n, t] : tensor_list(written.root)) out_t[n] = t;
    for (const auto& [n, t] : tensor_list(src.root)) src_t[n] = t;
    const double tol = *dt == DType::F32 || *dt == DType::F64 ? 1e-4 : 5e-2;
    double worst = 0;
    std::string worst_name;
    report["verify"] = ojson::array();
    for (const auto& g : groups) {
      if (g.dora) {  // the online DoRA path is the merge formula itself; nothing independent to compare
        report["verify"].push_back({{"weight", g.base}, {"skipped", "DoRA"}});
        continue;
      }
      auto it = out_t.find(g.base);
      if (it == out_t.end()) throw MappingError(o.out, "--verify: the output has no tensor '" + g.base + "'");
      LoraVerification v = verify_merge(g, *it->second, *src_t.at(g.base_source.empty() ? g.base : g.base_source), *src_t.at(g.lora_a), *src_t.at(g.lora_b));
      report["verify"].push_back({{"weight", g.base}, {"max_abs", v.max_abs}, {"max_ref", v.max_ref}, {"rel", v.rel()},
                                  {"fidelity", {{"max_abs", v.weight_max_abs}, {"max_rel", v.weight_max_rel}}}});
      if (v.rel() >= worst) worst = v.rel(), worst_name = g.base;
    }
    verified = worst <= tol;
    report["summary"]["verify"] = {{"worst_rel", worst}, {"worst", worst_name}, {"tolerance", tol}, {"ok", verified}};
    if (worst_name.empty()) {
      if (!o.quiet) std::cerr << "verify: every merged module is DoRA; nothing independent to compare\n";
    } else if (!o.quiet || !verified) {
      std::cerr << "verify: merged weights vs online LoRA on random inputs, worst relative difference " << worst << " ("
                << worst_name << "; tolerance " << tol << ")" << (verified ? "" : " -- FAILED") << "\n";
    }
  }
  write_report();
  if (!verified) return 2;
  if (!o.quiet)
    std::cerr << "merged " << groups.size() << " LoRA modules into " << dtype_name(*dt) << " weights; wrote "
              << res.names.size() << " tensors (" << human_bytes(res.bytes) << ") to " << o.out << " in " << res.seconds << " s\n";
  return 0;
}

}  // namespace

Runner add_merge_lora(CLI::App& app) {
  auto o = std::make_shared<MergeCmd>();
  app.add_option("base", o->base, "checkpoint holding base weights and LoRA factors")->required();
  app.add_option("-o,--output", o->out, "output path")->required();
  app.add_option("--profile", o->profile, "runtime whose LoRA semantics to reproduce: openpi, or peft (default with --adapter)");
  app.add_option("--adapter", o->adapter, "peft: the adapter directory (adapter_config.json + adapter_model.safetensors)");
  app.add_option("--variant", o->variant, "openpi: gemma variants, one per expert (e.g. gemma_2b_lora,gemma_300m_lora)");
  app.add_option("--openpi-config", o->openpi_config, "openpi: JSON {\"experts\": [{\"attn\": {rank, alpha, rslora}, \"ffn\": {...}}]}");
  app.add_option("--to", o->to, "output format (default: from the extension)");
  app.add_option("--dtype", o->dtype, "dtype of merged weights (default F32)");
  app.add_option("--report", o->report, "JSON report: merged modules, scales, equations, ledger");
  app.add_option("--src-step", o->step, "BASE is an Orbax CheckpointManager root: the step to read (default: latest)");
  app.add_option("--threads", o->threads, "worker threads");
  app.add_flag("--verify", o->verify,
               "re-read the output and compare each merged weight with the online LoRA (base + s * x A B) on a random input");
  app.add_flag("--overwrite", o->overwrite, "replace the output if it exists");
  app.add_flag("-q,--quiet", o->quiet, "no summary");
  return [o] { return run(*o); };
}

}  // namespace ckb::cli
