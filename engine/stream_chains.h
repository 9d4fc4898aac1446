// Which of the executor's tensors read through the same stored stream (TensorSource::
// stream_origin: the per-layer tensors unstacked from one stacked zarr array, the gate and
// up halves split from it, LoRA merged onto it or not), so that one worker runs them one
// after another in the order of their bytes in that source: the array is then decoded once,
// front to back, with nothing of it resident, instead of once per layer (or whole, into the
// chunk cache, by every worker that starts a layer out of order).
#pragma once

#include <cstddef>
#include <vector>

#include "core/tensor.h"

namespace ckb {

// `order` lists tensor indices in the executor's priority order. Returns the same indices as
// chains: tensors with a common stream origin form one chain sorted by origin offset (placed
// where its first member was in `order`); every other tensor is a chain of its own.
std::vector<std::vector<std::size_t>> stream_chains(const std::vector<const Tensor*>& tensors,
                                                    const std::vector<std::size_t>& order);

}  // namespace ckb
