// Implementation of cli/options.h.
#include "cli/options.h"

#include <map>
#include <set>

namespace ckb::cli {

void add_source_options(CLI::App& app, engine::SourceOptions& src) {
  app.add_option_function<std::int64_t>(
      "--src-step", [&src](const std::int64_t& v) { src.step = v; },
      "the source is an Orbax CheckpointManager root: the step to read (default: latest)");
  app.add_flag("--strict-chunks", src.strict_chunks,
               "zarr (bare or inside Orbax): a missing chunk is an error naming the array and chunk key (default: it "
               "reads as the fill value, as the zarr spec says, and is counted and warned about)");
}

namespace {
engine::RemoteConfig& remote_config() {
  static engine::RemoteConfig c;
  return c;
}
}  // namespace

void add_remote_options(CLI::App& app) {
  auto& c = remote_config();
  app.add_option("--endpoint", c.endpoint,
                 "S3-compatible endpoint for s3:// (and gs:// through HMAC keys), e.g. http://127.0.0.1:9000 "
                 "(default: AWS_ENDPOINT_URL, else AWS)");
  app.add_option("--region", c.region, "S3 region (default: AWS_REGION, AWS_DEFAULT_REGION, the profile's, us-east-1)");
  app.add_option("--aws-profile", c.aws_profile, "the ~/.aws/credentials profile (default: AWS_PROFILE, else 'default')");
  app.add_option("--token", c.token,
                 "Authorization: Bearer token for https:// and gs:// (default: HF_TOKEN / CKB_HTTP_TOKEN, "
                 "GOOGLE_OAUTH_ACCESS_TOKEN); prefer the environment: a flag is visible in ps");
  app.add_option("--remote-parallel", c.parallel_requests, "parallel requests per object store (default: 16)")
      ->check(CLI::Range(1, 256));
}

void apply_remote_options() { engine::configure_remote(remote_config()); }

void add_mapping_options(CLI::App& app, engine::Job& job, CommonRun& c) {
  app.add_option("--recipe", job.recipe, "mapping recipe: a JSON file or a built-in name (default: identity)");
  app.add_flag("--reverse", job.reverse, "apply the recipe's inverse (derived automatically)");
  app.add_option("--expect", job.expect, "a checkpoint whose layout the target must match exactly (names, dtypes, shapes)");
  app.add_option("--size", c.sizes, "axis size for rearrange ops, NAME=N (repeatable)");
}

void add_profile_options(CLI::App& app, engine::Job& job, const std::vector<std::string>& wanted, bool choose) {
  std::string names;
  for (const auto& p : engine::profiles()) names += (names.empty() ? "" : ", ") + p.name;
  if (choose) app.add_option("--profile", job.profile, "model profile: " + names);
  std::map<std::string, std::pair<ProfileOptionSpec, std::string>> opts;  // name -> spec, profiles taking it
  for (const auto& p : engine::profiles()) {
    if (!wanted.empty() && std::find(wanted.begin(), wanted.end(), p.name) == wanted.end()) continue;
    for (const auto& o : p.options) {
      if (o.name == "merged-dtype") continue;  // --dtype sets it (engine: merged weights are rounded once)
      auto [it, fresh] = opts.try_emplace(o.name, o, p.name);
      if (!fresh) it->second.second += ", " + p.name;
    }
  }
  for (const auto& [name, entry] : opts) {
    const auto& [spec, takers] = entry;
    const std::string help = (wanted.size() == 1 ? "" : "(" + takers + ") ") + spec.help;
    auto& po = job.profile_options;
    if (spec.flag) {
      app.add_flag_callback("--" + name, [&po, name] { po[name] = "1"; }, help);
    } else if (spec.repeated) {  // one value per occurrence, all kept, joined by '\n' (profiles/profile.h)
      app.add_option_function<std::vector<std::string>>(
             "--" + name,
             [&po, name](const std::vector<std::string>& vs) {
               std::string joined;
               for (const auto& v : vs) joined += (joined.empty() ? "" : "\n") + v;
               po[name] = joined;
             },
             help + " (repeatable)")
          ->expected(1)
          ->allow_extra_args(false)  // `--adapter A OUT`: OUT stays the positional output
          ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
    } else {
      auto* opt = app.add_option_function<std::string>("--" + name, [&po, name](const std::string& v) { po[name] = v; }, help);
      if (!spec.choices.empty()) opt->check(CLI::IsMember(spec.choices));
    }
  }
}

void add_dtype_option(CLI::App& app, CommonRun& c, const std::string& help) {
  app.add_option("--dtype", c.dtype, help);
}

void add_output_options(CLI::App& app, engine::Job& job, CommonRun& c) {
  auto& out = job.output;
  app.add_option("dst", out.path, "output: a file, or a folder (existing, or ending in '/') to write the natural file into");
  app.add_option("-o,--output", out.path, "the output (instead of the second argument)");
  std::string fmts;
  for (const auto& f : engine::formats()) {
    if (!f.make_writer) continue;
    fmts += (fmts.empty() ? "" : ", ") + f.name;
    for (const auto& a : f.aliases) fmts += "/" + a;
  }
  app.add_option("--to", out.format,
                 "output format: " + fmts + " (discard reads and transforms every byte and writes nothing; default: from "
                 "the output's extension, safetensors into a folder)");
  // Every format's write options, once each, with the formats that take them.
  std::map<std::string, std::pair<OptionSpec, std::string>> opts;
  for (const auto& f : engine::formats())
    for (const auto& o : f.write_options) {
      auto [it, fresh] = opts.try_emplace(o.name, o, f.name);
      if (!fresh) it->second.second += ", " + f.name;
    }
  for (const auto& [name, entry] : opts) {
    const auto& [spec, takers] = entry;
    const std::string help = takers + ": " + spec.help;
    auto& values = out.options;
    if (spec.kind == OptionSpec::Kind::Flag) {
      app.add_flag_callback("--" + name, [&values, name] { values[name] = "1"; }, help);
    } else {
      auto* o = app.add_option_function<std::string>("--" + name, [&values, name](const std::string& v) { values[name] = v; }, help);
      if (spec.kind == OptionSpec::Kind::Choice) o->check(CLI::IsMember(spec.choices));
    }
  }
  app.add_option("--metadata", c.metadata, "safetensors __metadata__ entry KEY=VALUE (repeatable)");
  app.add_flag("--overwrite", out.overwrite,
               "replace the output if it exists (a folder only when it holds a checkpoint of the format being written)");
  app.add_flag("--dry-run", c.dry_run, "plan and print what would be written; read no tensor data, write nothing");
  app.add_option("--report", c.report, "write a JSON report of every tensor and rule applied to FILE ('-': stdout)");
  app.add_flag("--json", c.json, "print the JSON report on stdout (same as --report -)");
  app.add_flag("-q,--quiet", c.quiet, "no summary or progress on stderr");
  app.add_option("--threads", job.threads, "worker threads (default: all cores)");
  app.add_option("--max-memory", c.max_memory,
                 "memory window for in-flight tensor data, on top of the largest tensor's own need (default 1GiB)");
  app.add_flag("--stats", job.stats, "per-tensor min/max/mean/NaN/inf in the report");
}

void finish_job(engine::Job& job, const CommonRun& c) {
  if (!c.dtype.empty()) job.dtype = engine::parse_float_dtype(c.dtype);
  for (const auto& kv : c.sizes) {
    auto eq = kv.find('=');
    if (eq == std::string::npos) throw UsageError("--size expects NAME=N, got '" + kv + "'");
    job.sizes[kv.substr(0, eq)] = parse_integer(kv.substr(eq + 1), "--size " + kv.substr(0, eq));
  }
  for (const auto& kv : c.metadata) {
    auto eq = kv.find('=');
    if (eq == std::string::npos) throw UsageError("--metadata expects KEY=VALUE, got '" + kv + "'");
    job.output.metadata[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  if (!c.max_memory.empty()) job.max_memory = parse_byte_size(c.max_memory, "--max-memory");
  if (c.stats_with_report && (!c.report.empty() || c.json)) job.stats = true;
}

}  // namespace ckb::cli
