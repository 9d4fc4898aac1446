// The `_METADATA` file of an Orbax PyTree item (formats.md §1.2): one entry per leaf or
// empty node, with its key path (key_type 1 = sequence index, 2 = dict key/attribute) and
// value type. Entries come back sorted by key path (sequence indices numerically) with
// entries that are a prefix of another entry's path dropped, as Orbax rebuilds its tree.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace ckb::orbax {

struct KeyEntry {
  std::string key;
  int key_type = 2;  // 1 sequence, 2 dict
};

struct LeafMetadata {
  std::vector<KeyEntry> keys;
  std::string value_type;  // "jax.Array", "np.ndarray", "scalar", "string", "None", "Dict", ...
  bool skip_deserialize = false;
  std::string param_name() const;  // keys joined with '.'
};

struct TreeMetadata {
  std::vector<LeafMetadata> entries;
  std::optional<bool> use_ocdbt;  // nullopt: absent or null
  bool use_zarr3 = false;
  bool store_array_data_equal_to_fill_value = false;
  nlohmann::json custom_metadata;
};

// FormatError(path, ...) when the JSON does not follow the schema.
TreeMetadata parse_tree_metadata(std::string_view text, const std::string& path);

}  // namespace ckb::orbax
