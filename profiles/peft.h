// The PEFT LoRA profile: `adapter_config.json` + `adapter_model.safetensors` onto a base
// checkpoint, merged as PEFT's LoraLayer.merge computes it (landscape.md):
//   Linear     W[out,in] += s * B[out,r] @ A[r,in]       (fan_in_fan_out: W[in,out], transposed)
//   Embedding  W[n,d]    += s * (B[d,r] @ A[r,n])^T      (lora_embedding_A/B)
//   s = lora_alpha / r, or lora_alpha / sqrt(r) with use_rslora; r and alpha per module from
//   rank_pattern / alpha_pattern (PEFT's rule: the first key k with module =~ "(.*\.)?k$").
// The delta of each kind is derived by profiles/lora.h from the layer's forward einsums
// (base, x@A, z@B), not written out per kind. modules_to_save copies in the adapter replace
// the base's tensors (the base ones are dropped by an explicit rule). Adapter key names carry
// `base_model.model.`; the base's may or may not. DoRA (`lora_magnitude_vector`): the merged
// W + s*dW is rescaled per output feature to the magnitude, W' = m / ||W + s dW||_row *
// (W + s dW); lora_bias: b += s * lora_B.bias. Conv LoRA and DoRA on embeddings are refused
// with a MappingError naming the tensor (not merged wrongly or dropped).
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/tree.h"
#include "profiles/lora.h"
#include "recipe/recipe.h"

namespace ckb {

struct PeftConfig {
  std::int64_t r = 8;
  double alpha = 8;
  bool rslora = false, fan_in_fan_out = false, dora = false;  // lora_bias: found as lora_B.bias tensors
  std::vector<std::pair<std::string, std::int64_t>> rank_pattern;  // in the file's order
  std::vector<std::pair<std::string, double>> alpha_pattern;
  std::vector<std::string> modules_to_save;
};

PeftConfig parse_peft_config(const std::string& adapter_config_json_path);

struct PeftMerge {
  Checkpoint combined;            // the base's leaves plus the adapter's under "adapter/"
  Recipe recipe;                  // einsum_add per LoRA module, replacements, identity for the rest
  std::vector<LoraGroup> groups;
};

// `adapter_dir` holds adapter_config.json and adapter_model.safetensors. Each merged weight
// is computed in float64 and rounded once, to `out_dtype`, or (none) to its base weight's dtype.
PeftMerge peft_merge(const Checkpoint& base, const std::string& adapter_dir, std::optional<DType> out_dtype);

}  // namespace ckb
