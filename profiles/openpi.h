// openpi's JAX parameters -> PI0Pytorch (openpi.md §4), the preparation around the built-in
// "openpi" recipe (recipe/builtin/openpi.json), which does the layout itself:
//  - the training layout's `value` wrappers are unwrapped (`.../w/value` -> `.../w`);
//  - LoRA factors, when present, are merged first (profiles/lora.h; float32 out), so the
//    layout recipe sees plain weights and a leftover LoRA tensor fails the plan;
//  - the sizes the recipe's fills need are read off the tree: `vocab` (embedding rows) and
//    `width_1` (the action expert's width, for gemma_expert.lm_head.weight).
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

// `experts` is required when the tree holds LoRA factors (openpi does not store alpha):
// MappingError otherwise, naming the first LoRA tensor. Merged weights are computed in
// float64 and rounded once to `merged`.
OpenpiPrepared openpi_prepare(const Checkpoint& src, const std::vector<OpenpiExpertConfig>& experts,
                              DType merged = DType::F32);

// The config.json written beside the PyTorch weights: action_dim, pi05, the gemma variants
// (by width; "custom" when not a shipped size), precision, the LoRA modules merged, and the
// head counts the reverse recipe needs ("sizes", read back by --reverse).
nlohmann::ordered_json openpi_pytorch_config(const OpenpiPrepared& prep, DType out_dtype);

}  // namespace ckb
