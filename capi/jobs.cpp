// Jobs through the C ABI: the job JSON -> engine::Job, run/plan, target trees, diff, and the
// format and profile tables (capi/ckptbridge.h).
#include "capi/handles.h"

using namespace ckb;
using namespace ckb::capi;
using json = nlohmann::ordered_json;

namespace {

std::string text_of(const json& v, const std::string& key) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_array()) {  // a repeated option: the values joined by '\n' (profiles/profile.h)
    std::string joined;
    for (std::size_t i = 0; i < v.size(); ++i) joined += (i ? "\n" : "") + text_of(v[i], key + "[" + std::to_string(i) + "]");
    return joined;
  }
  if (v.is_boolean()) return v.get<bool>() ? "1" : "0";
  if (v.is_number_integer()) return std::to_string(v.get<std::int64_t>());
  if (v.is_number()) return v.dump();
  throw UsageError(key + ": expected a string or a number, got " + std::string(v.type_name()));
}

std::map<std::string, std::string> text_map(const json& v, const std::string& key) {
  if (!v.is_object()) throw UsageError(key + ": expected an object");
  std::map<std::string, std::string> out;
  for (const auto& [k, x] : v.items()) out[k] = text_of(x, key + "." + k);
  return out;
}

template <class T>
T get(const json& v, const std::string& key) {
  try {
    return v.get<T>();
  } catch (const json::exception&) {
    throw UsageError("job." + key + ": wrong type (" + std::string(v.type_name()) + ")");
  }
}

engine::Job parse_job(const char* job_json, ckb_tree* const* memory, const char* const* names, size_t n) {
  if (!job_json) throw UsageError("null job");
  json j;
  try {
    j = json::parse(job_json);
  } catch (const json::exception& e) {
    throw UsageError(std::string("job JSON: ") + e.what());
  }
  if (!j.is_object()) throw UsageError("job JSON: expected an object");
  engine::Job job;
  for (const auto& [k, v] : j.items()) {
    if (v.is_null()) continue;
    if (k == "source") job.source = get<std::string>(v, k);
    else if (k == "src_step") job.source_options.step = get<std::int64_t>(v, k);
    else if (k == "strict_chunks") job.source_options.strict_chunks = get<bool>(v, k);
    else if (k == "recipe") job.recipe = get<std::string>(v, k);
    else if (k == "reverse") job.reverse = get<bool>(v, k);
    else if (k == "profile") job.profile = get<std::string>(v, k);
    else if (k == "profile_options") job.profile_options = text_map(v, k);
    else if (k == "expect") job.expect = get<std::string>(v, k);
    else if (k == "sizes") job.sizes = get<std::map<std::string, std::int64_t>>(v, k);
    else if (k == "dtype") job.dtype = engine::parse_float_dtype(get<std::string>(v, k));
    else if (k == "drop_non_tensors") job.drop_non_tensors = get<bool>(v, k);
    else if (k == "threads") job.threads = get<unsigned>(v, k);
    else if (k == "max_memory") job.max_memory = v.is_string() ? parse_byte_size(v.get<std::string>(), "max_memory") : get<std::uint64_t>(v, k);
    else if (k == "stats") job.stats = get<bool>(v, k);
    else if (k == "output") {
      if (!v.is_object()) throw UsageError("job.output: expected an object");
      for (const auto& [ok, ov] : v.items()) {
        if (ov.is_null()) continue;
        if (ok == "path") job.output.path = get<std::string>(ov, "output.path");
        else if (ok == "format") job.output.format = get<std::string>(ov, "output.format");
        else if (ok == "options") job.output.options = text_map(ov, "output.options");
        else if (ok == "metadata") job.output.metadata = text_map(ov, "output.metadata");
        else if (ok == "overwrite") job.output.overwrite = get<bool>(ov, "output.overwrite");
        else throw UsageError("job.output: unknown key '" + ok + "' (path, format, options, metadata, overwrite)");
      }
    } else {
      throw UsageError("job: unknown key '" + k + "'");
    }
  }
  for (size_t i = 0; i < n; ++i) {
    if (!memory || !names || !memory[i] || !names[i]) throw UsageError("null in-memory tree");
    const ckb_tree& t = tree_ref(memory[i]);
    auto ck = std::make_shared<Checkpoint>();
    ck->format = t.format;
    ck->path = names[i];
    ck->root = *t.root;
    ck->metadata = t.metadata;
    job.in_memory[names[i]] = std::move(ck);
  }
  return job;
}

// Progress reported to the C callback, cancellation through the caller's token.
engine::RunOptions run_options(ckb_progress_fn progress, void* user, ckb_cancel* cancel) {
  engine::RunOptions ro;
  if (progress)
    ro.progress = [progress, user](const engine::Progress& p) {
      progress(user, p.bytes_done, p.bytes_total, p.tensors_done, p.tensors_total);
    };
  if (cancel) ro.cancel = &cancel->token;
  return ro;
}

json format_json(const Format& f) {
  json o = json::array();
  for (const auto& s : f.write_options) {
    static const char* kinds[] = {"flag", "int", "size", "choice", "text"};
    o.push_back({{"name", s.name}, {"kind", kinds[static_cast<int>(s.kind)]}, {"choices", s.choices}, {"help", s.help}});
  }
  return {{"name", f.name},
          {"aliases", f.aliases},
          {"extensions", f.extensions},
          {"description", f.description},
          {"writes", static_cast<bool>(f.make_writer)},
          {"caps",
           {{"writes_output", f.caps.writes_output},
            {"non_tensor_leaves", f.caps.non_tensor_leaves},
            {"directory_output", f.caps.directory_output},
            {"string_metadata", f.caps.string_metadata},
            {"steps", f.caps.steps}}},
          {"write_options", o}};
}

}  // namespace

