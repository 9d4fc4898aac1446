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
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/tree.h"
#include "profiles/lora.h"

namespace ckb {

struct OpenpiPrepared {
  Checkpoint checkpoint;                        // unwrapped, LoRA merged
  std::map<std::string, std::int64_t> sizes;    // for the recipe
  std::vector<LoraGroup> merged;                // LoRA modules folded in
};

// `experts` is required when the tree holds LoRA factors (openpi does not store alpha):
// MappingError otherwise, naming the first LoRA tensor.
OpenpiPrepared openpi_prepare(const Checkpoint& src, const std::vector<OpenpiExpertConfig>& experts);

// The config.json written beside the PyTorch weights: action_dim, pi05, the gemma variants
// (by width; "custom" when not a shipped size), precision, the LoRA modules merged, and the
// head counts the reverse recipe needs ("sizes", read back by --reverse).
nlohmann::ordered_json openpi_pytorch_config(const OpenpiPrepared& prep, DType out_dtype);

// The `assets` directory openpi keeps beside a checkpoint: in `path`, its parent or its
// grandparent (released `<ckpt>/{params,assets}`, training `<run>/<step>/{params,assets}`).
// Empty when there is none.
std::string find_openpi_assets(const std::string& path);

}  // namespace ckb
