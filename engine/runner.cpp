// engine::run, engine::target and engine::diff: executing a planned job (engine/api.h).
#include <algorithm>
#include <cstring>
#include <filesystem>

#include "engine/execute.h"
#include "engine/planned.h"
#include "engine/shared_run.h"
#include "io/file.h"
#include "io/output.h"

namespace ckb::engine {
namespace {

namespace fs = std::filesystem;

// Per target tensor, the missing chunks of the sources it was made from.
void count_missing(Planned& p) {
  const auto missing = missing_chunks(p.prepared.source);
  std::map<std::string, std::uint64_t> per_target;
  for (const auto& te : p.plan.targets)
    for (const auto& f : te.from)
      if (auto it = missing.find(f); it != missing.end()) per_target[te.name] += it->second;
  std::uint64_t total = 0;
  std::string list;
  for (const auto& [name, n] : missing) {
    total += n;
    if (list.size() < 300) list += (list.empty() ? "" : ", ") + name + " (" + std::to_string(n) + ")";
  }
  for (auto& t : p.report.tensors)
    if (auto it = per_target.find(t.name); it != per_target.end()) t.missing_chunks = it->second;
  p.report.summary.missing_chunks = total;
  if (total)
    p.report.notes.push_back("warning: " + std::to_string(total) + " missing zarr chunk" + (total == 1 ? "" : "s") +
                             " read as the fill value: " + list + (list.size() >= 300 ? ", ..." : "") +
                             " (--strict-chunks makes this an error)");
}

}  // namespace

// The executor's options for a job run with `opts` (the progress callback outlives the run).
ExecOptions exec_options(const Job& job, const RunOptions& opts) {
  ExecOptions eo;
  eo.threads = job.threads;
  eo.max_memory = job.max_memory;
  eo.stats = job.stats;
  eo.cancel = opts.cancel;
  if (opts.progress)
    eo.on_progress = [&opts](std::uint64_t done, std::uint64_t total, std::size_t tdone, std::size_t ttotal) {
      opts.progress(Progress{done, total, tdone, ttotal});
    };
  return eo;
}

namespace {

// The largest errors of the run so far (casts and roundings together).
void note_error(Summary& sum, const std::string& name, const CastStats& s) {
  sum.max_abs_error = std::max(sum.max_abs_error, s.max_abs_error.load());
  if (s.max_rel_error > sum.max_rel_error) {
    sum.max_rel_error = s.max_rel_error;
    sum.worst = name;
  }
}

}  // namespace

// The run's numbers into the report: per-tensor stats and cast counts, missing chunks, totals.
void record_results(Planned& p, const ExecResult& res) {
  Report& r = p.report;
  const Job& job = p.job;
  for (std::size_t i = 0; i < r.tensors.size() && i < res.stats.size(); ++i)
    if (job.stats && res.stats[i].numeric) {
      const auto& st = res.stats[i];
      r.tensors[i].stats = TensorStatsReport{st.min, st.max, st.mean, st.nan, st.inf};
    }
  for (auto& t : r.tensors) {
    if (!t.cast) continue;
    const auto& s = *p.casts.at(t.name).stats;
    t.cast->elements = s.elements;
    t.cast->inexact = s.inexact;
    t.cast->overflow = s.overflow;
    t.cast->nan = s.nan;
    t.cast->max_abs_error = s.max_abs_error;
    t.cast->max_rel_error = s.max_rel_error;
    r.summary.inexact += s.inexact;
    r.summary.overflow += s.overflow;
    r.summary.nan += s.nan;
    note_error(r.summary, t.name, s);
  }
  // Tensors computed in float64 and rounded once: by the profile before the recipe, or by it.
  r.rounded.clear();
  for (const auto* rounded : {&p.prepared.rounded, &p.plan.rounded})
    for (const auto& [name, s] : *rounded) {
      if (!s->elements) continue;  // not read (a plan-only run)
      const Node* n = find_path(rounded == &p.plan.rounded ? p.plan.target : p.prepared.source.root, name);
      if (!n || !n->is_tensor()) continue;
      r.rounded.push_back({name, n->tensor().info.dtype, s->max_abs_error, s->max_rel_error});
      note_error(r.summary, name, *s);
    }
  r.summary.rounded_tensors = r.rounded.size();
  count_missing(p);
  r.summary.bytes = res.bytes;
  r.summary.seconds = res.seconds;
  r.summary.peak_window_bytes = res.peak_window_bytes;
}

// The files written and the profile's step after the weights (sidecars, checks).
void after_write(Planned& p) {
  Report& r = p.report;
  const OutputTarget& out = *p.output;
  if (out.format->caps.writes_output) r.files.push_back(out.path);
  if (p.profile && !out.format->caps.writes_output) {
    r.notes.push_back("nothing was written: the " + r.profile + " profile's files beside the weights and checks were skipped");
  } else if (p.profile) {
    WrittenOutput w{out.path, out.folder, out.format->name, p.job.output.overwrite, &p.plan.target, std::nullopt};
    if (out.format->caps.steps) w.step = option_int(p.write_options.options, "step");
    AfterWriteResult a = p.profile->after_write(p.prepared, w, r.profile_report);
    for (auto& f : a.files) r.files.push_back(std::move(f));
    for (auto& n : a.notes) r.notes.push_back(std::move(n));
    for (auto& f : a.failures) r.failures.push_back(std::move(f));
  }
}

namespace {

// RunOptions::into: every tensor slot is a buffer of the caller's.
class IntoMemoryWriter final : public Writer {
 public:
  explicit IntoMemoryWriter(const RunOptions::IntoFn& into) : into_(into) {}
  void begin(const Node& layout) override {
    std::string leaves;
    visit_leaves(layout, [&](const Path& p, const Node& n) {
      if (!n.is_tensor() && leaves.size() < 400) leaves += (leaves.empty() ? "" : ", ") + join_path(p) + " (" + std::string(n.type_name()) + ")";
    });
    if (!leaves.empty())
      throw MappingError("memory", "only tensors can be read into memory; drop the other leaves (drop_non_tensors): " + leaves);
    const auto list = tensor_list(layout);
    for (std::size_t i = 0; i < list.size(); ++i) {
      std::byte* b = into_(i, list[i].first, list[i].second->info);
      if (!b && list[i].second->info.nbytes()) throw UsageError(list[i].first + ": no buffer to read into");
      slots_.push_back({b, list[i].second->info.nbytes()});
    }
  }
  void write(std::size_t slot, std::uint64_t offset, std::span<const std::byte> data) override {
    if (slot >= slots_.size() || offset > slots_[slot].second || data.size() > slots_[slot].second - offset)
      throw MappingError("memory", "write outside tensor slot " + std::to_string(slot));
    if (!data.empty()) std::memcpy(slots_[slot].first + offset, data.data(), data.size());
  }
  void commit() override {}

