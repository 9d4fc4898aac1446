// The "openpi" profile: openpi's JAX parameters <-> PI0Pytorch through the built-in "openpi"
// recipe. Forward: unwrap, merge LoRA (profiles/openpi.h), size the recipe from the tree, and
// after writing put openpi's `config.json` and `assets/` beside the weights. Reverse: the head
// counts the PyTorch layout hides come from the `config.json` the forward run wrote.
#include <filesystem>

#include "core/errors.h"
#include "core/json_bounded.h"
#include "io/file.h"
#include "io/output.h"
#include "profiles/lora_outputs.h"
#include "profiles/openpi.h"
#include "profiles/openpi_variants.h"
#include "profiles/profile.h"

namespace ckb {
namespace {

namespace fs = std::filesystem;

std::string opt(const std::map<std::string, std::string>& o, const std::string& k) {
  auto it = o.find(k);
  return it == o.end() ? "" : it->second;
}

class OpenpiProfile final : public Profile {
 public:
  const ProfileInfo& info() const override {
    static const ProfileInfo i{
        "openpi",
        "openpi JAX params <-> PI0Pytorch (LoRA merged first; config.json and assets/ beside the weights)",
        {{"variant", "gemma variants, one per expert (e.g. gemma_2b_lora,gemma_300m_lora; default: read off the tree)"},
         {"openpi-config", "JSON {\"experts\": [{\"attn\": {rank, alpha, rslora}, \"ffn\": {...}}]}", false, false, {}, true}},
        "openpi"};
    return i;
  }

  Prepared prepare(const Checkpoint& source, const ProfileRequest& req) const override {
    const std::string variant = opt(req.options, "variant"), config = opt(req.options, "openpi-config");
    Prepared p;
    if (req.reverse) {
      if (!variant.empty() || !config.empty())
        throw UsageError("--variant and --openpi-config apply to the forward openpi recipe");
      p.source = source;
      // The head counts a PyTorch layout hides, from the config.json the forward run wrote.
      const fs::path src(req.source_path);
      const fs::path cfg = (fs::is_directory(src) ? src : src.parent_path()) / "config.json";
      if (fs::exists(cfg)) {
        auto j = parse_json_bounded(read_text_file(cfg.string()), cfg.string(), {.allow_exceptions = false});
        if (j.is_object() && j.contains("sizes") && j["sizes"].is_object())
          for (const auto& [k, v] : j["sizes"].items())
            if (v.is_number_integer()) p.sizes.emplace(k, v.get<std::int64_t>());
        p.notes.push_back("sizes from " + cfg.string());
      }
      return p;
    }
    // The variants from the tree unless the user names them (openpi never stores LoRA alpha).
    Checkpoint unwrapped = source;
    unwrap_value_leaves(unwrapped.root);
    const OpenpiDetection detected = detect_openpi(unwrapped.root);
    std::vector<OpenpiExpertConfig> experts = openpi_experts(variant, config);
    if (variant.empty() && config.empty() && detected.has_lora())
      experts = openpi_configs_from_detection(detected, source.path);
    for (const auto& line : detected.summary()) p.notes.push_back("detected " + line);
    p.report["detected"] = detected.to_json();
    auto prep = std::make_shared<OpenpiPrepared>(openpi_prepare(source, experts));
    p.source = prep->checkpoint;
    p.sizes = prep->sizes;
    if (!prep->merged.empty()) p.report["merged"] = lora_groups_json(prep->merged);
    p.state = prep;
    return p;
  }

  std::vector<std::string> sidecars(const Prepared& p) const override {
    if (!p.state) return {};
    return {"config.json"};
  }

  AfterWriteResult after_write(const Prepared& p, const WrittenOutput& out, nlohmann::ordered_json& report) const override {
    AfterWriteResult r;
    if (!p.state) return r;
    const auto& prep = *std::static_pointer_cast<const OpenpiPrepared>(p.state);
    DType dtype = DType::F32;
    if (const Node* q = out.target ? find_path(*out.target, "paligemma_with_expert.paligemma.model.language_model.layers.0.self_attn.q_proj.weight") : nullptr;
        q && q->is_tensor())
      dtype = q->tensor().info.dtype;
    const fs::path dir(out.folder);
    const std::string cfg = (dir / "config.json").string();
    AtomicFile f(cfg);
    f.pwrite(0, openpi_pytorch_config(prep, dtype).dump(1) + "\n");
    f.commit();
    report["openpi"]["config"] = cfg;
    r.files.push_back(cfg);
    const std::string assets = find_openpi_assets(prep.checkpoint.path.empty() ? p.source.path : prep.checkpoint.path);
    const std::string dst_assets = (dir / "assets").string();
    if (assets.empty()) {
      r.notes.push_back("no assets/ found beside the checkpoint: normalisation stats not copied");
    } else if (path_exists(dst_assets) && !out.overwrite) {
      r.notes.push_back(dst_assets + " exists; left as it is (--overwrite replaces it)");
    } else {
      AtomicDir d(dst_assets);
      fs::copy(assets, d.path(), fs::copy_options::recursive);
      d.commit();
      report["openpi"]["assets"] = {{"from", assets}, {"to", dst_assets}};
      r.files.push_back(dst_assets);
    }
    return r;
  }
};

}  // namespace

std::unique_ptr<Profile> make_openpi_profile() { return std::make_unique<OpenpiProfile>(); }

}  // namespace ckb
