// Comparing two checkpoints leaf by leaf: equal bytes, or max absolute / relative error (and,
// between tensors of one floating-point dtype, max ULP distance) with tolerances. Values are
// compared in float64. An element matches when the values are equal (NaN equals NaN at the
// same position), or |a - b| <= atol + rtol * |b| (numpy.allclose), or both tensors have the
// same floating-point dtype and a and b are at most `ulp` representable values apart
// (numpy.testing.assert_array_max_ulp). A leaf matches when its shape, its dtype (unless
// ignore_dtype) and every element match. Tensors are streamed in chunks, so comparing huge
// checkpoints needs little memory.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/tree.h"

namespace ckb {

struct DiffOptions {
  double atol = 0, rtol = 0;
  std::uint64_t ulp = 0;     // 0: no ULP tolerance (ULP distance 0 is equality)
  bool ignore_dtype = false; // compare values only: F32 vs BF16 with equal values is "equal"
  unsigned threads = 0;
};

struct LeafDiff {
  std::string name;
  // equal         identical bytes (or, with ignore_dtype, equal values in different dtypes)
  // close         every element matches, not every bit is equal
  // different     some elements do not match (`mismatches` of them)
  // dtype_mismatch every element matches but the dtypes differ (detail says whether the values
  //               are equal); a difference unless ignore_dtype
  // shape_mismatch, type_mismatch (tensor vs int, ...), only_in_a, only_in_b
  std::string status;
  std::string detail;  // "values equal, dtypes differ: F32 vs BF16", "dtype F32 vs BF16", ...
  double max_abs = 0, max_rel = 0;
  bool ulp_compared = false;  // same floating-point dtype on both sides: max_ulp is meaningful
  std::uint64_t max_ulp = 0, mismatches = 0;
};

struct DiffResult {
  std::vector<LeafDiff> leaves;
  bool within_tolerance() const;
  nlohmann::ordered_json to_json() const;
};

DiffResult diff_trees(const Node& a, const Node& b, const DiffOptions& opts);

}  // namespace ckb
