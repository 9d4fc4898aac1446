// Comparing two checkpoints leaf by leaf: equal bytes, or max absolute / relative error and
// max ULP distance for floating-point tensors, with numpy.allclose-style tolerances
// (|a - b| <= atol + rtol * |b|; NaN equals NaN at the same position). Tensors are streamed
// in chunks, so comparing huge checkpoints needs little memory.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/tree.h"

namespace ckb {

struct DiffOptions {
  double atol = 0, rtol = 0;
  unsigned threads = 0;
};

struct LeafDiff {
  std::string name;
  std::string status;  // equal, close, different, only_in_a, only_in_b, type_mismatch, shape_mismatch
  std::string detail;
  double max_abs = 0, max_rel = 0;
  std::uint64_t max_ulp = 0, mismatches = 0;
};

struct DiffResult {
  std::vector<LeafDiff> leaves;
  bool within_tolerance() const;
  nlohmann::ordered_json to_json() const;
};

DiffResult diff_trees(const Node& a, const Node& b, const DiffOptions& opts);

}  // namespace ckb
