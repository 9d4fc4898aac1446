// zarr v2/v3 metadata and chunk encoding for formats/zarr/zarr_writer.h.
#include "formats/zarr/zarr_writer.h"

#include <algorithm>
#include <cstring>

#include <nlohmann/json.hpp>

#include "codec/crc32c.h"
#include "codec/zstd_encode.h"

namespace ckb::zarr {
namespace {

using nlohmann::json;

constexpr int kV2ZstdLevel = 1;  // TensorStore's zarr v2 zstd default (Orbax passes {"id":"zstd"})
constexpr int kV3ZstdLevel = 3;  // TensorStore's zarr3 zstd codec default

json fill_value_v3(DType t) {
  if (t == DType::BOOL) return false;
  if (dtype_is_complex(t)) return json::array({0.0, 0.0});
  if (dtype_is_float(t)) return 0.0;
  return 0;
}

}  // namespace

std::string v2_dtype_string(DType t) {
  switch (t) {
    case DType::BF16: return "bfloat16";
    case DType::F8_E4M3: return "float8_e4m3fn";
    case DType::F8_E5M2: return "float8_e5m2";
    case DType::F8_E4M3FNUZ: return "float8_e4m3fnuz";
    case DType::F8_E5M2FNUZ: return "float8_e5m2fnuz";
    case DType::BOOL: return "|b1";
    case DType::I8: return "|i1";
    case DType::U8: return "|u1";
    default: break;
  }
  const char kind = dtype_is_float(t) ? 'f' : dtype_is_complex(t) ? 'c' : dtype_is_signed_int(t) ? 'i' : 'u';
  return std::string("<") + kind + std::to_string(dtype_size(t));
}

Shape WriteSpec::chunk_shape() const {
  Shape c = info.shape;
  if (!c.empty() && chunk_rows > 0 && chunk_rows < static_cast<std::uint64_t>(c[0]))
    c[0] = static_cast<std::int64_t>(chunk_rows);
  for (auto& d : c) d = std::max<std::int64_t>(d, 1);
  return c;
}

std::uint64_t WriteSpec::num_chunks() const {
  if (info.numel() == 0) return 0;
  if (info.shape.empty()) return 1;
  const auto rows = static_cast<std::uint64_t>(chunk_shape()[0]);
  return (static_cast<std::uint64_t>(info.shape[0]) + rows - 1) / rows;
}

std::uint64_t WriteSpec::chunk_bytes() const {
  std::uint64_t n = dtype_size(info.dtype);
  for (auto d : chunk_shape()) n *= static_cast<std::uint64_t>(d);
  return n;
}

std::pair<std::uint64_t, std::uint64_t> WriteSpec::chunk_range(std::uint64_t i) const {
  const std::uint64_t per = chunk_bytes();
  const std::uint64_t total = info.nbytes();
  return {std::min(i * per, total), std::min((i + 1) * per, total)};
}

std::uint64_t rows_for_chunk_bytes(const TensorInfo& info, std::uint64_t max_chunk_bytes) {
  if (info.shape.empty() || max_chunk_bytes == 0) return 0;
  std::uint64_t row = dtype_size(info.dtype);
  for (std::size_t d = 1; d < info.shape.size(); ++d) row *= static_cast<std::uint64_t>(std::max<std::int64_t>(info.shape[d], 1));
  const std::uint64_t max_rows = std::max<std::uint64_t>(1, max_chunk_bytes / row);
  const auto dim0 = static_cast<std::uint64_t>(info.shape[0]);
  if (max_rows >= dim0) return 0;
  // As many chunks as needed, of equal size (the last may be smaller), so parallel readers
  // and writers get balanced work.
  const std::uint64_t n = (dim0 + max_rows - 1) / max_rows;
  return (dim0 + n - 1) / n;
}

std::string metadata_key(const WriteSpec& s) { return s.zarr_format == 3 ? "zarr.json" : ".zarray"; }

std::string metadata_json(const WriteSpec& s) {
  const Shape chunks = s.chunk_shape();
  json j;  // keys sorted, compact: byte-identical to TensorStore's output
  if (s.zarr_format == 2) {
    j["chunks"] = chunks;
    j["compressor"] = s.compress ? json{{"id", "zstd"}, {"level", kV2ZstdLevel}} : json(nullptr);
    j["dimension_separator"] = ".";
    j["dtype"] = v2_dtype_string(s.info.dtype);
    j["fill_value"] = nullptr;
    j["filters"] = nullptr;
    j["order"] = "C";
    j["shape"] = s.info.shape;
    j["zarr_format"] = 2;
  } else {
    json bytes_codec = {{"name", "bytes"}};
    if (dtype_size(s.info.dtype) > 1) bytes_codec["configuration"] = {{"endian", "little"}};
    json inner = json::array({bytes_codec});
    if (s.compress) inner.push_back({{"name", "zstd"}, {"configuration", {{"level", kV3ZstdLevel}, {"checksum", false}}}});
    json sharding = {{"name", "sharding_indexed"},
                     {"configuration",
                      {{"chunk_shape", chunks},
                       {"codecs", inner},
                       {"index_codecs", json::array({{{"name", "bytes"}, {"configuration", {{"endian", "little"}}}},
                                                     {{"name", "crc32c"}}})}}}};
    j["chunk_grid"] = {{"name", "regular"}, {"configuration", {{"chunk_shape", chunks}}}};
    j["chunk_key_encoding"] = {{"name", "default"}};
    j["codecs"] = json::array({sharding});
    j["data_type"] = std::string(dtype_numpy_name(s.info.dtype));
    j["fill_value"] = fill_value_v3(s.info.dtype);
    j["node_type"] = "array";
    j["shape"] = s.info.shape;
    j["zarr_format"] = 3;
  }
  return j.dump();
}

std::string chunk_key(const WriteSpec& s, std::uint64_t i) {
  const std::size_t rank = s.info.shape.size();
  if (s.zarr_format == 3) {
    std::string k = "c";
    for (std::size_t d = 0; d < rank; ++d) k += "/" + std::to_string(d == 0 ? i : 0);
    return k;
  }
  if (rank == 0) return "0";
  std::string k = std::to_string(i);
  for (std::size_t d = 1; d < rank; ++d) k += ".0";
  return k;
}

int zstd_level(const WriteSpec& s) { return s.zarr_format == 3 ? kV3ZstdLevel : kV2ZstdLevel; }

EncodedChunk encode_chunk(const WriteSpec& s, std::span<const std::byte> raw) {
  const std::uint64_t full = s.chunk_bytes();
  // A partial last chunk is padded with zeros (the fill value) to the full chunk shape.
  Bytes padded;
  std::span<const std::byte> in = raw;
  if (raw.size() < full) {
    padded = Bytes(full);
    std::memcpy(padded.data(), raw.data(), raw.size());
    std::memset(padded.data() + raw.size(), 0, full - raw.size());
    in = padded.span();
  }
  if (!s.compress && s.zarr_format == 2 && !padded.data()) {
    EncodedChunk out;
    out.view = raw;
    return out;
  }
  const std::size_t index_bytes = s.zarr_format == 3 ? 20 : 0;
  EncodedChunk out;
  if (s.compress) {
    out.buffer = Bytes(zstd_bound(in.size()) + index_bytes);
    out.size = zstd_encode_into(in, out.buffer.span(), s.zarr_format == 3 ? kV3ZstdLevel : kV2ZstdLevel);
  } else {
    out.buffer = Bytes(in.size() + index_bytes);
    std::memcpy(out.buffer.data(), in.data(), in.size());
    out.size = in.size();
  }
  if (s.zarr_format == 3) {  // shard index: one inner chunk at offset 0, then crc32c
    std::byte* p = out.buffer.data() + out.size;
    const std::uint64_t off = 0, len = out.size;
    std::memcpy(p, &off, 8);
    std::memcpy(p + 8, &len, 8);
    const std::uint32_t crc = ocdbt::crc32c({p, 16});
    std::memcpy(p + 16, &crc, 4);
    out.size += index_bytes;
  }
  return out;
}

}  // namespace ckb::zarr
