// Element types of checkpoint tensors and their names in each ecosystem.
// The canonical spelling is safetensors' ("F32", "BF16", ...), which is also what
// manifests, `inspect` and reports print. Per-format spellings (numpy descr, torch
// storage classes, zarr names) live with their formats and map onto this enum.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace ckb {

enum class DType : std::uint8_t {
  F64, F32, F16, BF16, F8_E4M3, F8_E5M2,
  I64, I32, I16, I8,
  U64, U32, U16, U8,
  BOOL, C64, C128,
};

inline constexpr DType kAllDTypes[] = {
    DType::F64, DType::F32, DType::F16, DType::BF16, DType::F8_E4M3, DType::F8_E5M2,
    DType::I64, DType::I32, DType::I16, DType::I8,  DType::U64,     DType::U32,
    DType::U16, DType::U8,  DType::BOOL, DType::C64, DType::C128};

// Bytes per element.
std::size_t dtype_size(DType t);
// Canonical (safetensors) name, e.g. "BF16".
std::string_view dtype_name(DType t);
// Parses a canonical name; nullopt if unknown.
std::optional<DType> dtype_from_name(std::string_view name);
// NumPy / JAX dtype name as used by ml_dtypes and Flax msgpack ("float32", "bfloat16", "bool").
std::string_view dtype_numpy_name(DType t);
std::optional<DType> dtype_from_numpy_name(std::string_view name);

bool dtype_is_float(DType t);    // F64 F32 F16 BF16 F8_*
bool dtype_is_signed_int(DType t);
bool dtype_is_unsigned_int(DType t);  // includes BOOL? no: BOOL is its own class
bool dtype_is_complex(DType t);

}  // namespace ckb
