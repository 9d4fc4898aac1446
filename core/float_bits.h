// Bit-exact conversions between double and the narrow float formats (F16, BF16, F8_E4M3,
// F8_E5M2) with round-to-nearest-even, computed directly from double (no double rounding
// through float32). Decoding is exact. Used by casts and by numeric reports.
#pragma once

#include <cstdint>

namespace ckb {

struct FloatFormat {
  int exp_bits, man_bits;
  bool has_inf;  // IEEE-style (F16, BF16, F8_E5M2); F8_E4M3 ("fn") has no inf: S.1111.111 is NaN
};

inline constexpr FloatFormat kF16{5, 10, true};
inline constexpr FloatFormat kBF16{8, 7, true};
inline constexpr FloatFormat kF8E5M2{5, 2, true};
inline constexpr FloatFormat kF8E4M3{4, 3, false};

enum class EncodeResult : std::uint8_t { Exact, Rounded, Overflow, NaN };

double decode_float(FloatFormat f, std::uint32_t bits);
// Encodes `x` with round-to-nearest-even. Overflow gives inf (or NaN for formats without
// inf, as ml_dtypes does for float8_e4m3fn); NaN keeps its sign and becomes a quiet NaN.
std::uint32_t encode_float(FloatFormat f, double x, EncodeResult* result = nullptr);

}  // namespace ckb
