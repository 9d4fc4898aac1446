// Reader side of formats/safetensors/safetensors.h.
#include <algorithm>
#include <cstring>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "core/errors.h"
#include "core/json_bounded.h"
#include "formats/safetensors/safetensors.h"
#include "io/byte_reader.h"
#include "io/file.h"
#include "io/lfs_pointer.h"

namespace ckb::safetensors {
namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

namespace {

// Parses JSON with a nesting limit (hostile headers cannot exhaust the stack) and no
// duplicate keys (core/json_bounded.h).
ojson parse_json_limited(std::string_view text, const std::string& path, std::uint64_t offset) {
  try {
    return parse_ordered_json_bounded(text, path, {.offset = offset});
  } catch (const ojson::exception& e) {
    throw FormatError(path, std::string("header is not valid JSON: ") + e.what(), offset);
  }
}

struct Entry {
  std::string name;
  TensorInfo info;
  std::uint64_t begin, end;
};

// One safetensors file: appends its tensors (ordered by data offset) to `root`.
void read_file(const std::string& path, Node& root, std::map<std::string, std::string>* metadata,
               std::set<std::string>* names_out) {
  auto file = MappedFile::open(path);
  // Only the length and the header are touched here (a remote file fetches just those).
  const std::uint64_t file_size = file->size();
  if (file_size <= 1024)
    if (auto lfs = parse_lfs_pointer(file->bytes())) throw FormatError(path, lfs->describe());
  ByteReader r(file->range(0, std::min<std::uint64_t>(file_size, 8), "header length"), path);
  const std::uint64_t n = r.le<std::uint64_t>("header length");
  if (n > kMaxHeaderBytes)
    throw FormatError(path, "header length " + std::to_string(n) + " exceeds the 100 MB limit", 0);
  if (n > file_size - 8)
    throw FormatError(path, "truncated: header declares " + std::to_string(n) + " bytes but the file has " +
                                std::to_string(file_size - 8) + " after its 8-byte length", 0);
  const auto header = file->range(8, n, "header");
  const std::string_view text(reinterpret_cast<const char*>(header.data()), header.size());
  if (text.empty() || text.front() != '{') throw FormatError(path, "header does not start with '{'", 8);
  ojson h = parse_json_limited(text, path, 8);
  if (!h.is_object()) throw FormatError(path, "header is not a JSON object", 8);
  const std::uint64_t data_start = 8 + n;
  const std::uint64_t buffer = file->size() - data_start;

  std::vector<Entry> entries;
  for (auto& [key, v] : h.items()) {
    if (key == "__metadata__") {
      if (!v.is_object()) throw FormatError(path, "__metadata__ is not an object", 8);
      for (auto& [mk, mv] : v.items()) {
        if (!mv.is_string()) throw FormatError(path, "__metadata__['" + mk + "'] is not a string", 8);
        if (metadata) (*metadata)[mk] = mv.get<std::string>();
      }
      continue;
    }
    const std::string where = "tensor '" + key + "'";
    if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") || !v.contains("data_offsets"))
      throw FormatError(path, where + " needs dtype, shape and data_offsets", 8);
    const auto& dt = v["dtype"];
    if (!dt.is_string()) throw FormatError(path, where + ": dtype is not a string", 8);
    auto dtype = dtype_from_name(dt.get<std::string>());
    if (!dtype || *dtype == DType::C128)  // safetensors has no complex128
      throw FormatError(path, where + ": unsupported dtype '" + dt.get<std::string>() + "'", 8);
    Shape shape;
    if (!v["shape"].is_array()) throw FormatError(path, where + ": shape is not a list", 8);
    for (const auto& d : v["shape"]) {
      if (!d.is_number_unsigned()) throw FormatError(path, where + ": shape entries must be non-negative integers", 8);
      auto u = d.get<std::uint64_t>();
      if (u > static_cast<std::uint64_t>(INT64_MAX)) throw FormatError(path, where + ": dimension too large", 8);
      shape.push_back(static_cast<std::int64_t>(u));
    }
    const auto& off = v["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      throw FormatError(path, where + ": data_offsets must be [begin, end]", 8);
    Entry e{key, {*dtype, shape}, off[0].get<std::uint64_t>(), off[1].get<std::uint64_t>()};
    std::uint64_t numel = checked_numel(shape, path + ": " + where);
    std::uint64_t nbits = 0;  // as safetensors' Metadata::validate: numel * bitsize, whole bytes
    if (__builtin_mul_overflow(numel, static_cast<std::uint64_t>(dtype_bits(*dtype)), &nbits))
      throw FormatError(path, where + ": byte size overflows", 8);
    if (nbits % 8)
      throw FormatError(path, where + ": " + std::string(dtype_name(*dtype)) + " " + shape_str(shape) + " is " +
                                  std::to_string(nbits) + " bits, not a whole number of bytes", 8);
    const std::uint64_t nbytes = nbits / 8;
    if (e.end < e.begin || e.end - e.begin != nbytes)
      throw FormatError(path, where + ": data_offsets [" + std::to_string(e.begin) + ", " + std::to_string(e.end) +
                                  ") do not hold " + std::string(dtype_name(*dtype)) + " " + shape_str(shape) + " (" +
                                  std::to_string(nbytes) + " bytes)", 8);
    if (e.end > buffer)
      throw FormatError(path, where + ": data ends at buffer offset " + std::to_string(e.end) +
                                  " beyond the end of the file (buffer is " + std::to_string(buffer) + " bytes)",
                        data_start + e.begin);
    entries.push_back(std::move(e));
  }
  std::stable_sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  // As safetensors' Metadata::validate: in offset order the tensors cover the byte buffer
  // exactly, each starting where the previous one ends, and nothing follows the last one.
  std::uint64_t covered = 0;
  for (std::size_t i = 0; i < entries.size(); ++i) {
    const Entry& e = entries[i];
    const std::string before = i ? "tensor '" + entries[i - 1].name + "' ends" : "the data buffer starts";
    if (e.begin < covered)
      throw FormatError(path, "tensors '" + entries[i - 1].name + "' and '" + e.name + "' overlap",
                        data_start + e.begin);
    if (e.begin > covered)
      throw FormatError(path, "gap of " + std::to_string(e.begin - covered) + " bytes before tensor '" + e.name +
                                  "': its data starts at buffer offset " + std::to_string(e.begin) + " but " + before +
                                  " at " + std::to_string(covered),
                        data_start + covered);
    covered = e.end;
  }
  if (covered != buffer)
    throw FormatError(path, std::to_string(buffer - covered) + " trailing bytes after the last tensor" +
                                (entries.empty() ? std::string(" (the header lists none)")
                                                 : " ('" + entries.back().name + "' ends at buffer offset " +
                                                       std::to_string(covered) + ")") +
                                ": the data buffer has " + std::to_string(buffer) + " bytes",
                      data_start + covered);
  for (auto& e : entries) {
    if (names_out && !names_out->insert(e.name).second)
      throw FormatError(path, "tensor '" + e.name + "' appears in more than one shard");
    auto src = std::make_shared<MappedRangeSource>(file, data_start + e.begin, e.end - e.begin, e.name);
    root.add(e.name, Node::tensor(Tensor{e.info, std::move(src)}));
  }
}

std::vector<DirEntry> entries_of(const std::string& dir) {
  try {
    return list_directory(dir);
  } catch (const IoError&) {
    return {};
  }
}

std::string index_in_dir(const std::string& dir) {
  const auto entries = entries_of(dir);
  for (const auto& e : entries)
    if (!e.is_directory && e.name == kIndexName) return dir + "/" + kIndexName;
  for (const auto& e : entries)
    if (!e.is_directory && e.name.size() > 24 && e.name.ends_with(".safetensors.index.json")) return dir + "/" + e.name;
  return "";
}

std::vector<std::string> safetensors_files_in_dir(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : entries_of(dir))
    if (!e.is_directory && e.name.size() > 12 && e.name.ends_with(".safetensors")) out.push_back(dir + "/" + e.name);
  return out;
}

bool looks_like_safetensors_file(const std::string& path) {
  try {
    auto f = MappedFile::open(path);
    if (f->size() < 10) return false;
    const auto head = f->range(0, 9, "header");
    std::uint64_t n;
    std::memcpy(&n, head.data(), 8);
    // A header longer than the file still detects, so that reading says "truncated".
    return n >= 2 && n <= kMaxHeaderBytes && static_cast<char>(head[8]) == '{';
  } catch (const Error&) {
    return false;
  }
}

bool is_index_file(const std::string& path) {
  if (!path.ends_with(".json")) return false;
  try {
    auto j = parse_json_bounded(read_text_file(path), path, {.reject_duplicate_keys = false});
    return j.is_object() && j.contains("weight_map") && j["weight_map"].is_object();
  } catch (...) {
    return false;
  }
}

Checkpoint read_sharded(const std::string& index_path) {
  Checkpoint ck;
  ck.path = index_path;
  auto dir = fs::path(index_path).parent_path().string();
  if (dir.empty()) dir = ".";
  ojson idx = parse_json_limited(read_text_file(index_path), index_path, 0);
  if (!idx.is_object() || !idx.contains("weight_map") || !idx["weight_map"].is_object())
    throw FormatError(index_path, "index has no weight_map object");
  std::map<std::string, std::set<std::string>> by_shard;  // shard -> names the index lists
  for (auto& [name, shard] : idx["weight_map"].items()) {
    if (!shard.is_string()) throw FormatError(index_path, "weight_map['" + name + "'] is not a file name");
    auto s = shard.get<std::string>();
    if (s.find('/') != std::string::npos || s == ".." || s.empty())
      throw FormatError(index_path, "weight_map['" + name + "'] names '" + s + "', not a file in this directory");
    by_shard[s].insert(name);
  }
  if (idx.contains("metadata") && idx["metadata"].is_object())
    for (auto& [k, v] : idx["metadata"].items()) ck.metadata["index." + k] = v.dump();
  std::set<std::string> all;
  for (const auto& [shard, names] : by_shard) {
    Node part = Node::dict();
    std::set<std::string> got;
    read_file(dir + "/" + shard, part, &ck.metadata, &got);
    for (const auto& n : names)
      if (!got.count(n))
        throw FormatError(dir + "/" + shard, "the index lists tensor '" + n + "' in this shard but it is not there");
    for (auto& ch : part.container().children) {
      if (!names.count(ch.key))
        throw FormatError(dir + "/" + shard, "tensor '" + ch.key + "' is not listed for this shard in " + index_path);
      if (!all.insert(ch.key).second) throw FormatError(dir + "/" + shard, "tensor '" + ch.key + "' appears twice");
    }
    for (auto& ch : part.container().children) ck.root.add(ch.key, std::move(*ch.node));
  }
  return ck;
}

}  // namespace

bool detect(const std::string& path) {
  if (is_directory(path)) {
    if (!index_in_dir(path).empty()) return true;
    auto files = safetensors_files_in_dir(path);
    return files.size() == 1 && looks_like_safetensors_file(files[0]);
  }
  return looks_like_safetensors_file(path) || is_index_file(path);
}

Checkpoint read(const std::string& path) {
  if (is_directory(path)) {
    auto idx = index_in_dir(path);
    if (!idx.empty()) return read_sharded(idx);
    auto files = safetensors_files_in_dir(path);
    if (files.size() != 1) throw FormatError(path, "directory holds no index and not exactly one .safetensors file");
    return read(files[0]);
  }
  if (is_index_file(path)) return read_sharded(path);
  Checkpoint ck;
  ck.path = path;
  read_file(path, ck.root, &ck.metadata, nullptr);
  return ck;
}

}  // namespace ckb::safetensors

