// Einsum on a fast GEMM, and the blocked "base + scale * einsum(...)" source that LoRA merges
// and einsum_add rules use.
//
// Two-operand einsums are lowered to batched matrix products: labels are classified as
// batch (both operands and the output), M (first operand and output), N (second operand and
// output) or K (both operands, contracted); labels only one operand has and the output lacks
// are summed out of that operand first (this is how openpi's attn_vec LoRA sums lora_b over
// heads). The products run in float64 through OpenBLAS dgemm, so a merged weight is rounded
// once, at the end, to its output dtype.
//
// einsum_add() computes its output in blocks along the leading output axes, so merging a
// stacked [layers, ...] weight holds one block (a few tens of MB) at a time, not the tensor.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "ops/cast.h"

namespace ckb {

struct EinsumSpec {
  std::vector<std::string> inputs;  // labels per operand
  std::string output;
};

// Parses "ab,bc->ac" (spaces ignored) and checks it against the operand shapes.
EinsumSpec parse_einsum(const std::string& equation, const std::vector<Shape>& shapes, const std::string& what);
// The output shape.
Shape einsum_shape(const EinsumSpec& spec, const std::vector<Shape>& shapes);
// Evaluates on float64 data (C order). One or two operands.
std::vector<double> einsum_f64(const EinsumSpec& spec, const std::vector<const double*>& data,
                               const std::vector<Shape>& shapes);

// base + scale * einsum(equation, operands), rounded to `out` (round to nearest even);
// without a base, just scale * einsum. Lazy and blocked; `block_elems` bounds one block.
// `rounding`, when given, counts the final float64 -> `out` rounding (errors against the
// float64 result; ops/cast.h) as the tensor is read.
Tensor einsum_add(const std::optional<Tensor>& base, const std::vector<Tensor>& operands, const std::string& equation,
                  double scale, DType out, const std::string& what, std::uint64_t block_elems = 1u << 16,
                  std::shared_ptr<CastStats> rounding = nullptr);

}  // namespace ckb
