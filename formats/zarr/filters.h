// Zarr v2 filters (numcodecs array->array codecs listed in `.zarray` "filters"), decode
// direction only: `delta`, `shuffle` and `fixedscaleoffset`. Any other filter id is refused
// by name. Hand-written because no Debian library implements numcodecs' filters; each is a
// few lines of arithmetic whose exact semantics follow numcodecs 0.11 / NumPy 1.x:
//  - delta(dtype, astype): decoded[i] = sum(encoded[0..i]) accumulated in the wider of the
//    two types (integers wrap modulo 2^64 and are truncated to dtype; floats: astype and
//    dtype both float32/float64), then converted to dtype;
//  - shuffle(elementsize): byte k of element i is stored at k * n + i (blosc's shuffle);
//  - fixedscaleoffset(offset, scale, dtype, astype): decoded = encoded / scale + offset
//    computed in float64 (NumPy's true divide of an integer array; astype an integer type,
//    or float64 with dtype float64), converted to dtype (float32: round to nearest even;
//    integers: truncation toward zero, a NaN or out-of-range value is a FormatError).
// Filter element types must be little-endian or single-byte. The encoded size of a chunk is
// known exactly from its decoded size, so every buffer is checked before it is allocated.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/tensor.h"
#include "formats/zarr/zarr_dtype.h"

namespace ckb::zarr {

enum class FilterKind { Delta, Shuffle, FixedScaleOffset };

struct Filter {
  FilterKind kind = FilterKind::Shuffle;
  ZarrDType dtype, astype;     // delta / fixedscaleoffset: decoded and encoded element types
  std::size_t elementsize = 4;  // shuffle
  double scale = 1, offset = 0;  // fixedscaleoffset
};

// Parses one entry of "filters"; FormatError(where, ...) for unknown ids and unsupported
// configurations (the message names the filter).
Filter parse_filter(const nlohmann::json& config, const std::string& where);

// The exact size of the encoding of `decoded` bytes; FormatError(where, ...) when the bytes
// are not a whole number of the filter's elements.
std::uint64_t filter_encoded_size(const Filter& f, std::uint64_t decoded, const std::string& where);

// Decodes `in` (exactly filter_encoded_size(f, out_size) bytes, checked) into `out_size` bytes.
Bytes decode_filter(const Filter& f, std::span<const std::byte> in, std::uint64_t out_size, const std::string& path,
                    std::uint64_t offset, const std::string& what);

const char* filter_name(FilterKind k);

}  // namespace ckb::zarr
