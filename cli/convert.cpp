// `ckptbridge convert SRC DST` and `ckptbridge adapt SRC DST --layout nnx|linen`: thin
// front ends over engine::run (engine/api.h). convert maps any readable checkpoint through a
// recipe or profile (identity by default), optionally casts, and writes any writable format;
// adapt is convert with the flax profile, written as Orbax unless --to says otherwise.
#include "cli/commands.h"
#include "cli/options.h"
#include "cli/present.h"

namespace ckb::cli {
namespace {

struct ConvertCmd {
  engine::Job job;
  CommonRun c;
};

int run(ConvertCmd& o, const char* verb) {
  engine::Job job = o.job;
  finish_job(job, o.c);
  return run_and_report(job, o.c, verb);
}

}  // namespace

Runner add_convert(CLI::App& app) {
  auto o = std::make_shared<ConvertCmd>();
  app.add_option("src", o->job.source, "input checkpoint (format detected from content)")->required();
  add_output_options(app, o->job, o->c);
  add_source_options(app, o->job.source_options);
  add_mapping_options(app, o->job, o->c);
  add_dtype_option(app, o->c, "cast floating-point tensors: bf16, fp16, fp32, fp64, ... or auto (keep; default)");
  app.add_flag("--drop-non-tensors", o->job.drop_non_tensors, "drop non-tensor leaves (listed in the report)");
  add_profile_options(app, o->job, {}, true);
  return [o] { return run(*o, "wrote"); };
}

Runner add_adapt(CLI::App& app) {
  auto o = std::make_shared<ConvertCmd>();
  o->job.output.format = "orbax";
  app.add_option("src", o->job.source, "Flax checkpoint (Orbax item, step folder or CheckpointManager root; msgpack)")
      ->required();
  add_output_options(app, o->job, o->c);
  // The layout flag is the profile's own --layout; --to stays the file format (default orbax).
  add_profile_options(app, o->job, {"flax"}, false);
  add_source_options(app, o->job.source_options);
  return [o] {
    if (!o->job.profile_options.count("layout"))
      throw UsageError(o->job.output.format == "nnx" || o->job.output.format == "linen"
                           ? "--to names the file format; the target layout is --layout " + o->job.output.format
                           : "adapt needs --layout nnx, linen or auto (auto: the layout of --like)");
    o->job.profile = "flax";
    return run(*o, "wrote");
  };
}

}  // namespace ckb::cli