extern "C" {

int ckb_run(const char* job_json, ckb_tree* const* memory, const char* const* memory_names, size_t n_memory, int dry_run,
            ckb_progress_fn progress, void* user, ckb_cancel* cancel, char** report_json) {
  return guarded([&] {
    if (!report_json) throw UsageError("ckb_run: null report pointer");
    const engine::Job job = parse_job(job_json, memory, memory_names, n_memory);
    engine::Report r;
    if (dry_run) {
      r = engine::plan(job);
    } else {
      r = engine::run(job, run_options(progress, user, cancel));
    }
    *report_json = dup_string(r.to_json().dump(-1, ' ', false, json::error_handler_t::replace));
  });
}

int ckb_run_into(const char* job_json, ckb_tree* const* memory, const char* const* memory_names, size_t n_memory,
                 ckb_into_fn into, void* into_user, ckb_progress_fn progress, void* user, ckb_cancel* cancel,
                 char** report_json) {
  return guarded([&] {
    if (!report_json || !into) throw UsageError("ckb_run_into: null argument");
    const engine::Job job = parse_job(job_json, memory, memory_names, n_memory);
    engine::RunOptions ro = run_options(progress, user, cancel);
    ro.into = [into, into_user](std::size_t i, const std::string& name, const TensorInfo& info) {
      return static_cast<std::byte*>(into(into_user, i, name.c_str(), std::string(dtype_name(info.dtype)).c_str(),
                                          info.shape.size(), info.shape.data(), info.nbytes()));
    };
    const engine::Report r = engine::run(job, ro);
    *report_json = dup_string(r.to_json().dump(-1, ' ', false, json::error_handler_t::replace));
  });
}

int ckb_target(const char* job_json, ckb_tree* const* memory, const char* const* memory_names, size_t n_memory,
               int allow_problems, ckb_tree** out) {
  return guarded([&] {
    if (!out) throw UsageError("ckb_target: null argument");
    const engine::Job job = parse_job(job_json, memory, memory_names, n_memory);
    engine::Target tg = engine::target(job, allow_problems != 0);
    auto t = std::make_unique<ckb_tree>();
    t->keep_alive = tg.keep_alive;
    t->root = tg.tree;
    t->format = tg.report.source_format;
    t->path = tg.report.source;
    t->report = tg.report.to_json();
    t->index();
    *out = t.release();
  });
}

int ckb_diff(const char* job_json, const char* b, const char* options_json, char** result_json) {
  return guarded([&] {
    if (!b || !result_json) throw UsageError("ckb_diff: null argument");
    const engine::Job job = parse_job(job_json, nullptr, nullptr, 0);
    DiffOptions o;
    engine::SourceOptions bo;
    const json given = options_json && *options_json ? json::parse(options_json) : json::object();
    for (const auto& [k, v] : given.items()) {
        if (v.is_null()) continue;
        if (k == "ulp") o.ulp = get<std::uint64_t>(v, k);
        else if (k == "abs") o.atol = get<double>(v, k);
        else if (k == "rel") o.rtol = get<double>(v, k);
        else if (k == "ignore_dtype") o.ignore_dtype = get<bool>(v, k);
        else if (k == "threads") o.threads = get<unsigned>(v, k);
        else if (k == "b_step") bo.step = get<std::int64_t>(v, k);
        else throw UsageError("diff: unknown option '" + k + "' (ulp, abs, rel, ignore_dtype, threads, b_step)");
      }
    const engine::DiffReport d = engine::diff(job, b, o, bo);
    json j = d.result.to_json();
    j["missing_chunks"] = d.missing;
    *result_json = dup_string(j.dump(-1, ' ', false, json::error_handler_t::replace));
  });
}

int ckb_formats(char** json_out) {
  return guarded([&] {
    if (!json_out) throw UsageError("ckb_formats: null argument");
    json j = json::array();
    for (const auto& f : engine::formats()) j.push_back(format_json(f));
    *json_out = dup_string(j.dump());
  });
}

int ckb_profiles(char** json_out) {
  return guarded([&] {
    if (!json_out) throw UsageError("ckb_profiles: null argument");
    json j = json::array();
    for (const auto& p : engine::profiles()) {
      json o = json::array();
      for (const auto& s : p.options)
        o.push_back({{"name", s.name}, {"help", s.help}, {"flag", s.flag}, {"required", s.required}, {"choices", s.choices}, {"path", s.is_path}, {"repeated", s.repeated}});
      j.push_back({{"name", p.name}, {"description", p.description}, {"options", o}, {"recipe", p.recipe},
                   {"merges_lora_of", p.merges_lora_of}, {"default_lora_merge", p.default_lora_merge}});
    }
    *json_out = dup_string(j.dump());
  });
}

int ckb_lora_merge_profile(const char* family, int has_adapter, char** name_json) {
  return guarded([&] {
    if (!name_json) throw UsageError("ckb_lora_merge_profile: null argument");
    *name_json = dup_string(json(engine::lora_merge_profile(family ? family : "", has_adapter != 0)).dump());
  });
}

}  // extern "C"
