// The Orbax PyTree writer: a checkpoint that `orbax.checkpoint` restores with no arguments
// beyond the path (formats.md §1.11).
//
// Output, built under a temporary name and renamed into place at commit:
//  - item mode (default): DST is the item directory (PyTreeCheckpointer().restore(DST));
//  - step mode (write options "step" = N, "item" = NAME, default "default"): DST is a
//    CheckpointManager root and DST/N/NAME the item (CheckpointManager(DST).restore(N)). The
//    root may already hold other steps; an existing step N is refused unless
//    WriteOptions::overwrite.
// Inside the item: `_METADATA` (byte-identical to Orbax's for the same tree), `_sharding`,
// `array_metadatas/process_0` (with random_key_impl for PRNG key leaves), `_strings.json`,
// `_CHECKPOINT_METADATA`, `commit_success.txt`, and the arrays: one OCDBT database at the
// item root (default) or per-array directories ("no-ocdbt"); zarr v2 with zstd
// level 1 (default) or zarr v3 with sharding_indexed + crc32c ("zarr-version" = "3");
// "compression" = "none" stores raw chunks; "chunk-size" = N splits arrays
// along axis 0 into chunks of at most N bytes (default: one chunk per array up to 2 GiB,
// Orbax's OCDBT target file size; larger arrays are split like Orbax splits them).
//
// Memory: a chunk of more than 16 MiB is streamed: its bytes are compressed as they arrive
// (zstd on all cores, codec/zstd_stream.h) and appended to its value in the store, so
// neither the raw nor the compressed chunk is ever whole in memory; the writer asks to get
// each tensor in order from one thread (streams_in_order) and holds only pieces that arrive
// ahead of their turn. Smaller chunks are gathered and compressed in one call.
//
// Leaves: tensors -> jax.Array (or np.ndarray when the source said so); int/float/bool ->
// "scalar" 0-d arrays (int64/float64/bool, or the dtype the source had); strings ->
// _strings.json; None and empty dict/list/tuple -> metadata-only entries. Raw bytes
// leaves are refused (MappingError), as are two leaves whose dotted names collide.
#pragma once

#include <memory>
#include <string>

#include "core/tree.h"
#include "formats/format.h"

namespace ckb::orbax {

// The orbax format's writer factory. `opts.options` must already be validated: call it through
// the registered format (format_by_name("orbax").make_writer), which does that.
std::unique_ptr<Writer> make_writer(const std::string& path, const WriteOptions& opts);

// The dtype a "scalar" leaf is stored with: its "orbax.dtype" attr (as read), else int64,
// float64 or bool by its value.
DType scalar_storage_dtype(const Node& n);

}  // namespace ckb::orbax
