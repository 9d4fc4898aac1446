// `.zarray` / `zarr.json` parsing for formats/zarr/zarr_metadata.h.
#include "formats/zarr/zarr_metadata.h"

#include <nlohmann/json.hpp>

#include "core/errors.h"
#include "core/json_bounded.h"

namespace ckb::zarr {

using nlohmann::json;

std::uint64_t ZarrMetadata::numel() const {
  std::uint64_t n = 1;
  for (auto d : shape) n *= static_cast<std::uint64_t>(d);
  return n;
}
std::vector<std::uint64_t> ZarrMetadata::grid() const {
  std::vector<std::uint64_t> g(shape.size());
  for (std::size_t i = 0; i < shape.size(); ++i) g[i] = (static_cast<std::uint64_t>(shape[i]) + chunks[i] - 1) / chunks[i];
  return g;
}
std::uint64_t ZarrMetadata::chunk_numel() const {
  std::uint64_t n = 1;
  for (auto c : chunks) n *= c;
  return n;
}
std::string ZarrMetadata::chunk_key(const std::vector<std::uint64_t>& idx) const {
  std::string k;
  if (v3_default_keys) {
    k = "c";
    for (auto i : idx) k += std::string(1, separator) + std::to_string(i);
    return k;
  }
  if (idx.empty()) return "0";
  for (std::size_t i = 0; i < idx.size(); ++i) {
    if (i) k += separator;
    k += std::to_string(idx[i]);
  }
  return k;
}

namespace {

[[noreturn]] void bad(const std::string& where, const std::string& msg) { throw FormatError(where, msg); }

json parse_json(std::string_view text, const std::string& where) {
  // Nesting is bounded so that no later recursion (dump() in messages) can exhaust the stack.
  json j = parse_json_bounded(text, where, {.allow_exceptions = false});
  if (j.is_discarded() || !j.is_object()) bad(where, "not a JSON object");
  return j;
}

// v3 extension objects (spec §"Extension definition"): {"name", "configuration"?,
// "must_understand"?} or a short-hand name string.
std::string ext_name(const json& e, const std::string& point, const std::string& where) {
  if (e.is_string()) return e.get<std::string>();
  if (!e.is_object() || !e.contains("name") || !e["name"].is_string()) bad(where, point + " without a name: " + e.dump());
  if (e.contains("configuration") && !e["configuration"].is_object())
    bad(where, point + " '" + e["name"].get<std::string>() + "': configuration must be an object");
  return e["name"].get<std::string>();
}

// An extension's must_understand flag (implicitly true).
bool must_understand(const json& e, const std::string& where) {
  if (!e.is_object() || !e.contains("must_understand")) return true;
  if (!e["must_understand"].is_boolean()) bad(where, "'must_understand' must be true or false: " + e.dump());
  return e["must_understand"].get<bool>();
}

// `ignorable`: whether must_understand: false could have applied to this extension point
// (not to data types, chunk grids and chunk key encodings).
[[noreturn]] void not_understood(const std::string& where, const std::string& point, const std::string& name,
                                 bool ignorable = true) {
  bad(where, "unsupported " + point + " '" + name + "' (" +
                 (ignorable ? "must_understand is true" : "must_understand cannot be false for a " + point) +
                 ": the zarr v3 spec requires refusing the array)");
}

// Fails for top-level fields outside `known` unless they are objects marked
// "must_understand": false.
void check_fields(const json& j, std::initializer_list<const char*> known, const std::string& where) {
  for (const auto& [k, v] : j.items()) {
    bool ok = false;
    for (const char* n : known) ok = ok || k == n;
    if (ok) continue;
    if (v.is_object() && !must_understand(v, where)) continue;
    bad(where, "unknown metadata field '" + k +
                   "' (not marked \"must_understand\": false: the zarr v3 spec requires refusing the node)");
  }
}

std::vector<std::uint64_t> uint_array(const json& j, const char* field, const std::string& where, bool positive) {
  if (!j.is_array()) bad(where, std::string("'") + field + "' must be an array of integers");
  std::vector<std::uint64_t> v;
  for (const auto& x : j) {
    if (!x.is_number_integer() || (x.is_number_integer() && x.get<std::int64_t>() < 0 && !x.is_number_unsigned()))
      bad(where, std::string("'") + field + "' holds a non-integer or negative value " + x.dump());
    std::uint64_t u = x.get<std::uint64_t>();
    if (positive && u == 0) bad(where, std::string("'") + field + "' holds a zero");
    if (u > (1ull << 62)) bad(where, std::string("'") + field + "' value " + x.dump() + " is too large");
    v.push_back(u);
  }
  return v;
}

void finish(ZarrMetadata& m, const json& shape, const json& chunks, const std::string& where) {
  auto s = uint_array(shape, "shape", where, false);
  m.chunks = uint_array(chunks, "chunk shape", where, true);
  if (s.size() != m.chunks.size())
    bad(where, "shape has rank " + std::to_string(s.size()) + " but chunks rank " + std::to_string(m.chunks.size()));
  m.shape.assign(s.begin(), s.end());
  checked_numel(m.shape, where);
  std::uint64_t n = m.dtype.itemsize;
  for (auto c : m.chunks)
    if (__builtin_mul_overflow(n, c, &n) || n > kMaxChunkBytes)
      bad(where, "chunk shape is too large (more than " + std::to_string(kMaxChunkBytes) + " bytes per chunk)");
}

void fill(ZarrMetadata& m, const json& j, const std::string& where) {
  try {
    m.fill = parse_fill_value(j, m.dtype);
  } catch (const std::exception& e) {
    bad(where, std::string("fill_value: ") + e.what());
  }
}

BytesCodecKind v2_compressor(const json& c, const std::string& where) {
  if (!c.is_object() || !c.contains("id") || !c["id"].is_string()) bad(where, "compressor must be null or {\"id\": ...}");
  const auto id = c["id"].get<std::string>();
  if (id == "zstd") return BytesCodecKind::Zstd;
  if (id == "zlib") return BytesCodecKind::Zlib;
  if (id == "gzip") return BytesCodecKind::Gzip;
  if (id == "blosc") return BytesCodecKind::Blosc;
  if (id == "bz2") return BytesCodecKind::Bz2;
  if (id == "lz4") return BytesCodecKind::Lz4;
  bad(where, "unsupported compressor '" + id + "' (supported: zstd, zlib, gzip, blosc, bz2, lz4)");
}

CodecChain parse_v3_codecs(const json& codecs, std::size_t rank, std::size_t itemsize, const std::string& where);

std::vector<std::size_t> transpose_order(const json& cfg, std::size_t rank, const std::string& where) {
  std::vector<std::size_t> order;
  const json& o = cfg.contains("order") ? cfg["order"] : json();
  if (o.is_string() && o.get<std::string>() == "C") {
    for (std::size_t i = 0; i < rank; ++i) order.push_back(i);
  } else if (o.is_string() && o.get<std::string>() == "F") {
    for (std::size_t i = rank; i-- > 0;) order.push_back(i);
  } else if (o.is_array()) {
    for (const auto& x : o) {
      if (!x.is_number_unsigned()) bad(where, "transpose order must hold axis indices");
      order.push_back(x.get<std::size_t>());
    }
  } else {
    bad(where, "transpose codec without a valid 'order'");
  }
  std::vector<bool> seen(rank, false);
  if (order.size() != rank) bad(where, "transpose order has the wrong rank");
  for (auto a : order) {
    if (a >= rank || seen[a]) bad(where, "transpose order is not a permutation");
    seen[a] = true;
  }
  return order;
}

bool endian_of(const json& codec, std::size_t itemsize, const std::string& where) {
  if (!codec.is_object() || !codec.contains("configuration") || !codec["configuration"].contains("endian")) {
    if (itemsize > 1) bad(where, "bytes codec without 'endian' for a multi-byte type");
    return false;
  }
  const auto e = codec["configuration"]["endian"].get<std::string>();
  if (e != "little" && e != "big") bad(where, "bytes codec: unknown endian '" + e + "'");
  return e == "big";
}

CodecChain parse_v3_codecs(const json& codecs, std::size_t rank, std::size_t itemsize, const std::string& where) {
  if (!codecs.is_array()) bad(where, "'codecs' must be an array");
  CodecChain chain;
  bool have_array_to_bytes = false;
  for (const auto& c : codecs) {
    const auto name = ext_name(c, "codec", where);
    const json cfg = c.is_object() && c.contains("configuration") ? c["configuration"] : json::object();
    if (name == "transpose") {
      if (have_array_to_bytes) bad(where, "transpose codec after the array->bytes codec");
      // chunks are decoded as filters, then transposes: a transpose encoded after a filter
      // would need the other order
      if (!chain.filters.empty()) bad(where, "transpose codec after a numcodecs array->array codec is not supported");
      chain.transposes.push_back(transpose_order(cfg, rank, where));
    } else if (name == "bytes") {
      if (have_array_to_bytes) bad(where, "more than one array->bytes codec");
      have_array_to_bytes = true;
      chain.big_endian = endian_of(c, itemsize, where);
    } else if (name == "sharding_indexed") {
      if (have_array_to_bytes) bad(where, "more than one array->bytes codec");
      have_array_to_bytes = true;
      auto spec = std::make_shared<ShardingSpec>();
      if (!cfg.contains("chunk_shape")) bad(where, "sharding_indexed without chunk_shape");
      spec->inner_chunk = uint_array(cfg["chunk_shape"], "sharding chunk_shape", where, true);
      if (spec->inner_chunk.size() != rank) bad(where, "sharding chunk_shape has the wrong rank");
      spec->inner = parse_v3_codecs(cfg.contains("codecs") ? cfg["codecs"] : json::array({{{"name", "bytes"}}}), rank,
                                    itemsize, where);
      const auto loc = cfg.contains("index_location") ? cfg["index_location"].get<std::string>() : std::string("end");
      if (loc != "end" && loc != "start") bad(where, "unknown index_location '" + loc + "'");
      spec->index_at_end = loc == "end";
      const json& ic = cfg.contains("index_codecs") ? cfg["index_codecs"] : json::array();
      if (!ic.is_array() || ic.empty() || ext_name(ic[0], "index codec", where) != "bytes")
        bad(where, "sharding index_codecs must start with the bytes codec");
      spec->index_big_endian = endian_of(ic[0], 8, where);
      for (std::size_t i = 1; i < ic.size(); ++i) {
        if (ext_name(ic[i], "index codec", where) == "crc32c" && !spec->index_crc32c && i == ic.size() - 1)
          spec->index_crc32c = true;
        else
          bad(where, "unsupported sharding index codec " + ic[i].dump());
      }
      chain.sharding = std::move(spec);
    } else if (name == "zstd" || name == "gzip" || name == "blosc" || name == "crc32c") {
      if (!have_array_to_bytes) bad(where, "bytes->bytes codec '" + name + "' before the array->bytes codec");
      chain.bytes_codecs.push_back(name == "zstd"   ? BytesCodecKind::Zstd
                                   : name == "gzip" ? BytesCodecKind::Gzip
                                   : name == "blosc" ? BytesCodecKind::Blosc
                                                     : BytesCodecKind::Crc32c);
    } else if (name.starts_with("numcodecs.")) {
      // zarr-python 3's wrappers of numcodecs: the v2 codec of that id, configured alike.
      json conf = cfg;
      conf["id"] = name.substr(10);
      const std::string id = conf["id"];
      if (id == "delta" || id == "fixedscaleoffset") {  // array -> array
        if (have_array_to_bytes) bad(where, "array->array codec '" + name + "' after the array->bytes codec");
        chain.filters.push_back(parse_filter(conf, where));
      } else if (id == "zstd" || id == "zlib" || id == "gzip" || id == "blosc" || id == "bz2" || id == "lz4") {
        if (!have_array_to_bytes) bad(where, "bytes->bytes codec '" + name + "' before the array->bytes codec");
        chain.bytes_codecs.push_back(v2_compressor(conf, where));
      } else if (!must_understand(c, where)) {
        continue;
      } else {
        not_understood(where, "codec", name);
      }
    } else if (!must_understand(c, where)) {
      continue;  // the writer declared that readers may ignore it
    } else {
      not_understood(where, "codec", name);
    }
  }
  if (!have_array_to_bytes) bad(where, "codec pipeline has no array->bytes codec");
  if (!chain.filters.empty() && chain.big_endian && itemsize > 1)
    bad(where, "numcodecs array->array codecs with a big-endian bytes codec are not supported");
  return chain;
}

}  // namespace

ZarrMetadata parse_zarray_impl(std::string_view text, const std::string& where) {
  json j = parse_json(text, where);
  ZarrMetadata m;
  m.zarr_format = 2;
  if (!j.contains("zarr_format") || j["zarr_format"] != 2) bad(where, "zarr_format must be 2");
  for (const char* f : {"shape", "chunks", "dtype"})
    if (!j.contains(f)) bad(where, std::string("missing '") + f + "'");
  if (!j["dtype"].is_string()) bad(where, "structured dtypes are not supported: " + j["dtype"].dump());
  auto dt = parse_v2_dtype(j["dtype"].get<std::string>());
  if (!dt) bad(where, "unsupported dtype '" + j["dtype"].get<std::string>() + "'");
  m.dtype = *dt;
  finish(m, j["shape"], j["chunks"], where);
  fill(m, j.contains("fill_value") ? j["fill_value"] : json(), where);
  const std::string order = j.contains("order") ? j["order"].get<std::string>() : "C";
  if (order == "F") {
    std::vector<std::size_t> rev;
    for (std::size_t i = m.shape.size(); i-- > 0;) rev.push_back(i);
    m.codecs.transposes.push_back(rev);
  } else if (order != "C") {
    bad(where, "order must be \"C\" or \"F\"");
  }
  m.codecs.big_endian = m.dtype.big_endian;
  if (j.contains("compressor") && !j["compressor"].is_null())
    m.codecs.bytes_codecs.push_back(v2_compressor(j["compressor"], where));
  if (j.contains("filters") && !j["filters"].is_null()) {
    if (!j["filters"].is_array()) bad(where, "'filters' must be null or an array");
    std::uint64_t size = m.chunk_numel() * m.dtype.itemsize;
    for (const auto& f : j["filters"]) {
      m.codecs.filters.push_back(parse_filter(f, where));
      size = filter_encoded_size(m.codecs.filters.back(), size, where);
      if (size > kMaxChunkBytes) bad(where, "filters make a chunk larger than " + std::to_string(kMaxChunkBytes) + " bytes");
    }
  }
  const std::string sep = j.contains("dimension_separator") ? j["dimension_separator"].get<std::string>() : ".";
  if (sep != "." && sep != "/") bad(where, "dimension_separator must be \".\" or \"/\"");
  m.separator = sep[0];
  return m;
}

ZarrMetadata parse_zarr_json_impl(std::string_view text, const std::string& where) {
  json j = parse_json(text, where);
  ZarrMetadata m;
  m.zarr_format = 3;
  if (!j.contains("zarr_format") || j["zarr_format"] != 3) bad(where, "zarr_format must be 3");
  if (j.contains("node_type") && j["node_type"] != "array") bad(where, "node_type is not \"array\"");
  for (const char* f : {"shape", "data_type", "chunk_grid", "codecs"})
    if (!j.contains(f)) bad(where, std::string("missing '") + f + "'");
  check_fields(j,
               {"zarr_format", "node_type", "shape", "data_type", "chunk_grid", "chunk_key_encoding", "fill_value",
                "codecs", "attributes", "storage_transformers", "dimension_names"},
               where);
  // must_understand: false is not honoured for data types, chunk grids and chunk key encodings.
  const auto dt_name = ext_name(j["data_type"], "data type", where);
  auto dt = parse_v3_dtype(dt_name);
  if (!dt) not_understood(where, "data type", dt_name, false);
  m.dtype = *dt;
  const json& grid = j["chunk_grid"];
  const auto grid_name = ext_name(grid, "chunk grid", where);
  if (grid_name != "regular") not_understood(where, "chunk grid", grid_name, false);
  if (!grid.is_object() || !grid.contains("configuration") || !grid["configuration"].contains("chunk_shape"))
    bad(where, "regular chunk grid without configuration.chunk_shape");
  finish(m, j["shape"], grid["configuration"]["chunk_shape"], where);
  fill(m, j.contains("fill_value") ? j["fill_value"] : json(), where);
  m.codecs = parse_v3_codecs(j["codecs"], m.shape.size(), m.dtype.itemsize, where);
  if (m.codecs.sharding)
    for (std::size_t d = 0; d < m.chunks.size(); ++d)
      if (m.chunks[d] % m.codecs.sharding->inner_chunk[d] != 0)
        bad(where, "shard shape is not a multiple of the inner chunk shape");
  if (j.contains("storage_transformers")) {
    if (!j["storage_transformers"].is_array()) bad(where, "'storage_transformers' must be an array");
    for (const auto& t : j["storage_transformers"]) {
      const auto name = ext_name(t, "storage transformer", where);
      if (must_understand(t, where)) not_understood(where, "storage transformer", name);
    }
  }
  m.v3_default_keys = true;
  m.separator = '/';
  if (j.contains("chunk_key_encoding")) {
    const json& e = j["chunk_key_encoding"];
    const auto name = ext_name(e, "chunk key encoding", where);
    if (name == "v2") {
      m.v3_default_keys = false;
      m.separator = '.';
    } else if (name != "default") {
      not_understood(where, "chunk key encoding", name, false);
    }
    if (e.is_object() && e.contains("configuration") && e["configuration"].contains("separator")) {
      const auto sep = e["configuration"]["separator"].get<std::string>();
      if (sep != "." && sep != "/") bad(where, "chunk key separator must be \".\" or \"/\"");
      m.separator = sep[0];
    }
  }
  return m;
}

json parse_v3_group_impl(std::string_view text, const std::string& where) {
  json j = parse_json(text, where);
  if (!j.contains("zarr_format") || j["zarr_format"] != 3) bad(where, "zarr_format must be 3");
  if (!j.contains("node_type") || j["node_type"] != "group") bad(where, "node_type is not \"group\"");
  // consolidated_metadata deviates from the extension form but is always must_understand: false.
  check_fields(j, {"zarr_format", "node_type", "attributes", "consolidated_metadata"}, where);
  const json a = j.contains("attributes") ? j["attributes"] : json::object();
  if (!a.is_object()) bad(where, "'attributes' must be an object");
  return a;
}

namespace {

// nlohmann's type/range errors met while reading a document, as a FormatError naming it.
template <class F>
auto rethrow_json_errors(const std::string& where, const char* what, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const json::exception& e) {
    bad(where, std::string("malformed ") + what + ": " + e.what());
  }
}

}  // namespace

json parse_v3_group(std::string_view text, const std::string& where) {
  return rethrow_json_errors(where, "zarr.json", [&] { return parse_v3_group_impl(text, where); });
}

json parse_json_object(std::string_view text, const std::string& where) {
  return rethrow_json_errors(where, "JSON", [&] { return parse_json(text, where); });
}

ZarrMetadata parse_zarray(std::string_view text, const std::string& where) {
  return rethrow_json_errors(where, ".zarray", [&] { return parse_zarray_impl(text, where); });
}

ZarrMetadata parse_zarr_json(std::string_view text, const std::string& where) {
  return rethrow_json_errors(where, "zarr.json", [&] { return parse_zarr_json_impl(text, where); });
}

}  // namespace ckb::zarr
