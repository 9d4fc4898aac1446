// A planned job (internal to engine/): everything plan() resolved, kept so that run(),
// target() and diff() execute exactly what was planned.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "engine/api.h"
#include "engine/execute.h"
#include "engine/output_target.h"
#include "ops/cast.h"
#include "profiles/profile.h"
#include "recipe/plan.h"

namespace ckb::engine {

struct CastEntry {
  DType from;
  std::shared_ptr<CastStats> stats;
};

struct Planned {
  Job job;
  Report report;
  const Profile* profile = nullptr;
  Prepared prepared;                        // prepared.source is what the plan reads
  Plan plan;
  std::map<std::string, CastEntry> casts;   // by target tensor name
  std::optional<OutputTarget> output;       // none for plan-only jobs without an output
  WriteOptions write_options;
};

// Opens the source, runs the profile, resolves the recipe and the plan, applies drops and
// casts, resolves and checks the output. Usage errors throw; plan problems are recorded.
std::shared_ptr<Planned> make_plan(const Job& job);

// The report's tensors (names, dtypes, shapes, casts) from the planned target tree.
void describe_tensors(Planned& p);

// Steps of run() (engine/runner.cpp) that a shared run (engine/shared_run.cpp) takes too: the
// executor's options, the executed numbers into the report, the files and the profile's step
// after the weights.
ExecOptions exec_options(const Job& job, const RunOptions& opts);
void record_results(Planned& p, const ExecResult& res);
void after_write(Planned& p);

}  // namespace ckb::engine
