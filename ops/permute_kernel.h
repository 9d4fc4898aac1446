// The byte-moving kernel behind ops::permute: output elements [e0, e1) of a permutation of
// a C-order array, written straight into the caller's buffer (so a permuted tensor is served
// in ranges without materialising its output, and ranges can be produced by several threads).
//
// Axes of size 1 are dropped and axes that stay adjacent and in order are merged first, so
// "c d f -> (c f) d" with c = 1 is a plain 2-D transpose. When the output's innermost axis is
// also the input's innermost one, runs are copied whole; otherwise the input's innermost axis
// (at some output position q) and the output's innermost axis are walked in cache-sized tiles
// (a blocked transpose), and only the parts of a range that do not cover whole steps of axis
// q fall back to an element-by-element walk. Element sizes 1, 2, 4, 8 and 16 bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace ckb {

// `src` holds the input (shape `in_shape`, C order, `elem` bytes per element); output axis i
// is input axis perm[i] (a valid permutation). Writes output elements [e0, e1) (C order of
// the permuted shape) to dst[0 .. (e1 - e0) * elem).
void permute_range(const std::byte* src, const std::vector<std::int64_t>& in_shape, const std::vector<int>& perm,
                   std::size_t elem, std::uint64_t e0, std::uint64_t e1, std::byte* dst);

}  // namespace ckb
