// Item/step/CheckpointManager directory resolution for formats/orbax/orbax_paths.h.
#include "formats/orbax/orbax_paths.h"

#include <algorithm>
#include <filesystem>
#include <map>

#include "core/errors.h"
#include "formats/orbax/orbax_aggregate.h"
#include "io/file.h"

namespace ckb::orbax {
namespace fs = std::filesystem;

bool is_tmp_name(const std::string& name) { return name.find(".orbax-checkpoint-tmp") != std::string::npos; }

bool is_item_dir(const std::string& dir) {
  const std::string m = dir + "/_METADATA";
  return is_directory(dir) && ((path_exists(m) && !is_directory(m)) || has_aggregate(dir));
}

namespace {

std::vector<std::string> subdirs(const std::string& dir) {
  std::vector<std::string> out;
  std::vector<DirEntry> entries;
  try {
    entries = list_directory(dir);
  } catch (const IoError&) {
    return out;
  }
  for (auto& e : entries) {
    if (!e.is_directory || is_tmp_name(e.name) || e.name.empty() || e.name[0] == '.') continue;
    out.push_back(std::move(e.name));
  }
  return out;
}

// "23" -> 23, "step_0023" -> 23; nullopt otherwise.
std::optional<std::int64_t> step_of(const std::string& name) {
  std::size_t start = name.find_last_of('_');
  start = start == std::string::npos ? 0 : start + 1;
  if (start >= name.size() || name.size() - start > 18) return std::nullopt;
  std::int64_t v = 0;
  for (std::size_t i = start; i < name.size(); ++i) {
    if (name[i] < '0' || name[i] > '9') return std::nullopt;
    v = v * 10 + (name[i] - '0');
  }
  return v;
}

bool committed(const std::string& step_dir) {
  return path_exists(step_dir + "/commit_success.txt") || path_exists(step_dir + "/_CHECKPOINT_METADATA");
}

// Item directories of a step directory.
std::vector<std::pair<std::string, std::string>> items_of(const std::string& dir) {
  std::vector<std::pair<std::string, std::string>> items;
  for (const auto& name : subdirs(dir))
    if (is_item_dir(dir + "/" + name)) items.emplace_back(name, dir + "/" + name);
  return items;
}

}  // namespace

std::optional<ResolvedPath> resolve_path(const std::string& path_in, const ReadOptions& opts) {
  std::string path = path_in;
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  // The aggregate file of an item (T5X users name `checkpoint_<step>/checkpoint`).
  if (!is_directory(path) && fs::path(path).filename() == kAggregateFile) {
    const std::string parent = fs::path(path).parent_path().empty() ? "." : fs::path(path).parent_path().string();
    if (is_item_dir(parent) && has_aggregate(parent)) path = parent;
  }
  if (!is_directory(path)) return std::nullopt;
  ResolvedPath r;
  if (is_item_dir(path)) {
    if (opts.step) throw UsageError("a step was requested but '" + path + "' is a single Orbax item directory");
    r.step_dir = path;
    r.items.emplace_back("", path);
    return r;
  }
  auto items = items_of(path);
  if (!items.empty()) {
    if (opts.step) throw UsageError("a step was requested but '" + path + "' is an Orbax step directory");
    r.step_dir = path;
    r.items = std::move(items);
    return r;
  }
  // CheckpointManager root: committed step directories that hold items.
  std::map<std::int64_t, std::string> steps;
  for (const auto& name : subdirs(path)) {
    auto s = step_of(name);
    const std::string dir = path + "/" + name;
    if (!s || !committed(dir)) continue;
    if (!is_item_dir(dir) && items_of(dir).empty()) continue;
    steps.emplace(*s, dir);
  }
  if (steps.empty()) return std::nullopt;
  auto it = opts.step ? steps.find(*opts.step) : std::prev(steps.end());
  if (it == steps.end()) {
    std::string have;
    for (const auto& [s, d] : steps) have += (have.empty() ? "" : ", ") + std::to_string(s);
    throw UsageError("step " + std::to_string(*opts.step) + " not found in '" + path + "' (committed steps: " + have +
                     ")");
  }
  r.step = it->first;
  r.step_dir = it->second;
  if (is_item_dir(it->second))
    r.items.emplace_back("", it->second);
  else
    r.items = items_of(it->second);
  return r;
}

}  // namespace ckb::orbax
