// Zarr element types (formats.md §3.1.4, §3.2.1) mapped onto ckb::DType, plus fill values.
// v2 uses numpy-style strings ("<f4", "|b1", "bfloat16", "float8_e4m3fn"; "<V2" is how
// numpy spells ml_dtypes.bfloat16 and is read as BF16); v3 uses names ("float32",
// "bfloat16"). Big-endian types are accepted and byte-swapped on read.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/dtype.h"

namespace ckb::zarr {

struct ZarrDType {
  DType dtype = DType::F32;
  std::size_t itemsize = 4;
  bool big_endian = false;
  std::string name;  // as written in the metadata ("<f4", "bfloat16", ...)
};

// nullopt when the string is not a supported type.
std::optional<ZarrDType> parse_v2_dtype(const std::string& s);
std::optional<ZarrDType> parse_v3_dtype(const std::string& s);

// The fill value as one little-endian element; nullopt for JSON null (zarr v2: "no fill
// value"; missing chunks then read as zeros when they are allowed at all). Throws
// std::invalid_argument describing the problem for values it cannot represent.
std::optional<std::vector<std::byte>> parse_fill_value(const nlohmann::json& v, const ZarrDType& t);

// IEEE conversions used for fill values (round to nearest even; NaN stays NaN).
std::uint16_t float_to_half_bits(float f);
std::uint16_t float_to_bf16_bits(float f);

}  // namespace ckb::zarr
