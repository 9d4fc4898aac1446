// The PyTree layer of the Orbax reader (formats/orbax/orbax_reader.h).
#include "formats/orbax/orbax_reader.h"

#include <cstring>
#include <filesystem>
#include <map>

#include <nlohmann/json.hpp>

#include "core/errors.h"
#include "core/json_bounded.h"
#include "core/float_bits.h"
#include "formats/orbax/orbax_aggregate.h"
#include "formats/orbax/orbax_metadata.h"
#include "formats/orbax/orbax_paths.h"
#include "formats/zarr/zarr_array.h"
#include "io/file.h"
#include "io/kvstore.h"
#include "io/ocdbt/ocdbt_kvstore.h"

namespace ckb::orbax {
namespace {

using nlohmann::json;

// param name -> random_key_impl, from array_metadatas/process_*.
std::map<std::string, std::string> random_key_impls(const std::string& item_dir) {
  std::map<std::string, std::string> out;
  const std::string dir = item_dir + "/array_metadatas";
  if (!is_directory(dir)) return out;
  for (const auto& entry : list_directory(dir)) {
    const std::string& name = entry.name;
    if (name.rfind("process_", 0) != 0 || entry.is_directory) continue;
    const std::string file = dir + "/" + name;
    json j = parse_json_bounded(read_text_file(file), file, {.allow_exceptions = false});
    if (j.is_discarded() || !j.is_object()) throw FormatError(file, "not a JSON object");
    try {
      for (const auto& e : j.at("array_metadatas")) {
        const json& am = e.at("array_metadata");
        const json& ext = am.contains("ext_metadata") ? am["ext_metadata"] : json();
        if (ext.is_object() && ext.contains("random_key_impl"))
          out[am.at("param_name").get<std::string>()] = ext["random_key_impl"].get<std::string>();
      }
    } catch (const json::exception& e) {
      throw FormatError(file, std::string("malformed array metadata: ") + e.what());
    }
  }
  return out;
}

Node scalar_leaf(const zarr::ZarrArray& a, const std::string& param) {
  const auto& m = a.metadata();
  if (m.numel() != 1)
    throw FormatError(a.describe(), "array '" + param + "': scalar leaf has shape " + shape_str(m.shape));
  std::byte buf[16];
  a.read(0, {buf, m.dtype.itemsize});
  auto get = [&](auto v) {
    std::memcpy(&v, buf, sizeof v);
    return v;
  };
  auto value = [&]() -> Node::Value {
    switch (m.dtype.dtype) {
      case DType::BOOL: return get(std::uint8_t{}) != 0;
      case DType::I8: return std::int64_t{get(std::int8_t{})};
      case DType::I16: return std::int64_t{get(std::int16_t{})};
      case DType::I32: return std::int64_t{get(std::int32_t{})};
      case DType::I64: return get(std::int64_t{});
      case DType::U8: return std::int64_t{get(std::uint8_t{})};
      case DType::U16: return std::int64_t{get(std::uint16_t{})};
      case DType::U32: return std::int64_t{get(std::uint32_t{})};
      case DType::U64: {
        const auto u = get(std::uint64_t{});
        if (u > static_cast<std::uint64_t>(INT64_MAX))
          throw FormatError(a.describe(), "array '" + param + "': uint64 scalar " + std::to_string(u) + " exceeds int64");
        return static_cast<std::int64_t>(u);
      }
      case DType::F64: return get(double{});
      case DType::F32: return static_cast<double>(get(float{}));
      case DType::F16: return decode_float(kF16, get(std::uint16_t{}));
      case DType::BF16: return decode_float(kBF16, get(std::uint16_t{}));
      default:
        throw FormatError(a.describe(), "array '" + param + "': unsupported scalar dtype " + m.dtype.name);
    }
  };
  Node n(value());
  n.attrs["orbax.value_type"] = "scalar";
  n.attrs["orbax.dtype"] = m.dtype.name;
  return n;
}

// The container that holds `keys[depth]`, creating containers on the way.
Node& parent_of(Node& root, const LeafMetadata& e, const std::string& meta_path) {
  Node* cur = &root;
  for (std::size_t i = 0; i + 1 < e.keys.size(); ++i) {
    const KeyEntry& k = e.keys[i];
    const KeyEntry& next = e.keys[i + 1];
    const ContainerKind want = next.key_type == 1 ? ContainerKind::List : ContainerKind::Dict;
    Node* child = cur->find(k.key);
    if (!child) {
      child = &cur->add(k.key, want == ContainerKind::List ? Node::list() : Node::dict());
    } else if (!child->is_container() || child->container().kind != want) {
      throw FormatError(meta_path, "conflicting tree structure at '" + e.param_name() + "'");
    }
    cur = child;
  }
  return *cur;
}

}  // namespace

namespace {

// The aggregate value at `e`'s key path; null when the aggregate has none.
const Node* aggregate_at(const Node* aggregate, const LeafMetadata& e) {
  const Node* cur = aggregate;
  for (const auto& k : e.keys) {
    if (!cur || !cur->is_container()) return nullptr;
    cur = cur->find(k.key);
  }
  return cur;
}

bool is_empty_type(const std::string& vt) {
  return vt == "None" || vt == "placeholder" || vt == "Dict" || vt == "List" || vt == "Tuple" || vt == "NamedTuple";
}

// Leaves of the aggregate holding a value (not None, not an empty container) that the tree
// built from _METADATA does not have: Orbax would drop them; we refuse rather than lose them.
void check_aggregate_covered(const Node& aggregate, const Node& root, const std::string& agg_path) {
  visit_leaves(aggregate, [&](const Path& p, const Node& n) {
    if (n.is_empty_container() || std::holds_alternative<NoneValue>(n.value())) return;
    const Node* cur = &root;
    for (const auto& k : p) cur = cur && cur->is_container() ? cur->find(k) : nullptr;
    if (!cur)
      throw FormatError(agg_path, "holds a value for '" + join_path(p) + "' that _METADATA does not list");
  });
}

KvStorePtr item_store(const std::string& item_dir, std::optional<bool> use_ocdbt) {
  const bool ocdbt = use_ocdbt ? *use_ocdbt : path_exists(item_dir + "/manifest.ocdbt");
  return ocdbt ? KvStorePtr(std::make_shared<ocdbt::OcdbtKvStore>(item_dir))
               : KvStorePtr(std::make_shared<DirectoryKvStore>(item_dir));
}

// An item without _METADATA: the aggregate file is the tree (formats/orbax/orbax_aggregate.h).
Node read_legacy_item(const std::string& item_dir, Node aggregate, bool strict_chunks) {
  ArrayContext c;
  c.item_dir = item_dir;
  c.store = item_store(item_dir, std::nullopt);
  // Orbax wrote every chunk only when told to; without _METADATA nothing says so.
  c.missing = strict_chunks ? zarr::MissingChunks::Error : zarr::MissingChunks::Fill;
  // Nothing declares the zarr version: Orbax then restores with its default (zarr v2), so a
  // directory holding both documents is read as v2; one holding only zarr.json as v3.
  c.version = zarr::ZarrVersion::Auto;
  resolve_legacy_tree(aggregate, c);
  return aggregate;
}

}  // namespace

Node read_item(const std::string& item_dir, bool strict_chunks) {
  const std::string meta_path = item_dir + "/_METADATA";
  const std::string agg_path = item_dir + "/" + kAggregateFile;
  std::optional<Node> aggregate = read_aggregate(item_dir);
  if (!path_exists(meta_path)) {
    if (!aggregate) throw FormatError(item_dir, "not an Orbax item: no _METADATA and no aggregate 'checkpoint' file");
    return read_legacy_item(item_dir, std::move(*aggregate), strict_chunks);
  }
  TreeMetadata tm = parse_tree_metadata(read_text_file(meta_path), meta_path);
  ArrayContext c;
  c.item_dir = item_dir;
  c.store = item_store(item_dir, tm.use_ocdbt);
  c.missing = strict_chunks || tm.store_array_data_equal_to_fill_value ? zarr::MissingChunks::Error
                                                                    : zarr::MissingChunks::Fill;
  // Orbax opens every array with the driver _METADATA names (use_zarr3, absent = false).
  c.version = tm.use_zarr3 ? zarr::ZarrVersion::V3 : zarr::ZarrVersion::V2;
  c.declared_by = meta_path + std::string(tm.use_zarr3 ? " (use_zarr3: true)" : " (use_zarr3: false)");
  const auto key_impls = random_key_impls(item_dir);
  std::optional<json> strings;
  const std::string strings_path = item_dir + "/_strings.json";

  const bool root_is_list = !tm.entries.empty() && tm.entries.front().keys.front().key_type == 1;
  Node root = root_is_list ? Node::list() : Node::dict();
  for (const auto& e : tm.entries) {
    const std::string param = e.param_name();
    const std::string& vt = e.value_type;
    const Node* agg = aggregate ? aggregate_at(&*aggregate, e) : nullptr;
    auto make_leaf = [&]() -> Node {
      // A value in the aggregate file (not a placeholder) is the leaf, whatever
      // skip_deserialize says (as Orbax restores it).
      if (agg && !placeholder_name(*agg)) {
        if (agg->is_container() && !agg->is_empty_container())
          throw FormatError(agg_path, "conflicting tree structure at '" + param + "': _METADATA has a leaf there");
        Node leaf = *agg;
        leaf.attrs["orbax.aggregate"] = "1";
        return leaf;
      }
      if (e.skip_deserialize && !is_empty_type(vt))
        throw FormatError(aggregate ? agg_path : meta_path,
                          "leaf '" + param + "' is marked skip_deserialize in _METADATA (its value lives in the aggregate '" +
                              kAggregateFile + "' file), but " +
                              (!aggregate ? std::string("there is no aggregate file")
                               : agg     ? "the aggregate file holds only a placeholder for it"
                                         : "the aggregate file has no value for it"));
      const std::string origin = agg ? " (" + std::get<std::string>(agg->value()) + " in " + agg_path + ")" : "";
      if (vt == "jax.Array" || vt == "np.ndarray") {
        Node t = open_param_array(c, param, origin);
        auto it = key_impls.find(param);
        if (it != key_impls.end()) t.attrs["random_key_impl"] = it->second;
        return t;
      } else if (vt == "scalar") {
        return scalar_leaf(*open_param_zarr(c, param, origin), param);
      } else if (vt == "string") {
        if (!strings) {
          if (!path_exists(strings_path)) throw FormatError(strings_path, "missing, but '" + param + "' is a string leaf");
          strings = parse_json_bounded(read_text_file(strings_path), strings_path, {.allow_exceptions = false});
          if (strings->is_discarded() || !strings->is_object()) throw FormatError(strings_path, "not a JSON object");
        }
        if (!strings->contains(param) || !(*strings)[param].is_string())
          throw FormatError(strings_path, "no string value for '" + param + "'");
        return Node((*strings)[param].get<std::string>());
      } else if (vt == "None" || vt == "placeholder") {
        return Node::none();
      } else if (vt == "Dict") {
        return Node::dict();
      } else if (vt == "List") {
        return Node::list();
      } else if (vt == "Tuple" || vt == "NamedTuple") {
        return Node::tuple();
      }
      throw FormatError(meta_path, "leaf '" + param + "' has unsupported value type '" + vt + "'");
    };
    Node leaf = make_leaf();
    if (!leaf.attrs.count("orbax.value_type")) leaf.attrs["orbax.value_type"] = vt;
    Node& parent = parent_of(root, e, meta_path);
    const std::string& key = e.keys.back().key;
    const ContainerKind want = e.keys.back().key_type == 1 ? ContainerKind::List : ContainerKind::Dict;
    if (parent.container().kind != want)
      throw FormatError(meta_path, "conflicting tree structure at '" + param + "'");
    if (parent.find(key)) throw FormatError(meta_path, "duplicate entry '" + param + "'");
    parent.add(key, std::move(leaf));
  }
  if (aggregate) check_aggregate_covered(*aggregate, root, agg_path);
  return root;
}

Checkpoint read_checkpoint(const std::string& path, const ReadOptions& opts) {
  auto r = resolve_path(path, opts);
  if (!r) throw FormatError(path, "not an Orbax checkpoint (no _METADATA in it, its items or its steps)");
  Checkpoint ck;
  ck.format = "orbax";
  ck.path = path;
  if (r->step) ck.metadata["orbax.step"] = std::to_string(*r->step);
  ck.metadata["orbax.step_dir"] = r->step_dir;
  if (r->items.size() == 1) {
    const std::string& dir = r->items.front().second;
    ck.root = read_item(dir, opts.strict_chunks);
    if (!r->items.front().first.empty()) ck.metadata["orbax.item"] = r->items.front().first;
    // The write options that reproduce this item's layout (carried over by a conversion).
    if (path_exists(dir + "/_METADATA")) {
      const TreeMetadata tm = parse_tree_metadata(read_text_file(dir + "/_METADATA"), dir + "/_METADATA");
      ck.layout_options["zarr-version"] = tm.use_zarr3 ? "3" : "2";
    }
  } else {
    ck.root = Node::dict();
    std::string names;
    for (const auto& [name, dir] : r->items) {
      ck.root.add(name, read_item(dir, opts.strict_chunks));
      names += (names.empty() ? "" : ",") + name;
    }
    ck.metadata["orbax.items"] = names;
  }
  return ck;
}

}  // namespace ckb::orbax
