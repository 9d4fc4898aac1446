// Tables for core/dtype.h.
#include "core/dtype.h"

#include <array>

#include "core/errors.h"

namespace ckb {
namespace {

struct Row {
  DType type;
  std::size_t bits;
  std::string_view name;
  std::string_view numpy;
};

// Names and bit sizes of the bytes-only rows follow safetensors' Dtype enum
// (safetensors/src/tensor.rs, Dtype::bitsize); numpy names are ml_dtypes'.
constexpr std::array<Row, 23> kRows{{
    {DType::F64, 64, "F64", "float64"},
    {DType::F32, 32, "F32", "float32"},
    {DType::F16, 16, "F16", "float16"},
    {DType::BF16, 16, "BF16", "bfloat16"},
    {DType::F8_E4M3, 8, "F8_E4M3", "float8_e4m3fn"},
    {DType::F8_E5M2, 8, "F8_E5M2", "float8_e5m2"},
    {DType::I64, 64, "I64", "int64"},
    {DType::I32, 32, "I32", "int32"},
    {DType::I16, 16, "I16", "int16"},
    {DType::I8, 8, "I8", "int8"},
    {DType::U64, 64, "U64", "uint64"},
    {DType::U32, 32, "U32", "uint32"},
    {DType::U16, 16, "U16", "uint16"},
    {DType::U8, 8, "U8", "uint8"},
    {DType::BOOL, 8, "BOOL", "bool"},
    {DType::C64, 64, "C64", "complex64"},
    {DType::C128, 128, "C128", "complex128"},
    {DType::F8_E8M0, 8, "F8_E8M0", "float8_e8m0fnu"},
    {DType::F8_E4M3FNUZ, 8, "F8_E4M3FNUZ", "float8_e4m3fnuz"},
    {DType::F8_E5M2FNUZ, 8, "F8_E5M2FNUZ", "float8_e5m2fnuz"},
    {DType::F6_E2M3, 6, "F6_E2M3", ""},
    {DType::F6_E3M2, 6, "F6_E3M2", ""},
    {DType::F4, 4, "F4", ""},
}};

const Row& row(DType t) { return kRows[static_cast<std::size_t>(t)]; }

}  // namespace

std::size_t dtype_bits(DType t) { return row(t).bits; }

std::size_t dtype_size(DType t) {
  const Row& r = row(t);
  if (r.bits % 8)
    throw MappingError("", std::string(r.name) + " elements are " + std::to_string(r.bits) +
                               " bits, packed across bytes; this operation addresses single elements and cannot "
                               "handle them (only layout-only copies of whole tensors can)");
  return r.bits / 8;
}

std::uint64_t dtype_storage_bytes(DType t, std::uint64_t numel) {
  const std::uint64_t bits = row(t).bits;
  if (bits % 8 == 0) return numel * (bits / 8);
  return numel / 8 * bits + (numel % 8 * bits + 7) / 8;  // no overflow for numel near 2^64 / bits
}

std::string_view dtype_name(DType t) { return row(t).name; }
std::string_view dtype_numpy_name(DType t) { return row(t).numpy; }

std::optional<DType> dtype_from_name(std::string_view name) {
  for (const auto& r : kRows)
    if (r.name == name) return r.type;
  return std::nullopt;
}

std::optional<DType> dtype_from_numpy_name(std::string_view name) {
  if (name.empty()) return std::nullopt;
  for (const auto& r : kRows)
    if (r.numpy == name) return r.type;
  return std::nullopt;
}

bool dtype_is_subbyte(DType t) { return row(t).bits % 8 != 0; }

bool dtype_is_bytes_only(DType t) {
  switch (t) {
    case DType::F8_E8M0: case DType::F8_E4M3FNUZ: case DType::F8_E5M2FNUZ:
    case DType::F6_E2M3: case DType::F6_E3M2: case DType::F4: return true;
    default: return false;
  }
}

void refuse_bytes_only(const std::string& where, DType t, const std::string& why) {
  const std::string n(dtype_name(t));
  throw MappingError(where, n + " tensor: " + why + " (ckptbridge carries " + n +
                                " as raw bytes only, through layout-only conversions to formats that have the type)");
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
