// engine::plan and the planning half of every job (engine/planned.h): source, profile,
// recipe, plan, drops, casts, output. Reads metadata only.
#include <algorithm>
#include <filesystem>

#include "engine/planned.h"
#include "io/file.h"
#include "recipe/recipe.h"

namespace ckb::engine {
namespace {

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

// Opens `path`, or takes it from the job's in-memory checkpoints.
Checkpoint open_for(const Job& job, const std::string& path, const SourceOptions& opts) {
  if (auto it = job.in_memory.find(path); it != job.in_memory.end()) return *it->second;
  return open(path, opts);
}

ReadOptions read_options(const SourceOptions& s) {
  ReadOptions ro;
  ro.step = s.step;
  ro.strict_chunks = s.strict_chunks;
  return ro;
}

}  // namespace

// Each engine call asks object storage for a listing or a size once (io/file.h).
Checkpoint open(const std::string& path, const SourceOptions& opts) {
  RemoteSnapshotScope snapshot;
  return read_checkpoint(path, read_options(opts));
}

std::map<std::string, std::uint64_t> missing_chunks(const Checkpoint& ck) {
  std::map<std::string, std::uint64_t> out;
  for (const auto& [name, t] : tensor_list(ck.root))
    if (const std::uint64_t n = t->source ? t->source->missing_chunks() : 0) out[name] = n;
  return out;
}

const std::vector<Format>& formats() { return ckb::formats(); }

std::vector<ProfileInfo> profiles() {
  std::vector<ProfileInfo> out;
  for (const auto& p : all_profiles()) out.push_back(p->info());
  return out;
}

std::string lora_merge_profile(const std::string& family, bool has_adapter) {
  std::string families;
  for (const auto& p : all_profiles()) {
    const ProfileInfo& i = p->info();
    if (i.merges_lora_of.empty()) continue;
    families += (families.empty() ? "" : ", ") + i.merges_lora_of;
    const bool takes_adapter =
        std::any_of(i.options.begin(), i.options.end(), [](const auto& o) { return o.name == "adapter"; });
    if (family.empty() ? (has_adapter ? takes_adapter : i.default_lora_merge) : i.merges_lora_of == family) {
      if (has_adapter && !takes_adapter)
        throw UsageError("--adapter goes with a profile that merges an adapter folder, not " + i.merges_lora_of);
      if (!has_adapter && takes_adapter)
        throw UsageError("--profile " + i.merges_lora_of + " needs --adapter DIR (the adapter folder)");
      return i.name;
    }
  }
  throw UsageError("no LoRA profile '" + family + "' (known: " + families + ")");
}

std::shared_ptr<Planned> make_plan(const Job& requested) {
  auto p = std::make_shared<Planned>();
  p->job = requested;
  const Job& job = p->job;  // as the profile's resolve() leaves it
  Report& r = p->report;
  r.dry_run = true;

  // The profile: asked for, brought by a built-in recipe, or the one profile that takes all
  // the profile options given.
  p->profile = !job.profile.empty() ? &profile_by_name(job.profile) : profile_for_recipe(job.recipe);
  if (!p->profile && !job.profile_options.empty()) {
    std::vector<const Profile*> takers;
    for (const auto& q : all_profiles()) {
      bool all = true;
      for (const auto& [k, v] : job.profile_options)
        all &= std::any_of(q->info().options.begin(), q->info().options.end(), [&](const auto& o) { return o.name == k; });
      if (all) takers.push_back(q.get());
    }
    std::string names, list;
    for (const auto& [k, v] : job.profile_options) names += (names.empty() ? "--" : ", --") + k;
    for (const auto* q : takers) list += (list.empty() ? "" : ", ") + q->info().name;
    if (takers.size() == 1) p->profile = takers.front();
    else if (takers.empty()) throw UsageError(names + ": no profile takes all of these together");
    else throw UsageError(names + " apply to several profiles (" + list + "); pass --profile NAME");
  }

  // The profile may redirect the inputs (before anything is opened) and ask for a folder output.
  if (p->profile) {
    ProfileInputs in;
    in.source = job.source;
    in.options = job.profile_options;
    p->profile->resolve(in);
    p->job.source = in.source;
    p->job.profile_options = in.options;
    std::string& out = p->job.output.path;
    if (in.folder_output && !out.empty() && out.back() != '/' && !is_directory(out) && format_from_extension(out).empty()) out += '/';
    if (!out.empty() && (out.back() == '/' || is_directory(out))) {
      const Format& fmt = format_by_name(job.output.format.empty() ? "safetensors" : job.output.format);
      for (const auto& [k, v] : in.folder_write_defaults)
        if (std::any_of(fmt.write_options.begin(), fmt.write_options.end(), [&](const auto& o) { return o.name == k; }))
          p->job.output.options.emplace(k, v);
    }
  }

  // The output next: a wrong option or name fails before the source is read.
  std::vector<std::string> inputs;
  if (!job.in_memory.count(job.source)) inputs.push_back(job.source);
  if (!job.output.path.empty()) {
    p->output = resolve_output(job.output);
    r.destination = p->output->path;
    r.destination_format = p->output->format->name;
  }

  Checkpoint source = open_for(job, job.source, job.source_options);
  r.source = job.source;
  r.source_format = source.format;

  PlanOptions po;
  std::string recipe_name = job.recipe;
  if (p->profile) {
    validate_profile_options(*p->profile, job.profile_options);
    r.profile = p->profile->info().name;
    ProfileRequest req;
    req.source_path = job.source;
    req.options = job.profile_options;
    // A profile that computes weights rounds them once, to the job's dtype.
    for (const auto& o : p->profile->info().options)
      if (o.name == "merged-dtype" && job.dtype && !req.options.count("merged-dtype"))
        req.options["merged-dtype"] = std::string(dtype_name(*job.dtype));
    req.reverse = job.reverse;
    if (p->output) {
      std::string named = job.output.path;
      while (named.size() > 1 && named.back() == '/') named.pop_back();
      req.output_folder = p->output->folder == named;
    }
    const SourceOptions other{std::nullopt, job.source_options.strict_chunks};
    req.open = [other, pj = &p->job](const std::string& path) { return open_for(*pj, path, other); };
    for (const auto& in : p->profile->inputs(job.profile_options))
      if (!job.in_memory.count(in)) inputs.push_back(in);
    p->prepared = p->profile->prepare(source, req);
    for (const auto& n : p->prepared.notes) r.notes.push_back(n);
    r.profile_report = p->prepared.report;
    if (recipe_name.empty()) recipe_name = p->profile->info().recipe;
  } else {
    p->prepared.source = std::move(source);
  }

  if (p->prepared.plan) {
    if (!job.recipe.empty() || !job.expect.empty() || !job.sizes.empty())
      throw UsageError("the " + r.profile + " profile generates its own recipe: --recipe, --expect and --size do not apply");
    p->plan = std::move(*p->prepared.plan);
    p->prepared.plan.reset();
    r.recipe = p->plan.recipe;
  } else {
    Recipe recipe;
    if (p->prepared.recipe) {
      if (!job.recipe.empty() && !profile_for_recipe(job.recipe))
        throw UsageError("the " + r.profile + " profile builds its own recipe: --recipe does not apply");
      recipe = std::move(*p->prepared.recipe);
    } else {
      recipe = load_recipe(recipe_name.empty() ? "identity" : recipe_name);
      if (job.reverse) recipe = invert(recipe);
    }
    po.sizes = p->prepared.sizes;
    for (const auto& [k, v] : job.sizes) po.sizes[k] = v;
    std::shared_ptr<const Checkpoint> expect = p->prepared.expect;
    if (!job.expect.empty()) {
      expect = std::make_shared<const Checkpoint>(open_for(job, job.expect, {std::nullopt, job.source_options.strict_chunks}));
      if (!job.in_memory.count(job.expect)) inputs.push_back(job.expect);
    }
    po.expect = expect.get();
    p->plan = build_plan(p->prepared.source, recipe, po);
    if (expect) p->prepared.expect = expect;
    r.recipe = p->plan.recipe;
  }
  r.ledger = p->plan.ledger_json();
  r.problems = p->plan.problems;

  Node& target = p->plan.target;
  if (job.drop_non_tensors) {
    Path path;
    for (auto& d : drop_non_tensors(target, path)) r.dropped_leaves.emplace_back(d, "--drop-non-tensors");
  }
  // The job's --dtype, else the profile's default (openpi: float32 when LoRA was merged).
  if (const std::optional<DType> dtype = job.dtype ? job.dtype : p->prepared.default_dtype) {
    r.summary.cast_to = dtype;
    visit_leaves_mut(target, [&](const Path& path, Node& n) {
      if (!n.is_tensor()) return;
      const DType from = n.tensor().info.dtype;
      if (dtype_is_bytes_only(from)) {
        if (!job.dtype) return;  // a profile's default leaves what cannot be cast as it is
        refuse_bytes_only(join_path(path), from, "--dtype cannot cast it");
      }
      if (!dtype_is_float(from) || from == *dtype) return;
      auto stats = std::make_shared<CastStats>();
      p->casts[join_path(path)] = {from, stats};
      n.tensor() = cast_tensor(n.tensor(), *dtype, stats);
    });
  }

  if (p->output) {
    const Format& fmt = *p->output->format;
    WriteOptions& wo = p->write_options;
    wo.options = job.output.options;
    wo.overwrite = job.output.overwrite;
    // String metadata carries over between checkpoints of the same format (not the index's).
    if (fmt.caps.string_metadata && p->prepared.source.format == fmt.name)
      for (const auto& [k, v] : p->prepared.source.metadata)
        if (!k.starts_with("index.")) wo.metadata[k] = v;
    for (const auto& [k, v] : job.output.metadata) {
      if (!fmt.caps.string_metadata) throw UsageError("--metadata applies to formats with string metadata (safetensors), not " + fmt.name);
      wo.metadata[k] = v;
    }
    // Write options that reproduce a source of the same format's layout carry over unless given.
    if (p->prepared.source.format == fmt.name) {
      for (const auto& [k, v] : p->prepared.source.layout_options)
        if (!wo.options.count(k)) wo.options[k] = v;
      validate_write_options(fmt, wo.options);
    }
    // A step written into a CheckpointManager root keeps the source's item name.
    if (fmt.caps.steps && wo.options.count("step") && !wo.options.count("item"))
      if (auto it = p->prepared.source.metadata.find(fmt.name + ".item"); it != p->prepared.source.metadata.end())
        wo.options["item"] = it->second;
    check_output(*p->output, job.output, inputs, p->profile ? p->profile->sidecars(p->prepared) : std::vector<std::string>{});
  }
  describe_tensors(*p);
  return p;
}

void describe_tensors(Planned& p) {
  auto& r = p.report;
  r.tensors.clear();
  for (const auto& [name, t] : tensor_list(p.plan.target)) {
    TensorReport tr{name, t->info.dtype, t->info.shape, std::nullopt, std::nullopt, 0};
    if (auto it = p.casts.find(name); it != p.casts.end()) tr.cast = CastReport{it->second.from};
    r.tensors.push_back(std::move(tr));
  }
  r.summary.tensors = r.tensors.size();
  r.summary.cast_tensors = p.casts.size();
}

Report plan(const Job& job) {
  RemoteSnapshotScope snapshot;
  return make_plan(job)->report;
}

}  // namespace ckb::engine
