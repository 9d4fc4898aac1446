// dtype strings and fill values for formats/zarr/zarr_dtype.h.
#include "formats/zarr/zarr_dtype.h"

#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>

namespace ckb::zarr {

std::optional<ZarrDType> parse_v2_dtype(const std::string& s) {
  if (s == "bfloat16") return ZarrDType{DType::BF16, 2, false, s};
  if (s == "float8_e4m3fn") return ZarrDType{DType::F8_E4M3, 1, false, s};
  if (s == "float8_e5m2") return ZarrDType{DType::F8_E5M2, 1, false, s};
  if (s == "float8_e4m3fnuz") return ZarrDType{DType::F8_E4M3FNUZ, 1, false, s};
  if (s == "float8_e5m2fnuz") return ZarrDType{DType::F8_E5M2FNUZ, 1, false, s};
  if (s.size() < 3) return std::nullopt;
  const char endian = s[0];
  if (endian != '<' && endian != '>' && endian != '|') return std::nullopt;
  const char kind = s[1];
  std::size_t size = 0;
  for (std::size_t i = 2; i < s.size(); ++i) {
    if (s[i] < '0' || s[i] > '9' || size > 1000) return std::nullopt;
    size = size * 10 + static_cast<std::size_t>(s[i] - '0');
  }
  std::optional<DType> t;
  switch (kind) {
    case 'b': if (size == 1) t = DType::BOOL; break;
    case 'i': t = size == 1 ? DType::I8 : size == 2 ? DType::I16 : size == 4 ? DType::I32 : size == 8 ? DType::I64 : t; break;
    case 'u': t = size == 1 ? DType::U8 : size == 2 ? DType::U16 : size == 4 ? DType::U32 : size == 8 ? DType::U64 : t; break;
    case 'f': t = size == 2 ? DType::F16 : size == 4 ? DType::F32 : size == 8 ? DType::F64 : t; break;
    case 'c': t = size == 8 ? DType::C64 : size == 16 ? DType::C128 : t; break;
    case 'V': if (size == 2) t = DType::BF16; break;  // numpy's spelling of ml_dtypes.bfloat16
    default: break;
  }
  if (!t) return std::nullopt;
  if (endian == '|' && size != 1 && kind != 'V') return std::nullopt;
  return ZarrDType{*t, size, endian == '>' && kind != 'V', s};
}

std::optional<ZarrDType> parse_v3_dtype(const std::string& s) {
  struct E { const char* name; DType t; };
  static constexpr E table[] = {
      {"bool", DType::BOOL},       {"int8", DType::I8},       {"int16", DType::I16},    {"int32", DType::I32},
      {"int64", DType::I64},       {"uint8", DType::U8},      {"uint16", DType::U16},   {"uint32", DType::U32},
      {"uint64", DType::U64},      {"float16", DType::F16},   {"bfloat16", DType::BF16}, {"float32", DType::F32},
      {"float64", DType::F64},     {"complex64", DType::C64}, {"complex128", DType::C128},
      {"float8_e4m3fn", DType::F8_E4M3}, {"float8_e5m2", DType::F8_E5M2},
      {"float8_e4m3fnuz", DType::F8_E4M3FNUZ}, {"float8_e5m2fnuz", DType::F8_E5M2FNUZ},
  };
  for (const auto& e : table)
    if (s == e.name) return ZarrDType{e.t, dtype_size(e.t), false, s};
  return std::nullopt;
}

std::uint16_t float_to_bf16_bits(float f) {
  std::uint32_t u = std::bit_cast<std::uint32_t>(f);
  if (std::isnan(f)) return static_cast<std::uint16_t>((u >> 16) | 0x40);
  u += 0x7FFF + ((u >> 16) & 1);
  return static_cast<std::uint16_t>(u >> 16);
}

std::uint16_t float_to_half_bits(float f) {
  const std::uint32_t u = std::bit_cast<std::uint32_t>(f);
  const std::uint16_t sign = static_cast<std::uint16_t>((u >> 16) & 0x8000);
  const std::uint32_t absu = u & 0x7FFFFFFF;
  if (absu > 0x7F800000) return sign | 0x7E00;  // NaN
  if (absu >= 0x477FF000) return sign | 0x7C00;  // rounds to >= 65520: inf
  if (absu < 0x38800000) {                      // subnormal half (or zero)
    // value = absu as float; half subnormal unit = 2^-24
    const float a = std::bit_cast<float>(absu);
    return sign | static_cast<std::uint16_t>(std::nearbyint(a * 16777216.0f));
  }
  std::uint32_t v = absu - 0x38000000;  // rebias exponent 127 -> 15
  v += 0xFFF + ((v >> 13) & 1);
  return sign | static_cast<std::uint16_t>(v >> 13);
}

namespace {

template <class T>
std::vector<std::byte> bytes_of(T v) {
  std::vector<std::byte> b(sizeof(T));
  std::memcpy(b.data(), &v, sizeof(T));
  return b;
}

double number_of(const nlohmann::json& v) {
  if (v.is_number()) return v.get<double>();
  if (v.is_string()) {
    const auto& s = v.get_ref<const std::string&>();
    if (s == "NaN") return std::numeric_limits<double>::quiet_NaN();
    if (s == "Infinity") return std::numeric_limits<double>::infinity();
    if (s == "-Infinity") return -std::numeric_limits<double>::infinity();
  }
  if (v.is_boolean()) return v.get<bool>() ? 1.0 : 0.0;
  throw std::invalid_argument("unsupported fill value " + v.dump());
}

std::vector<std::byte> float_bytes(double d, DType t) {
  switch (t) {
    case DType::F64: return bytes_of(d);
    case DType::F32: return bytes_of(static_cast<float>(d));
    case DType::F16: return bytes_of(float_to_half_bits(static_cast<float>(d)));
    case DType::BF16: return bytes_of(float_to_bf16_bits(static_cast<float>(d)));
    case DType::F8_E4M3:
    case DType::F8_E5M2:
    case DType::F8_E4M3FNUZ:  // zero is 0x00 in these too (0x80 is their NaN)
    case DType::F8_E5M2FNUZ:
      if (d == 0.0 && !std::signbit(d)) return {std::byte{0}};
      throw std::invalid_argument("only 0 or a raw-bits fill value is supported for float8");
    default: break;
  }
  throw std::invalid_argument("not a float type");
}

template <class T>
std::vector<std::byte> int_bytes(const nlohmann::json& v) {
  if (!v.is_number_integer() && !v.is_boolean())
    throw std::invalid_argument("fill value " + v.dump() + " is not an integer");
  if (v.is_boolean()) return bytes_of(static_cast<T>(v.get<bool>()));
  if (v.is_number_unsigned()) {
    auto u = v.get<std::uint64_t>();
    if (u > static_cast<std::uint64_t>(std::numeric_limits<T>::max()))
      throw std::invalid_argument("fill value " + v.dump() + " out of range");
    return bytes_of(static_cast<T>(u));
  }
  auto i = v.get<std::int64_t>();
  if constexpr (std::is_unsigned_v<T>) {
    if (i < 0) throw std::invalid_argument("fill value " + v.dump() + " out of range");
    if (static_cast<std::uint64_t>(i) > static_cast<std::uint64_t>(std::numeric_limits<T>::max()))
      throw std::invalid_argument("fill value " + v.dump() + " out of range");
  } else {
    if (i < std::numeric_limits<T>::min() || i > std::numeric_limits<T>::max())
      throw std::invalid_argument("fill value " + v.dump() + " out of range");
  }
  return bytes_of(static_cast<T>(i));
}

}  // namespace

std::optional<std::vector<std::byte>> parse_fill_value(const nlohmann::json& v, const ZarrDType& t) {
  if (v.is_null()) return std::nullopt;
  // v3 raw-bits hex ("0x7fc00000"), most significant digit first.
  if (v.is_string() && v.get_ref<const std::string&>().rfind("0x", 0) == 0) {
    const auto& s = v.get_ref<const std::string&>();
    const std::size_t nbits = (s.size() - 2) * 4;
    if (nbits != t.itemsize * 8 || t.itemsize > 8) throw std::invalid_argument("fill value " + s + " has the wrong width");
    std::uint64_t bits = std::stoull(s.substr(2), nullptr, 16);
    std::vector<std::byte> b(t.itemsize);
    std::memcpy(b.data(), &bits, t.itemsize);  // little-endian host
    return b;
  }
  switch (t.dtype) {
    case DType::BOOL:
      if (v.is_boolean()) return std::vector<std::byte>{std::byte{static_cast<unsigned char>(v.get<bool>())}};
      if (v.is_number_integer() && (v.get<std::int64_t>() == 0 || v.get<std::int64_t>() == 1))
        return std::vector<std::byte>{std::byte{static_cast<unsigned char>(v.get<std::int64_t>())}};
      throw std::invalid_argument("fill value " + v.dump() + " is not a bool");
    case DType::I8: return int_bytes<std::int8_t>(v);
    case DType::I16: return int_bytes<std::int16_t>(v);
    case DType::I32: return int_bytes<std::int32_t>(v);
    case DType::I64: return int_bytes<std::int64_t>(v);
    case DType::U8: return int_bytes<std::uint8_t>(v);
    case DType::U16: return int_bytes<std::uint16_t>(v);
    case DType::U32: return int_bytes<std::uint32_t>(v);
    case DType::U64: return int_bytes<std::uint64_t>(v);
    case DType::C64:
    case DType::C128: {
      if (!v.is_array() || v.size() != 2) throw std::invalid_argument("complex fill value must be [re, im]");
      const DType part = t.dtype == DType::C64 ? DType::F32 : DType::F64;
      auto re = float_bytes(number_of(v[0]), part), im = float_bytes(number_of(v[1]), part);
      re.insert(re.end(), im.begin(), im.end());
      return re;
    }
    default: return float_bytes(number_of(v), t.dtype);
  }
}

}  // namespace ckb::zarr
