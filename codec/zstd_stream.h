// Streaming zstd compression of one frame whose size is known up front (a zarr chunk), on
// several cores, in bounded memory: input arrives in pieces, compressed output leaves in
// pieces of at most `out_piece` bytes through a callback, so neither the raw nor the
// compressed frame is ever whole in memory.
//
// Contract:
//  - The frame records its content size (the `content_size` given) and has no checksum, like
//    codec/zstd_encode.h's frames; any zstd decoder reads it. append() takes the input in
//    order; finish() throws std::logic_error unless exactly `content_size` bytes came in,
//    then ends the frame and hands out the rest. After finish() nothing more may be called.
//  - Compression uses libzstd's worker threads (ZSTD_c_nbWorkers >= 1 whenever the library
//    is built multithreaded, as Debian's is). Measured with libzstd 1.5.4 (levels 1 and 3,
//    100 MiB of bf16 weights): the output is byte-identical for 1, 2, 4, 8 and 16 workers
//    and for input pieces of 64 KiB up to the whole frame at once, but differs from
//    single-threaded mode (nbWorkers = 0; a different block split, the same decoded bytes).
//    Workers are therefore never 0 here, and their number only changes speed: the output is
//    the same on every machine that runs the same libzstd.
//  - Workers: the machine's cores divided by the streams compressing at that moment (at
//    least 1), so several large chunks compressed at once do not multiply the threads.
//  - The callback runs on the caller's thread; an exception from it (or from libzstd)
//    propagates and leaves the encoder unusable.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>

namespace ckb {

class ZstdStreamEncoder {
 public:
  using Output = std::function<void(std::span<const std::byte>)>;
  ZstdStreamEncoder(int level, std::uint64_t content_size, Output out, std::size_t out_piece = 8u << 20);
  ~ZstdStreamEncoder();
  ZstdStreamEncoder(const ZstdStreamEncoder&) = delete;
  ZstdStreamEncoder& operator=(const ZstdStreamEncoder&) = delete;

  void append(std::span<const std::byte> in);
  void finish();
  std::uint64_t consumed() const { return consumed_; }

 private:
  void run(std::span<const std::byte> in, bool end);
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::uint64_t content_size_, consumed_ = 0;
};

}  // namespace ckb
