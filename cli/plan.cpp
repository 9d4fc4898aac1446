// `ckptbridge plan SRC [--recipe R | --profile P | --layout L] [--json]`: resolves the plan
// (engine::plan: metadata only) and prints the ledger. Exit 2 when the plan has problems.
#include <iostream>

#include "cli/commands.h"
#include "cli/options.h"
#include "cli/present.h"

namespace ckb::cli {
namespace {

struct PlanCmd {
  engine::Job job;
  CommonRun c;
};

int run(PlanCmd& o) {
  engine::Job job = o.job;
  finish_job(job, o.c);
  engine::Report r = engine::plan(job);
  if (o.c.json) {
    std::cout << r.ledger.dump(1) << "\n";
  } else {
    for (const auto& n : r.notes) print_note(n, false);
    print_ledger(std::cout, r);
  }
  return r.problems.empty() ? 0 : 2;
}

}  // namespace

Runner add_plan(CLI::App& app) {
  auto o = std::make_shared<PlanCmd>();
  app.add_option("src", o->job.source, "input checkpoint")->required();
  app.add_flag("--json", o->c.json, "print the ledger as JSON");
  add_source_options(app, o->job.source_options);
  add_mapping_options(app, o->job, o->c);
  add_dtype_option(app, o->c, "plan a cast of floating-point tensors (bf16, fp16, fp32, ... or auto)");
  add_profile_options(app, o->job, {}, true);
  return [o] { return run(*o); };
}

}  // namespace ckb::cli
