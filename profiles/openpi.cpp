// Preparation of openpi checkpoints for the "openpi" recipe (profiles/openpi.h).
#include "profiles/openpi.h"
#include "profiles/openpi_variants.h"

#include "core/errors.h"
#include "recipe/plan.h"

namespace ckb {

OpenpiPrepared openpi_prepare(const Checkpoint& src, const std::vector<OpenpiExpertConfig>& experts, DType merged) {
  OpenpiPrepared out;
  out.checkpoint = src;
  unwrap_value_leaves(out.checkpoint.root);
  std::string first_lora;
  visit_leaves(out.checkpoint.root, [&](const Path& p, const Node&) {
    const std::string name = join_path(p);
    if (first_lora.empty() && name.find("lora") != std::string::npos) first_lora = name;
  });
  if (!first_lora.empty()) {
    if (experts.empty())
      throw MappingError(src.path, "the checkpoint holds LoRA factors ('" + first_lora +
                                       "'); openpi does not store alpha: pass --variant or --openpi-config");
    LoraMergeOptions lo;
    lo.experts = experts;
    lo.out_dtype = merged;
    Plan merge = build_plan(out.checkpoint, openpi_merge_recipe(out.checkpoint, lo, &out.merged));
    merge.check();
    out.checkpoint.root = merge.target;
    out.rounded = merge.rounded;
  }
  out.sizes = openpi_sizes(out.checkpoint.root);
  const Node* emb = find_path(out.checkpoint.root, "params/PaliGemma/llm/embedder/input_embedding");
  if (emb && emb->is_tensor()) out.sizes["vocab"] = emb->tensor().info.shape.at(0);
  for (const auto& e : detect_openpi(out.checkpoint.root).experts)
    if (e.suffix == "_1") out.sizes["width_1"] = e.width;
  return out;
}

namespace {

const Shape* shape_at(const Node& root, const std::string& path) {
  const Node* n = find_path(root, path);
  return n && n->is_tensor() ? &n->tensor().info.shape : nullptr;
}

}  // namespace

std::map<std::string, std::int64_t> openpi_sizes(const Node& root) {
  std::map<std::string, std::int64_t> sizes;
  for (const auto& e : detect_openpi(root).experts) {
    const std::string x = e.suffix.empty() ? "0" : e.suffix.substr(1);
    sizes["n" + x] = e.heads;
    sizes["h" + x] = e.head_dim;
    sizes["k" + x] = e.kv_heads;
    if (e.fused_qkv) sizes["qkv" + x] = 1;
  }
  if (auto s = shape_at(root, "params/PaliGemma/img/Transformer/encoderblock/MultiHeadDotProductAttention_0/query/kernel");
      s && s->size() == 4) {
    sizes["vn"] = (*s)[2];
    sizes["vh"] = (*s)[3];
  }
  return sizes;
}

nlohmann::ordered_json openpi_pytorch_config(const OpenpiPrepared& prep, DType out_dtype) {
  const Node& r = prep.checkpoint.root;
  nlohmann::ordered_json c;
  if (auto s = shape_at(r, "params/action_in_proj/kernel")) c["action_dim"] = (*s)[0];
  const OpenpiDetection detected = detect_openpi(r);
  c["pi05"] = detected.pi05;
  for (const auto& e : detected.experts)
    c[e.suffix.empty() ? "paligemma_variant" : "action_expert_variant"] = e.variant.empty() ? "custom" : e.variant;
  nlohmann::ordered_json sizes;
  for (const auto& [k, v] : openpi_sizes(r)) sizes[k] = v;
  c["precision"] = out_dtype == DType::BF16 ? "bfloat16" : out_dtype == DType::F32 ? "float32" : std::string(dtype_name(out_dtype));
  c["lora_merged"] = nlohmann::ordered_json::array();
  for (const auto& g : prep.merged) c["lora_merged"].push_back(g.base);
  c["sizes"] = sizes;
  c["written_by"] = "ckptbridge (recipe openpi)";
  return c;
}

}  // namespace ckb
