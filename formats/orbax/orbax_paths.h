// Finding the Orbax PyTree item directories behind a user-supplied path (formats.md §1.1):
//  - an item directory (holds `_METADATA`, or an aggregate `checkpoint` msgpack: a
//    pre-_METADATA Orbax or T5X item), or that aggregate `checkpoint` file itself;
//  - a step directory (holds item directories: one item is used as the root, several become
//    a Dict keyed by item name);
//  - a CheckpointManager root (directories named by step, "23" or "<prefix>_0023"): the
//    latest committed step (has commit_success.txt or _CHECKPOINT_METADATA), or
//    ReadOptions::step. `*.orbax-checkpoint-tmp*` directories are never used.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "formats/format.h"

namespace ckb::orbax {

struct ResolvedPath {
  std::optional<std::int64_t> step;  // set when `path` was a CheckpointManager root
  std::string step_dir;              // the directory holding the item(s)
  // (item name, item directory); name is empty when `path` itself was an item directory.
  std::vector<std::pair<std::string, std::string>> items;
};

// nullopt when `path` is not an Orbax checkpoint (never throws for that case); throws
// UsageError when ReadOptions::step names a step that does not exist.
std::optional<ResolvedPath> resolve_path(const std::string& path, const ReadOptions& opts);

bool is_item_dir(const std::string& dir);
bool is_tmp_name(const std::string& name);

}  // namespace ckb::orbax
