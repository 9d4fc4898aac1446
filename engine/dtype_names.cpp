// engine::parse_float_dtype (the dtype names users type) and engine::convert (engine/api.h).
#include <cctype>

#include "engine/api.h"
#include "ops/cast.h"

namespace ckb::engine {

std::optional<DType> parse_float_dtype(const std::string& name) {
  std::string low;
  for (char c : name) low += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (low.empty() || low == "auto" || low == "keep") return std::nullopt;
  static const std::pair<const char*, DType> aliases[] = {
      {"bf16", DType::BF16}, {"bfloat16", DType::BF16}, {"fp16", DType::F16}, {"f16", DType::F16},
      {"float16", DType::F16}, {"half", DType::F16},   {"fp32", DType::F32}, {"f32", DType::F32},
      {"float32", DType::F32}, {"float", DType::F32},  {"fp64", DType::F64}, {"f64", DType::F64},
      {"float64", DType::F64}, {"double", DType::F64},
  };
  for (const auto& [a, t] : aliases)
    if (low == a) return t;
  std::string up;
  for (char c : name) up += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  std::optional<DType> t = dtype_from_name(up);
  if (!t) t = dtype_from_numpy_name(low);
  if (!t || !dtype_is_float(*t))
    throw UsageError("--dtype must be a floating-point dtype (bf16, fp16, fp32, fp64, f8_e4m3, f8_e5m2, their long "
                     "names such as bfloat16 or float32, or auto to keep), got '" + name + "'");
  return t;
}

void convert(DType from, DType to, const void* src, void* dst, std::uint64_t n) {
  if (dtype_is_bytes_only(from) || dtype_is_bytes_only(to))
    throw UsageError("no conversion between " + std::string(dtype_name(from)) + " and " + std::string(dtype_name(to)) +
                     " (bytes-only dtype)");
  convert_elements(from, to, static_cast<const std::byte*>(src), static_cast<std::byte*>(dst), n, nullptr);
}

}  // namespace ckb::engine
