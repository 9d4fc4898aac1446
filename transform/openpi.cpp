// Preparation of openpi checkpoints for the "openpi" recipe (transform/openpi.h).
#include "transform/openpi.h"

#include "core/errors.h"
#include "transform/plan.h"

namespace ckb {

void unwrap_value_leaves(Node& n) {
  if (!n.is_container()) return;
  for (auto& ch : n.container().children) {
    Node& c = *ch.node;
    if (c.is_container() && c.container().children.size() == 1 && c.container().children[0].key == "value" &&
        !c.container().children[0].node->is_container()) {
      Node leaf = std::move(*c.container().children[0].node);
      c = std::move(leaf);
    } else {
      unwrap_value_leaves(c);
    }
  }
  n.container().index.clear();
}

OpenpiPrepared openpi_prepare(const Checkpoint& src, const std::vector<OpenpiExpertConfig>& experts) {
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
    Plan merge = build_plan(out.checkpoint, openpi_merge_recipe(out.checkpoint, lo, &out.merged));
    merge.check();
    out.checkpoint.root = merge.target;
  }
  const Node* emb = find_path(out.checkpoint.root, "params/PaliGemma/llm/embedder/input_embedding");
  if (emb && emb->is_tensor()) out.sizes["vocab"] = emb->tensor().info.shape.at(0);
  const Node* q1 = find_path(out.checkpoint.root, "params/PaliGemma/llm/layers/attn/q_einsum_1/w");
  if (q1 && q1->is_tensor() && q1->tensor().info.shape.size() == 4) out.sizes["width_1"] = q1->tensor().info.shape[2];
  return out;
}

}  // namespace ckb
