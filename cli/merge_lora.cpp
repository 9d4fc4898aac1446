// `ckptbridge merge-lora BASE DST [--adapter DIR | --variant V,... | --openpi-config F]`:
// convert with a LoRA profile (engine/api.h): "peft" when --adapter is given or BASE is a
// PEFT adapter folder (its base_model_name_or_path names the base), else "openpi-merge"
// (openpi's runtime semantics). Merged weights are float32 (openpi) or their base weight's
// dtype (peft) unless --dtype says otherwise (then every floating tensor is written in that
// dtype). peft with a base model folder writes a Hugging Face model folder.
#include <filesystem>

#include "cli/commands.h"
#include "cli/options.h"
#include "cli/present.h"

namespace ckb::cli {
namespace {

struct MergeCmd {
  engine::Job job;
  CommonRun c;
  std::string profile;
};

int run(MergeCmd& o) {
  engine::Job job = o.job;
  // `merge-lora ADAPTER_DIR`: a PEFT adapter folder alone (the profile finds its base).
  std::error_code ec;
  const bool adapter_alone = !job.profile_options.count("adapter") && o.profile.empty() &&
                             std::filesystem::is_regular_file(std::filesystem::path(job.source) / "adapter_config.json", ec);
  job.profile = engine::lora_merge_profile(o.profile, job.profile_options.count("adapter") > 0 || adapter_alone);
  finish_job(job, o.c);
  return run_and_report(job, o.c, "merged LoRA; wrote");
}

}  // namespace

Runner add_merge_lora(CLI::App& app) {
  auto o = std::make_shared<MergeCmd>();
  o->c.stats_with_report = false;  // a merge report lists modules and scales; --stats adds statistics
  app.add_option("base", o->job.source,
                 "checkpoint holding base weights (and, for openpi, the LoRA factors); a Hugging Face model folder gives a "
                 "model folder; a PEFT adapter folder alone: its local base_model_name_or_path is the base")
      ->required();
  add_output_options(app, o->job, o->c);
  add_source_options(app, o->job.source_options);
  app.add_option("--profile", o->profile, "runtime whose LoRA semantics to reproduce: openpi, or peft (default with --adapter)");
  add_profile_options(app, o->job, {"openpi-merge", "peft"}, false);
  add_dtype_option(app, o->c, "dtype of the output's floating-point tensors (default: openpi: merged weights F32, others kept; peft: "
                 "every tensor in its base's dtype)");
  return [o] { return run(*o); };
}

}  // namespace ckb::cli
