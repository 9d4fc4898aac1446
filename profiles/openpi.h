// openpi's JAX parameters -> PI0Pytorch (openpi.md §4), the preparation around the built-in
// "openpi" recipe (recipe/builtin/openpi.json), which does the layout itself:
//  - the training layout's `value` wrappers are unwrapped (`.../w/value` -> `.../w`);
//  - LoRA factors, when present, are merged first (profiles/lora.h; float32 out), so the
//    layout recipe sees plain weights and a leftover LoRA tensor fails the plan;
//  - the sizes the recipe needs are read off the tree, per expert E (0 = PaliGemma, 1 = the
//    action expert) from its measured attention shape (profiles/openpi_variants.h), whichever
//    form it has: nE / kE / hE (heads, kv heads, head dim: the rearranges of q/k/v/o_proj),
//    qkvE = 1 when its attention is the fused qkv_einsum [L, 3, N, D, H] (MHA; the recipe's
//    `when: qkvE` rules), else q_einsum [L, N, D, H] + kv_einsum [L, 2, K, D, H]; plus
//    `vocab` (embedding rows) and `width_1` (for gemma_expert.lm_head.weight).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/tree.h"
#include "ops/cast.h"
#include "profiles/lora.h"

namespace ckb {

struct OpenpiPrepared {
  Checkpoint checkpoint;                        // unwrapped, LoRA merged
  std::map<std::string, std::int64_t> sizes;    // for the recipe
  std::vector<LoraGroup> merged;                // LoRA modules folded in
  std::map<std::string, std::shared_ptr<CastStats>> rounded;  // merged weights: float64 -> `merged` rounding
};

// The per-expert attention sizes above (nE, kE, hE, qkvE) and the SigLIP heads (vn, vh): what
// the forward recipe is sized with and what config.json keeps for --reverse.
std::map<std::string, std::int64_t> openpi_sizes(const Node& root);

// `experts` is required when the tree holds LoRA factors (openpi does not store alpha):
// MappingError otherwise, naming the first LoRA tensor. Merged weights are computed in
// float64 and rounded once to `merged`.
OpenpiPrepared openpi_prepare(const Checkpoint& src, const std::vector<OpenpiExpertConfig>& experts,
                              DType merged = DType::F32);

// The config.json written beside the PyTorch weights: action_dim, pi05, the gemma variants
// (by width; "custom" when not a shipped size), precision, the LoRA modules merged, and
// openpi_sizes() ("sizes", read back by --reverse: head counts and each expert's attention form).
nlohmann::ordered_json openpi_pytorch_config(const OpenpiPrepared& prep, DType out_dtype);

}  // namespace ckb
