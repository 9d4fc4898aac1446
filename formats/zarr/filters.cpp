// numcodecs filter decoding for formats/zarr/filters.h.
#include "formats/zarr/filters.h"

#include <cmath>
#include <cstring>

#include "core/errors.h"

namespace ckb::zarr {

using nlohmann::json;

const char* filter_name(FilterKind k) {
  switch (k) {
    case FilterKind::Delta: return "delta";
    case FilterKind::Shuffle: return "shuffle";
    case FilterKind::FixedScaleOffset: return "fixedscaleoffset";
  }
  return "?";
}

namespace {

bool is_int(DType t) { return dtype_is_signed_int(t) || dtype_is_unsigned_int(t); }
bool is_f32_or_f64(DType t) { return t == DType::F32 || t == DType::F64; }

ZarrDType filter_dtype(const json& cfg, const char* field, const std::string& id, const std::string& where) {
  if (!cfg.contains(field) || !cfg[field].is_string())
    throw FormatError(where, "filter '" + id + "': '" + field + "' must be a dtype string");
  const auto s = cfg[field].get<std::string>();
  // numcodecs writes NumPy's typestr ("<i4"); zarr-python 3's numcodecs.* v3 codecs may
  // keep the name the user gave ("int32", native = little-endian), a v3 data type name.
  auto t = parse_v2_dtype(s);
  if (!t) t = parse_v3_dtype(s);
  if (!t) throw FormatError(where, "filter '" + id + "': unsupported " + field + " '" + s + "'");
  if (t->big_endian && t->itemsize > 1)
    throw FormatError(where, "filter '" + id + "': big-endian " + field + " '" + s + "' is not supported");
  return *t;
}

double number(const json& cfg, const char* field, const std::string& id, const std::string& where) {
  if (!cfg.contains(field) || !cfg[field].is_number())
    throw FormatError(where, "filter '" + id + "': '" + field + "' must be a number");
  return cfg[field].get<double>();
}

// Element i of `p` (an integer type) sign- or zero-extended to 64 bits.
std::uint64_t load_int(const std::byte* p, const ZarrDType& t) {
  std::uint64_t u = 0;
  std::memcpy(&u, p, t.itemsize);
  if (dtype_is_signed_int(t.dtype) && t.itemsize < 8) {
    const unsigned shift = static_cast<unsigned>(64 - 8 * t.itemsize);
    u = static_cast<std::uint64_t>(static_cast<std::int64_t>(u << shift) >> shift);
  }
  return u;
}

double load_real(const std::byte* p, const ZarrDType& t) {
  if (t.dtype == DType::F64) {
    double d;
    std::memcpy(&d, p, 8);
    return d;
  }
  if (t.dtype == DType::F32) {
    float f;
    std::memcpy(&f, p, 4);
    return f;
  }
  const std::uint64_t u = load_int(p, t);
  return dtype_is_signed_int(t.dtype) ? static_cast<double>(static_cast<std::int64_t>(u)) : static_cast<double>(u);
}

template <class Acc>
void delta_float(std::span<const std::byte> in, std::byte* out, const Filter& f, std::uint64_t n) {
  Acc acc = 0;
  for (std::uint64_t i = 0; i < n; ++i) {
    acc += static_cast<Acc>(load_real(in.data() + i * f.astype.itemsize, f.astype));
    if (f.dtype.dtype == DType::F32) {
      const float v = static_cast<float>(acc);
      std::memcpy(out + i * 4, &v, 4);
    } else {
      const double v = static_cast<double>(acc);
      std::memcpy(out + i * 8, &v, 8);
    }
  }
}

}  // namespace

Filter parse_filter(const json& cfg, const std::string& where) {
  if (!cfg.is_object() || !cfg.contains("id") || !cfg["id"].is_string())
    throw FormatError(where, "filter must be an object with an 'id'");
  const auto id = cfg["id"].get<std::string>();
  Filter f;
  if (id == "shuffle") {
    f.kind = FilterKind::Shuffle;
    if (cfg.contains("elementsize")) {
      if (!cfg["elementsize"].is_number_integer() || cfg["elementsize"].get<std::int64_t>() < 0 ||
          cfg["elementsize"].get<std::int64_t>() > (1 << 20))
        throw FormatError(where, "filter 'shuffle': elementsize must be an integer in [0, 2^20]");
      f.elementsize = cfg["elementsize"].get<std::size_t>();
    }
    return f;
  }
  if (id != "delta" && id != "fixedscaleoffset")
    throw FormatError(where, "unsupported filter '" + id + "' (supported: delta, shuffle, fixedscaleoffset)");
  f.dtype = filter_dtype(cfg, "dtype", id, where);
  f.astype = cfg.contains("astype") && !cfg["astype"].is_null() ? filter_dtype(cfg, "astype", id, where) : f.dtype;
  const std::string types = " (dtype '" + f.dtype.name + "', astype '" + f.astype.name + "')";
  if (id == "delta") {
    f.kind = FilterKind::Delta;
    const bool ints = is_int(f.dtype.dtype) && is_int(f.astype.dtype);
    const bool floats = is_f32_or_f64(f.dtype.dtype) && is_f32_or_f64(f.astype.dtype);
    if (!ints && !floats)
      throw FormatError(where, "filter 'delta': unsupported type combination" + types +
                                   ": both must be integers, or both float32/float64");
    return f;
  }
  f.kind = FilterKind::FixedScaleOffset;
  f.scale = number(cfg, "scale", id, where);
  f.offset = number(cfg, "offset", id, where);
  const bool astype_ok = is_int(f.astype.dtype) || (f.astype.dtype == DType::F64 && f.dtype.dtype == DType::F64);
  if (!astype_ok || !(is_int(f.dtype.dtype) || is_f32_or_f64(f.dtype.dtype)))
    throw FormatError(where, "filter 'fixedscaleoffset': unsupported type combination" + types +
                                 ": astype must be an integer type (or float64 with dtype float64) and dtype an "
                                 "integer, float32 or float64 type");
  return f;
}

std::uint64_t filter_encoded_size(const Filter& f, std::uint64_t decoded, const std::string& where) {
  if (f.kind == FilterKind::Shuffle) {
    if (f.elementsize > 1 && decoded % f.elementsize != 0)
      throw FormatError(where, "filter 'shuffle': " + std::to_string(decoded) + " bytes are not a multiple of elementsize " +
                                   std::to_string(f.elementsize));
    return decoded;
  }
  if (decoded % f.dtype.itemsize != 0)
    throw FormatError(where, std::string("filter '") + filter_name(f.kind) + "': " + std::to_string(decoded) +
                                 " bytes are not a whole number of '" + f.dtype.name + "' elements");
  return decoded / f.dtype.itemsize * f.astype.itemsize;
}

Bytes decode_filter(const Filter& f, std::span<const std::byte> in, std::uint64_t out_size, const std::string& path,
                    std::uint64_t offset, const std::string& what) {
  const std::string tag = what + " (filter " + filter_name(f.kind) + ")";
  const std::uint64_t want = filter_encoded_size(f, out_size, path);
  if (in.size() != want)
    throw FormatError(path, tag + ": " + std::to_string(in.size()) + " bytes, expected " + std::to_string(want), offset);
  Bytes out(static_cast<std::size_t>(out_size));
  if (f.kind == FilterKind::Shuffle) {
    const std::size_t es = f.elementsize;
    if (es <= 1) {
      if (out_size) std::memcpy(out.data(), in.data(), in.size());
      return out;
    }
    const std::uint64_t n = out_size / es;
    for (std::size_t k = 0; k < es; ++k) {
      const std::byte* src = in.data() + k * n;
      for (std::uint64_t i = 0; i < n; ++i) out.data()[i * es + k] = src[i];
    }
    return out;
  }
  const std::uint64_t n = out_size / f.dtype.itemsize;
  const std::size_t ei = f.astype.itemsize, eo = f.dtype.itemsize;
  if (f.kind == FilterKind::Delta) {
    if (is_int(f.dtype.dtype)) {
      std::uint64_t acc = 0;  // integer sums wrap: the low bytes are what NumPy's cumsum yields
      for (std::uint64_t i = 0; i < n; ++i) {
        acc += load_int(in.data() + i * ei, f.astype);
        std::memcpy(out.data() + i * eo, &acc, eo);
      }
    } else if (f.dtype.dtype == DType::F64 || f.astype.dtype == DType::F64) {
      delta_float<double>(in, out.data(), f, n);
    } else {
      delta_float<float>(in, out.data(), f, n);
    }
    return out;
  }
  // fixedscaleoffset
  for (std::uint64_t i = 0; i < n; ++i) {
    const double v = load_real(in.data() + i * ei, f.astype) / f.scale + f.offset;
    std::byte* dst = out.data() + i * eo;
    if (f.dtype.dtype == DType::F64) {
      std::memcpy(dst, &v, 8);
    } else if (f.dtype.dtype == DType::F32) {
      const float x = static_cast<float>(v);
      std::memcpy(dst, &x, 4);
    } else {
      const double t = std::trunc(v);
      const int bits = static_cast<int>(8 * eo);
      const bool sign = dtype_is_signed_int(f.dtype.dtype);
      const double lo = sign ? -std::ldexp(1.0, bits - 1) : 0.0, hi = std::ldexp(1.0, sign ? bits - 1 : bits);
      if (!(t >= lo && t < hi))
        throw FormatError(path, tag + ": element " + std::to_string(i) + " decodes to " + std::to_string(v) +
                                    ", which " + f.dtype.name + " cannot hold", offset);
      const std::uint64_t u = sign ? static_cast<std::uint64_t>(static_cast<std::int64_t>(t)) : static_cast<std::uint64_t>(t);
      std::memcpy(dst, &u, eo);
    }
  }
  return out;
}

}  // namespace ckb::zarr
