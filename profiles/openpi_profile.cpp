// The "openpi" profile: openpi's JAX parameters <-> PI0Pytorch through the built-in "openpi"
// recipe. Forward: pick the weight set (EMA or raw; profiles/openpi_folder.h), unwrap, merge
// LoRA (profiles/openpi.h; float32 unless --dtype says otherwise, and then every tensor is
// written in float32 too, as openpi's converter does for LoRA checkpoints), size the recipe
// from the tree. An output folder becomes what openpi's converter writes: model.safetensors,
// config.json and assets/<asset_id>/norm_stats.json copied byte for byte from the checkpoint's
// assets/; an output file gets the weights alone. Reverse: the head counts the PyTorch layout
// hides come from the `config.json` the forward run wrote.
#include <filesystem>

#include "core/errors.h"
#include "core/json_bounded.h"
#include "io/file.h"
#include "io/output.h"
#include "profiles/lora_outputs.h"
#include "profiles/hf_model_folder.h"
#include "profiles/openpi.h"
#include "profiles/openpi_folder.h"
#include "profiles/openpi_variants.h"
#include "profiles/profile.h"

namespace ckb {
namespace {

namespace fs = std::filesystem;

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

// What prepare() hands after_write().
struct OpenpiState {
  OpenpiPrepared prep;
  OpenpiWeights weights;
  OpenpiAssets assets;
  bool folder = false;  // the output is a folder: config.json and assets/ go into it
};

class OpenpiProfile final : public Profile {
 public:
  const ProfileInfo& info() const override {
    static const ProfileInfo i{
        "openpi",
        "openpi JAX params <-> PI0Pytorch (LoRA merged first; an output folder gets config.json and assets/ as openpi's "
        "converter writes them)",
        {{"variant", "gemma variants, one per expert (e.g. gemma_2b_lora,gemma_300m_lora; default: read off the tree)"},
         {"openpi-config", "JSON {\"experts\": [{\"attn\": {rank, alpha, rslora}, \"ffn\": {...}}]}", false, false, {}, true},
         openpi_weights_option(),
         {"merged-dtype", "dtype of the merged weights (default F32)"}},
        "openpi"};
    return i;
  }

  // An output without an extension is the model folder.
  void resolve(ProfileInputs& in) const override { in.folder_output = true; }

