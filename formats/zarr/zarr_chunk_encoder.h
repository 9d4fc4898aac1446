// Streaming encoding of one zarr chunk as Orbax lays it out (formats/zarr/zarr_writer.h):
// the chunk's raw bytes come in order, in pieces of any size, and its stored value leaves in
// pieces through a callback, so a chunk of gigabytes is never whole in memory, raw or encoded.
//
// Contract:
//  - append() takes chunk_range(i) of the array in order (the caller reorders pieces);
//    finish() requires all of it, pads a short last chunk with zeros to the full chunk
//    shape, ends the zstd frame (codec/zstd_stream.h: one standard frame with its content
//    size, compressed on several cores), appends the v3 shard index (one inner chunk at
//    offset 0, crc32c of the index), and hands out the last bytes. Uncompressed chunks pass
//    through unchanged.
//  - The value decodes to exactly what encode_chunk() of the same bytes decodes to; its zstd
//    bytes are those of libzstd's multithreaded mode (the same for any number of workers),
//    not encode_chunk()'s single-threaded frame.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>

#include "codec/zstd_stream.h"
#include "formats/zarr/zarr_writer.h"

namespace ckb::zarr {

class ChunkEncoder {
 public:
  using Output = std::function<void(std::span<const std::byte>)>;
  ChunkEncoder(const WriteSpec& s, std::uint64_t chunk, Output out);
  void append(std::span<const std::byte> raw);
  void finish();

 private:
  void emit(std::span<const std::byte> bytes);
  WriteSpec spec_;
  Output out_;
  std::uint64_t raw_bytes_ = 0, received_ = 0, encoded_ = 0;
  std::unique_ptr<ZstdStreamEncoder> zstd_;
};

}  // namespace ckb::zarr
