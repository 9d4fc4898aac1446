// The LoRA-merging profiles: "openpi-merge" (openpi's lora.Einsum / FeedForward adapters
// folded into their base weights, JAX layout kept; profiles/lora.h) and "peft" (a PEFT
// adapter folder merged into its base model as LoraLayer.merge does; profiles/peft.h). Both
// compute each merged weight in float64 and round it once: openpi-merge to float32, peft to
// the base weight's own dtype, unless `merged-dtype` says otherwise; both fail the plan on any
// LoRA tensor left unmerged and can re-read the output to check it (`verify`). peft given a
// base model folder and an output folder writes a Hugging Face model folder
// (profiles/hf_model_folder.h).
#include "core/errors.h"
#include "io/file.h"
#include "profiles/hf_model_folder.h"
#include "profiles/lora_outputs.h"
#include "profiles/openpi_folder.h"
#include "profiles/openpi_variants.h"
#include "profiles/peft.h"
#include "profiles/profile.h"

namespace ckb {
namespace {

const ProfileOptionSpec kMergedDtype{"merged-dtype", "dtype of the merged weights (default F32)"};
const ProfileOptionSpec kVerify{"verify",
                                "re-read the output and compare each merged weight with the online LoRA (base + s * x A B) "
                                "on a random input",
                                true};

class LoraMergeProfile : public Profile {
 public:
  AfterWriteResult after_write(const Prepared& p, const WrittenOutput& out, nlohmann::ordered_json& report) const override {
    const auto& st = *std::static_pointer_cast<const LoraMergeState>(p.state);
    if (!st.verify) return {};
    return verify_lora_output(st.groups, st.source, out.path, out.step, st.out, report);
  }

 protected:
  static Prepared finish(std::shared_ptr<LoraMergeState> st, Recipe recipe, const ProfileRequest& req,
                         const std::string& dtype_text = "") {
    if (req.reverse) throw UsageError("a LoRA merge cannot be reversed");
    Prepared p;
    p.source = st->source;
    p.recipe = std::move(recipe);
    p.report["merged"] = lora_groups_json(st->groups);
    p.report["summary"]["merged_modules"] = st->groups.size();
    p.notes.push_back("merged " + std::to_string(st->groups.size()) + " LoRA module" + (st->groups.size() == 1 ? "" : "s") +
                      " in float64, rounded once " +
                      (dtype_text.empty() ? "to " + std::string(dtype_name(st->out)) : dtype_text));
    p.state = std::move(st);
    return p;
  }
};

class OpenpiMergeProfile final : public LoraMergeProfile {
 public:
  const ProfileInfo& info() const override {
    static const ProfileInfo i{"openpi-merge",
                               "openpi LoRA folded into the base weights as openpi's runtime applies it (JAX layout kept)",
                               {{"variant", "gemma variants, one per expert (e.g. gemma_2b_lora,gemma_300m_lora; default: read off the tree)"},
                                {"openpi-config", "JSON {\"experts\": [{\"attn\": {rank, alpha, rslora}, \"ffn\": {...}}]}", false,
                                 false, {}, true},
                                openpi_weights_option(),
                                kMergedDtype,
                                kVerify},
                               "",
                               "openpi",
                               true};
    return i;
  }
  Prepared prepare(const Checkpoint& source, const ProfileRequest& req) const override {
    const std::string variant = req.option("variant"), config = req.option("openpi-config");
    if (!variant.empty() && !config.empty())
      throw UsageError("pass at most one of --variant (e.g. gemma_2b_lora,gemma_300m_lora, one per expert) and "
                       "--openpi-config FILE.json (without either, the variants are read off the tree)");
    auto st = std::make_shared<LoraMergeState>();
    st->out = merged_dtype_option(req.options);
    st->verify = req.option("verify") == "1";
    const OpenpiWeights weights = openpi_weights(source, req.option("weights"), req.open);
    st->source = weights.checkpoint;
    LoraMergeOptions lo;
    lo.experts = openpi_experts(variant, config);
    Checkpoint unwrapped = st->source;
    unwrap_value_leaves(unwrapped.root);
    const OpenpiDetection detected = detect_openpi(unwrapped.root);
    if (variant.empty() && config.empty()) lo.experts = openpi_configs_from_detection(detected, source.path);
    lo.out_dtype = st->out;
    Recipe recipe = openpi_merge_recipe(st->source, lo, &st->groups);
    Prepared p = finish(std::move(st), std::move(recipe), req);
    std::vector<std::string> lines = {weights.note()};
    for (const auto& line : detected.summary()) lines.push_back("detected " + line);
    p.notes.insert(p.notes.begin(), lines.begin(), lines.end());
    p.report["detected"] = detected.to_json();
    p.report["weights"] = weights.to_json();
    return p;
  }
};

class PeftProfile final : public LoraMergeProfile {
 public:
  const ProfileInfo& info() const override {
    static const ProfileInfo i{"peft",
                               "a PEFT LoRA adapter folder merged into its base model as PEFT's merge_and_unload() does; "
                               "a base model folder gives a Hugging Face model folder",
                               {{"adapter",
                                 "the adapter folder (adapter_config.json + adapter_model.safetensors); DIR:SCALE scales its "
                                 "lora_alpha/r (a trailing ':<number>'; default 1); several are summed in one pass",
                                 false, true, {}, true, true},
                                {"merged-dtype", "dtype of the merged weights (default: each base weight's own)"},
                                kVerify},
                               "",
                               "peft"};
    return i;
  }

