// Explicit dtype casts as lazy tensor sources. Floating conversions round to nearest even
// (directly from double, never double-rounded through float32); float -> int rounds to
// nearest even and saturates; int -> int saturates. Every element that overflowed, was a
// NaN, or changed value is counted, and a floating result's largest absolute and relative
// error against the exact input value is kept, so reports can say what a cast cost.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

#include "core/tensor.h"

namespace ckb {

struct CastStats {
  std::atomic<std::uint64_t> elements{0};
  std::atomic<std::uint64_t> inexact{0};   // value changed (rounded or saturated)
  std::atomic<std::uint64_t> overflow{0};  // finite input became inf/NaN/saturated
  std::atomic<std::uint64_t> nan{0};       // NaN inputs (and NaN -> int, which becomes 0)
  // Floating targets: max |out - in| and max |out - in| / |in| over finite results of finite
  // inputs (in != 0 for the relative one), measured in float64.
  std::atomic<double> max_abs_error{0};
  std::atomic<double> max_rel_error{0};
  void note_error(double abs_error, double rel_error);
};

// Converts `count` elements from `src` (dtype `from`) into `dst` (dtype `to`).
void convert_elements(DType from, DType to, const std::byte* src, std::byte* dst, std::size_t count,
                      CastStats* stats);

// A tensor reading `base` and converting on the fly. Stats count the elements converted
// through this source (read each tensor once for exact counts).
class CastSource final : public TensorSource {
 public:
  CastSource(Tensor base, DType to, std::shared_ptr<CastStats> stats);
  void read(std::uint64_t offset, std::span<std::byte> out) const override;
  std::string describe() const override;
  std::uint64_t resident_bytes() const override { return base_.source->resident_bytes(); }
  std::uint64_t sequential_resident_bytes() const override { return base_.source->sequential_resident_bytes(); }
  bool parallel_reads() const override { return base_.source->contiguous() || base_.source->parallel_reads(); }
  void release() const override { base_.source->release(); }
  void prefetch(std::uint64_t offset, std::uint64_t len) const override;
  void release_range(std::uint64_t offset, std::uint64_t len) const override {
    const std::uint64_t in = dtype_size(base_.info.dtype), out = dtype_size(to_);
    base_.source->release_range(offset / out * in, len / out * in);
  }
  StreamOrigin stream_origin(std::uint64_t offset) const override;

 private:
  Tensor base_;
  DType to_;
  std::shared_ptr<CastStats> stats_;
};

// The tensor cast to `to` (the same tensor when already `to`).
Tensor cast_tensor(const Tensor& t, DType to, std::shared_ptr<CastStats> stats);

}  // namespace ckb
