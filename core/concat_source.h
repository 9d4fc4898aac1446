// A tensor source whose bytes are other sources' bytes side by side, the one concatenation
// used by ops::concat (along any axis) and by Flax's chunked msgpack arrays
// (`__msgpack_chunked_array__`, whose C-order bytes are the chunks' bytes one after another).
//
// The output is `outer` rows; row o holds, for each part k in order, bytes
// [o * part_k.row, (o + 1) * part_k.row) of part k. Concatenating along axis a: outer is the
// product of the dimensions before a and part_k.row the bytes of one slab of part k;
// concatenating flat byte strings: outer = 1 and part_k.row = its length. Reads that straddle
// parts are split; a read past the end is a FormatError naming `what`.
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
    std::uint64_t row;  // bytes this part contributes to each output row
  };
  ConcatSource(std::vector<Part> parts, std::uint64_t outer, std::string what);
  void read(std::uint64_t offset, std::span<std::byte> out) const override;
  // Only a single part can be contiguous.
  const std::byte* contiguous() const override;
  std::string describe() const override { return what_; }
  std::uint64_t resident_bytes() const override;
  void release() const override;
  std::uint64_t size() const { return size_; }

 private:
  std::vector<Part> parts_;
  std::vector<std::uint64_t> starts_;  // starts_[k] = offset of part k within a row; back() = row size
  std::uint64_t outer_, size_ = 0;
  std::string what_;
};

}  // namespace ckb
