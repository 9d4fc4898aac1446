// LoRA merging derived from the runtime's einsum equations.
//
// A runtime applies a LoRA pair (A, B) to a weight W used as y = einsum(eqn, x, W) by
// computing y + s * einsum(eqn_b, einsum(eqn_a, x, A), B). The merged weight
// W' = W + s * dW reproduces that when einsum(eqn, x, dW) equals the two-step LoRA path for
// every x. delta_equation() derives dW's equation symbolically from (eqn, eqn_a, eqn_b):
// labels of B that eqn_b sums although the intermediate no longer carries them (the head axis
// N in openpi's attn_vec_einsum: eqn_a already contracted it against x) are summed over B on
// its own, and likewise for A; every other label is matched or contracted as in the runtime.
// The result is checked numerically on random data (self_check), so an equation that cannot
// be merged is refused instead of merged wrongly. No per-module formulas.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/tree.h"
#include "recipe/recipe.h"

namespace ckb {

struct LoraEquations {
  std::string eqn;     // base: "lhs,rhs->out"
  std::string eqn_a;   // "lhs,A->z"
  std::string eqn_b;   // "z,B->out"
};

// openpi's lora.Einsum._make_lora_eqns: axes index the weight (rhs) labels; `label` is the
// rank letter.
LoraEquations make_lora_eqns(const std::string& eqn, int axis_a = -2, int axis_b = -1, char label = 'L');

// The merged-delta equation "A,B->W" (letters only; labels summed over one operand alone get
// fresh letters). `extra_leading` adds that many elementwise axes in front of A, B and W (a
// scanned layer axis, an indexed branch axis). Throws MappingError if the runtime form is not a
// linear map of x that a single weight can express.
std::string delta_equation(const LoraEquations& e, int extra_leading = 0);

// Evaluates both the runtime path and einsum(eqn, x, dW) on random data with small label
// sizes and compares them; throws MappingError naming the equations on mismatch.
void self_check(const LoraEquations& e);

// --- profiles -------------------------------------------------------------------------

struct LoraModuleConfig {
  std::int64_t rank = 0;
  double alpha = 1.0;
  bool rslora = false;
};
struct OpenpiExpertConfig {
  std::optional<LoraModuleConfig> attn, ffn;
};

// Named openpi variants: gemma_2b_lora (r16, a16), gemma_300m_lora (r32, a32), and the
// LoRA-free gemma_2b, gemma_300m, dummy.
std::vector<OpenpiExpertConfig> openpi_variants(const std::string& comma_separated);
// {"experts": [{"attn": {"rank", "alpha", "rslora"}, "ffn": {...}}, ...]} (a fixture's
// model.json "configs" list with "lora" entries is accepted too).
std::vector<OpenpiExpertConfig> openpi_config_file(const std::string& path);
// From `--variant` or `--openpi-config`: UsageError when both are given, empty when neither.
std::vector<OpenpiExpertConfig> openpi_experts(const std::string& variant, const std::string& config_file);

struct LoraGroup {
  std::string base, lora_a, lora_b;  // leaf names as stored (with any /value suffix)
  std::string module;                // q_einsum, kv_einsum, qkv_einsum, attn_vec_einsum, gating_einsum, linear
  int expert = 0;
  std::int64_t rank = 0;
  double scale = 1.0;
  std::string scale_rule;            // "alpha/rank = 16/16", "FeedForward: unscaled"
  std::string equation;              // the derived merged equation used
  LoraEquations eqs;                 // the runtime's forward equations (for verification)
  int extra_leading = 0;             // leading axes shared by W, A and B (scanned layers, ...)
  std::string base_source;           // where the base weight is read when not `base` itself
  bool dora = false;                 // PEFT DoRA: rescaled to a magnitude (verify_merge does not apply)
};

// --verify: applies the stored merged weight and the online LoRA (base + s * x A B, from the
// source tensors) to a random input in float64 and compares the outputs.
struct LoraVerification {
  double max_abs = 0;   // max |y_merged - y_online|
  double max_ref = 0;   // max |y_online|
  double rel() const { return max_ref > 0 ? max_abs / max_ref : max_abs; }
  // fidelity: the stored W' against the float64 merge W + s * dW (the rounding to the output dtype)
  double weight_max_abs = 0, weight_max_rel = 0;
};
LoraVerification verify_merge(const LoraGroup& g, const Tensor& merged, const Tensor& base, const Tensor& a,
                              const Tensor& b, std::uint64_t seed = 1);
// Several groups merged into one weight (PEFT adapters summed; same equations): the online
// output is base + sum_k s_k x A_k B_k, the float64 merge W + sum_k s_k dW_k.
LoraVerification verify_merge(const std::vector<const LoraGroup*>& terms, const Tensor& merged, const Tensor& base,
                              const std::vector<const Tensor*>& a, const std::vector<const Tensor*>& b, std::uint64_t seed = 1);

struct LoraMergeOptions {
  std::vector<OpenpiExpertConfig> experts;
  DType out_dtype = DType::F32;
};

// Finds every openpi LoRA group in `src` and compiles the merge into a recipe: one
// einsum_add rule per group (W + s * dW, rounded once to out_dtype), then identity for all
// other leaves. Throws MappingError when a group has no config, a rank disagrees with the
// config, or a LoRA tensor has no partner or base.
Recipe openpi_merge_recipe(const Checkpoint& src, const LoraMergeOptions& opts, std::vector<LoraGroup>* groups = nullptr);

}  // namespace ckb
