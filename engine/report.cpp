// engine::Report::to_json: the JSON report every writing command can save (`--report`).
#include "engine/api.h"
#include "io/file.h"
#include "io/output.h"

namespace ckb::engine {

nlohmann::ordered_json Report::to_json() const {
  using ojson = nlohmann::ordered_json;
  ojson j;
  if (dry_run) j["dry_run"] = true;
  j["source"] = {{"path", source}, {"format", source_format}};
  if (!destination.empty()) j["destination"] = {{"path", destination}, {"format", destination_format}};
  if (!profile.empty()) j["profile"] = profile;
  ojson profile_summary;
  for (const auto& [k, v] : profile_report.items()) {
    if (k == "summary") profile_summary = v;
    else j[k] = v;
  }
  j["ledger"] = ledger;
  if (!problems.empty()) j["problems"] = problems;
  j["dropped_leaves"] = ojson::array();
  for (const auto& [name, rule] : dropped_leaves) j["dropped_leaves"].push_back({{"name", name}, {"rule", rule}});
  j["tensors"] = ojson::object();
  for (const auto& t : tensors) {
    ojson e = {{"dtype", std::string(dtype_name(t.dtype))}, {"shape", t.shape}};
    if (t.stats)
      e["stats"] = {{"min", t.stats->min}, {"max", t.stats->max}, {"mean", t.stats->mean}, {"nan", t.stats->nan},
                    {"inf", t.stats->inf}};
    if (t.cast)
      e["cast"] = {{"from", std::string(dtype_name(t.cast->from))}, {"elements", t.cast->elements},
                   {"inexact", t.cast->inexact}, {"overflow", t.cast->overflow}, {"nan", t.cast->nan},
                   {"max_abs_error", t.cast->max_abs_error}, {"max_rel_error", t.cast->max_rel_error}};
    e["missing_chunks"] = t.missing_chunks;
    j["tensors"][t.name] = e;
  }
  if (!rounded.empty()) {
    j["rounded"] = ojson::object();
    for (const auto& x : rounded)
      j["rounded"][x.name] = {{"from", "F64"}, {"to", std::string(dtype_name(x.to))}, {"max_abs_error", x.max_abs_error},
                              {"max_rel_error", x.max_rel_error}};
  }
  j["notes"] = notes;
  if (!files.empty()) j["files"] = files;
  if (!failures.empty()) j["failures"] = failures;
  j["summary"] = {{"tensors", summary.tensors}, {"bytes", summary.bytes}, {"seconds", summary.seconds},
                  {"peak_window_bytes", summary.peak_window_bytes}, {"missing_chunks", summary.missing_chunks},
                  {"cast_tensors", summary.cast_tensors}, {"inexact", summary.inexact},
                  {"overflow", summary.overflow}, {"nan", summary.nan}, {"rounded_tensors", summary.rounded_tensors},
                  {"max_abs_error", summary.max_abs_error}, {"max_rel_error", summary.max_rel_error}};
  if (summary.cast_to) j["summary"]["cast_to"] = std::string(dtype_name(*summary.cast_to));
  if (!summary.worst.empty()) j["summary"]["worst_rel_error"] = summary.worst;
  for (const auto& [k, v] : profile_summary.items()) j["summary"][k] = v;
  if (!ranks.is_null()) j["ranks"] = ranks;
  return j;
}

void save_report(const Report& r, const std::string& path) {
  if (process_group().rank > 0) return;  // rank 0 holds the whole report of a shared run
  for (const auto* other : {&r.source, &r.destination})
    if (!other->empty() && (*other == path || same_file(*other, path)))
      throw UsageError("refusing to write the report over " + path + " (it is the job's " +
                       (other == &r.source ? "source" : "output") + ")");
  AtomicFile f(path);
  f.pwrite(0, r.to_json().dump(1) + "\n");
  f.commit();
}

}  // namespace ckb::engine
