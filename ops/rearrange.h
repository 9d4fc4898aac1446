// einops-style axis rearrangement: "n h d -> (n h) d", "a b -> b a", "(l n) d -> l n d".
// One mechanism for transpose, merging and splitting axes, byte-exact, and invertible by
// swapping the two sides (sizes of split groups come from the input shape or `sizes`).
#pragma once

#include <map>
#include <string>

#include "core/tensor.h"

namespace ckb {

// Applies `spec` to `t`. `sizes` binds axis names the input shape cannot determine.
Tensor rearrange(const Tensor& t, const std::string& spec, const std::map<std::string, std::int64_t>& sizes,
                 const std::string& what);
// Output shape only (for plans); same checks as rearrange().
Shape rearrange_shape(const Shape& in, const std::string& spec, const std::map<std::string, std::int64_t>& sizes,
                      const std::string& what);
// "a b -> b a" becomes "b a -> a b".
std::string invert_rearrange(const std::string& spec);

}  // namespace ckb
