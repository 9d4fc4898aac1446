// Registration of the "zarr" format (formats/format.h): a bare zarr v2/v3 array or a group
// hierarchy on the local filesystem, read lazily through formats/zarr/zarr_array.h.
//  - Detection: a directory holding `.zarray`, `.zgroup` or `zarr.json` (the Orbax format is
//    tried first, so Orbax item/step directories keep their own reader).
//  - A bare array is one tensor named after its directory; a group's tensors are named by
//    their paths relative to the group, joined with '/' (nested groups are nested dicts; an
//    empty group is an empty dict). v2 groups hold `.zarray`/`.zgroup` children, v3 groups
//    `zarr.json` children; other directories are not zarr nodes and are skipped, as
//    zarr-python does. A directory holding both v2 and v3 metadata is read as v3, as zarr-python 3 does.
//  - Consolidated metadata (v2 `.zmetadata`) is cross-checked against the stored nodes: a
//    difference is a FormatError, because readers that use it and readers that do not would
//    see different data. v3 `consolidated_metadata` is must_understand: false and ignored.
//  - User attributes (`.zattrs`, v3 "attributes") are not leaves (a conversion would have to
//    map them): they are kept as the node's attr "zarr.attributes" (compact JSON).
//  - Missing chunks read as the fill value (the zarr rule) and are counted
//    (TensorSource::missing_chunks()); ReadOptions::strict_chunks makes them errors.
#include <algorithm>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "core/errors.h"
#include "formats/format.h"
#include "formats/zarr/zarr_array.h"
#include "formats/zarr/zarr_metadata.h"
#include "io/file.h"
#include "io/kvstore.h"

namespace ckb {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

bool has(const std::string& dir, const char* file) { return path_exists(dir + "/" + file); }

class ZarrTreeReader {
 public:
  ZarrTreeReader(std::string root, const ReadOptions& opts)
      : root_(std::move(root)),
        store_(std::make_shared<DirectoryKvStore>(root_)),
        missing_(opts.strict_chunks ? zarr::MissingChunks::Error : zarr::MissingChunks::Fill) {}

  // `rel` is "" or ends in '/'; `name` is the tensor's name for messages.
  Node array(const std::string& rel, const std::string& name, zarr::ZarrVersion version) {
    auto a = zarr::ZarrArray::open(store_, rel, name, missing_, version);
    Node n = Node::tensor(a->tensor());
    if (a->metadata().zarr_format == 2) {
      if (has(dir(rel), ".zattrs")) attach(n, zarr::parse_json_object(read_text_file(dir(rel) + "/.zattrs"), dir(rel) + "/.zattrs"));
    } else {
      const std::string f = dir(rel) + "/zarr.json";
      const json j = zarr::parse_json_object(read_text_file(f), f);
      if (j.contains("attributes")) attach(n, j["attributes"]);
    }
    arrays_.push_back(rel);
    return n;
  }

  Node group(const std::string& rel, int version, int depth) {
    if (depth > 64) throw FormatError(dir(rel), "zarr groups nested deeper than 64 levels");
    Node g = Node::dict();
    const std::string d = dir(rel);
    if (version == 2) {
      const std::string f = d + "/.zgroup";
      const json j = zarr::parse_json_object(read_text_file(f), f);
      if (!j.contains("zarr_format") || j["zarr_format"] != 2) throw FormatError(f, "zarr_format must be 2");
      if (has(d, ".zattrs")) attach(g, zarr::parse_json_object(read_text_file(d + "/.zattrs"), d + "/.zattrs"));
    } else {
      const std::string f = d + "/zarr.json";
      attach(g, zarr::parse_v3_group(read_text_file(f), f));
    }
    groups_.push_back(rel);
    std::vector<std::string> names;
    for (const auto& e : list_directory(d))
      if (e.is_directory) names.push_back(e.name);
    for (const auto& n : names) {
      const std::string child = rel + n + "/", cd = d + "/" + n;
      if (version == 2) {
        const bool arr = has(cd, ".zarray"), grp = has(cd, ".zgroup");
        if (arr && grp) throw FormatError(cd, "holds both .zarray and .zgroup");
        if (arr) g.add(n, array(child, rel + n, zarr::ZarrVersion::V2));
        else if (grp) g.add(n, group(child, 2, depth + 1));
      } else if (has(cd, "zarr.json")) {
        if (node_type(cd + "/zarr.json") == "array") g.add(n, array(child, rel + n, zarr::ZarrVersion::V3));
        else g.add(n, group(child, 3, depth + 1));
      }
    }
    return g;
  }

