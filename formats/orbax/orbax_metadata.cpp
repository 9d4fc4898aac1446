// `_METADATA` parsing for formats/orbax/orbax_metadata.h.
#include "formats/orbax/orbax_metadata.h"

#include <algorithm>

#include "core/errors.h"
#include "core/json_bounded.h"

namespace ckb::orbax {

using nlohmann::json;

std::string LeafMetadata::param_name() const {
  std::string s;
  for (std::size_t i = 0; i < keys.size(); ++i) {
    if (i) s += '.';
    s += keys[i].key;
  }
  return s;
}

namespace {

bool is_index(const std::string& s) {
  return !s.empty() && s.size() < 19 && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// Key path order: sequence indices numerically, everything else bytewise.
bool key_less(const KeyEntry& a, const KeyEntry& b) {
  if (a.key_type == 1 && b.key_type == 1 && is_index(a.key) && is_index(b.key) && a.key.size() != b.key.size())
    return a.key.size() < b.key.size();
  return a.key < b.key;
}

bool path_less(const LeafMetadata& a, const LeafMetadata& b) {
  return std::lexicographical_compare(a.keys.begin(), a.keys.end(), b.keys.begin(), b.keys.end(), key_less);
}

bool is_prefix(const LeafMetadata& a, const LeafMetadata& b) {
  if (a.keys.size() >= b.keys.size()) return false;
  for (std::size_t i = 0; i < a.keys.size(); ++i)
    if (a.keys[i].key != b.keys[i].key) return false;
  return true;
}

TreeMetadata parse_impl(std::string_view text, const std::string& path) {
  // Nesting is bounded so that no later recursion (dump(), copies) can exhaust the stack.
  json j = parse_json_bounded(text, path, {.max_depth = 256, .allow_exceptions = false});
  if (j.is_discarded() || !j.is_object()) throw FormatError(path, "not a JSON object");
  if (!j.contains("tree_metadata") || !j["tree_metadata"].is_object())
    throw FormatError(path, "no 'tree_metadata' object");
  TreeMetadata m;
  if (j.contains("use_ocdbt") && !j["use_ocdbt"].is_null()) m.use_ocdbt = j["use_ocdbt"].get<bool>();
  if (j.contains("use_zarr3") && !j["use_zarr3"].is_null()) m.use_zarr3 = j["use_zarr3"].get<bool>();
  if (j.contains("store_array_data_equal_to_fill_value") && !j["store_array_data_equal_to_fill_value"].is_null())
    m.store_array_data_equal_to_fill_value = j["store_array_data_equal_to_fill_value"].get<bool>();
  if (j.contains("custom_metadata")) m.custom_metadata = j["custom_metadata"];
  for (const auto& [name, e] : j["tree_metadata"].items()) {
    LeafMetadata leaf;
    if (!e.contains("key_metadata") || !e["key_metadata"].is_array() || e["key_metadata"].empty())
      throw FormatError(path, "entry " + name + " has no key_metadata");
    for (const auto& k : e["key_metadata"]) {
      // Checked before conversion: get<int>() of a float such as 2e20 is undefined behaviour.
      const json& kt = k.at("key_type");
      const std::int64_t type = kt.is_number_integer() ? kt.get<std::int64_t>() : 0;
      if (type != 1 && type != 2)
        throw FormatError(path, "entry " + name + " has unknown key_type " +
                                    (kt.is_number_integer() ? std::to_string(type) : std::string(kt.type_name())));
      leaf.keys.push_back(KeyEntry{k.at("key").get<std::string>(), static_cast<int>(type)});
    }
    const json& v = e.at("value_metadata");
    leaf.value_type = v.at("value_type").get<std::string>();
    leaf.skip_deserialize = v.value("skip_deserialize", false);
    m.entries.push_back(std::move(leaf));
  }
  std::sort(m.entries.begin(), m.entries.end(), path_less);
  std::vector<LeafMetadata> kept;
  for (std::size_t i = 0; i < m.entries.size(); ++i) {
    if (i + 1 < m.entries.size() && is_prefix(m.entries[i], m.entries[i + 1])) continue;
    if (i + 1 < m.entries.size() && m.entries[i].keys.size() == m.entries[i + 1].keys.size() &&
        !is_prefix(m.entries[i], m.entries[i + 1]) && m.entries[i].param_name() == m.entries[i + 1].param_name()) {
      bool same = true;
      for (std::size_t k = 0; k < m.entries[i].keys.size(); ++k) same &= m.entries[i].keys[k].key == m.entries[i + 1].keys[k].key;
      if (same) throw FormatError(path, "duplicate key path " + m.entries[i].param_name());
    }
    kept.push_back(std::move(m.entries[i]));
  }
  m.entries = std::move(kept);
  return m;
}

}  // namespace

TreeMetadata parse_tree_metadata(std::string_view text, const std::string& path) {
  try {
    return parse_impl(text, path);
  } catch (const json::exception& e) {
    throw FormatError(path, std::string("malformed _METADATA: ") + e.what());
  }
}

}  // namespace ckb::orbax
