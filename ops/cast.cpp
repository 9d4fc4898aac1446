// Implementation of ops/cast.h.
#include <bit>
#include "ops/cast.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "core/errors.h"
#include "core/float_bits.h"

namespace ckb {
namespace {

template <class T>
T load(const std::byte* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}
template <class T>
void store(std::byte* p, T v) {
  std::memcpy(p, &v, sizeof(T));
}

// Every source value fits exactly in either a double (floats, small ints) or an int64/uint64.
struct Value {
  bool is_int = false, is_unsigned = false;
  double d = 0;
  std::int64_t i = 0;
  std::uint64_t u = 0;
};

Value load_value(DType t, const std::byte* p) {
  Value v;
  switch (t) {
    case DType::F64: v.d = load<double>(p); break;
    case DType::F32: v.d = load<float>(p); break;
    case DType::F16: v.d = decode_float(kF16, load<std::uint16_t>(p)); break;
    case DType::BF16: v.d = decode_float(kBF16, load<std::uint16_t>(p)); break;
    case DType::F8_E4M3: v.d = decode_float(kF8E4M3, load<std::uint8_t>(p)); break;
    case DType::F8_E5M2: v.d = decode_float(kF8E5M2, load<std::uint8_t>(p)); break;
    case DType::I64: v.is_int = true; v.i = load<std::int64_t>(p); break;
    case DType::I32: v.is_int = true; v.i = load<std::int32_t>(p); break;
    case DType::I16: v.is_int = true; v.i = load<std::int16_t>(p); break;
    case DType::I8: v.is_int = true; v.i = load<std::int8_t>(p); break;
    case DType::U64: v.is_int = v.is_unsigned = true; v.u = load<std::uint64_t>(p); break;
    case DType::U32: v.is_int = v.is_unsigned = true; v.u = load<std::uint32_t>(p); break;
    case DType::U16: v.is_int = v.is_unsigned = true; v.u = load<std::uint16_t>(p); break;
    case DType::U8: v.is_int = v.is_unsigned = true; v.u = load<std::uint8_t>(p); break;
    case DType::BOOL: v.is_int = v.is_unsigned = true; v.u = load<std::uint8_t>(p) != 0; break;
    default: throw MappingError("", "cannot cast from " + std::string(dtype_name(t)));
  }
  return v;
}

struct Tally {
  std::uint64_t inexact = 0, overflow = 0, nan = 0;
};

// Integer target with range [lo, hi]; stores the saturated value.
template <class T>
void store_int(std::byte* p, const Value& v, Tally& tally) {
  constexpr auto lo = std::numeric_limits<T>::min();
  constexpr auto hi = std::numeric_limits<T>::max();
  if (!v.is_int) {
    if (std::isnan(v.d)) {
      ++tally.nan;
      ++tally.inexact;
      store<T>(p, T{0});
      return;
    }
    double r = std::nearbyint(v.d);
    if (r != v.d) ++tally.inexact;
    if (r < static_cast<double>(lo)) {
      ++tally.overflow, ++tally.inexact;
      store<T>(p, lo);
    } else if (r >= std::ldexp(1.0, std::numeric_limits<T>::digits)) {  // > hi, exact bound
      ++tally.overflow, ++tally.inexact;
      store<T>(p, hi);
    } else {
      store<T>(p, static_cast<T>(r));
    }
    return;
  }
  if (v.is_unsigned) {
    if (v.u > static_cast<std::uint64_t>(hi)) {
      ++tally.overflow, ++tally.inexact;
      store<T>(p, hi);
    } else {
      store<T>(p, static_cast<T>(v.u));
    }
  } else {
    if (v.i < 0 && lo == 0) {
      ++tally.overflow, ++tally.inexact;
      store<T>(p, T{0});
    } else if (v.i > 0 && static_cast<std::uint64_t>(v.i) > static_cast<std::uint64_t>(hi)) {
      ++tally.overflow, ++tally.inexact;
      store<T>(p, hi);
    } else if (lo != 0 && v.i < static_cast<std::int64_t>(lo)) {
      ++tally.overflow, ++tally.inexact;
      store<T>(p, lo);
    } else {
      store<T>(p, static_cast<T>(v.i));
    }
  }
}

double as_double(const Value& v) {
  if (!v.is_int) return v.d;
  return v.is_unsigned ? static_cast<double>(v.u) : static_cast<double>(v.i);
}

void store_narrow(FloatFormat f, std::byte* p, std::size_t width, const Value& v, Tally& tally) {
  EncodeResult r;
  std::uint32_t bits = encode_float(f, as_double(v), &r);
  if (r == EncodeResult::Rounded) ++tally.inexact;
  if (r == EncodeResult::Overflow) ++tally.overflow, ++tally.inexact;
  if (r == EncodeResult::NaN) ++tally.nan;
  if (width == 2) store<std::uint16_t>(p, static_cast<std::uint16_t>(bits));
  else store<std::uint8_t>(p, static_cast<std::uint8_t>(bits));
}

void store_value(DType t, std::byte* p, const Value& v, Tally& tally) {
  switch (t) {
    case DType::F64: {
      if (!v.is_int && std::isnan(v.d)) ++tally.nan;
      double d = as_double(v);
      if (v.is_int && (v.is_unsigned ? static_cast<std::uint64_t>(d) != v.u : static_cast<std::int64_t>(d) != v.i))
        ++tally.inexact;
      store<double>(p, d);
      break;
    }
    case DType::F32: {
      float f;
      if (v.is_int) f = v.is_unsigned ? static_cast<float>(v.u) : static_cast<float>(v.i);  // correctly rounded
      else f = static_cast<float>(v.d);  // RNE
      if (!v.is_int && std::isnan(v.d)) ++tally.nan;
      else if (std::isinf(f) && !std::isinf(as_double(v))) ++tally.overflow, ++tally.inexact;
      else if (static_cast<double>(f) != as_double(v) ||
               (v.is_int && !v.is_unsigned && static_cast<double>(f) >= 0x1p63))
        ++tally.inexact;
      store<float>(p, f);
      break;
    }
    case DType::F16: store_narrow(kF16, p, 2, v, tally); break;
    case DType::BF16: store_narrow(kBF16, p, 2, v, tally); break;
    case DType::F8_E4M3: store_narrow(kF8E4M3, p, 1, v, tally); break;
    case DType::F8_E5M2: store_narrow(kF8E5M2, p, 1, v, tally); break;
    case DType::I64: store_int<std::int64_t>(p, v, tally); break;
    case DType::I32: store_int<std::int32_t>(p, v, tally); break;
    case DType::I16: store_int<std::int16_t>(p, v, tally); break;
    case DType::I8: store_int<std::int8_t>(p, v, tally); break;
    case DType::U64: store_int<std::uint64_t>(p, v, tally); break;
    case DType::U32: store_int<std::uint32_t>(p, v, tally); break;
    case DType::U16: store_int<std::uint16_t>(p, v, tally); break;
    case DType::U8: store_int<std::uint8_t>(p, v, tally); break;
    case DType::BOOL: {
      bool b = v.is_int ? (v.is_unsigned ? v.u != 0 : v.i != 0) : (v.d != 0);
      if (!v.is_int && std::isnan(v.d)) ++tally.nan;
      if (v.is_int ? (v.is_unsigned ? v.u > 1 : (v.i != 0 && v.i != 1)) : (v.d != 0 && v.d != 1)) ++tally.inexact;
      store<std::uint8_t>(p, b ? 1 : 0);
      break;
    }
    default: throw MappingError("", "cannot cast to " + std::string(dtype_name(t)));
  }
}

// The widening and narrowing conversions of the merge path when nobody counts: plain loops
// that vectorise. False for any other pair.
bool convert_uncounted(DType from, DType to, const std::byte* src, std::byte* dst, std::size_t count) {
  if (from == DType::BF16 && to == DType::F64) {
    for (std::size_t k = 0; k < count; ++k)
      store<double>(dst + 8 * k, std::bit_cast<float>(static_cast<std::uint32_t>(load<std::uint16_t>(src + 2 * k)) << 16));
  } else if (from == DType::F32 && to == DType::F64) {
    for (std::size_t k = 0; k < count; ++k) store<double>(dst + 8 * k, load<float>(src + 4 * k));
  } else if (from == DType::F64 && to == DType::F32) {
    for (std::size_t k = 0; k < count; ++k) store<float>(dst + 4 * k, static_cast<float>(load<double>(src + 8 * k)));
  } else {
    return false;
  }
  return true;
}

// Max |out - in| and |out - in| / |in| over the elements whose input and result are finite.
struct ErrorTally {
  double abs = 0, rel = 0;
  void add(double in, double out) {
    if (!std::isfinite(in) || !std::isfinite(out)) return;
    const double e = std::fabs(out - in);
    abs = std::max(abs, e);
    if (in != 0) rel = std::max(rel, e / std::fabs(in));
  }
};

bool widens_exactly(DType from, DType to) {
  if (from == to) return true;
  if (to == DType::F64) return from == DType::F32 || from == DType::F16 || from == DType::BF16 || from == DType::F8_E4M3 ||
                               from == DType::F8_E5M2;
  if (to == DType::F32) return from == DType::F16 || from == DType::BF16 || from == DType::F8_E4M3 || from == DType::F8_E5M2;
  return false;
}

// The rounding error of a conversion already done (`dst` holds the results of `src`).
void measure_errors(DType from, DType to, const std::byte* src, const std::byte* dst, std::size_t count, CastStats& stats) {
  if (!dtype_is_float(to) || widens_exactly(from, to)) return;
  ErrorTally e;
  if (from == DType::F32 && to == DType::BF16) {
    for (std::size_t k = 0; k < count; ++k)
      e.add(load<float>(src + 4 * k),
            std::bit_cast<float>(static_cast<std::uint32_t>(load<std::uint16_t>(dst + 2 * k)) << 16));
  } else if (from == DType::F64 && to == DType::F32) {
    for (std::size_t k = 0; k < count; ++k) e.add(load<double>(src + 8 * k), load<float>(dst + 4 * k));
  } else {
    const std::size_t in = dtype_size(from), out = dtype_size(to);
    for (std::size_t k = 0; k < count; ++k) e.add(as_double(load_value(from, src + in * k)), load_value(to, dst + out * k).d);
  }
  stats.note_error(e.abs, e.rel);
}

void atomic_max(std::atomic<double>& a, double v) {
  double cur = a.load(std::memory_order_relaxed);
  while (v > cur && !a.compare_exchange_weak(cur, v, std::memory_order_relaxed)) {
  }
}

}  // namespace

void CastStats::note_error(double abs_error, double rel_error) {
  atomic_max(max_abs_error, abs_error);
  atomic_max(max_rel_error, rel_error);
}

void convert_elements(DType from, DType to, const std::byte* src, std::byte* dst, std::size_t count,
                      CastStats* stats) {
  if (!stats && convert_uncounted(from, to, src, dst, count)) return;
  const std::size_t in = dtype_size(from), out = dtype_size(to);
  Tally tally;
  if (from == DType::BF16 && to == DType::F32) {
    // Widening is exact: the bf16 bits are the top half of the f32 bits. Counted without a
    // branch so the loop vectorises.
    std::uint64_t nan = 0;
    for (std::size_t k = 0; k < count; ++k) {
      const std::uint32_t b = static_cast<std::uint32_t>(load<std::uint16_t>(src + 2 * k)) << 16;
      store<std::uint32_t>(dst + 4 * k, b);
      nan += (b & 0x7fffffffu) > 0x7f800000u;
    }
    tally.nan += nan;
  } else if (from == DType::F16 && (to == DType::F32 || to == DType::F64)) {
    static const std::vector<float> table = [] {
      std::vector<float> t(65536);
      for (std::uint32_t b = 0; b < 65536; ++b) t[b] = static_cast<float>(decode_float(kF16, b));
      return t;
    }();
    for (std::size_t k = 0; k < count; ++k) {
      float f = table[load<std::uint16_t>(src + 2 * k)];
      if (std::isnan(f)) ++tally.nan;
      if (to == DType::F32) store<float>(dst + 4 * k, f);
      else store<double>(dst + 8 * k, static_cast<double>(f));
    }
  } else if (from == DType::BF16 && to == DType::F64) {
    // The merge hot paths (this, f32 -> f64 and f64 -> f32) count without branches so the
    // loops vectorise.
    std::uint64_t nan = 0;
    for (std::size_t k = 0; k < count; ++k) {
      const std::uint32_t b = static_cast<std::uint32_t>(load<std::uint16_t>(src + 2 * k)) << 16;
      store<double>(dst + 8 * k, static_cast<double>(std::bit_cast<float>(b)));
      nan += (b & 0x7fffffffu) > 0x7f800000u;
    }
    tally.nan += nan;
  } else if (from == DType::F32 && to == DType::F64) {
    std::uint64_t nan = 0;
    for (std::size_t k = 0; k < count; ++k) {
      const float f = load<float>(src + 4 * k);
      store<double>(dst + 8 * k, static_cast<double>(f));
      nan += f != f;
    }
    tally.nan += nan;
  } else if (from == DType::F64 && to == DType::F32) {
    // The hardware conversion rounds to nearest even, as encode_float does.
    // Counted as plain comparisons: a NaN also "differs" after the round trip, and every
    // infinite result of a finite input overflowed.
    constexpr float kInfF = std::numeric_limits<float>::infinity();
    constexpr double kInf = std::numeric_limits<double>::infinity();
    std::uint64_t nan = 0, differ = 0, inf_out = 0, inf_in = 0;
    for (std::size_t k = 0; k < count; ++k) {
      const double d = load<double>(src + 8 * k);
      const float f = static_cast<float>(d);
      store<float>(dst + 4 * k, f);
      nan += d != d;
      differ += static_cast<double>(f) != d;
      inf_out += std::fabs(f) == kInfF;
      inf_in += std::fabs(d) == kInf;
    }
    tally.nan += nan;
    tally.inexact += differ - nan;
    tally.overflow += inf_out - inf_in;
  } else if (from == DType::F32 && to == DType::BF16) {
    // Hot path for the most common cast; same rounding as encode_float (NaN quietened, ties
    // to even). Branch-free so the loop vectorises.
    std::uint64_t nan = 0, inexact = 0, overflow = 0;
    for (std::size_t k = 0; k < count; ++k) {
      const std::uint32_t b = load<std::uint32_t>(src + 4 * k);
      const std::uint32_t mag = b & 0x7fffffffu;
      const std::uint32_t is_nan = mag > 0x7f800000u;
      const std::uint32_t rounded = (b + 0x7fffu + ((b >> 16) & 1u)) >> 16;
      const std::uint32_t quiet = (b >> 16) | 0x40u;
      const std::uint16_t r = static_cast<std::uint16_t>(is_nan ? quiet : rounded);
      store<std::uint16_t>(dst + 2 * k, r);
      nan += is_nan;
      inexact += (1u - is_nan) & ((b & 0xffffu) != 0);
      overflow += (1u - is_nan) & ((r & 0x7fffu) == 0x7f80u) & (mag != 0x7f800000u);
    }
    tally.nan += nan;
    tally.inexact += inexact;
    tally.overflow += overflow;
  } else {
    for (std::size_t k = 0; k < count; ++k) store_value(to, dst + out * k, load_value(from, src + in * k), tally);
  }
  if (stats) {
    measure_errors(from, to, src, dst, count, *stats);
    stats->elements += count;
    stats->inexact += tally.inexact;
    stats->overflow += tally.overflow;
    stats->nan += tally.nan;
  }
}

CastSource::CastSource(Tensor base, DType to, std::shared_ptr<CastStats> stats)
    : base_(std::move(base)), to_(to), stats_(std::move(stats)) {
  if (dtype_is_complex(base_.info.dtype) || dtype_is_complex(to_))
    throw MappingError(base_.source->describe(), "complex casts are not supported");
  if (dtype_is_bytes_only(base_.info.dtype))
    refuse_bytes_only(base_.source->describe(), base_.info.dtype, "cannot be cast to " + std::string(dtype_name(to_)));
  if (dtype_is_bytes_only(to_))
    refuse_bytes_only(base_.source->describe(), to_,
                      "a " + std::string(dtype_name(base_.info.dtype)) + " tensor cannot be cast to it");
}

void CastSource::read(std::uint64_t offset, std::span<std::byte> out) const {
  const std::size_t in = dtype_size(base_.info.dtype), osz = dtype_size(to_);
  if (offset % osz || out.size() % osz) throw MappingError(describe(), "unaligned read of a cast tensor");
  const std::uint64_t first = offset / osz, count = out.size() / osz;
  if (const std::byte* base = base_.source->contiguous()) {  // straight from the mapping
    convert_elements(base_.info.dtype, to_, base + first * in, out.data(), static_cast<std::size_t>(count), stats_.get());
    return;
  }
  constexpr std::uint64_t kBlock = 1u << 20;  // elements per step
  Bytes buf(static_cast<std::size_t>(std::min(count, kBlock) * in));
  for (std::uint64_t done = 0; done < count; done += kBlock) {
    std::uint64_t n = std::min(kBlock, count - done);
    base_.source->read((first + done) * in, {buf.data(), static_cast<std::size_t>(n * in)});
    convert_elements(base_.info.dtype, to_, buf.data(), out.data() + done * osz, static_cast<std::size_t>(n),
                     stats_.get());
  }
}

void CastSource::prefetch(std::uint64_t offset, std::uint64_t len) const {
  const std::uint64_t in = dtype_size(base_.info.dtype), osz = dtype_size(to_);
  base_.source->prefetch(offset / osz * in, (len + osz - 1) / osz * in);
}

TensorSource::StreamOrigin CastSource::stream_origin(std::uint64_t offset) const {
  const std::uint64_t from = dtype_size(base_.info.dtype), to = dtype_size(to_);
  return base_.source->stream_origin(to ? offset / to * from : 0);
}

std::string CastSource::describe() const {
  return base_.source->describe() + " as " + std::string(dtype_name(to_));
}

Tensor cast_tensor(const Tensor& t, DType to, std::shared_ptr<CastStats> stats) {
  if (t.info.dtype == to) return t;
  return Tensor{{to, t.info.shape}, std::make_shared<CastSource>(t, to, std::move(stats))};
}

}  // namespace ckb
