// Orbax writes its JSON files from Python (`json.dumps` defaults: ", " and ": " separators,
// ensure_ascii, insertion order) and names _METADATA entries by the Python repr of the key
// tuple. Writing the same bytes lets a test compare our files with Orbax's byte for byte.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace ckb::orbax {

// json.dumps(value) for an ordered JSON value.
std::string py_json_dumps(const nlohmann::ordered_json& value);
// repr(s) of a Python str given as UTF-8.
std::string py_str_repr(const std::string& s);
// repr(tuple(keys)) of string keys: "('a', 'b')", "('a',)", "()".
std::string py_tuple_repr(const std::vector<std::string>& keys);

}  // namespace ckb::orbax
