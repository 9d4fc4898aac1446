// Reading part of a tensor: a hyper-rectangle (a NumPy basic slice with unit steps) or a
// byte range with several threads. Used where a caller wants fewer bytes than a whole tensor
// (Python's get_slice, one device shard of a jax.Array) or wants a large tensor fast.
//
// Contract:
//  - read_region copies the elements start[d] <= i_d < stop[d] of every axis d into `out`
//    in C order (out.size() == product of the extents * element size). It asks the source
//    only for the runs of bytes the region covers (one read per contiguous run; a chunked
//    source decodes only the chunks those runs touch), so a slice costs what it selects.
//    Bounds are checked (UsageError naming the tensor); sub-byte dtypes (F4, F6) can only be
//    read whole.
//  - read_parallel reads bytes [offset, offset + out.size()) of a source, split over up to
//    `threads` workers of the shared pool when the source reads disjoint ranges efficiently
//    (TensorSource::parallel_reads) and the range is large; one read otherwise.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "core/tensor.h"

namespace ckb {

void read_region(const Tensor& t, std::span<const std::int64_t> start, std::span<const std::int64_t> stop,
                 std::span<std::byte> out, const std::string& name, unsigned threads = 0);

void read_parallel(const TensorSource& src, std::uint64_t offset, std::span<std::byte> out, unsigned threads = 0);

}  // namespace ckb
