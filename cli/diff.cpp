// `ckptbridge diff A B [--recipe R] [--atol X --rtol Y] [--json]`: compares two checkpoints
// in any formats (A optionally mapped through a recipe first). Exit 0 when every leaf is
// equal or within tolerance, 1 when they differ (as diff(1) does), 2 on errors.
#include <iostream>

#include "cli/commands.h"
#include "cli/pipeline.h"
#include "cli/util.h"
#include "recipe/diff.h"

namespace ckb::cli {
namespace {

struct DiffCmd {
  std::string a, b;
  bool json = false;
  double atol = 0, rtol = 0;
  unsigned threads = 0;
  PipelineOptions pipe;
};

int run(const DiffCmd& o) {
  Pipeline p = build_pipeline(o.a, o.pipe);
  p.plan.check();
  Checkpoint b = open_checkpoint(o.b, -1);
  DiffOptions d{o.atol, o.rtol, o.threads};
  auto r = diff_trees(p.plan.target, b.root, d);
  warn_missing_chunks(missing_chunks(p.source));
  warn_missing_chunks(missing_chunks(b));
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
  app.add_option("a", o->a, "first checkpoint (mapped through --recipe if given)")->required();
  app.add_option("b", o->b, "second checkpoint")->required();
  app.add_option("--atol", o->atol, "absolute tolerance (default 0: exact)");
  app.add_option("--rtol", o->rtol, "relative tolerance (default 0: exact)");
  app.add_flag("--json", o->json, "machine-readable output");
  app.add_option("--threads", o->threads, "worker threads");
  add_pipeline_options(app, o->pipe);
  return [o] { return run(*o); };
}

}  // namespace ckb::cli