  // The consolidated `.zmetadata` of a v2 root group must describe exactly the stored nodes.
  void check_consolidated() const {
    const std::string f = root_ + "/.zmetadata";
    if (!path_exists(f)) return;
    const json j = zarr::parse_json_object(read_text_file(f), f);
    if (!j.contains("zarr_consolidated_format") || j["zarr_consolidated_format"] != 1)
      throw FormatError(f, "zarr_consolidated_format must be 1");
    if (!j.contains("metadata") || !j["metadata"].is_object()) throw FormatError(f, "no 'metadata' object");
    const json& md = j["metadata"];
    std::vector<std::string> listed;
    for (const auto& [key, value] : md.items()) {
      const auto slash = key.rfind('/');
      const std::string file = slash == std::string::npos ? key : key.substr(slash + 1);
      if (file != ".zarray" && file != ".zgroup" && file != ".zattrs") continue;
      listed.push_back(key);
      const std::string stored = root_ + "/" + key;
      if (!path_exists(stored))
        throw FormatError(f, "consolidated metadata lists '" + key + "', which is not stored");
      if (zarr::parse_json_object(read_text_file(stored), stored) != value)
        throw FormatError(f, "consolidated metadata for '" + key + "' differs from " + stored);
    }
    auto expect = [&](const std::string& key) {
      if (std::find(listed.begin(), listed.end(), key) == listed.end())
        throw FormatError(f, "consolidated metadata does not list '" + key + "', which is stored");
    };
    for (const auto& a : arrays_) expect(a + ".zarray");
    for (const auto& g : groups_) expect(g + ".zgroup");
  }

  static std::string node_type(const std::string& file) {
    const json j = zarr::parse_json_object(read_text_file(file), file);
    if (!j.contains("node_type") || !j["node_type"].is_string() ||
        (j["node_type"] != "array" && j["node_type"] != "group"))
      throw FormatError(file, "node_type must be \"array\" or \"group\"");
    return j["node_type"].get<std::string>();
  }

 private:
  std::string dir(const std::string& rel) const {
    return rel.empty() ? root_ : root_ + "/" + rel.substr(0, rel.size() - 1);
  }
  static void attach(Node& n, const json& attrs) {
    if (attrs.is_object() && !attrs.empty()) n.attrs["zarr.attributes"] = attrs.dump();
  }

  std::string root_;
  KvStorePtr store_;
  zarr::MissingChunks missing_;
  std::vector<std::string> arrays_, groups_;  // relative prefixes read
};

Checkpoint read_zarr(const std::string& path, const ReadOptions& opts) {
  const std::string root = without_trailing_slashes(path);
  const bool v2_array = has(root, ".zarray"), v2_group = has(root, ".zgroup"), v3 = has(root, "zarr.json");
  // Both v2 and v3 metadata (left by a v2 -> v3 migration, as in zarrs' test data): v3 is
  // read, as zarr-python 3 does; the checkpoint's metadata says so.
  const bool both = (v2_array || v2_group) && v3;
  if (v2_array && v2_group && !v3) throw FormatError(root, "holds both .zarray and .zgroup");
  if (!v2_array && !v2_group && !v3) throw FormatError(root, "not a zarr array or group (no .zarray, .zgroup or zarr.json)");
  ZarrTreeReader reader(root, opts);
  Checkpoint ck;
  ck.format = "zarr";
  ck.path = path;
  const bool is_array = v3 ? ZarrTreeReader::node_type(root + "/zarr.json") == "array" : v2_array;
  if (is_array) {
    fs::path p = is_remote_path(root) ? fs::path(root) : fs::absolute(root).lexically_normal();
    if (p.filename().empty()) p = p.parent_path();
    const std::string name = p.filename().string();
    ck.root = Node::dict();
    ck.root.add(name, reader.array("", name, v3 ? zarr::ZarrVersion::V3 : zarr::ZarrVersion::V2));
  } else {
    ck.root = reader.group("", v3 ? 3 : 2, 0);
    if (!v3) reader.check_consolidated();
  }
  ck.metadata["zarr.zarr_format"] = v3 ? "3" : "2";
  if (both) ck.metadata["zarr.note"] = "both v2 and v3 metadata present: read as v3 (zarr.json), as zarr-python 3 does";
  return ck;
}

}  // namespace

Format make_zarr_format() {
  Format f;
  f.name = "zarr";
  f.description = "zarr v2/v3 array or group directory (nested groups, consolidated metadata)";
  f.detect = [](const std::string& path) {
    try {
      const std::string root = without_trailing_slashes(path);
      return is_directory(root) && (has(root, ".zarray") || has(root, ".zgroup") || has(root, "zarr.json"));
    } catch (...) {
      return false;
    }
  };
  f.read = read_zarr;
  return f;
}

}  // namespace ckb
