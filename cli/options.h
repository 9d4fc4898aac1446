// The option groups of the ckptbridge commands, registered once here so that a name means
// the same on every command that takes it, and generated from the engine's own tables
// (format write options, profile options) so that help, completion and validation agree.
//
//   source   --src-step N, --strict-chunks                       every command that reads
//   mapping  --recipe, --reverse, --expect, --size NAME=N         convert, plan, diff
//   profile  --profile NAME and every profile's options           convert, plan (+ subsets)
//   cast     --dtype bf16|fp16|f32|...|auto                       convert, plan, merge-lora
//   output   DST (positional) or -o/--output, --to, every format's write options (--shard-size,
//            --step, --item, --zarr3, ...), --metadata, --overwrite, --dry-run, --report FILE|-,
//            --json, -q, --threads, --max-memory                 convert, adapt, merge-lora
//   remote   --endpoint, --region, --aws-profile, --token, --remote-parallel   every command
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "engine/api.h"

namespace ckb::cli {

struct CommonRun {
  std::string report;       // --report FILE, or "-" for stdout
  bool json = false;        // --json: the report on stdout
  bool dry_run = false;
  bool quiet = false;
  std::string dtype;        // --dtype as typed
  std::vector<std::string> sizes, metadata;
  std::string max_memory;
  bool stats_with_report = true;  // --report adds per-tensor statistics (convert, adapt)
};

void add_source_options(CLI::App& app, engine::SourceOptions& src);
void add_mapping_options(CLI::App& app, engine::Job& job, CommonRun& c);
// --profile (when `choose`) and the options of `profiles` (all when empty), into job.profile_options.
void add_profile_options(CLI::App& app, engine::Job& job, const std::vector<std::string>& profiles, bool choose);
void add_dtype_option(CLI::App& app, CommonRun& c, const std::string& help);
// DST as the second positional, or -o/--output.
void add_output_options(CLI::App& app, engine::Job& job, CommonRun& c);

// Object storage: --endpoint, --region, --aws-profile, --token, --remote-parallel (every
// command that reads or writes); apply_remote_options() hands them to the engine.
void add_remote_options(CLI::App& app);
void apply_remote_options();

// Turns the typed strings of CommonRun into the job (dtype, sizes, metadata, memory).
void finish_job(engine::Job& job, const CommonRun& c);

}  // namespace ckb::cli