namespace ckb {
Format make_safetensors_format() {
  Format f;
  f.name = "safetensors";
  f.extensions = {".safetensors"};
  f.default_file_name = "model.safetensors";
  f.caps.string_metadata = true;
  // A sharded output folder: only shards and the index, and the sidecars of the profile writing it.
  f.replaceable = [](const std::string& dir, const std::vector<std::string>& sidecars) {
    std::vector<DirEntry> entries;
    try {
      entries = list_directory(dir);
    } catch (const IoError&) {
      return false;
    }
    for (const auto& e : entries) {
      const std::string& n = e.name;
      // A folder of sidecars (assets/...): engine/output_target.cpp checks the files in it.
      if (e.is_directory && std::any_of(sidecars.begin(), sidecars.end(), [&](const auto& s) { return s.starts_with(n + "/"); }))
        continue;
      if (e.is_directory) return false;
      if (std::find(sidecars.begin(), sidecars.end(), n) != sidecars.end()) continue;
      if (!(n.ends_with(".safetensors") || n.ends_with(".safetensors.index.json"))) return false;
    }
    return true;
  };
  f.write_options = {{"shard-size", OptionSpec::Kind::Size, {},
                      "split into shards of at most this size (model-0000N-of-0000M.safetensors + index), e.g. 5GB"}};
  f.bytes_only_dtypes = {std::begin(kBytesOnlyDTypes), std::end(kBytesOnlyDTypes)};
  f.description = "safetensors file, or a directory with a sharded set + model.safetensors.index.json";
  f.detect = safetensors::detect;
  f.read = [](const std::string& p, const ReadOptions&) { return safetensors::read(p); };
  f.make_writer = safetensors::make_writer;
  return f;
}
}  // namespace ckb
