// Implementation of cli/present.h.
#include "cli/present.h"

#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <iostream>

#include "cli/progress.h"
#include "cli/util.h"

namespace ckb::cli {

void write_report(const std::string& path, const engine::Report& r) {
  if (path == "-") std::cout << r.to_json().dump(1) << "\n" << std::flush;
  else engine::save_report(r, path);
}

void print_note(const std::string& note, bool quiet) {
  if (note.starts_with("warning:")) std::cerr << note << "\n";
  else if (!quiet) std::cerr << "note: " << note << "\n";
}

namespace {
// A run shared by several MPI processes: the slowest rank and the spread.
void print_ranks(const nlohmann::ordered_json& ranks) {
  const auto& per = ranks.at("per_rank");
  const auto& slow = per.at(ranks.at("slowest").get<std::size_t>());
  double fastest = slow.at("seconds").get<double>();
  for (const auto& x : per) fastest = std::min(fastest, x.at("seconds").get<double>());
  std::cerr << per.size() << " ranks: slowest rank " << slow.at("rank").get<int>() << " on "
            << slow.at("host").get<std::string>() << " (" << plural(slow.at("tensors").get<std::size_t>(), "tensor") << ", "
            << human_bytes(slow.at("bytes").get<std::uint64_t>()) << " in " << seconds(slow.at("seconds").get<double>())
            << "; fastest rank " << seconds(fastest) << ")\n";
}

// --json and --report: stdout, the file, or both.
void emit_report(const CommonRun& c, const engine::Report& r) {
  if (c.json || c.report == "-") write_report("-", r);
  if (!c.report.empty() && c.report != "-") write_report(c.report, r);
}
}  // namespace

void print_ledger(std::ostream& out, const engine::Report& r) {
  Table t({"target", "dtype", "shape", "status", "rule", "from / how"});
  for (const auto& [name, e] : r.ledger["targets"].items()) {
    std::string from;
    const auto& f = e.value("from", nlohmann::ordered_json::array());
    for (const auto& x : f) from += (from.empty() ? "" : ", ") + x.get<std::string>();
    if (f.size() > 3) from = f[0].get<std::string>() + ", ... (" + std::to_string(f.size()) + " sources)";
    const std::string how = e.value("how", "");
    if (!how.empty()) from += (from.empty() ? "" : "  [") + how + (from.empty() ? "" : "]");
    const bool tensor = e.value("type", "") == "tensor";
    std::string shape;
    if (tensor && e.contains("shape")) {
      shape = "[";
      for (std::size_t i = 0; i < e["shape"].size(); ++i) shape += (i ? ", " : "") + std::to_string(e["shape"][i].get<std::int64_t>());
      shape += "]";
    }
    t.add_row({name, tensor ? e.value("dtype", "") : e.value("type", ""), shape, e.value("status", ""),
               e.contains("rule") && e["rule"].is_number() ? std::to_string(e["rule"].get<int>()) : "", from});
  }
  t.print(out);
  std::size_t consumed = 0, dropped = 0, unused = 0, sources = 0;
  for (const auto& [name, s] : r.ledger["sources"].items()) {
    ++sources;
    const std::string st = s.value("status", "");
    consumed += st == "consumed";
    unused += st == "unused";
    if (st == "dropped") {
      ++dropped;
      out << "dropped: " << name << " (rule " << s.value("rule", -1) << ": " << s.value("reason", "") << ")\n";
    }
  }
  out << "\n" << sources << (sources == 1 ? " source leaf: " : " source leaves: ")
      << consumed << " consumed, " << dropped << " dropped, " << unused << " unused; "
      << plural(r.ledger["targets"].size(), "target") << "\n";
  if (!r.problems.empty()) {
    out << plural(r.problems.size(), "problem") << ":\n";
    for (const auto& p : r.problems) out << "  " << p << "\n";
  }
}

int run_and_report(const engine::Job& job, const CommonRun& c, const std::string& verb) {
  const bool to_stdout = c.json || c.report == "-";
  if (job.output.path.empty()) throw UsageError("no output given: pass it as the second argument or with -o OUT");
  if (c.dry_run) {
    engine::Report r = engine::plan(job);
    emit_report(c, r);
    if (c.quiet && r.problems.empty())
      for (const auto& n : r.notes) print_note(n, true);
    if (!c.quiet || !r.problems.empty()) {
      std::ostream& out = to_stdout ? std::cerr : std::cout;
      if (!to_stdout) print_ledger(out, r);
      for (const auto& n : r.notes) print_note(n, false);
      for (const auto& [name, rule] : r.dropped_leaves) std::cerr << "would drop (" << rule << "): " << name << "\n";
      std::uint64_t bytes = 0;
      for (const auto& t : r.tensors) bytes += TensorInfo{t.dtype, t.shape}.nbytes();
      std::cerr << "dry run: would write " << plural(r.tensors.size(), "tensor") << " (" << human_bytes(bytes) << ") as "
                << r.destination_format << " to " << r.destination;
      if (r.summary.cast_tensors) std::cerr << ", casting " << plural(r.summary.cast_tensors, "tensor");
      std::cerr << "; nothing was written\n";
    }
    return r.problems.empty() ? 0 : 2;
  }
  engine::RunOptions ro;
  Progress bar(!c.quiet && ::isatty(2) == 1);
  ro.progress = [&bar](const engine::Progress& p) { bar.update(p); };
  std::size_t planned_notes = 0;
  ro.on_plan = [&](const engine::Report& r) {
    planned_notes = r.notes.size();
    for (const auto& n : r.notes) print_note(n, c.quiet);
    if (!c.quiet)
      for (const auto& [name, rule] : r.dropped_leaves) std::cerr << "dropped (" << rule << "): " << name << "\n";
    if (!r.problems.empty()) emit_report(c, r);
  };
  ro.cancel = &cancel_token();
  engine::Report r = engine::run(job, ro);
  bar.done();
  emit_report(c, r);
  // Notes the run added after the plan (missing chunks, after-write steps); warnings always.
  for (std::size_t i = planned_notes; i < r.notes.size(); ++i) {
    print_note(r.notes[i], c.quiet);
  }
  for (const auto& f : r.failures) std::cerr << "error: " << f << "\n";
  if (!c.quiet) {
    std::cerr << verb << " " << plural(r.summary.tensors, "tensor") << " (" << human_bytes(r.summary.bytes) << ") as "
              << r.destination_format << " to " << r.destination << " in " << seconds(r.summary.seconds) << "\n";
    if (r.summary.cast_tensors) {
      double abs = 0, rel = 0;
      for (const auto& t : r.tensors)
        if (t.cast) abs = std::max(abs, t.cast->max_abs_error), rel = std::max(rel, t.cast->max_rel_error);
      std::cerr << "cast " << plural(r.summary.cast_tensors, "tensor") << " to "
                << dtype_name(r.summary.cast_to.value_or(job.dtype.value_or(DType::F32))) << ": " << r.summary.inexact
                << " values rounded (max abs error " << sci(abs) << ", max rel error " << sci(rel) << "), "
                << r.summary.overflow << " overflowed, " << r.summary.nan << " NaN\n";
    }
    if (!r.rounded.empty()) {
      double abs = 0, rel = 0;
      std::string worst;
      for (const auto& x : r.rounded) {
        abs = std::max(abs, x.max_abs_error);
        if (x.max_rel_error > rel || worst.empty()) rel = std::max(rel, x.max_rel_error), worst = x.name;
      }
      std::cerr << "rounded " << plural(r.rounded.size(), "computed tensor") << " once from float64 to "
                << dtype_name(r.rounded.front().to) << ": max abs error " << sci(abs) << ", max rel error "
                << sci(rel) << " (" << worst << ")\n";
    }
    for (std::size_t i = 1; i < r.files.size(); ++i) std::cerr << "wrote " << r.files[i] << "\n";
    if (!r.ranks.is_null()) print_ranks(r.ranks);
  }
  return r.failures.empty() ? 0 : 2;
}

}  // namespace ckb::cli
