// openpi's Gemma variants read off a checkpoint's shapes, so a shipped variant needs no flags.
//
// Each expert ("" = PaliGemma, "_1" = the action expert) is measured from its stacked layer
// weights (params/PaliGemma/llm/layers/...): width, depth, mlp dim, heads, kv heads, head dim
// (q_einsum + kv_einsum, or the fused qkv_einsum when kv heads == heads) and the LoRA rank of
// every module that carries factors. The measurements are matched against openpi's shipped
// table (gemma.get_config; ../shared/research/openpi.md §2.1):
//   dummy       64 / 4 / 128 / 8 heads / 1 kv / 16
//   gemma_300m  1024 / 18 / 4096 / 8 / 1 / 256     gemma_300m_lora: attn & ffn rank 32, alpha 32
//   gemma_2b    2048 / 18 / 16384 / 8 / 1 / 256    gemma_2b_lora:   attn & ffn rank 16, alpha 16
// An expert with LoRA factors matches only a *_lora variant of the same shape and ranks (its
// alpha is then known); anything else with LoRA is an error that prints what was measured and
// the --openpi-config JSON to fill in (openpi never stores alpha). pi05 is read from the tree
// (adaRMS `Dense_0` modulation in the LLM, `time_mlp_in`), never from the path.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/tree.h"
#include "profiles/lora.h"

namespace ckb {

struct OpenpiExpertShape {
  std::string suffix;  // "" or "_1"
  std::int64_t width = 0, depth = 0, mlp_dim = 0, heads = 0, kv_heads = 0, head_dim = 0;
  bool fused_qkv = false;                       // qkv_einsum (MHA) instead of q_einsum + kv_einsum
  std::map<std::string, std::int64_t> lora;    // module (q_einsum, ..., gating_einsum, linear) -> rank
  std::string variant;                          // the matching shipped variant, "" when none
  nlohmann::ordered_json to_json() const;
};

struct OpenpiDetection {
  std::vector<OpenpiExpertShape> experts;
  bool pi05 = false;
  bool has_lora() const;
  // One line per expert for notes: "expert 0: gemma_2b_lora (width 2048, depth 18, ...)".
  std::vector<std::string> summary() const;
  nlohmann::ordered_json to_json() const;
};

// Measures `root` (value wrappers already removed). Experts whose weights are absent are skipped.
OpenpiDetection detect_openpi(const Node& root);

// The LoRA configs of the detected variants, one per expert: MappingError (naming the source,
// printing the measurements and the --openpi-config JSON to fill in) when an expert carries
// LoRA factors and matches no shipped *_lora variant.
std::vector<OpenpiExpertConfig> openpi_configs_from_detection(const OpenpiDetection& d, const std::string& source);

}  // namespace ckb
