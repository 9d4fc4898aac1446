// Flax msgpack checkpoints (flax.serialization.to_bytes / msgpack_restore), which also
// cover the legacy Orbax aggregate `checkpoint` file (same encoding plus ext 4 = tuple).
//
// The msgpack decoder and encoder are hand-written on purpose:
//  - reading must be zero-copy and lazy: every ndarray's data is a bin payload inside the
//    file, and we need its absolute file offset to hand out an mmap'd range instead of
//    copying gigabytes into memory the way a generic decoder (which materialises every
//    bin object) would;
//  - input is untrusted: nesting depth is capped (kMsgpackMaxDepth, checked before any
//    recursion, so 100000 nested arrays fail cleanly instead of overflowing the stack),
//    every length is checked against the bytes left before anything is allocated, and
//    each failure is a FormatError naming the file and offset;
//  - writing must place tensors at offsets known before any tensor byte arrives (the
//    Writer contract), which a streaming packer cannot tell us.
//
// Tree mapping on read:
//   map -> Dict (str keys; int keys become decimal strings), array -> List (attr
//   "msgpack.array" = "1"), ext 1 ndarray [shape, dtype name, bin] -> tensor (zero-copy),
//   ext 3 numpy scalar -> 0-d tensor (attr "msgpack.ext" = "3"), ext 2 complex [re, im] ->
//   0-d C128 tensor ("msgpack.ext" = "2"), ext 4 tuple -> Tuple ("msgpack.ext" = "4"),
//   {"__msgpack_chunked_array__": true, "shape": {...}, "chunks": {...}} -> one tensor over
//   the concatenated chunks, nil/bool/int/float/str/bin -> leaves (float32 values carry
//   "msgpack.type" = "float32").
//
// Writing produces what Flax writes: containers as maps (a List/Tuple as {"0": .., "1": ..}
// like to_state_dict, unless it carries the attrs above, which reproduce the original
// array / ext 4 / ext 3 / ext 2 / float32 encodings), tensors as ext 1 with minimal-width
// headers exactly as msgpack-python packs them, and tensors in maps larger than
// max_chunk_bytes (Flax: 2^30) chunked like flax.serialization._chunk. A Flax file read and
// written back is byte-identical.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "core/tree.h"
#include "formats/format.h"
#include "io/file.h"

namespace ckb {

inline constexpr std::uint64_t kFlaxMaxChunkBytes = std::uint64_t{1} << 30;  // flax MAX_CHUNK_SIZE
inline constexpr std::size_t kMsgpackMaxDepth = 512;

// Decodes a whole msgpack file whose top-level object is a map into a tree (see above).
// Tensor leaves are lazy ranges of `file`. Throws FormatError naming the file and offset.
Node decode_msgpack_tree(const MappedFilePtr& file);

// Reads a Flax msgpack checkpoint.
Checkpoint read_msgpack_file(const std::string& path);

// Cheap sniffing: the bytes start with a msgpack map whose first key is a well-formed
// string (or the file is exactly an empty map), and do not look like safetensors.
bool looks_like_msgpack_map(std::span<const std::byte> bytes);
// The same for a file of `total_size` bytes of which `head` is the beginning.
bool looks_like_msgpack_map(std::span<const std::byte> head, std::uint64_t total_size);
// The same for a whole file, looking only at its first 4 KiB (a first key longer than that
// is not a Flax checkpoint's).
bool looks_like_msgpack_file(const MappedFile& file);

// A writer of Flax msgpack; `max_chunk_bytes` is a parameter only so tests can exercise
// chunking with small arrays.
std::unique_ptr<Writer> make_msgpack_writer(const std::string& path, std::uint64_t max_chunk_bytes = kFlaxMaxChunkBytes);

}  // namespace ckb
