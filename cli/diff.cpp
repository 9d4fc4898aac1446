// `ckptbridge diff A B [--recipe R] [--atol X --rtol Y --ulp N] [--ignore-dtype] [--json]`:
// compares two checkpoints in any formats (A optionally mapped through a recipe first). Exit
// status as cmp(1)/diff(1): 0 when every leaf matches, 1 when they differ, 2 for trouble (a
// usage error, bad data, I/O); cli/main.cpp maps diff's usage errors to 2.
#include <cmath>
#include <cstdio>
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
  DiffOptions diff;
  std::int64_t ulp = 0;  // checked, then diff.ulp
  engine::Job job;
  CommonRun c;
  engine::SourceOptions b_src;
};

// An error size with 4 significant digits; small and large ones in scientific notation
// (3.1e-08, 0.0625, 1.235e+07).
std::string number(double v) {
  if (std::isinf(v)) return "inf";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4g", v);
  return buf;
}

int run(DiffCmd& o) {
  if (o.ulp < 0) throw UsageError("--ulp must be a non-negative integer, got " + std::to_string(o.ulp));
  o.diff.ulp = static_cast<std::uint64_t>(o.ulp);
  if (!(o.diff.atol >= 0)) throw UsageError("--atol must be a non-negative number, got " + number(o.diff.atol));
  if (!(o.diff.rtol >= 0)) throw UsageError("--rtol must be a non-negative number, got " + number(o.diff.rtol));
  engine::Job job = o.job;
  finish_job(job, o.c);
  engine::SourceOptions b_src = o.b_src;
  b_src.strict_chunks = job.source_options.strict_chunks;
  const engine::DiffReport d = engine::diff(job, o.b, o.diff, b_src);
  const DiffResult& r = d.result;
  std::uint64_t missing = 0;
  for (const auto& [k, n] : d.missing) missing += n;
  if (missing)
    std::cerr << "warning: " << missing << " missing zarr chunk" << (missing == 1 ? "" : "s")
              << " read as the fill value (--strict-chunks makes this an error)\n";
  if (o.json) {
    std::cout << r.to_json().dump(1) << "\n";
  } else {
    Table t({"leaf", "status", "max abs", "max rel", "max ulp", "mismatches", "detail"});
    std::size_t equal = 0, rows = 0;
    for (const auto& l : r.leaves) {
      if (l.status == "equal" && l.detail.empty()) {
        ++equal;
        continue;
      }
      equal += l.status == "equal";
      const bool num = l.status == "close" || l.status == "different" || l.status == "dtype_mismatch";
      const bool errors = num && (l.max_abs != 0 || l.max_rel != 0);
      ++rows;
      t.add_row({l.name, l.status, errors ? number(l.max_abs) : "", errors ? number(l.max_rel) : "",
                 errors && l.ulp_compared ? std::to_string(l.max_ulp) : "", num ? std::to_string(l.mismatches) : "",
                 l.detail});
    }
    if (rows) t.print(std::cout);
    std::cout << r.leaves.size() << (r.leaves.size() == 1 ? " leaf" : " leaves") << ": " << equal << " equal, " << r.leaves.size() - equal << " not equal; "
              << (r.within_tolerance() ? "within tolerance" : "DIFFERENT") << "\n";
  }
  return r.within_tolerance() ? 0 : 1;
}

}  // namespace

Runner add_diff(CLI::App& app) {
  auto o = std::make_shared<DiffCmd>();
  app.add_option("a", o->job.source, "first checkpoint (mapped through --recipe if given)")->required();
  app.add_option("b", o->b, "second checkpoint")->required();
  app.footer(
      "An element matches when the values are equal (NaN = NaN), |a-b| <= atol + rtol*|b|, or a and b\n"
      "have the same floating-point dtype and are at most --ulp representable values apart. A leaf\n"
      "matches when its shape, dtype (unless --ignore-dtype) and every element match.\n"
      "Exit status (as cmp/diff): 0 every leaf matches, 1 they differ, 2 trouble (usage error, bad data, I/O).");
  app.add_option("--atol", o->diff.atol, "absolute tolerance (default 0: exact)");
  app.add_option("--rtol", o->diff.rtol, "relative tolerance (default 0: exact)");
  app.add_option("--ulp", o->ulp,
                 "ULP tolerance between tensors of one floating-point dtype (default 0: exact); "
                 "not applied when the dtypes differ");
  app.add_flag("--ignore-dtype", o->diff.ignore_dtype,
               "compare values only: tensors of different dtypes with matching values match");
  app.add_flag("--json", o->json, "machine-readable output");
  app.add_option("--threads", o->diff.threads, "worker threads");
  add_source_options(app, o->job.source_options);
  add_mapping_options(app, o->job, o->c);
  return [o] { return run(*o); };
}

}  // namespace ckb::cli
