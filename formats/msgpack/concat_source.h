// A tensor source that is the concatenation of other sources, used for Flax's chunked
// arrays (`__msgpack_chunked_array__`): the C-order bytes of the whole array are the chunks'
// bytes one after the other. Reads that straddle chunk boundaries are split.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace ckb {

class ConcatSource final : public TensorSource {
 public:
  struct Part {
    SourcePtr source;
    std::uint64_t len;  // bytes taken from the start of `source`
  };
  ConcatSource(std::vector<Part> parts, std::string what);
  void read(std::uint64_t offset, std::span<std::byte> out) const override;
  // Only a single part can be contiguous.
  const std::byte* contiguous() const override;
  std::string describe() const override;
  std::uint64_t size() const { return starts_.empty() ? 0 : starts_.back(); }

 private:
  std::vector<Part> parts_;
  std::vector<std::uint64_t> starts_;  // starts_[i] = offset of part i; back() = total
  std::string what_;
};

}  // namespace ckb
