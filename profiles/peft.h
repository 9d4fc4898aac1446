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
//
// Several adapters in one pass (as llama.cpp's export-lora): W' = W + sum_i c_i s_i B_i A_i,
// c_i the adapter's scale (`--adapter DIR:0.5`, default 1), summed in float64 and rounded
// once; lora_bias sums likewise. Every adapter must fit the base (each delta's shape checked
// against the base weight's). Refused, with the adapter named: a DoRA adapter together with
// any other (each DoRA merge rescales the weight to its own magnitude, so the result would
// depend on the order: merge it alone, then merge the next into its output), a saved
// embedding base layer on a weight another adapter also changes, and two adapters replacing
// (modules_to_save) or both replacing and merging one tensor.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

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

struct PeftAdapter {
  std::string dir;     // holds adapter_config.json and adapter_model.safetensors
  double scale = 1.0;  // multiplies every module's lora_alpha/r (llama.cpp export-lora's scale)
};

// One `--adapter` value: DIR, or DIR:SCALE where SCALE is a trailing ":<number>" (optional
// sign, digits with an optional point, optional exponent: "0.5", "-1", "2e-1"). Anything
// else after a ':' is part of the path ("C:/x", "run:v2", "a:nan"); a folder whose own name
// ends in ":<number>" is given with an explicit scale ("ckpt:3:1"). UsageError for an empty path.
PeftAdapter parse_peft_adapter(const std::string& text);
// A repeated `adapter` profile option (values joined by '\n', profiles/profile.h), in order.
std::vector<PeftAdapter> parse_peft_adapters(const std::string& joined);

struct PeftMerge {
  // the base's leaves plus each adapter's: under "adapter/" (one adapter) or "adapter1/",
  // "adapter2/", ... (several, in the order given)
  Checkpoint combined;
  Recipe recipe;                  // einsum_add per merged weight, replacements, identity for the rest
  std::vector<LoraGroup> groups;  // one per adapter and module, in the adapters' order
  // per adapter: {"path", "scale", "modules": [module names merged], "replaced": [base tensors]}
  nlohmann::ordered_json adapters = nlohmann::ordered_json::array();
};

// Each merged weight is computed in float64 and rounded once, to `out_dtype`, or (none) to its
// base weight's dtype. MappingError listing every problem (each line naming the adapter
// tensor, and the adapter folder when there are several).
PeftMerge peft_merge(const Checkpoint& base, const std::vector<PeftAdapter>& adapters, std::optional<DType> out_dtype);
inline PeftMerge peft_merge(const Checkpoint& base, const std::string& adapter_dir, std::optional<DType> out_dtype) {
  return peft_merge(base, std::vector<PeftAdapter>{{adapter_dir, 1.0}}, out_dtype);
}

}  // namespace ckb
