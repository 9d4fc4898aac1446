// Reading an Orbax PyTree checkpoint (formats.md §1) into a ckb::Checkpoint: `_METADATA`
// gives the tree; arrays are lazy zarr tensors in the item's OCDBT database or per-array
// directories; scalars are read at once; strings come from `_strings.json`; None and empty
// containers come from the metadata alone. Items with an aggregate `checkpoint` msgpack
// (Orbax's aggregate layout, pre-_METADATA Orbax and T5X items) take the values it holds and
// resolve its placeholders / TensorStore specs (formats/orbax/orbax_aggregate.h).
#pragma once

#include <string>

#include "core/tree.h"
#include "formats/format.h"

namespace ckb::orbax {

// Reads one item directory (has `_METADATA`, an aggregate `checkpoint` file, or both).
// `strict_chunks`: missing zarr chunks are errors (ReadOptions::strict_chunks).
Node read_item(const std::string& item_dir, bool strict_chunks = false);

// Resolves `path` (item, step or CheckpointManager root) and reads it. FormatError when the
// path is not an Orbax checkpoint.
Checkpoint read_checkpoint(const std::string& path, const ReadOptions& opts);

}  // namespace ckb::orbax