  Prepared prepare(const Checkpoint& source, const ProfileRequest& req) const override {
    const std::string variant = req.option("variant"), config = req.option("openpi-config");
    Prepared p;
    if (req.reverse) {
      if (!variant.empty() || !config.empty() || req.options.count("weights"))
        throw UsageError("--variant, --openpi-config and --weights apply to the forward openpi recipe");
      p.source = source;
      // The head counts a PyTorch layout hides, from the config.json the forward run wrote.
      const fs::path src(req.source_path);
      const fs::path cfg = (is_directory(src.string()) ? src : src.parent_path()) / "config.json";
      if (path_exists(cfg.string())) {
        auto j = parse_json_bounded(read_text_file(cfg.string()), cfg.string(), {.allow_exceptions = false});
        if (j.is_object() && j.contains("sizes") && j["sizes"].is_object())
          for (const auto& [k, v] : j["sizes"].items())
            if (v.is_number_integer()) p.sizes.emplace(k, v.get<std::int64_t>());
        p.notes.push_back("sizes from " + cfg.string());
      }
      return p;
    }
    auto st = std::make_shared<OpenpiState>();
    st->weights = openpi_weights(source, req.option("weights"), req.open);
    const Checkpoint& weights = st->weights.checkpoint;
    p.notes.push_back(st->weights.note());
    p.report["weights"] = st->weights.to_json();
    // The variants from the tree unless the user names them (openpi never stores LoRA alpha).
    Checkpoint unwrapped = weights;
    unwrap_value_leaves(unwrapped.root);
    const OpenpiDetection detected = detect_openpi(unwrapped.root);
    std::vector<OpenpiExpertConfig> experts = openpi_experts(variant, config);
    if (variant.empty() && config.empty() && detected.has_lora())
      experts = openpi_configs_from_detection(detected, source.path);
    for (const auto& line : detected.summary()) p.notes.push_back("detected " + line);
    p.report["detected"] = detected.to_json();
    st->prep = openpi_prepare(weights, experts, merged_dtype_option(req.options));
    p.source = st->prep.checkpoint;
    p.sizes = st->prep.sizes;
    if (!st->prep.merged.empty()) {
      p.report["merged"] = lora_groups_json(st->prep.merged);
      p.rounded = st->prep.rounded;
      // openpi's converter writes LoRA checkpoints in float32 (its merged weights drift less).
      p.default_dtype = DType::F32;
      const std::string to(dtype_name(merged_dtype_option(req.options)));
      p.notes.push_back("merged " + std::to_string(st->prep.merged.size()) + " LoRA modules in float64, rounded once to " +
                        to + (req.options.count("merged-dtype") ? "" : "; every tensor written as F32 (--dtype bf16 for bfloat16)"));
    }
    st->folder = req.output_folder;
    if (st->folder) {
      st->assets = openpi_assets(st->weights.folder);
      p.report["assets"] = st->assets.to_json();
      if (st->assets.dir.empty())
        p.notes.push_back("no assets/ in " + st->weights.folder + ": no normalisation stats to copy (openpi keeps them in "
                          "<step>/assets or <ckpt>/assets)");
      else if (st->assets.asset_ids.empty())
        p.notes.push_back(st->assets.dir + " holds no <asset_id>/norm_stats.json");
    } else {
      p.notes.push_back("the output is a file: it gets the weights alone (config.json and assets/ are written into an output "
                        "folder, e.g. OUT_DIR/)");
    }
    p.state = st;
    return p;
  }

  std::vector<std::string> sidecars(const Prepared& p) const override {
    if (!p.state) return {};
    const auto& st = *std::static_pointer_cast<const OpenpiState>(p.state);
    if (!st.folder) return {};
    std::vector<std::string> out = {"config.json"};
    for (const auto& f : st.assets.files) out.push_back("assets/" + f);
    return out;
  }

  AfterWriteResult after_write(const Prepared& p, const WrittenOutput& out, nlohmann::ordered_json& report) const override {
    AfterWriteResult r;
    if (!p.state) return r;
    const auto& st = *std::static_pointer_cast<const OpenpiState>(p.state);
    if (!st.folder) return r;
    DType dtype = DType::F32;
    if (const Node* q = out.target ? find_path(*out.target, "paligemma_with_expert.paligemma.model.language_model.layers.0.self_attn.q_proj.weight") : nullptr;
        q && q->is_tensor())
      dtype = q->tensor().info.dtype;
    const fs::path dir(out.folder);
    const std::string cfg = (dir / "config.json").string();
    AtomicFile f(cfg);
    f.pwrite(0, openpi_pytorch_config(st.prep, dtype).dump(1) + "\n");
    f.commit();
    report["openpi"]["config"] = cfg;
    r.files.push_back(cfg);
    if (st.assets.files.empty()) return r;
    const fs::path to = dir / "assets";
    for (const auto& rel : st.assets.files) make_dirs((to / rel).parent_path().string());
    const auto copied = copy_model_folder_files(st.assets.files, st.assets.dir, to.string());
    report["openpi"]["assets"] = {{"from", st.assets.dir}, {"to", to.string()}, {"asset_ids", st.assets.asset_ids}};
    r.files.insert(r.files.end(), copied.begin(), copied.end());
    r.notes.push_back("copied " + std::to_string(copied.size()) + " file(s) of " + st.assets.dir + " (norm stats of " +
                      (st.assets.asset_ids.empty() ? std::string("no asset") : join(st.assets.asset_ids)) + ") to " +
                      to.string());
    return r;
  }
};

}  // namespace

std::unique_ptr<Profile> make_openpi_profile() { return std::make_unique<OpenpiProfile>(); }

}  // namespace ckb
