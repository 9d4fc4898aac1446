// Implementation of ops/prng.h.
#include "ops/prng.h"

#include <cstring>

#include "core/errors.h"

namespace ckb {

std::array<std::uint32_t, 2> threefry2x32(std::array<std::uint32_t, 2> key, std::array<std::uint32_t, 2> x) {
  static constexpr int kRot[2][4] = {{13, 15, 26, 6}, {17, 29, 16, 24}};
  const std::uint32_t ks[3] = {key[0], key[1], key[0] ^ key[1] ^ 0x1BD11BDAu};
  auto rotl = [](std::uint32_t v, int r) { return (v << r) | (v >> (32 - r)); };
  x[0] += ks[0];
  x[1] += ks[1];
  for (int i = 0; i < 5; ++i) {
    for (int r : kRot[i % 2]) {
      x[0] += x[1];
      x[1] = rotl(x[1], r);
      x[1] ^= x[0];
    }
    x[0] += ks[(i + 1) % 3];
    x[1] += ks[(i + 2) % 3] + static_cast<std::uint32_t>(i + 1);
  }
  return x;
}

std::array<std::uint32_t, 2> threefry_key(std::uint64_t seed) {
  return {static_cast<std::uint32_t>(seed >> 32), static_cast<std::uint32_t>(seed)};
}

Tensor threefry_key_tensor(const Shape& shape, std::uint64_t seed, const std::string& what) {
  std::uint64_t n = 1;
  for (auto d : shape) {
    if (d < 0 || (d > 0 && n > (std::uint64_t{1} << 40) / static_cast<std::uint64_t>(d)))
      throw MappingError(what, "PRNG key shape " + shape_str(shape) + " is too large");
    n *= static_cast<std::uint64_t>(d);
  }
  TensorInfo info{DType::U32, shape};
  info.shape.push_back(2);
  Bytes bytes(static_cast<std::size_t>(n * 8));
  auto* out = reinterpret_cast<std::uint32_t*>(bytes.data());
  const auto key = threefry_key(seed);
  if (shape.empty()) {
    out[0] = key[0], out[1] = key[1];
  } else {
    for (std::uint64_t i = 0; i < n; ++i) {
      const auto k = threefry2x32(key, {static_cast<std::uint32_t>(i >> 32), static_cast<std::uint32_t>(i)});
      out[2 * i] = k[0], out[2 * i + 1] = k[1];
    }
  }
  return make_memory_tensor(info, std::move(bytes), what);
}

}  // namespace ckb
