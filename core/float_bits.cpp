// Implementation of core/float_bits.h.
#include "core/float_bits.h"

#include <cmath>

namespace ckb {

double decode_float(FloatFormat f, std::uint32_t bits) {
  const int bias = (1 << (f.exp_bits - 1)) - 1;
  const std::uint32_t man_mask = (1u << f.man_bits) - 1;
  const std::uint32_t exp_max = (1u << f.exp_bits) - 1;
  const bool neg = (bits >> (f.exp_bits + f.man_bits)) & 1u;
  const std::uint32_t e = (bits >> f.man_bits) & exp_max;
  const std::uint32_t m = bits & man_mask;
  double v;
  if (e == exp_max && (f.has_inf || m == man_mask)) {
    if (f.has_inf && m == 0) v = INFINITY;
    else v = NAN;
  } else if (e == 0) {
    v = std::ldexp(static_cast<double>(m), 1 - bias - f.man_bits);
  } else {
    v = std::ldexp(static_cast<double>(m | (1u << f.man_bits)), static_cast<int>(e) - bias - f.man_bits);
  }
  return neg ? -v : v;
}

std::uint32_t encode_float(FloatFormat f, double x, EncodeResult* result) {
  const int bias = (1 << (f.exp_bits - 1)) - 1;
  const std::uint32_t exp_max = (1u << f.exp_bits) - 1;
  const std::uint32_t sign = std::signbit(x) ? (1u << (f.exp_bits + f.man_bits)) : 0u;
  const std::uint32_t nan_bits = f.has_inf ? (exp_max << f.man_bits) | (1u << (f.man_bits - 1))
                                           : (exp_max << f.man_bits) | ((1u << f.man_bits) - 1);
  const std::uint32_t inf_or_nan = f.has_inf ? (exp_max << f.man_bits) : nan_bits;
  auto set = [&](EncodeResult r) {
    if (result) *result = r;
  };
  if (std::isnan(x)) {
    set(EncodeResult::NaN);
    return sign | nan_bits;
  }
  if (std::isinf(x)) {
    set(f.has_inf ? EncodeResult::Exact : EncodeResult::Overflow);
    return sign | inf_or_nan;
  }
  double a = std::fabs(x);
  if (a == 0) {
    set(EncodeResult::Exact);
    return sign;
  }
  int e2;
  std::frexp(a, &e2);
  int unb = e2 - 1;  // a = 1.m * 2^unb
  const int emin = 1 - bias;
  const bool sub = unb < emin;
  const int qexp = (sub ? emin : unb) - f.man_bits;
  double q = std::ldexp(a, -qexp);  // exact: power-of-two scale
  double r = std::nearbyint(q);     // default rounding mode: ties to even
  const bool inexact = r != q;
  std::uint64_t ri = static_cast<std::uint64_t>(r);
  std::uint32_t bits;
  if (sub) {
    bits = static_cast<std::uint32_t>(ri);  // ri == 2^man rolls into the smallest normal
  } else {
    if (ri == (1ull << (f.man_bits + 1))) {
      ri >>= 1;
      ++unb;
    }
    std::uint64_t field = static_cast<std::uint64_t>(unb + bias);
    std::uint64_t man = ri - (1ull << f.man_bits);
    const std::uint64_t max_field = f.has_inf ? exp_max - 1 : exp_max;
    if (field > max_field || (!f.has_inf && field == exp_max && man == (1ull << f.man_bits) - 1)) {
      set(EncodeResult::Overflow);
      return sign | inf_or_nan;
    }
    bits = static_cast<std::uint32_t>((field << f.man_bits) | man);
  }
  set(inexact ? EncodeResult::Rounded : EncodeResult::Exact);
  return sign | bits;
}

}  // namespace ckb
