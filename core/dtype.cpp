// Tables for core/dtype.h.
#include "core/dtype.h"

#include <array>

namespace ckb {
namespace {

struct Row {
  DType type;
  std::size_t size;
  std::string_view name;
  std::string_view numpy;
};

constexpr std::array<Row, 17> kRows{{
    {DType::F64, 8, "F64", "float64"},
    {DType::F32, 4, "F32", "float32"},
    {DType::F16, 2, "F16", "float16"},
    {DType::BF16, 2, "BF16", "bfloat16"},
    {DType::F8_E4M3, 1, "F8_E4M3", "float8_e4m3fn"},
    {DType::F8_E5M2, 1, "F8_E5M2", "float8_e5m2"},
    {DType::I64, 8, "I64", "int64"},
    {DType::I32, 4, "I32", "int32"},
    {DType::I16, 2, "I16", "int16"},
    {DType::I8, 1, "I8", "int8"},
    {DType::U64, 8, "U64", "uint64"},
    {DType::U32, 4, "U32", "uint32"},
    {DType::U16, 2, "U16", "uint16"},
    {DType::U8, 1, "U8", "uint8"},
    {DType::BOOL, 1, "BOOL", "bool"},
    {DType::C64, 8, "C64", "complex64"},
    {DType::C128, 16, "C128", "complex128"},
}};

const Row& row(DType t) { return kRows[static_cast<std::size_t>(t)]; }

}  // namespace

std::size_t dtype_size(DType t) { return row(t).size; }
std::string_view dtype_name(DType t) { return row(t).name; }
std::string_view dtype_numpy_name(DType t) { return row(t).numpy; }

std::optional<DType> dtype_from_name(std::string_view name) {
  for (const auto& r : kRows)
    if (r.name == name) return r.type;
  return std::nullopt;
}

std::optional<DType> dtype_from_numpy_name(std::string_view name) {
  for (const auto& r : kRows)
    if (r.numpy == name) return r.type;
  return std::nullopt;
}

bool dtype_is_float(DType t) {
  switch (t) {
    case DType::F64: case DType::F32: case DType::F16: case DType::BF16:
    case DType::F8_E4M3: case DType::F8_E5M2: return true;
    default: return false;
  }
}
bool dtype_is_signed_int(DType t) {
  return t == DType::I64 || t == DType::I32 || t == DType::I16 || t == DType::I8;
}
bool dtype_is_unsigned_int(DType t) {
  return t == DType::U64 || t == DType::U32 || t == DType::U16 || t == DType::U8;
}
bool dtype_is_complex(DType t) { return t == DType::C64 || t == DType::C128; }

}  // namespace ckb
