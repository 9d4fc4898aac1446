// `ckptbridge convert SRC DST [--recipe R] [--to FORMAT] [--dtype DTYPE] ...`, and
// `ckptbridge adapt SRC DST --to nnx|linen [--like T]` (Flax Linen <-> NNX, written as Orbax;
// profiles/flax.h), which is the same pipeline with a generated recipe. Reads any
// supported format, maps it through a recipe (identity by default; the plan must account
// for every leaf), optionally casts floating-point tensors (round-to-nearest-even,
// overflow/NaN counted), and streams it into any writable format. Output goes to a temporary name and is renamed on success; an
// input is never overwritten. `--report FILE.json` records what happened to every tensor.
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include <unistd.h>

#include "cli/commands.h"
#include "cli/pipeline.h"
#include "cli/util.h"
#include "core/errors.h"
#include "formats/format.h"
#include "io/file.h"
#include "ops/cast.h"
#include "engine/execute.h"
#include "recipe/recipe.h"
#include "profiles/openpi.h"
#include "io/output.h"

namespace ckb::cli {
namespace {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

struct ConvertOptions {
  std::string src, dst, to, dtype, shard_size, report, max_memory;
  // Orbax output
  std::string step, item, compression, chunk_size;
  bool zarr3 = false, no_ocdbt = false;
  PipelineOptions pipe;
  bool drop_non_tensors = false;
  bool overwrite = false;
  bool quiet = false;
  unsigned threads = 0;
  std::vector<std::string> metadata;
};


void write_report(const std::string& path, const ojson& report) {
  std::ofstream out(path);
  out << report.dump(1) << "\n";
  if (!out) throw IoError(path, "cannot write report");
}

// Removes non-tensor leaves and empty containers; returns their paths.
std::vector<std::string> drop_non_tensors(Node& node, Path& path) {
  std::vector<std::string> dropped;
  if (!node.is_container()) return dropped;
  auto& kids = node.container().children;
  std::vector<Child> kept;
  for (auto& ch : kids) {
    path.push_back(ch.key);
    if (ch.node->is_tensor()) {
      kept.push_back(std::move(ch));
    } else if (ch.node->is_container() && !ch.node->container().children.empty()) {
      auto sub = drop_non_tensors(*ch.node, path);
      dropped.insert(dropped.end(), sub.begin(), sub.end());
      if (!ch.node->container().children.empty()) kept.push_back(std::move(ch));
    } else {
      dropped.push_back(join_path(path) + " (" + std::string(ch.node->type_name()) + ")");
    }
    path.pop_back();
  }
  kids = std::move(kept);
  return dropped;
}

bool stderr_is_terminal() { return ::isatty(2) == 1; }

int run(const ConvertOptions& o) {
  std::string to = o.to.empty() ? format_from_extension(o.dst) : o.to;
  if (to.empty())
    throw UsageError("cannot tell the output format from '" + o.dst + "'; pass --to FORMAT");
  const Format& fmt = format_by_name(to);
  if (!fmt.make_writer) throw UsageError("writing " + fmt.name + " is not supported yet");
  std::optional<DType> cast_to;
  if (!o.dtype.empty()) {
    cast_to = dtype_from_name(o.dtype);
    if (!cast_to) cast_to = dtype_from_numpy_name(o.dtype);
    if (!cast_to || !dtype_is_float(*cast_to))
      throw UsageError("--dtype must be a floating-point dtype (F32, BF16, F16, F64, F8_E4M3, F8_E5M2 or "
                       "float32, bfloat16, ...), got '" + o.dtype + "'");
  }
  if (fmt.name != "discard" && (fs::weakly_canonical(o.src) == fs::weakly_canonical(o.dst) || same_file(o.src, o.dst)))
    throw UsageError("refusing to overwrite the input " + o.src);
  if (fmt.name != "orbax" && (!o.step.empty() || !o.item.empty() || o.zarr3 || o.no_ocdbt || !o.compression.empty() ||
                              !o.chunk_size.empty()))
    throw UsageError("--step, --item, --zarr3, --no-ocdbt, --compression and --chunk-size apply to --to orbax only");
  // With --step, DST is a CheckpointManager root that may hold other steps; the writer
  // refuses an existing step unless --overwrite.
  if (fmt.name != "discard" && o.step.empty() && path_exists(o.dst) && !o.overwrite)
    throw UsageError("output " + o.dst + " exists; pass --overwrite to replace it");

  Pipeline p = build_pipeline(o.src, o.pipe);
  ojson report;
  report["source"] = {{"path", o.src}, {"format", p.source.format}};
  report["destination"] = {{"path", o.dst}, {"format", fmt.name}};
  if (p.adapt) {
    report["adapt"] = {{"from", p.adapt->from.to_json()}, {"to", o.pipe.adapt}, {"notes", p.adapt->notes},
                       {"recipe", recipe_to_json(p.recipe)}};
    if (!o.quiet) {
      std::cerr << "source layout: " << p.adapt->from.name() << "\n";
      for (const auto& n : p.adapt->notes) std::cerr << "note: " << n << "\n";
    }
  }
  report["ledger"] = p.plan.ledger_json();
  if (!p.plan.ok()) {
    if (!o.report.empty()) write_report(o.report, report);
    p.plan.check();
  }
  Node& target = p.plan.target;

  report["dropped_leaves"] = ojson::array();
  if (o.drop_non_tensors) {
    Path path;
    for (auto& d : drop_non_tensors(target, path)) {
      report["dropped_leaves"].push_back({{"name", d}, {"rule", "--drop-non-tensors"}});
      if (!o.quiet) std::cerr << "dropped (--drop-non-tensors): " << d << "\n";
    }
  }

  std::map<std::string, std::pair<std::string, std::shared_ptr<CastStats>>> casts;
  if (cast_to) {
    visit_leaves_mut(target, [&](const Path& path, Node& n) {
      if (n.is_tensor() && dtype_is_bytes_only(n.tensor().info.dtype))
        refuse_bytes_only(join_path(path), n.tensor().info.dtype, "--dtype cannot cast it");
      if (!n.is_tensor() || !dtype_is_float(n.tensor().info.dtype) || n.tensor().info.dtype == *cast_to) return;
      auto stats = std::make_shared<CastStats>();
      casts[join_path(path)] = {std::string(dtype_name(n.tensor().info.dtype)), stats};
      n.tensor() = cast_tensor(n.tensor(), *cast_to, stats);
    });
  }

  WriteOptions wo;
  if (!o.shard_size.empty()) wo.options["shard-size"] = o.shard_size;
  if (p.source.format == "safetensors" && fmt.name == "safetensors")
    for (const auto& [k, v] : p.source.metadata)
      if (!k.starts_with("index.")) wo.metadata[k] = v;
  for (const auto& kv : o.metadata) {
    auto eq = kv.find('=');
    if (eq == std::string::npos) throw UsageError("--metadata expects KEY=VALUE, got '" + kv + "'");
    wo.metadata[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  if (fmt.name == "orbax") {
    if (o.zarr3) wo.options["zarr3"] = "1";
    if (o.no_ocdbt) wo.options["no-ocdbt"] = "1";
    if (!o.compression.empty()) wo.options["compression"] = o.compression;
    if (!o.chunk_size.empty()) wo.options["chunk-size"] = o.chunk_size;
    if (!o.step.empty()) wo.options["step"] = o.step;
    if (!o.item.empty()) wo.options["item"] = o.item;
    wo.overwrite = o.overwrite;
  }
  ExecOptions eo;
  eo.threads = o.threads;
  if (!o.max_memory.empty()) eo.max_memory = parse_size(o.max_memory);
  eo.progress = !o.quiet && stderr_is_terminal();
  eo.stats = !o.report.empty();
  eo.cancel = &cancel_token();
  for (const auto& p : remove_stale_temporaries(o.dst))
    std::cerr << "removed stale temporary " << p << " (process " << temporary_owner(p) << " is gone)\n";
  ExecResult res = execute(target, fmt, o.dst, wo, eo);

  report["tensors"] = ojson::object();
  // Missing zarr chunks read as the fill value: per target tensor, those of its sources.
  const auto missing = missing_chunks(p.source);
  std::map<std::string, std::uint64_t> target_missing;
  for (const auto& te : p.plan.targets)
    for (const auto& f : te.from)
      if (auto it = missing.find(f); it != missing.end()) target_missing[te.name] += it->second;
  std::uint64_t overflow = 0, nan = 0, inexact = 0;
  auto tensors = tensor_list(target);
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const auto& [name, t] = tensors[i];
    ojson e = {{"dtype", std::string(dtype_name(t->info.dtype))}, {"shape", t->info.shape}};
    if (eo.stats && res.stats[i].numeric) {
      const auto& st = res.stats[i];
      e["stats"] = {{"min", st.min}, {"max", st.max}, {"mean", st.mean}, {"nan", st.nan}, {"inf", st.inf}};
    }
    if (auto it = casts.find(name); it != casts.end()) {
      const auto& s = *it->second.second;
      e["cast"] = {{"from", it->second.first}, {"elements", s.elements.load()}, {"inexact", s.inexact.load()},
                   {"overflow", s.overflow.load()}, {"nan", s.nan.load()}};
      overflow += s.overflow;
      nan += s.nan;
      inexact += s.inexact;
    }
    e["missing_chunks"] = target_missing.count(name) ? target_missing[name] : 0;
    report["tensors"][name] = e;
  }
  if (p.openpi) {  // config.json and openpi's assets beside the weights, each published atomically
    const fs::path dir = fs::absolute(o.dst).parent_path();
    DType out = DType::F32;
    if (const Node* q = find_path(target, "paligemma_with_expert.paligemma.model.language_model.layers.0.self_attn.q_proj.weight"))
      out = q->tensor().info.dtype;
    OpenpiPrepared prep{p.source, {}, p.openpi_merged};
    const std::string cfg = (dir / "config.json").string();
    AtomicFile f(cfg);
    f.pwrite(0, openpi_pytorch_config(prep, out).dump(1) + "\n");
    f.commit();
    report["openpi"]["config"] = cfg;
    const std::string assets = find_openpi_assets(o.src);
    if (!assets.empty() && !path_exists((dir / "assets").string())) {
      AtomicDir d((dir / "assets").string());
      fs::copy(assets, d.path(), fs::copy_options::recursive);
      d.commit();
      report["openpi"]["assets"] = {{"from", assets}, {"to", (dir / "assets").string()}};
    }
    if (!o.quiet) std::cerr << "wrote " << cfg << (assets.empty() ? " (no assets/ found beside the checkpoint)" : " and assets/") << "\n";
  }
  report["summary"] = {{"tensors", tensors.size()}, {"bytes", res.bytes}, {"seconds", res.seconds},
                       {"peak_window_bytes", res.peak_window_bytes}, {"missing_chunks", warn_missing_chunks(missing)}};
  if (!o.report.empty()) write_report(o.report, report);
  if (!o.quiet) {
    std::cerr << "wrote " << tensors.size() << " tensors (" << human_bytes(res.bytes) << ") as " << fmt.name << " to "
              << o.dst << " in " << res.seconds << " s\n";
    if (cast_to)
      std::cerr << "cast " << casts.size() << " tensors to " << dtype_name(*cast_to) << ": " << inexact
                << " values rounded, " << overflow << " overflowed, " << nan << " NaN\n";
  }
  return 0;
}

// Options shared by convert and adapt: where and how the output is written.
void add_output_options(CLI::App& app, ConvertOptions& o) {
  app.add_option("--step", o.step, "orbax: DST is a CheckpointManager root; write step N into it");
  app.add_option("--item", o.item, "orbax: item name inside the step (default 'default'; openpi uses 'params', MaxText 'items')");
  app.add_flag("--zarr3", o.zarr3, "orbax: zarr v3 arrays (sharding_indexed + crc32c) instead of zarr v2");
  app.add_flag("--no-ocdbt", o.no_ocdbt, "orbax: one directory per array instead of an OCDBT database");
  app.add_option("--compression", o.compression, "orbax: zstd (default, as Orbax) or none");
  app.add_option("--chunk-size", o.chunk_size, "orbax: split arrays along axis 0 into chunks of at most this size");
  app.add_option("--report", o.report, "write a JSON report of every tensor and rule applied");
  app.add_flag("--overwrite", o.overwrite, "replace DST if it exists");
  app.add_flag("-q,--quiet", o.quiet, "no summary on stderr");
  app.add_option("--threads", o.threads, "worker threads (default: all cores)");
  app.add_option("--max-memory", o.max_memory, "memory window for in-flight tensor data, on top of the largest tensor's own need (default 1GiB)");
}

}  // namespace

Runner add_convert(CLI::App& app) {
  auto o = std::make_shared<ConvertOptions>();
  app.add_option("src", o->src, "input checkpoint (format detected from content)")->required();
  app.add_option("dst", o->dst, "output path")->required();
  app.add_option("--to", o->to,
                 "output format: safetensors, torch, npz, npy, msgpack, orbax, or discard (read everything, write nothing; default: from DST's extension)");
  app.add_option("--dtype", o->dtype, "cast floating-point tensors to this dtype (round to nearest even)");
  app.add_option("--shard-size", o->shard_size, "safetensors: split into shards of at most this size (e.g. 5GB)");
  app.add_option("--metadata", o->metadata, "safetensors __metadata__ entry KEY=VALUE (repeatable)");
  app.add_flag("--drop-non-tensors", o->drop_non_tensors, "drop non-tensor leaves (listed in the report)");
  add_output_options(app, *o);
  add_pipeline_options(app, o->pipe);
  return [o] { return run(*o); };
}

Runner add_adapt(CLI::App& app) {
  auto o = std::make_shared<ConvertOptions>();
  o->to = "orbax";
  o->zarr3 = true;  // as MaxText and Orbax's PyTreeCheckpointHandler(use_zarr3=True) write them
  app.add_option("src", o->src, "Flax checkpoint (Orbax item, step directory or CheckpointManager root)")->required();
  app.add_option("dst", o->dst, "output Orbax checkpoint")->required();
  app.add_option("--to", o->pipe.adapt, "target layout: nnx or linen")->required()->check(CLI::IsMember({"nnx", "linen"}));
  app.add_option("--src-step", o->pipe.step, "SRC is an Orbax CheckpointManager root: the step to read (default: latest)");
  add_adapt_options(app, o->pipe);
  add_output_options(app, *o);
  app.add_flag_callback("--zarr2", [o] { o->zarr3 = false; }, "zarr v2 arrays (default for adapt: zarr v3, as MaxText writes)");
  return [o] { return run(*o); };
}

}  // namespace ckb::cli
