// Implementation of cli/pipeline.h.
#include "cli/pipeline.h"

#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "core/errors.h"
#include "core/json_bounded.h"
#include "formats/format.h"
#include "io/file.h"
#include "profiles/openpi.h"

namespace ckb::cli {

namespace {
bool strict_chunks = false;  // --strict-chunks (one process, one command)
}  // namespace

void add_source_options(CLI::App& app) {
  app.add_flag("--strict-chunks", strict_chunks,
               "zarr (bare or inside Orbax): a missing chunk is an error naming the array and chunk key (default: it "
               "reads as the fill value, as the zarr spec says, and is counted and warned about)");
}

ReadOptions source_read_options(std::int64_t step) {
  ReadOptions ro;
  if (step >= 0) ro.step = step;
  ro.strict_chunks = strict_chunks;
  return ro;
}

std::map<std::string, std::uint64_t> missing_chunks(const Checkpoint& ck) {
  std::map<std::string, std::uint64_t> out;
  for (const auto& [name, t] : tensor_list(ck.root))
    if (const std::uint64_t n = t->source ? t->source->missing_chunks() : 0) out[name] = n;
  return out;
}

std::uint64_t warn_missing_chunks(const std::map<std::string, std::uint64_t>& missing) {
  std::uint64_t total = 0;
  std::string list;
  for (const auto& [name, n] : missing) {
    total += n;
    if (list.size() < 300) list += (list.empty() ? "" : ", ") + name + " (" + std::to_string(n) + ")";
  }
  if (total)
    std::cerr << "warning: " << total << " missing zarr chunk" << (total == 1 ? "" : "s")
              << " read as the fill value: " << list << (list.size() >= 300 ? ", ..." : "")
              << " (--strict-chunks makes this an error)\n";
  return total;
}

void add_pipeline_options(CLI::App& app, PipelineOptions& o) {
  app.add_option("--recipe", o.recipe, "mapping recipe: a JSON file or a built-in name (default: identity)");
  app.add_flag("--reverse", o.reverse, "apply the recipe's inverse (derived automatically)");
  app.add_option("--expect", o.expect, "a checkpoint whose layout the target must match exactly (names, dtypes, shapes)");
  app.add_option("--size", o.sizes, "axis size for rearrange ops, NAME=N (repeatable)");
  app.add_option("--variant", o.variant,
                 "--recipe openpi with LoRA: gemma variants, one per expert (e.g. gemma_2b_lora,gemma_300m_lora)");
  app.add_option("--openpi-config", o.openpi_config, "--recipe openpi with LoRA: JSON {\"experts\": [...]} (see merge-lora)");
  app.add_option("--src-step", o.step, "SRC is an Orbax CheckpointManager root: the step to read (default: latest)");
  app.add_option("--adapt", o.adapt, "adapt a Flax checkpoint to the other layout: nnx or linen (see the adapt command)")
      ->check(CLI::IsMember({"nnx", "linen"}));
  add_adapt_options(app, o);
}

void add_adapt_options(CLI::App& app, PipelineOptions& o) {
  app.add_option("--like", o.like,
                 "a checkpoint in the target layout (e.g. freshly initialised): where NNX-only state goes, raw or pure, "
                 "the step's encoding; the result must match its layout exactly");
  app.add_flag("--pure", o.pure, "nnx: write a pure dict (nnx.to_pure_dict, no `value` level)");
  app.add_flag("--raw", o.raw, "nnx: write a raw nnx.State (`.../value` leaves; the default without --like)");
  app.add_option("--rng-fill", o.rng_fill,
                 "nnx: RNG key/count leaves the source lacks: 'like' keeps --like's values, 'deterministic' writes "
                 "key(seed) / split(key(seed), n) and zero counts as MaxText PR #3929 does")
      ->check(CLI::IsMember({"like", "deterministic"}));
  app.add_option("--rng-seed", o.rng_seed, "seed for --rng-fill deterministic (default 0)");
  app.add_flag("--weights-only", o.weights_only, "carry the weights only; the training state is dropped (reported)");
  app.add_option("--layers", o.layers,
                 "scanned layers: 'unscan' slices .../layers/... into layers_<i>, 'scan' stacks them (default: as --like)")
      ->check(CLI::IsMember({"scan", "unscan"}));
  app.add_option("--scan-axis", o.scan_axis, "the params' scan axis for --layers (MaxText's param_scan_axis, default 1)");
  app.add_flag("--keep-rng", o.keep_rng, "linen: keep NNX RNG state under nnx_aux/model (MaxText after #4343) instead of dropping it");
}

Checkpoint open_checkpoint(const std::string& path, std::int64_t step) {
  return read_checkpoint(path, source_read_options(step));
}

Pipeline build_pipeline(const std::string& src, const PipelineOptions& o) {
  Pipeline p;
  p.source = open_checkpoint(src, o.step);
  const bool adapt_opts = !o.like.empty() || o.pure || o.raw || o.weights_only || o.keep_rng || o.rng_fill != "like" ||
                          o.rng_seed || !o.layers.empty() || o.scan_axis != 1;
  if (o.adapt.empty() && adapt_opts)
    throw UsageError("--like, --pure, --raw, --rng-fill, --rng-seed, --weights-only, --keep-rng, --layers and --scan-axis "
                     "apply to --adapt");
  if (!o.adapt.empty()) {
    if (!o.recipe.empty() || o.reverse || !o.expect.empty() || !o.sizes.empty() || !o.variant.empty() || !o.openpi_config.empty())
      throw UsageError("--adapt generates its own recipe: --recipe, --reverse, --expect, --size, --variant and "
                       "--openpi-config do not apply (use --like for the expected layout)");
    if (o.pure && o.raw) throw UsageError("pass at most one of --pure and --raw");
    AdaptOptions ao;
    ao.to = o.adapt == "nnx" ? AdaptOptions::To::Nnx : AdaptOptions::To::Linen;
    if (ao.to == AdaptOptions::To::Linen && (o.pure || o.raw || o.rng_fill != "like" || o.rng_seed))
      throw UsageError("--pure, --raw, --rng-fill and --rng-seed apply to --adapt nnx");
    if (ao.to == AdaptOptions::To::Nnx && o.keep_rng) throw UsageError("--keep-rng applies to --adapt linen");
    if (!o.like.empty()) {
      p.expect = std::make_unique<Checkpoint>(open_checkpoint(o.like, -1));
      ao.like = p.expect.get();
    }
    if (o.pure) ao.pure = true;
    if (o.raw) ao.pure = false;
    ao.rng = o.rng_fill == "deterministic" ? AdaptOptions::Rng::Deterministic : AdaptOptions::Rng::Like;
    ao.rng_seed = o.rng_seed;
    ao.weights_only = o.weights_only;
    ao.keep_rng = o.keep_rng;
    ao.layers = o.layers;
    ao.scan_axis = o.scan_axis;
    p.adapt = adapt_flax(p.source, ao);
    p.recipe = p.adapt->recipe;
    p.plan = std::move(p.adapt->plan);
    return p;
  }
  p.recipe = load_recipe(o.recipe.empty() ? "identity" : o.recipe);
  if (o.reverse) p.recipe = invert(p.recipe);
  PlanOptions po;
  if (o.recipe == "openpi" && !o.reverse) {
    OpenpiPrepared prep = openpi_prepare(p.source, openpi_experts(o.variant, o.openpi_config));
    p.source = std::move(prep.checkpoint);
    po.sizes = prep.sizes;
    p.openpi = true;
    p.openpi_merged = std::move(prep.merged);
  } else if (o.recipe == "openpi" && o.reverse) {
    // The head counts a PyTorch layout hides, from the config.json the forward run wrote.
    const auto cfg = std::filesystem::path(src).parent_path() / "config.json";
    if (std::filesystem::exists(cfg)) {
      auto j = parse_json_bounded(read_text_file(cfg.string()), cfg.string(), {.allow_exceptions = false});
      if (j.is_object() && j.contains("sizes") && j["sizes"].is_object())
        for (const auto& [k, v] : j["sizes"].items())
          if (v.is_number_integer()) po.sizes.emplace(k, v.get<std::int64_t>());
    }
    if (!o.variant.empty() || !o.openpi_config.empty())
      throw UsageError("--variant and --openpi-config apply to the forward openpi recipe");
  } else if (!o.variant.empty() || !o.openpi_config.empty()) {
    throw UsageError("--variant and --openpi-config apply to --recipe openpi (forward); merge-lora takes them too");
  }
  if (!o.expect.empty()) {
    p.expect = std::make_unique<Checkpoint>(open_checkpoint(o.expect, -1));
    po.expect = p.expect.get();
  }
  for (const auto& kv : o.sizes) {
    auto eq = kv.find('=');
    if (eq == std::string::npos) throw UsageError("--size expects NAME=N, got '" + kv + "'");
    try {
      po.sizes[kv.substr(0, eq)] = std::stoll(kv.substr(eq + 1));
    } catch (const std::exception&) {
      throw UsageError("--size expects NAME=N, got '" + kv + "'");
    }
  }
  p.plan = build_plan(p.source, p.recipe, po);
  return p;
}

}  // namespace ckb::cli
