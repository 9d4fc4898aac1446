// JAX's default PRNG (threefry2x32) as far as checkpoints need it: the raw key data of
// `jax.random.key(seed)` and of `jax.random.split(key(seed), n)` (with
// jax_threefry_partitionable, the default since JAX 0.5), so that NNX RNG state can be filled
// deterministically without Python (profiles/flax.h). Written by hand: the function is
// 20 rounds of add/rotate/xor and no packaged C++ library reproduces JAX's key layout.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "core/tensor.h"

namespace ckb {

// The Threefry-2x32 block function (20 rounds), JAX's `threefry2x32_p` on one counter pair.
std::array<std::uint32_t, 2> threefry2x32(std::array<std::uint32_t, 2> key, std::array<std::uint32_t, 2> counter);

// `key_data(jax.random.key(seed))`: {seed >> 32, seed & 0xffffffff}.
std::array<std::uint32_t, 2> threefry_key(std::uint64_t seed);

// uint32 `shape + [2]`: for shape [] the key itself, otherwise
// `key_data(split(key(seed), prod(shape)).reshape(shape))`, element i = threefry2x32(key, {0, i}).
Tensor threefry_key_tensor(const Shape& shape, std::uint64_t seed, const std::string& what);

}  // namespace ckb
