// Tensor operations as lazy sources. Each op checks shapes and dtypes when it is built
// (metadata only) and moves bytes only when its output is read, so a plan over a huge
// checkpoint costs nothing until execution. Layout-only ops (reshape, permute, slice,
// index, concat, stack) are byte-exact; arithmetic ops (add, einsum) compute in float64
// and round once to the output dtype (round-to-nearest-even).
//
// Memory: ops that cannot stream (permute, einsum, add of non-contiguous inputs)
// materialise their inputs when read; resident_bytes() reports that so the executor can
// bound memory by a window plus the largest group.
#pragma once

#include <string>
#include <vector>

#include "core/tensor.h"
#include "ops/cast.h"

namespace ckb::ops {

// Same bytes, new shape (numel must match). Throws MappingError naming `what`.
Tensor reshape(const Tensor& t, Shape shape, const std::string& what);
// Output axis i is input axis perm[i].
Tensor permute(const Tensor& t, const std::vector<int>& perm, const std::string& what);
// Elements [start, stop) along `axis` (negative axis counts from the end).
Tensor slice(const Tensor& t, int axis, std::int64_t start, std::int64_t stop, const std::string& what);
// Index `i` along `axis`, removing that axis.
Tensor index(const Tensor& t, int axis, std::int64_t i, const std::string& what);
// `parts` equal pieces along `axis`.
std::vector<Tensor> split(const Tensor& t, int axis, std::int64_t parts, const std::string& what);
// Concatenation along `axis`; dtypes and other dims must agree.
Tensor concat(const std::vector<Tensor>& ts, int axis, const std::string& what);
// Stack along a new axis `axis`.
Tensor stack(const std::vector<Tensor>& ts, int axis, const std::string& what);
// Elementwise a + scale * b (same shape), output dtype `out`.
Tensor add(const Tensor& a, const Tensor& b, double scale, DType out, const std::string& what);
// v * magnitude[k] / ||v[k]||, the norm over every axis but `keep_axis` (DoRA), in float64,
// rounded once to `out`. The whole tensor is computed on first read.
Tensor rescale_to_norm(const Tensor& v, const Tensor& magnitude, int keep_axis, DType out, const std::string& what);
// A tensor of one value.
Tensor fill(TensorInfo info, double value, const std::string& what);
// Einsum over explicit labels ("ab,bc->ac"; one or two operands, no ellipsis) computed in
// float64 on GEMM (ops/einsum.h), times `scale`, rounded once to `out`.
Tensor einsum(const std::string& equation, const std::vector<Tensor>& ts, double scale, DType out,
              const std::string& what);

// Normalises a possibly negative axis for rank `rank` (UsageError-free: MappingError).
int norm_axis(int axis, std::size_t rank, const std::string& what);

// Loads all elements as float64 (any real dtype).
std::vector<double> to_doubles(const Tensor& t);
// Encodes float64 values into `dtype` bytes with RNE.
Bytes from_doubles(const std::vector<double>& v, DType dtype, CastStats* stats = nullptr);

}  // namespace ckb::ops
