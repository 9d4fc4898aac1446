// openpi's JAX parameters -> PI0Pytorch (openpi.md §4), the preparation around the built-in
// "openpi" recipe (transform/builtin_recipes.cpp), which does the layout itself:
//  - the training layout's `value` wrappers are unwrapped (`.../w/value` -> `.../w`);
//  - LoRA factors, when present, are merged first (transform/lora.h; float32 out), so the
//    layout recipe sees plain weights and a leftover LoRA tensor fails the plan;
//  - the sizes the recipe's fills need are read off the tree: `vocab` (embedding rows) and
//    `width_1` (the action expert's width, for gemma_expert.lm_head.weight).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/tree.h"
#include "transform/lora.h"

namespace ckb {

// Replaces every dict holding exactly one leaf named "value" by that leaf.
void unwrap_value_leaves(Node& root);

struct OpenpiPrepared {
  Checkpoint checkpoint;                        // unwrapped, LoRA merged
  std::map<std::string, std::int64_t> sizes;    // for the recipe
  std::vector<LoraGroup> merged;                // LoRA modules folded in
};

// `experts` is required when the tree holds LoRA factors (openpi does not store alpha):
// MappingError otherwise, naming the first LoRA tensor.
OpenpiPrepared openpi_prepare(const Checkpoint& src, const std::vector<OpenpiExpertConfig>& experts);

}  // namespace ckb
