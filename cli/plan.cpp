// `ckptbridge plan SRC [--recipe R] [--reverse] [--expect X] [--json]`: resolves the plan and
// prints the ledger without reading any tensor data. Exit 2 when the plan has problems.
#include <iostream>

#include "cli/commands.h"
#include "cli/pipeline.h"
#include "cli/util.h"

namespace ckb::cli {
namespace {

struct PlanCmd {
  std::string src;
  bool json = false;
  PipelineOptions pipe;
};

int run(const PlanCmd& o) {
  Pipeline p = build_pipeline(o.src, o.pipe);
  if (o.json) {
    std::cout << p.plan.ledger_json().dump(1) << "\n";
    return p.plan.ok() ? 0 : 2;
  }
  Table t({"target", "dtype", "shape", "status", "rule", "from / how"});
  for (const auto& e : p.plan.targets) {
    std::string from;
    for (const auto& f : e.from) from += (from.empty() ? "" : ", ") + f;
    if (e.from.size() > 3) from = e.from[0] + ", ... (" + std::to_string(e.from.size()) + " sources)";
    if (!e.how.empty()) from += (from.empty() ? "" : "  [") + e.how + (from.empty() ? "" : "]");
    t.add_row({e.name, e.type == "tensor" ? std::string(dtype_name(e.info.dtype)) : e.type,
               e.type == "tensor" ? shape_str(e.info.shape) : "", e.status, e.rule >= 0 ? std::to_string(e.rule) : "", from});
  }
  t.print(std::cout);
  std::size_t consumed = 0, dropped = 0, unused = 0;
  for (const auto& s : p.plan.sources) {
    consumed += s.status == "consumed";
    unused += s.status == "unused";
    if (s.status == "dropped") {
      ++dropped;
      std::cout << "dropped: " << s.name << " (rule " << s.rule << ": " << s.reason << ")\n";
    }
  }
  std::cout << "\n" << p.plan.sources.size() << " source leaves: " << consumed << " consumed, " << dropped << " dropped, "
            << unused << " unused; " << p.plan.targets.size() << " targets\n";
  if (!p.plan.ok()) {
    std::cout << p.plan.problems.size() << " problem(s):\n";
    for (const auto& pr : p.plan.problems) std::cout << "  " << pr << "\n";
    return 2;
  }
  return 0;
}

}  // namespace

Runner add_plan(CLI::App& app) {
  auto o = std::make_shared<PlanCmd>();
  app.add_option("src", o->src, "input checkpoint")->required();
  app.add_flag("--json", o->json, "print the ledger as JSON");
  add_pipeline_options(app, o->pipe);
  return [o] { return run(*o); };
}

}  // namespace ckb::cli