  // `merge-lora ADAPTER_DIR`: the base is the local folder adapter_config.json names. An
  // adapter given as the base is refused. A base folder makes the output a model folder,
  // sharded as transformers' save_pretrained shards by default.
  std::vector<std::string> inputs(const std::map<std::string, std::string>& options) const override {
    std::vector<std::string> out;
    if (auto it = options.find("adapter"); it != options.end())
      for (const auto& a : parse_peft_adapters(it->second)) out.push_back(a.dir);
    return out;
  }

  void resolve(ProfileInputs& in) const override {
    if (!in.options.count("adapter") && is_directory(in.source) && is_peft_adapter(in.source)) {
      // a folder whose name ends in ':<number>' keeps it (profiles/peft.h: DIR:SCALE)
      in.options["adapter"] = parse_peft_adapter(in.source).dir == in.source ? in.source : in.source + ":1";
      in.source = peft_local_base(in.source);
    }
    if (in.options.count("adapter") && is_peft_adapter(in.source))
      throw UsageError(in.source + " is a PEFT adapter (it holds adapter_config.json), not a base model: pass the base model's "
                       "folder or weights as the input and the adapter with --adapter");
    if (is_directory(in.source)) {
      in.folder_output = true;
      in.folder_write_defaults["shard-size"] = kHfDefaultShardSize;
    }
  }

  Prepared prepare(const Checkpoint& source, const ProfileRequest& req) const override {
    auto st = std::make_shared<LoraMergeState>();
    std::optional<DType> merged;
    if (req.options.count("merged-dtype")) merged = merged_dtype_option(req.options);
    st->verify = req.option("verify") == "1";
    const std::vector<PeftAdapter> adapters = parse_peft_adapters(req.option("adapter"));
    PeftMerge pm = peft_merge(source, adapters, merged);
    st->source = std::move(pm.combined);
    st->groups = std::move(pm.groups);
    // The verify tolerance follows the least precise merged weight.
    st->out = merged.value_or(DType::F32);
    if (!merged)
      for (const auto& g : st->groups)
        if (const Node* n = find_path(st->source.root, g.base_source.empty() ? g.base : g.base_source); n && n->is_tensor())
          if (const DType d = n->tensor().info.dtype; d != DType::F32 && d != DType::F64) st->out = d;
    if (req.output_folder && is_directory(req.source_path)) {
      st->base_folder = req.source_path;
      st->folder_files = hf_model_folder_files(req.source_path);
    }
    Prepared p = finish(st, std::move(pm.recipe), req, merged ? "" : "to each base weight's dtype");
    if (adapters.size() == 1) p.report["adapter"] = adapters[0].dir;
    p.report["adapters"] = pm.adapters;
    if (adapters.size() > 1)
      for (const auto& a : pm.adapters)
        p.notes.push_back("adapter " + a["path"].get<std::string>() + " (scale " + a["scale"].dump() + "): " +
                          std::to_string(a["modules"].size()) + " module(s) merged" +
                          (a["replaced"].empty() ? "" : ", " + std::to_string(a["replaced"].size()) + " tensor(s) replaced"));
    if (!st->base_folder.empty()) p.report["model_folder"] = {{"from", st->base_folder}, {"files", st->folder_files}};
    return p;
  }

  std::vector<std::string> sidecars(const Prepared& p) const override {
    return std::static_pointer_cast<const LoraMergeState>(p.state)->folder_files;
  }

  AfterWriteResult after_write(const Prepared& p, const WrittenOutput& out, nlohmann::ordered_json& report) const override {
    const auto& st = *std::static_pointer_cast<const LoraMergeState>(p.state);
    const auto copied = copy_model_folder_files(st.folder_files, st.base_folder, out.folder);
    AfterWriteResult r = LoraMergeProfile::after_write(p, out, report);
    r.files.insert(r.files.begin(), copied.begin(), copied.end());
    if (!copied.empty()) r.notes.push_back("copied " + std::to_string(copied.size()) + " model-folder file(s) from " + st.base_folder);
    return r;
  }
};

}  // namespace

std::unique_ptr<Profile> make_openpi_merge_profile() { return std::make_unique<OpenpiMergeProfile>(); }
std::unique_ptr<Profile> make_peft_profile() { return std::make_unique<PeftProfile>(); }

}  // namespace ckb
