// safetensors: single files and Hugging Face sharded sets
// (`model-0000N-of-0000M.safetensors` + `model.safetensors.index.json`).
//
// Hand-written rather than a library: the format is an 8-byte length, a JSON header and a
// byte buffer; the reference implementation is Rust/Python only. Reads are zero-copy over
// mmap. The header is validated as strictly as the reference reader (length cap, dtype and
// shape vs byte range, ranges inside the buffer, no overlaps, no duplicates).
#pragma once

#include <string>

#include "core/tree.h"
#include "formats/format.h"

namespace ckb::safetensors {

inline constexpr std::uint64_t kMaxHeaderBytes = 100'000'000;
inline constexpr const char* kIndexName = "model.safetensors.index.json";

// True for a single safetensors file (by content) or a directory holding a sharded set or
// exactly one safetensors file.
bool detect(const std::string& path);
Checkpoint read(const std::string& path);
// Writes one file at `path`, or, when the "shard-size" option is set, a directory `path` with
// shards and the index (model-0000N-of-0000M.safetensors + model.safetensors.index.json), or
// just model.safetensors when everything fits one shard (as save_pretrained writes it).
std::unique_ptr<Writer> make_writer(const std::string& path, const WriteOptions& opts);

}  // namespace ckb::safetensors
