// The one public API of ckptbridge: every interface (the CLI, the Python package, tests)
// opens checkpoints, plans and runs jobs through this header and nothing below it.
//
//   Checkpoint ck = engine::open("model.safetensors");            // lazy: metadata only
//   engine::Job job{.source = "ckpt/", .output = {.path = "out/"}};
//   job.recipe = "openpi";                                         // or job.profile = "peft", ...
//   engine::Report plan = engine::plan(job);                       // metadata only, writes nothing
//   engine::Report done = engine::run(job, {.progress = cb, .cancel = &token});
//   std::string json = done.to_json().dump(1);
//
// Contract:
//  - No output on stdout/stderr, no exit codes: failures are typed exceptions (core/errors.h)
//    naming the path or tensors; notes and warnings go into the Report.
//  - The output guards live here, once, for every job: the output may not be an input;
//    an existing output is replaced only with `overwrite` and only when it is a checkpoint of
//    the kind being written (a folder holding anything else is refused, never emptied); a
//    missing parent folder is created; an output that names a folder (existing, or ending
//    in '/') receives the format's natural file name inside it; a profile may make a path
//    without an extension name a folder (Profile::resolve: PEFT's model folders).
//  - A job is planned from metadata alone; run() streams it (bounded memory, all cores) and
//    publishes the output atomically after every byte is written; a cancelled or failed run
//    leaves the previous output (or none) and no temporaries.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/cancel.h"
#include "core/dtype.h"
#include "core/errors.h"
#include "core/region.h"
#include "core/tree.h"
#include "core/units.h"
#include "engine/signals.h"
#include "formats/format.h"
#include "profiles/profile.h"
#include "recipe/diff.h"

namespace ckb::engine {

// ---- names users type ----------------------------------------------------------------

// A floating-point dtype by any of its usual names: bf16, bfloat16, BF16, fp16, f16, float16,
// half, f32, fp32, float32, float, f64, fp64, float64, double, f8_e4m3, float8_e4m3fn, ...
// "auto" or "" -> nullopt (keep). UsageError naming the text otherwise.
std::optional<DType> parse_float_dtype(const std::string& name);

// Converts `n` elements from dtype `from` to `to` (round to nearest even; ops/cast.h), e.g.
// BF16 -> F32 for a caller without a bfloat16 type. Read parts of tensors with read_region
// and read_parallel (core/region.h).
void convert(DType from, DType to, const void* src, void* dst, std::uint64_t n);

// ---- sources ------------------------------------------------------------------------

struct SourceOptions {
  std::optional<std::int64_t> step;  // Orbax CheckpointManager root: the step (default latest)
  bool strict_chunks = false;        // zarr: a missing chunk is an error, not the fill value
};

// Detects the format and reads metadata (tensor bytes stay on disk until read).
Checkpoint open(const std::string& path, const SourceOptions& opts = {});

// Missing zarr chunks read as the fill value so far, per source tensor with any.
std::map<std::string, std::uint64_t> missing_chunks(const Checkpoint& ck);

// The registered formats (name, aliases, capabilities, write options: for help texts,
// shell completion and Python keyword arguments).
const std::vector<Format>& formats();

// ---- profiles -----------------------------------------------------------------------

// The registered profiles (profiles/profile.h): name, description, options, the built-in
// recipe each serves.
std::vector<ProfileInfo> profiles();
// The LoRA-merging profile for a runtime family ("openpi", "peft"; "" = the one that takes
// `adapter` when `has_adapter`, else the default family). UsageError listing the families.
std::string lora_merge_profile(const std::string& family, bool has_adapter);

// ---- processes ----------------------------------------------------------------------

// This process's place in an MPI launch (`mpirun -np N ckptbridge ...`): run() then writes
// only this rank's share and rank 0 publishes the output and holds the whole report; rank 0
// of 1 when not launched by MPI (engine/cluster.h, engine/shared_run.h).
struct ProcessGroup {
  int rank = 0, size = 1;
};
ProcessGroup process_group();

// ---- jobs ---------------------------------------------------------------------------

struct OutputSpec {
  std::string path;                               // file, or folder (existing or ending in '/')
  std::string format;                             // name or alias; "" = from the path's extension
  OptionValues options;                           // the format's write options (validated)
  std::map<std::string, std::string> metadata;    // string_metadata formats (safetensors)
  bool overwrite = false;
};

struct Job {
  std::string source;
  SourceOptions source_options;
  // Checkpoints already in memory, by name: `source`, `expect` and a profile's path option
  // (`like`) that equal a key are taken from here instead of being opened (a Python dict of
  // arrays, an abstract target tree whose tensors have no bytes). Names here are never
  // treated as files (output guards, reports).
  std::map<std::string, std::shared_ptr<const Checkpoint>> in_memory;

