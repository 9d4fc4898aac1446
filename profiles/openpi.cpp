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
  const Node* emb = find_path(out.checkpoint.root, "params/PaliGemma/llm/embedder/input_embedding");
  if (emb && emb->is_tensor()) out.sizes["vocab"] = emb->tensor().info.shape.at(0);
  const Node* q1 = find_path(out.checkpoint.root, "params/PaliGemma/llm/layers/attn/q_einsum_1/w");
  if (q1 && q1->is_tensor() && q1->tensor().info.shape.size() == 4) out.sizes["width_1"] = q1->tensor().info.shape[2];
  return out;
}

namespace {

const Shape* shape_at(const Node& root, const std::string& path) {
  const Node* n = find_path(root, path);
  return n && n->is_tensor() ? &n->tensor().info.shape : nullptr;
}

}  // namespace

nlohmann::ordered_json openpi_pytorch_config(const OpenpiPrepared& prep, DType out_dtype) {
  const Node& r = prep.checkpoint.root;
  const std::string L = "params/PaliGemma/llm/layers/";
  nlohmann::ordered_json c;
  if (auto s = shape_at(r, "params/action_in_proj/kernel")) c["action_dim"] = (*s)[0];
  const OpenpiDetection detected = detect_openpi(r);
  c["pi05"] = detected.pi05;
  for (const auto& e : detected.experts)
    c[e.suffix.empty() ? "paligemma_variant" : "action_expert_variant"] = e.variant.empty() ? "custom" : e.variant;
  nlohmann::ordered_json sizes;
  for (const std::string s : {"", "_1"}) {
    const std::string e = s.empty() ? "0" : "1";
    const Shape* q = shape_at(r, L + "attn/q_einsum" + s + "/w");      // [L, N, D, H]
    const Shape* kv = shape_at(r, L + "attn/kv_einsum" + s + "/w");    // [L, 2, K, D, H]
    if (!q || q->size() != 4) continue;
    sizes["n" + e] = (*q)[1];
    sizes["h" + e] = (*q)[3];
    if (kv && kv->size() == 5) sizes["k" + e] = (*kv)[2];
  }
  if (auto s = shape_at(r, "params/PaliGemma/img/Transformer/encoderblock/MultiHeadDotProductAttention_0/query/kernel");
      s && s->size() == 4) {
    sizes["vn"] = (*s)[2];
    sizes["vh"] = (*s)[3];
  }
  c["precision"] = out_dtype == DType::BF16 ? "bfloat16" : out_dtype == DType::F32 ? "float32" : std::string(dtype_name(out_dtype));
  c["lora_merged"] = nlohmann::ordered_json::array();
  for (const auto& g : prep.merged) c["lora_merged"].push_back(g.base);
  c["sizes"] = sizes;
  c["written_by"] = "ckptbridge (recipe openpi)";
  return c;
}

}  // namespace ckb
