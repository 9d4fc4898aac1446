// What the LoRA-merging profiles (openpi-merge, peft) share: the report entry of each merged
// module, and `verify`: re-reading the written weights and comparing each merged weight with
// the online LoRA (base + s * x A B) on a random input.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/tree.h"
#include "profiles/lora.h"
#include "profiles/profile.h"

namespace ckb {

nlohmann::ordered_json lora_groups_json(const std::vector<LoraGroup>& groups);

// The merged-weights dtype a LoRA profile's "merged-dtype" option names (default F32).
DType merged_dtype_option(const std::map<std::string, std::string>& options);

// Compares the output at `written_path` with the online LoRA of `source`; fills
// report["verify"] and report["summary"]["verify"]; a failure when the worst relative
// difference exceeds the tolerance of `out` (1e-4 for F32/F64, 5e-2 otherwise).
AfterWriteResult verify_lora_output(const std::vector<LoraGroup>& groups, const Checkpoint& source,
                                    const std::string& written_path, std::optional<std::int64_t> step, DType out,
                                    nlohmann::ordered_json& report);

// The state both LoRA profiles keep between prepare() and after_write().
struct LoraMergeState {
  std::vector<LoraGroup> groups;
  Checkpoint source;
  DType out = DType::F32;  // the merged weights' dtype (the least precise one when they keep their base's)
  bool verify = false;
  // A Hugging Face model folder written from a base folder: the files copied beside the weights.
  std::string base_folder;
  std::vector<std::string> folder_files;
};

}  // namespace ckb
