// `ckptbridge diff A B [--recipe R] [--atol X --rtol Y] [--json]`: compares two checkpoints
// in any formats (A optionally mapped through a recipe first). Exit 0 when every leaf is
// equal or within tolerance, 1 when they differ (as diff(1) does), 2 on errors.
#include <iostream>

#include "cli/commands.h"
#include "cli/options.h"
#include "cli/util.h"
#include "engine/api.h"

namespace ckb::cli {
namespace {

struct DiffCmd {
  std::string b;
  bool json = false;
  double atol = 0, rtol = 0;
  unsigned threads = 0;
  engine::Job job;
  CommonRun c;
  engine::SourceOptions b_src;
};

int run(DiffCmd& o) {
  engine::Job job = o.job;
  finish_job(job, o.c);
  engine::SourceOptions b_src = o.b_src;
  b_src.strict_chunks = job.source_options.strict_chunks;
  const engine::DiffReport d = engine::diff(job, o.b, DiffOptions{o.atol, o.rtol, o.threads}, b_src);
  const DiffResult& r = d.result;
  std::uint64_t missing = 0;
  for (const auto& [k, n] : d.missing) missing += n;
  if (missing)
    std::cerr << "warning: " << missing << " missing zarr chunk" << (missing == 1 ? "" : "s")
              << " read as the fill value (--strict-chunks makes this an error)\n";
  if (o.json) {
    std::cout << r.to_json().dump(1) << "\n";
  } else {
    Table t({"leaf", "status", "max abs", "max rel", "max ulp", "detail"});
    std::size_t equal = 0;
    for (const auto& l : r.leaves) {
      if (l.status == "equal") {
        ++equal;
        continue;
      }
      bool num = l.status == "close" || l.status == "different";
      t.add_row({l.name, l.status, num ? std::to_string(l.max_abs) : "", num ? std::to_string(l.max_rel) : "",
                 num ? std::to_string(l.max_ulp) : "", l.detail});
    }
    if (equal != r.leaves.size()) t.print(std::cout);
    std::cout << r.leaves.size() << " leaves: " << equal << " equal, " << r.leaves.size() - equal << " not equal; "
              << (r.within_tolerance() ? "within tolerance" : "DIFFERENT") << "\n";
  }
  return r.within_tolerance() ? 0 : 1;
}

}  // namespace

Runner add_diff(CLI::App& app) {
  auto o = std::make_shared<DiffCmd>();
  app.add_option("a", o->job.source, "first checkpoint (mapped through --recipe if given)")->required();
  app.add_option("b", o->b, "second checkpoint")->required();
  app.add_option("--atol", o->atol, "absolute tolerance (default 0: exact)");
  app.add_option("--rtol", o->rtol, "relative tolerance (default 0: exact)");
  app.add_flag("--json", o->json, "machine-readable output");
  app.add_option("--threads", o->threads, "worker threads");
  add_source_options(app, o->job.source_options);
  add_mapping_options(app, o->job, o->c);
  return [o] { return run(*o); };
}

}  // namespace ckb::cli
