// The LoRA-merging profiles: "openpi-merge" (openpi's lora.Einsum / FeedForward adapters
// folded into their base weights, JAX layout kept; profiles/lora.h) and "peft" (a PEFT
// adapter folder merged into its base model as LoraLayer.merge does; profiles/peft.h). Both
// write merged weights in float32 unless `merged-dtype` says otherwise, fail the plan on any
// LoRA tensor left unmerged, and can re-read the output to check it (`verify`).
#include "core/errors.h"
#include "profiles/lora_outputs.h"
#include "profiles/openpi_variants.h"
#include "profiles/peft.h"
#include "profiles/profile.h"

namespace ckb {
namespace {

std::string opt(const std::map<std::string, std::string>& o, const std::string& k) {
  auto it = o.find(k);
  return it == o.end() ? "" : it->second;
}

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
  static Prepared finish(std::shared_ptr<LoraMergeState> st, Recipe recipe, const ProfileRequest& req) {
    if (req.reverse) throw UsageError("a LoRA merge cannot be reversed");
    Prepared p;
    p.source = st->source;
    p.recipe = std::move(recipe);
    p.report["merged"] = lora_groups_json(st->groups);
    p.report["summary"]["merged_modules"] = st->groups.size();
    p.notes.push_back("merged " + std::to_string(st->groups.size()) + " LoRA module" + (st->groups.size() == 1 ? "" : "s") +
                      " into " + std::string(dtype_name(st->out)) + " weights");
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
                                kMergedDtype,
                                kVerify},
                               "",
                               "openpi",
                               true};
    return i;
  }
  Prepared prepare(const Checkpoint& source, const ProfileRequest& req) const override {
    const std::string variant = opt(req.options, "variant"), config = opt(req.options, "openpi-config");
    if (!variant.empty() && !config.empty())
      throw UsageError("pass at most one of --variant (e.g. gemma_2b_lora,gemma_300m_lora, one per expert) and "
                       "--openpi-config FILE.json (without either, the variants are read off the tree)");
    auto st = std::make_shared<LoraMergeState>();
    st->out = merged_dtype_option(req.options);
    st->verify = opt(req.options, "verify") == "1";
    st->source = source;
    LoraMergeOptions lo;
    lo.experts = openpi_experts(variant, config);
    Checkpoint unwrapped = source;
    unwrap_value_leaves(unwrapped.root);
    const OpenpiDetection detected = detect_openpi(unwrapped.root);
    if (variant.empty() && config.empty()) lo.experts = openpi_configs_from_detection(detected, source.path);
    lo.out_dtype = st->out;
    Recipe recipe = openpi_merge_recipe(source, lo, &st->groups);
    Prepared p = finish(std::move(st), std::move(recipe), req);
    std::vector<std::string> lines;
    for (const auto& line : detected.summary()) lines.push_back("detected " + line);
    p.notes.insert(p.notes.begin(), lines.begin(), lines.end());
    p.report["detected"] = detected.to_json();
    return p;
  }
};

class PeftProfile final : public LoraMergeProfile {
 public:
  const ProfileInfo& info() const override {
    static const ProfileInfo i{"peft",
                               "a PEFT LoRA adapter folder merged into its base model as PEFT's merge_and_unload() does",
                               {{"adapter", "the adapter folder (adapter_config.json + adapter_model.safetensors)", false, true, {}, true},
                                kMergedDtype,
                                kVerify},
                               "",
                               "peft"};
    return i;
  }
  Prepared prepare(const Checkpoint& source, const ProfileRequest& req) const override {
    auto st = std::make_shared<LoraMergeState>();
    st->out = merged_dtype_option(req.options);
    st->verify = opt(req.options, "verify") == "1";
    PeftMerge pm = peft_merge(source, opt(req.options, "adapter"), st->out);
    st->source = std::move(pm.combined);
    st->groups = std::move(pm.groups);
    Prepared p = finish(st, std::move(pm.recipe), req);
    p.report["adapter"] = opt(req.options, "adapter");
    return p;
  }
};

}  // namespace

std::unique_ptr<Profile> make_openpi_merge_profile() { return std::make_unique<OpenpiMergeProfile>(); }
std::unique_ptr<Profile> make_peft_profile() { return std::make_unique<PeftProfile>(); }

}  // namespace ckb
