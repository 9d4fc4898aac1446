// A zarr v2/v3 array stored under a key prefix of a KvStore, read lazily as a TensorSource.
//
// read(offset, out) fetches and decodes only the chunks covering the requested bytes
// (several chunks at once with a few threads for large reads), crops edge chunks, and keeps
// the chunks of the last read for sequential readers (when chunks split the trailing axes,
// as Orbax does for arrays above its 2 GiB target file size, consecutive reads keep needing
// the same set of chunks: each is decoded once, not once per read). Every error names the array and the file.
// A chunk the grid refers to that is absent is a FormatError unless the array was opened with
// missing_chunks = Fill (then it reads as the fill value, zeros for a null fill value, and is
// counted: missing_chunks()): Orbax writes every chunk and reads with fill_missing_data_reads=false.
// When the codecs allow it (formats/zarr/chunk_stream.h), reads that continue where the
// previous one ended, or start at a band boundary (a multiple of chunks[0] rows), decode
// straight into the caller's buffer without materialising chunks: a C-order traversal visits
// every chunk's elements in that chunk's own C order, so the chunks of the current band
// (one per chunk along the other axes: Orbax's one chunk per array, or the two halves Orbax
// writes of an array above its 2 GiB target) are open streams read in turn, edge padding
// skipped. A front-to-back reader holds nothing resident. Other reads use the chunk cache.
#pragma once

#include <future>
#include <map>

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "formats/zarr/chunk_stream.h"
#include "formats/zarr/zarr_metadata.h"
#include "io/kvstore.h"

namespace ckb::zarr {

enum class MissingChunks { Error, Fill };
// Which metadata document open() reads when the prefix holds both a v2 `.zarray` and a v3
// `zarr.json` (a directory rewritten in place): Auto takes `.zarray` when present, else
// `zarr.json`; V2 / V3 read only that version's document (absent: FormatError naming it).
enum class ZarrVersion { Auto, V2, V3 };

class ZarrArray : public TensorSource, public std::enable_shared_from_this<ZarrArray> {
 public:
  // Reads `<prefix>.zarray` (v2) or `<prefix>zarr.json` (v3), as `version` says; `prefix`
  // is "" or ends in '/'. `name` is the array's name for messages (the Orbax param name).
  static std::shared_ptr<const ZarrArray> open(KvStorePtr store, std::string prefix, std::string name,
                                               MissingChunks missing = MissingChunks::Error,
                                               ZarrVersion version = ZarrVersion::Auto);

  const ZarrMetadata& metadata() const { return meta_; }
  TensorInfo info() const { return {meta_.dtype.dtype, meta_.shape}; }
  const std::string& name() const { return name_; }
  // The lazy tensor.
  Tensor tensor() const;
  // Decodes one whole chunk (full chunk shape, C order, little-endian).
  std::shared_ptr<const Bytes> read_chunk(const std::vector<std::uint64_t>& idx) const;

  void read(std::uint64_t offset, std::span<std::byte> out) const override;
  std::string describe() const override;
  // Drops the decoded chunks kept from the last read. An open stream that stopped inside the
  // array is kept (little memory: a decoder and its read-ahead), so consumers that read it in
  // consecutive pieces and release after each (per-layer views of a stacked array, run in
  // order by the executor: stream_origin) continue it instead of decoding the chunk again.
  void release() const override;
  // This array at `offset`: its reads are cheapest front to back.
  StreamOrigin stream_origin(std::uint64_t offset) const override { return {this, offset}; }
  // Decoded chunk bytes a sequential reader keeps resident (the chunks one read may span).
  std::uint64_t resident_bytes() const override;
  // 0 when chunks stream (see above), else resident_bytes().
  std::uint64_t sequential_resident_bytes() const override;
  // Distinct chunks (and inner chunks of shards) read so far as the fill value because they are absent.
  std::uint64_t missing_chunks() const override { return missing_log_.count(); }

 private:
  ZarrArray() = default;
  std::shared_ptr<const Bytes> decode_chunk_at(const std::vector<std::uint64_t>& idx) const;
  [[noreturn]] void rethrow(const std::exception& e) const;
  // The stored bytes of chunk `idx` (nullopt when absent and missing chunks read as the fill
  // value; a FormatError naming the file when they may not be absent) and their context.
  // `streamed`: for a ChunkStream (a remote value may come deferred: KvStore::get_streamed).
  std::pair<std::optional<KvValue>, ChunkContext> stored_chunk(const std::vector<std::uint64_t>& idx,
                                                               bool streamed = false) const;
  // Serves the read from the chunk stream when it can (see above); false otherwise.
  bool read_streaming(std::uint64_t offset, std::span<std::byte> out) const;

  KvStorePtr store_;
  std::string prefix_, name_, metadata_file_;
  ZarrMetadata meta_;
  MissingChunks missing_ = MissingChunks::Error;
  mutable MissingChunkLog missing_log_;
  mutable std::mutex cache_mu_;
  // The decoded chunks the most recent read() used (replaced by the next read's set).
  mutable std::vector<std::pair<std::vector<std::uint64_t>, std::shared_ptr<const Bytes>>> cache_;
  // Chunks being decoded now: a second reader of the same chunk waits for that decode
  // instead of decoding it again (several workers may read ranges of one array at once).
  mutable std::map<std::vector<std::uint64_t>, std::shared_future<std::shared_ptr<const Bytes>>> inflight_;
  // Streaming: array bytes per band of chunks along axis 0 (0 = chunks do not stream), chunks
  // per band, and the first axis after which chunks span the array (runs are contiguous in both).
  std::uint64_t band_ = 0, band_chunks_ = 0;
  std::size_t contiguous_from_ = 0;
  mutable std::mutex stream_mu_;
  mutable std::vector<std::unique_ptr<ChunkStream>> streams_;  // the open band's chunks
  mutable bool band_open_ = false;
  mutable std::uint64_t stream_pos_ = 0;  // array byte offset the streams are at
  mutable std::uint64_t band_end_ = 0;    // where the open band ends in the array
};

}  // namespace ckb::zarr
