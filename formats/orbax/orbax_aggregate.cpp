// The aggregate `checkpoint` file, placeholders and T5X TensorStore specs
// (formats/orbax/orbax_aggregate.h).
#include "formats/orbax/orbax_aggregate.h"

#include <filesystem>
#include <map>

#include <nlohmann/json.hpp>

#include "core/errors.h"
#include "formats/msgpack/msgpack.h"
#include "io/file.h"

namespace ckb::orbax {
namespace {

using nlohmann::json;

constexpr std::string_view kPlaceholder = "PLACEHOLDER://";
constexpr std::string_view kAggregated = "AGGREGATED://";  // an older spelling Orbax still accepts

const std::string* string_of(const Node* n) { return n ? std::get_if<std::string>(&n->value()) : nullptr; }

// A Dict of a TensorStore spec as JSON (only the small scalar/array/dict subset specs use).
json to_json(const Node& n, const std::string& where) {
  if (const auto* s = std::get_if<std::string>(&n.value())) return *s;
  if (const auto* i = std::get_if<std::int64_t>(&n.value())) return *i;
  if (const auto* d = std::get_if<double>(&n.value())) return *d;
  if (const auto* b = std::get_if<bool>(&n.value())) return *b;
  if (std::holds_alternative<NoneValue>(n.value())) return nullptr;
  if (n.is_container()) {
    const bool dict = n.container().kind == ContainerKind::Dict && !n.attrs.count("msgpack.array");
    json out = dict ? json::object() : json::array();
    for (const auto& c : n.container().children) {
      if (dict)
        out[c.key] = to_json(*c.node, where);
      else
        out.push_back(to_json(*c.node, where));
    }
    return out;
  }
  throw FormatError(where, "TensorStore spec holds a " + std::string(n.type_name()) + " where JSON is expected");
}

// TensorStore dtype names -> zarr v2 dtype strings (what TensorStore's zarr driver writes).
std::optional<std::string> v2_dtype_of(const std::string& ts) {
  static const std::map<std::string, std::string> m = {
      {"bool", "|b1"},      {"int8", "|i1"},      {"uint8", "|u1"},     {"int16", "<i2"},     {"uint16", "<u2"},
      {"int32", "<i4"},     {"uint32", "<u4"},    {"int64", "<i8"},     {"uint64", "<u8"},    {"float16", "<f2"},
      {"bfloat16", "bfloat16"}, {"float32", "<f4"}, {"float64", "<f8"}, {"complex64", "<c8"}, {"complex128", "<c16"}};
  auto it = m.find(ts);
  if (it == m.end()) return std::nullopt;
  return it->second;
}

// A store that answers one key (the synthesized `.zarray`) itself and forwards the rest.
class OverlayStore final : public KvStore {
 public:
  OverlayStore(KvStorePtr base, std::string key, std::string value, std::string origin)
      : base_(std::move(base)), key_(std::move(key)), value_(std::make_shared<std::string>(std::move(value))),
        origin_(std::move(origin)) {}
  std::vector<std::string> list() const override { return base_->list(); }
  std::optional<KvValue> get(const std::string& key) const override {
    if (key != key_) return base_->get(key);
    KvValue v;
    v.bytes = {reinterpret_cast<const std::byte*>(value_->data()), value_->size()};
    v.keepalive = value_;
    v.file = origin_;
    return v;
  }
  std::optional<KvValue> get_streamed(const std::string& key) const override {
    return key == key_ ? get(key) : base_->get_streamed(key);
  }
  std::string describe() const override { return base_->describe(); }
  std::string locate(const std::string& key) const override { return base_->locate(key); }