  // The mapping: a recipe (JSON file or built-in name; "" = identity), optionally inverted,
  // or a profile with its options. A built-in recipe may bring its profile ("openpi").
  std::string recipe;
  bool reverse = false;
  std::string profile;
  std::map<std::string, std::string> profile_options;
  std::string expect;                              // checkpoint whose layout the target must match
  std::map<std::string, std::int64_t> sizes;       // axis sizes for rearrange rules

  std::optional<DType> dtype;                      // cast floating-point tensors (RNE, counted)
  bool drop_non_tensors = false;                   // drop (and report) non-tensor leaves

  OutputSpec output;
  unsigned threads = 0;                            // 0 = all cores
  std::uint64_t max_memory = 0;                    // window for in-flight data (0 = 1 GiB)
  bool stats = false;                              // per-tensor min/max/mean/NaN/inf in the report
};

// ---- reports ------------------------------------------------------------------------

struct TensorStatsReport {
  double min = 0, max = 0, mean = 0;
  std::uint64_t nan = 0, inf = 0;
};
struct CastReport {
  DType from;
  std::uint64_t elements = 0, inexact = 0, overflow = 0, nan = 0;
  double max_abs_error = 0, max_rel_error = 0;  // |out - in| and |out - in| / |in|, finite values
};
// A tensor computed in float64 (a LoRA merge) and rounded once to `to`: the rounding's largest
// errors against the float64 values. `name` is the tensor as computed (a source tensor when a
// profile merged before the recipe, else a target).
struct RoundingReport {
  std::string name;
  DType to;
  double max_abs_error = 0, max_rel_error = 0;
};
struct TensorReport {
  std::string name;
  DType dtype;
  Shape shape;
  std::optional<TensorStatsReport> stats;
  std::optional<CastReport> cast;
  std::uint64_t missing_chunks = 0;
};
struct Summary {
  std::size_t tensors = 0;
  std::uint64_t bytes = 0;
  double seconds = 0;
  std::uint64_t peak_window_bytes = 0;
  std::uint64_t missing_chunks = 0;
  std::size_t cast_tensors = 0;
  std::optional<DType> cast_to;                // the dtype of the casts (--dtype, or the profile's default)
  std::uint64_t inexact = 0, overflow = 0, nan = 0;
  std::size_t rounded_tensors = 0;
  // The written values' largest error against what they were cast or rounded from (casts and
  // roundings together); `worst` names the tensor with the largest relative error.
  double max_abs_error = 0, max_rel_error = 0;
  std::string worst;
};

struct Report {
  bool dry_run = false;                        // plan(): nothing was read or written
  std::string source, source_format;
  std::string destination, destination_format; // destination: the resolved output path
  std::string profile;                         // "" when none
  std::string recipe;                          // the recipe's name
  nlohmann::ordered_json ledger;               // recipe/plan.h's ledger (sources, targets, problems)
  std::vector<std::string> problems;           // non-empty: the plan cannot run (run() throws)
  std::vector<std::pair<std::string, std::string>> dropped_leaves;  // name, rule
  std::vector<TensorReport> tensors;           // every written tensor, in write order
  std::vector<RoundingReport> rounded;         // tensors computed in float64 and rounded once
  std::vector<std::string> notes;              // decisions and warnings worth telling the user
  std::vector<std::string> files;              // files and folders written (weights, sidecars)
  std::vector<std::string> failures;           // checks after writing that failed (verify): exit non-zero
  nlohmann::ordered_json profile_report;       // the profile's own section (merged modules, layout, ...)
  nlohmann::ordered_json ranks;                // runs of several MPI processes: per rank, the slowest (null otherwise)
  Summary summary;
  nlohmann::ordered_json to_json() const;
};

// Writes the JSON report to `path` atomically; UsageError when `path` is the job's source or
// destination (a report never replaces a checkpoint).
void save_report(const Report& r, const std::string& path);

struct Progress {
  std::uint64_t bytes_done = 0, bytes_total = 0;
  std::size_t tensors_done = 0, tensors_total = 0;
};

struct RunOptions {
  std::function<void(const Progress&)> progress;  // called from worker threads, a few times a second
  // Checked between chunks, and by remote requests while they wait (mid-transfer, in a
  // retry's backoff); throws Cancelled.
  const CancelToken* cancel = nullptr;
  std::function<void(const Report&)> on_plan;     // the plan, before anything is written
  // Into memory instead of a file (the job has no output path): called once per target
  // tensor, in tree order, before any byte is read, with its index, name and info; returns
  // where its info.nbytes() bytes go (a torch tensor's storage, a NumPy array). The run then
  // fills those buffers in bounded memory on all cores. Non-tensor leaves must be dropped
  // (Job::drop_non_tensors) or the run fails naming them; a profile's files beside the
  // output and its checks are skipped (noted in the report).
  using IntoFn = std::function<std::byte*(std::size_t index, const std::string& name, const TensorInfo& info)>;
  IntoFn into;
};

// Resolves the job against the source's metadata: the target tree, the ledger, the casts,
// the output path. Reads no tensor data and writes nothing. A plan with problems is
// returned (report.problems), not thrown, so that callers can show it; usage errors throw.
Report plan(const Job& job);

// plan() + stream every tensor into the output + the profile's after-write step. Throws
// MappingError listing the problems when the plan has any (nothing written).
Report run(const Job& job, const RunOptions& opts = {});

// The job's target tree, lazily (tensors are read when their sources are read): for
// comparing a mapped checkpoint (diff) or reading it from Python. Throws MappingError when
// the plan has problems, unless `allow_problems` (then the tree holds what the plan could
// map and report.problems lists the rest). The tree stays valid while the Target lives.
struct Target {
  Report report;
  const Node* tree = nullptr;
  std::shared_ptr<const void> keep_alive;
};
Target target(const Job& job, bool allow_problems = false);

// Compares the job's target tree (the source mapped through its recipe or profile) with
// checkpoint `b` (recipe/diff.h). Missing zarr chunks of either side are counted in
// `missing`.
struct DiffReport {
  DiffResult result;
  std::map<std::string, std::uint64_t> missing;
};
DiffReport diff(const Job& a, const std::string& b, const DiffOptions& opts, const SourceOptions& b_opts = {});

// What `inspect` shows: the checkpoint, each tensor's sha256 when asked (C-order
// little-endian bytes, the fixtures' manifest definition), a Flax layout when the tree has one.
struct InspectOptions {
  bool hash = false;
  unsigned threads = 0;
};
struct Inspection {
  std::shared_ptr<const Checkpoint> checkpoint;
  std::vector<std::pair<std::string, const Tensor*>> tensors;
  std::vector<std::pair<std::string, const Node*>> leaves;  // the non-tensor leaves, in tree order
  std::vector<std::string> sha256;                  // with InspectOptions::hash, per tensor
  std::map<std::string, std::uint64_t> missing_chunks;
  std::string flax_layout;                          // "" when none: a one-line description
  nlohmann::ordered_json flax_layout_json;
};
Inspection inspect(const std::string& path, const SourceOptions& src = {}, const InspectOptions& opts = {});

// Object storage. Every path above may be an s3://, gs:// or http(s):// URL (http(s) read
// only). How to reach the stores comes from the environment (AWS_ENDPOINT_URL, AWS_REGION,
// AWS_PROFILE, AWS_ACCESS_KEY_ID/..., ~/.aws/credentials, HF_TOKEN, GOOGLE_OAUTH_ACCESS_TOKEN,
// ...; README "Remote storage"); a non-empty field here overrides it for this process.
struct RemoteConfig {
  std::string endpoint;       // S3-compatible endpoint URL, e.g. http://127.0.0.1:9000
  std::string region;         // S3 region
  std::string aws_profile;    // ~/.aws/credentials profile
  std::string token;          // Authorization: Bearer for https:// and gs://
  int parallel_requests = 0;  // connections per store (0: keep)
  int retries = 0;            // attempts per request (0: keep)
};
void configure_remote(const RemoteConfig& config);
// What this process has moved to and from object storage so far.
struct RemoteTransfer {
  std::uint64_t requests = 0, bytes_read = 0, bytes_written = 0, retries = 0;
  std::uint64_t largest_response = 0;  // the most bytes one response carried
};
RemoteTransfer remote_transfer();

}  // namespace ckb::engine
