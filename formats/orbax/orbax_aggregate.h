// The aggregate `checkpoint` file of an Orbax PyTree item and the layouts that rely on it:
//  - Orbax's aggregate layout: the item's `checkpoint` msgpack (Flax encoding, ext 1 =
//    ndarray) holds the values of leaves `_METADATA` marks `skip_deserialize: true`, and
//    "PLACEHOLDER://<name>" strings for leaves written as zarr arrays beside it;
//  - pre-`_METADATA` Orbax items: the msgpack alone gives the tree, placeholders name the
//    zarr arrays (per-array directories or OCDBT);
//  - T5X items (`checkpoint_<step>/checkpoint`): leaves written by TensorStore appear as
//    TensorStore spec dicts {"driver": "zarr", "kvstore": {"path": "state.param_states.w/"},
//    "metadata": {...}, "dtype": ...} whose path is relative to the item directory.
// Orbax resolves a placeholder by the leaf's param name (its keys joined with '.'), not by
// the name in the string; so do we.
#pragma once

#include <optional>
#include <string>

#include "core/tree.h"
#include "formats/zarr/zarr_array.h"
#include "io/kvstore.h"

namespace ckb::orbax {

inline constexpr const char* kAggregateFile = "checkpoint";

// True when `dir/checkpoint` is a regular file that starts like a msgpack map (so a
// TensorFlow "checkpoint" text file is not one).
bool has_aggregate(const std::string& dir);

// The decoded aggregate file of `item_dir` (tensor leaves are lazy ranges of it); nullopt
// when there is none. FormatError naming the file when it is corrupt.
std::optional<Node> read_aggregate(const std::string& item_dir);

// The name in a "PLACEHOLDER://name" or "AGGREGATED://name" string leaf; nullopt otherwise.
std::optional<std::string> placeholder_name(const Node& n);

// A TensorStore spec dict as T5X writes it (a Dict holding "driver", "kvstore" and
// "metadata", T5X's own test for one).
bool is_tensorstore_spec(const Node& n);

// How a reader opens the zarr arrays of one item.
struct ArrayContext {
  std::string item_dir;
  KvStorePtr store;  // the item's directory or OCDBT database
  zarr::MissingChunks missing = zarr::MissingChunks::Error;
  zarr::ZarrVersion version = zarr::ZarrVersion::Auto;
  std::string declared_by;  // what declared `version` ("_METADATA use_zarr3: true"), for messages
};

// The zarr array of param `param` (open_param_array: as a tensor leaf). `origin` says where the reference came
// from (" (PLACEHOLDER://a in /ckpt/checkpoint)") for messages. A missing array, or one
// that lacks the declared version's metadata, is a FormatError naming the array and where
// it was looked for.
std::shared_ptr<const zarr::ZarrArray> open_param_zarr(const ArrayContext& c, const std::string& param,
                                                       const std::string& origin);
Node open_param_array(const ArrayContext& c, const std::string& param, const std::string& origin);

// The zarr array a T5X TensorStore spec names. Driver "zarr" reads `.zarray`, "zarr3"
// `zarr.json`; the spec's shape and dtype must agree with the stored metadata. When a v2
// array's `.zarray` is absent but the spec carries shape, chunks, dtype and compressor, the
// metadata TensorStore would have written for that spec (order C, no filters, null fill,
// '.' separator) is used; the leaf then carries attr "t5x.zarr_metadata" =
// "tensorstore spec" and a missing chunk is an error.
Node open_spec_array(const ArrayContext& c, const Node& spec, const std::string& param);

// Replaces every placeholder and TensorStore spec in a pre-`_METADATA` aggregate tree by the
// array it names.
void resolve_legacy_tree(Node& root, const ArrayContext& c);

}  // namespace ckb::orbax
