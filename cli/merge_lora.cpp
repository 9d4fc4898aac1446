// `ckptbridge merge-lora BASE DST [--adapter DIR | --variant V,... | --openpi-config F]`:
// convert with a LoRA profile (engine/api.h): "peft" when --adapter is given, else
// "openpi-merge" (openpi's runtime semantics). Merged weights are float32 unless --dtype
// says otherwise (then every floating tensor is written in that dtype).
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
  job.profile = engine::lora_merge_profile(o.profile, job.profile_options.count("adapter") > 0);
  finish_job(job, o.c);
  return run_and_report(job, o.c, "merged LoRA; wrote");
}

}  // namespace

Runner add_merge_lora(CLI::App& app) {
  auto o = std::make_shared<MergeCmd>();
  o->c.stats_with_report = false;  // a merge report lists modules and scales; --stats adds statistics
  app.add_option("base", o->job.source, "checkpoint holding base weights (and, for openpi, the LoRA factors)")->required();
  add_output_options(app, o->job, o->c);
  add_source_options(app, o->job.source_options);
  app.add_option("--profile", o->profile, "runtime whose LoRA semantics to reproduce: openpi, or peft (default with --adapter)");
  add_profile_options(app, o->job, {"openpi-merge", "peft"}, false);
  add_dtype_option(app, o->c, "dtype of the output's floating-point tensors (default: merged weights F32, others kept)");
  return [o] { return run(*o); };
}

}  // namespace ckb::cli