 private:
  const RunOptions::IntoFn& into_;
  std::vector<std::pair<std::byte*, std::uint64_t>> slots_;
};

Report run_into_memory(const std::shared_ptr<Planned>& p, const RunOptions& opts) {
  Report& r = p->report;
  if (opts.on_plan) opts.on_plan(r);
  p->plan.check();
  if (opts.cancel) opts.cancel->throw_if_cancelled();
  Format memory;
  memory.name = "memory";
  memory.caps.writes_output = false;
  memory.bytes_only_dtypes = {std::begin(kBytesOnlyDTypes), std::end(kBytesOnlyDTypes)};
  memory.make_writer = [&opts](const std::string&, const WriteOptions&) -> std::unique_ptr<Writer> {
    return std::make_unique<IntoMemoryWriter>(opts.into);
  };
  ExecResult res = execute(p->plan.target, memory, "memory", p->write_options, exec_options(p->job, opts));
  r.destination = "memory";
  r.destination_format = "memory";
  record_results(*p, res);
  if (p->profile) r.notes.push_back("read into memory: the " + r.profile + " profile's files beside the weights and checks were skipped");
  return r;
}

}  // namespace

Report run(const Job& job, const RunOptions& opts) {
  const CancelScope cancel_scope(opts.cancel);  // remote requests stop waiting once cancelled (core/cancel.h)
  RemoteSnapshotScope snapshot;  // one listing of each remote prefix for the whole call (io/file.h)
  if (opts.into && !job.output.path.empty()) throw UsageError("a run into memory takes no output path");
  if (!opts.into && process_group().size > 1) return run_shared(job, opts);  // engine/shared_run.h
  auto p = make_plan(job);
  Report& r = p->report;
  r.dry_run = false;
  if (opts.into) return run_into_memory(p, opts);
  if (!p->output) throw UsageError("no output path given");
  if (opts.on_plan) opts.on_plan(r);
  p->plan.check();
  if (opts.cancel) opts.cancel->throw_if_cancelled();

  const OutputTarget& out = *p->output;
  prepare_output_folder(out);
  if (out.format->caps.writes_output)
    for (const auto& stale : remove_stale_temporaries(out.path))
      r.notes.push_back("removed stale temporary " + stale + " (process " + std::to_string(temporary_owner(stale)) +
                        " is gone)");
  ExecResult res = execute(p->plan.target, *out.format, out.path, p->write_options, exec_options(job, opts));

  record_results(*p, res);
  after_write(*p);
  return r;
}

Target target(const Job& job, bool allow_problems) {
  RemoteSnapshotScope snapshot;
  Job j = job;
  j.output = {};
  auto p = make_plan(j);
  if (!allow_problems) p->plan.check();
  Target t;
  t.report = p->report;
  t.tree = &p->plan.target;
  t.keep_alive = p;
  return t;
}

DiffReport diff(const Job& a, const std::string& b, const DiffOptions& opts, const SourceOptions& b_opts) {
  RemoteSnapshotScope snapshot;
  Target ta = target(a);
  Checkpoint cb = open(b, b_opts);
  DiffReport d;
  d.result = diff_trees(*ta.tree, cb.root, opts);
  const auto& pa = *std::static_pointer_cast<const Planned>(ta.keep_alive);
  for (const auto& [k, v] : missing_chunks(pa.prepared.source)) d.missing[a.source + ": " + k] += v;
  for (const auto& [k, v] : missing_chunks(cb)) d.missing[b + ": " + k] += v;
  return d;
}

}  // namespace ckb::engine
