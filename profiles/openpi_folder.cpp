// Implementation of profiles/openpi_folder.h.
#include "profiles/openpi_folder.h"

#include <algorithm>
#include <filesystem>

#include "core/errors.h"
#include "io/file.h"

namespace ckb {
namespace {

namespace fs = std::filesystem;

std::string meta(const Checkpoint& ck, const std::string& k) {
  auto it = ck.metadata.find(k);
  return it == ck.metadata.end() ? "" : it->second;
}

bool is_orbax_item(const fs::path& dir) {
  auto is_file = [](const std::string& f) { return path_exists(f) && !is_directory(f); };
  return is_file((dir / "_METADATA").string()) || is_file((dir / "checkpoint").string());
}

// The folder holding params/: the step (or released checkpoint) folder the reader resolved,
// or the parent of an item folder named directly.
std::string checkpoint_folder(const Checkpoint& ck) {
  std::string step_dir = meta(ck, "orbax.step_dir");
  if (step_dir.empty()) {
    std::error_code ec;
    return fs::is_directory(ck.path, ec) ? ck.path : fs::path(ck.path).parent_path().string();
  }
  while (step_dir.size() > 1 && step_dir.back() == '/') step_dir.pop_back();
  if (!meta(ck, "orbax.item").empty() || !meta(ck, "orbax.items").empty()) return step_dir;
  const fs::path parent = fs::path(step_dir).parent_path();
  return parent.empty() ? "." : parent.string();
}

bool has_tensors(const Node* n) { return n && !tensor_list(*n).empty(); }

}  // namespace

const ProfileOptionSpec& openpi_weights_option() {
  static const ProfileOptionSpec o{"weights",
                                   "openpi training checkpoint holding EMA and raw weights: which to convert (default ema, "
                                   "what openpi saves as params and serves)",
                                   false, false, {"ema", "raw"}};
  return o;
}

nlohmann::ordered_json OpenpiWeights::to_json() const {
  return {{"set", chosen}, {"from", (fs::path(folder) / item).string()}, {"ema_and_raw", both}};
}

std::string OpenpiWeights::note() const {
  const std::string from = (fs::path(folder) / item).string();
  if (!both) return "weights: " + from + " (one weight set: no train_state beside it holds raw weights apart from EMA ones)";
  if (chosen == "ema")
    return "weights: EMA, from " + from + " (what openpi serves); the raw weights in " +
           (fs::path(folder) / "train_state").string() + " are not converted (--weights raw converts them)";
  return "weights: raw, from " + from + "; the EMA weights in " + (fs::path(folder) / "params").string() +
         " are not converted (--weights ema, the default, converts them)";
}

OpenpiWeights openpi_weights(const Checkpoint& ck, const std::string& choice,
                             const std::function<Checkpoint(const std::string&)>& open) {
  if (!choice.empty() && choice != "ema" && choice != "raw")
    throw UsageError("--weights takes ema or raw, got '" + choice + "'");
  OpenpiWeights w;
  w.folder = checkpoint_folder(ck);
  w.item = "params";
  // The params tree ({"params": ...}) and, when there is one, the train_state tree.
  const Node* params = &ck.root;
  std::optional<Checkpoint> sibling;
  const Node* train_state = nullptr;
  if (!meta(ck, "orbax.items").empty()) {  // a step read whole: a dict keyed by item
    params = ck.root.find("params");
    if (!params)
      throw MappingError(ck.path, "this Orbax step has no 'params' item (items: " + meta(ck, "orbax.items") +
                                      "); openpi writes the weights there");
    train_state = ck.root.find("train_state");
  } else if (const fs::path ts = fs::path(w.folder) / "train_state";
             ck.format == "orbax" && open && fs::path(meta(ck, "orbax.step_dir")).filename() == "params" && is_orbax_item(ts)) {
    sibling = open(ts.string());  // the params item named alone: its step's train_state
    train_state = &sibling->root;
  }
  const Node* raw = train_state ? train_state->find("params") : nullptr;
  w.both = has_tensors(raw);
  if (choice == "ema" && !w.both)
    throw UsageError("--weights ema: " + w.folder + " holds one weight set (its train_state keeps no separate params: EMA was "
                     "off in training, and params/ holds the raw weights); leave out --weights");
  w.checkpoint = ck;
  if (choice == "raw" && w.both) {
    w.chosen = "raw";
    w.item = "train_state/params";
    w.checkpoint.root = Node::dict();
    w.checkpoint.root.add("params", *raw);
    w.checkpoint.path = (fs::path(w.folder) / "train_state").string();
  } else {
    w.chosen = w.both ? "ema" : "raw";
    if (params != &ck.root) w.checkpoint.root = *params;
  }
  w.checkpoint.metadata.erase("orbax.items");
  return w;
}

nlohmann::ordered_json OpenpiAssets::to_json() const {
  return {{"from", dir}, {"files", files}, {"asset_ids", asset_ids}};
}

OpenpiAssets openpi_assets(const std::string& folder) {
  OpenpiAssets a;
  const fs::path dir = fs::path(folder) / "assets";
  if (!is_directory(dir.string())) return a;
  a.dir = dir.string();
  for (const std::string& file : list_files_recursive(a.dir)) {
    const fs::path rel(file);
    a.files.push_back(file);
    if (rel.filename() == "norm_stats.json") a.asset_ids.push_back(rel.parent_path().generic_string());
  }
  std::sort(a.files.begin(), a.files.end());
  std::sort(a.asset_ids.begin(), a.asset_ids.end());
  return a;
}

}  // namespace ckb
