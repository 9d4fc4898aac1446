// Element types of checkpoint tensors and their names in each ecosystem.
// The canonical spelling is safetensors' ("F32", "BF16", ...), which is also what
// manifests, `inspect` and reports print. Per-format spellings (numpy descr, torch
// storage classes, zarr names) live with their formats and map onto this enum.
//
// Bytes-only dtypes: the newer safetensors types (F8_E8M0, the FNUZ float8s, and the
// sub-byte F6_E2M3, F6_E3M2, F4 packed several to a byte as safetensors stores them) are
// read and carried as raw bytes through layout-only conversions, to formats that have the
// type; they are never cast or computed with. The sub-byte ones have no element size at
// all: dtype_size() refuses them, so no code can address their elements as whole bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace ckb {

enum class DType : std::uint8_t {
  F64, F32, F16, BF16, F8_E4M3, F8_E5M2,
  I64, I32, I16, I8,
  U64, U32, U16, U8,
  BOOL, C64, C128,
  // Bytes-only (see above); appended so that the values above keep their numbers.
  F8_E8M0, F8_E4M3FNUZ, F8_E5M2FNUZ, F6_E2M3, F6_E3M2, F4,
};

// Every dtype with values (castable, computable); the bytes-only ones are kBytesOnlyDTypes.
inline constexpr DType kAllDTypes[] = {
    DType::F64, DType::F32, DType::F16, DType::BF16, DType::F8_E4M3, DType::F8_E5M2,
    DType::I64, DType::I32, DType::I16, DType::I8,  DType::U64,     DType::U32,
    DType::U16, DType::U8,  DType::BOOL, DType::C64, DType::C128};
inline constexpr DType kBytesOnlyDTypes[] = {DType::F8_E8M0, DType::F8_E4M3FNUZ, DType::F8_E5M2FNUZ,
                                             DType::F6_E2M3, DType::F6_E3M2,     DType::F4};

// Bits per element (safetensors' Dtype::bitsize): 4 for F4, 6 for F6_*, 8 * bytes otherwise.
std::size_t dtype_bits(DType t);
// Bytes per element. Throws MappingError for a sub-byte dtype (F4, F6_*), which has none:
// code that addresses single elements cannot handle those and must refuse them first.
std::size_t dtype_size(DType t);
// Bytes of `numel` elements: numel * bits / 8, rounded up (a sub-byte tensor read from a
// file always fills whole bytes: readers check numel * bits % 8 == 0).
std::uint64_t dtype_storage_bytes(DType t, std::uint64_t numel);
// F4, F6_E2M3, F6_E3M2.
bool dtype_is_subbyte(DType t);
// The bytes-only dtypes (see above): no casts, no arithmetic, no statistics.
bool dtype_is_bytes_only(DType t);
// Throws MappingError(where, "<NAME> tensor: <why> (ckptbridge carries <NAME> as raw bytes
// only, ...)"); `where` names the tensor.
[[noreturn]] void refuse_bytes_only(const std::string& where, DType t, const std::string& why);
// Canonical (safetensors) name, e.g. "BF16".
std::string_view dtype_name(DType t);
// Parses a canonical name; nullopt if unknown.
std::optional<DType> dtype_from_name(std::string_view name);
// NumPy / JAX dtype name as used by ml_dtypes and Flax msgpack ("float32", "bfloat16", "bool").
// Empty for F4 and F6_*: ml_dtypes' float4_e2m1fn / float6_* take one byte per element, so
// the name would not describe safetensors' packed bytes.
std::string_view dtype_numpy_name(DType t);
std::optional<DType> dtype_from_numpy_name(std::string_view name);

// The numeric classes; a bytes-only dtype is in none of them.
bool dtype_is_float(DType t);    // F64 F32 F16 BF16 F8_E4M3 F8_E5M2
bool dtype_is_signed_int(DType t);
bool dtype_is_unsigned_int(DType t);  // not BOOL: BOOL is its own class
bool dtype_is_complex(DType t);

}  // namespace ckb