 private:
  KvStorePtr base_;
  std::string key_;
  std::shared_ptr<const std::string> value_;
  std::string origin_;
};

// Whether `key` exists; storage errors (a corrupt OCDBT node) name the array as ZarrArray's
// own errors do.
bool has_key(const KvStore& store, const std::string& key, const std::string& param) {
  try {
    return store.get(key).has_value();
  } catch (const Error& e) {
    const std::string detail = "array '" + param + "': " + e.detail();
    if (e.kind() == ErrorKind::Io) throw IoError(e.path(), detail);
    throw FormatError(e.path(), detail, e.offset());
  }
}

void resolve(Node& n, Path& keys, const ArrayContext& c) {
  if (is_tensorstore_spec(n)) {
    n = open_spec_array(c, n, join_path(keys, '.'));
    return;
  }
  if (n.is_container()) {
    for (auto& child : n.container().children) {
      keys.push_back(child.key);
      resolve(*child.node, keys, c);
      keys.pop_back();
    }
    return;
  }
  if (placeholder_name(n)) {
    const std::string origin = " (" + std::get<std::string>(n.value()) + " in " + c.item_dir + "/" + kAggregateFile + ")";
    n = open_param_array(c, join_path(keys, '.'), origin);
  }
}

}  // namespace

bool has_aggregate(const std::string& dir) {
  const std::string path = dir + "/" + kAggregateFile;
  try {
    if (!path_exists(path) || is_directory(path)) return false;
    return looks_like_msgpack_file(*MappedFile::open(path));
  } catch (const std::exception&) {
    return false;
  }
}

std::optional<Node> read_aggregate(const std::string& item_dir) {
  const std::string path = item_dir + "/" + kAggregateFile;
  if (!path_exists(path)) return std::nullopt;
  if (is_directory(path)) throw FormatError(path, "the aggregate file is not a regular file");
  return decode_msgpack_tree(MappedFile::open(path));
}

std::optional<std::string> placeholder_name(const Node& n) {
  const std::string* s = string_of(&n);
  if (!s) return std::nullopt;
  for (std::string_view prefix : {kPlaceholder, kAggregated})
    if (s->starts_with(prefix)) return s->substr(prefix.size());
  return std::nullopt;
}

bool is_tensorstore_spec(const Node& n) {
  if (!n.is_container() || n.container().kind != ContainerKind::Dict) return false;
  return n.find("driver") && n.find("kvstore") && n.find("metadata");
}

std::shared_ptr<const zarr::ZarrArray> open_param_zarr(const ArrayContext& c, const std::string& param,
                                                       const std::string& origin) {
  const std::string prefix = param + "/";
  const bool v2 = has_key(*c.store, prefix + ".zarray", param);
  const bool v3 = has_key(*c.store, prefix + "zarr.json", param);
  const std::string what = "array '" + param + "'" + origin;
  if (!v2 && !v3)
    throw FormatError(c.store->locate(prefix), what + ": no zarr metadata ('" + prefix + ".zarray' or '" + prefix +
                                                   "zarr.json'): the array is missing from " + c.store->describe());
  if (c.version == zarr::ZarrVersion::V3 && !v3)
    throw FormatError(c.store->locate(prefix + "zarr.json"),
                      what + ": " + c.declared_by + " declares zarr v3, but the array has only a zarr v2 '.zarray'");
  if (c.version == zarr::ZarrVersion::V2 && !v2)
    throw FormatError(c.store->locate(prefix + ".zarray"),
                      what + ": " + c.declared_by + " declares zarr v2, but the array has only a zarr v3 'zarr.json'");
  return zarr::ZarrArray::open(c.store, prefix, param, c.missing, c.version);
}

Node open_param_array(const ArrayContext& c, const std::string& param, const std::string& origin) {
  return Node::tensor(open_param_zarr(c, param, origin)->tensor());
}

Node open_spec_array(const ArrayContext& c, const Node& spec_node, const std::string& param) {
  const std::string where = c.item_dir + "/" + kAggregateFile;
  const std::string what = "TensorStore spec of '" + param + "'";
  json spec = to_json(spec_node, where);
  auto bad = [&](const std::string& msg) -> FormatError { return FormatError(where, what + ": " + msg); };
  const json& kv = spec["kvstore"];
  const std::string driver = spec["driver"].is_string() ? spec["driver"].get<std::string>() : "";
  if (driver != "zarr" && driver != "zarr3")
    throw bad("driver " + spec["driver"].dump() + " is not supported (only 'zarr' and 'zarr3')");
  if (!kv.is_object()) throw bad("'kvstore' is not an object");
  const std::string kv_driver = kv.contains("driver") && kv["driver"].is_string() ? kv["driver"].get<std::string>() : "";
  if (kv_driver != "file" && kv_driver != "gfile" && kv_driver != "gcs")
    throw bad("kvstore driver " + (kv.contains("driver") ? kv["driver"].dump() : std::string("(none)")) +
              " is not supported (only file, gfile and gcs paths relative to the checkpoint)");
  // tensorstore >= 0.1.14 keeps the path in the kvstore, older versions at the top level.
  const json& path_j = kv.contains("path") ? kv["path"] : spec.contains("path") ? spec["path"] : json();
  if (!path_j.is_string() || path_j.get<std::string>().empty()) throw bad("no kvstore path");
  std::string rel = path_j.get<std::string>();
  while (!rel.empty() && rel.back() == '/') rel.pop_back();
  if (rel.empty() || rel.front() == '/' || rel.find("://") != std::string::npos)
    throw bad("path '" + path_j.get<std::string>() + "' is not relative to the checkpoint directory");
  const std::string prefix = rel + "/";
  const json& meta = spec["metadata"];
  if (!meta.is_object()) throw bad("'metadata' is not an object");

  ArrayContext ac = c;
  ac.version = driver == "zarr3" ? zarr::ZarrVersion::V3 : zarr::ZarrVersion::V2;
  ac.declared_by = "its TensorStore spec (driver '" + driver + "')";
  bool synthesized = false;
  if (driver == "zarr" && !has_key(*c.store, prefix + ".zarray", param) &&
      !has_key(*c.store, prefix + "zarr.json", param)) {
    // What TensorStore writes for this spec: everything it leaves to defaults is fixed.
    for (const char* k : {"shape", "chunks", "compressor"})
      if (!meta.contains(k))
        throw FormatError(c.store->locate(prefix + ".zarray"),
                          what + ": the array has no '.zarray' and the spec's metadata lacks '" + k + "'");
    json z = meta;
    if (!z.contains("dtype")) {
      auto d = spec.contains("dtype") && spec["dtype"].is_string() ? v2_dtype_of(spec["dtype"].get<std::string>())
                                                                   : std::nullopt;
      if (!d)
        throw FormatError(c.store->locate(prefix + ".zarray"),
                          what + ": the array has no '.zarray' and the spec names no dtype it can be read as");
      z["dtype"] = *d;
    }
    z["zarr_format"] = 2;
    if (!z.contains("order")) z["order"] = "C";
    if (!z.contains("filters")) z["filters"] = nullptr;
    if (!z.contains("fill_value")) z["fill_value"] = nullptr;
    if (!z.contains("dimension_separator")) z["dimension_separator"] = ".";
    ac.store = std::make_shared<OverlayStore>(c.store, prefix + ".zarray", z.dump(), where + " (" + what + ")");
    ac.missing = zarr::MissingChunks::Error;
    synthesized = true;
  }
  Node t = open_param_array(ac, rel, " (" + what + " in " + where + ")");
  const TensorInfo& info = t.tensor().info;
  if (meta.contains("shape")) {
    Shape want;
    try {
      for (const auto& d : meta["shape"]) want.push_back(d.get<std::int64_t>());
    } catch (const json::exception&) {
      throw bad("'metadata.shape' is not a list of integers");
    }
    if (want != info.shape)
      throw FormatError(c.store->locate(prefix), what + ": the spec's shape " + shape_str(want) +
                                                     " differs from the stored array's " + shape_str(info.shape));
  }
  if (spec.contains("dtype") && spec["dtype"].is_string()) {
    const std::string want = spec["dtype"].get<std::string>();
    const auto v2 = v2_dtype_of(want);
    const auto stored = v2 ? zarr::parse_v2_dtype(*v2) : std::nullopt;
    if (!stored || stored->dtype != info.dtype)
      throw FormatError(c.store->locate(prefix), what + ": the spec's dtype '" + want + "' differs from the stored " +
                                                     std::string(dtype_name(info.dtype)));
  }
  t.attrs["t5x.tensorstore_path"] = rel;
  if (synthesized) t.attrs["t5x.zarr_metadata"] = "tensorstore spec";
  return t;
}

void resolve_legacy_tree(Node& root, const ArrayContext& c) {
  Path keys;
  resolve(root, keys, c);
}

}  // namespace ckb::orbax
