// zarr v3 `sharding_indexed` chunks and the rest of the chunk pipeline: the first input byte
// picks one of a few array configurations (shard index at the end with crc32c or at the
// start without, inner zstd/blosc/raw chunks, nested shards, a transpose, big-endian
// elements, a zarr v2 zlib chunk in Fortran order); the rest is one stored chunk, decoded
// as the Orbax reader does.
#include "fuzz/fuzz_common.h"
#include "formats/zarr/chunk_decode.h"

namespace {
const char* const kConfigs[] = {
    // Orbax's zarr3 layout: one shard, inner zstd, index little-endian + crc32c at the end.
    R"({"zarr_format":3,"node_type":"array","shape":[8,6],"data_type":"float32","fill_value":0,
        "chunk_grid":{"name":"regular","configuration":{"chunk_shape":[8,6]}},"chunk_key_encoding":{"name":"default"},
        "codecs":[{"name":"sharding_indexed","configuration":{"chunk_shape":[4,3],
          "codecs":[{"name":"bytes","configuration":{"endian":"little"}},{"name":"zstd","configuration":{"level":1,"checksum":false}}],
          "index_codecs":[{"name":"bytes","configuration":{"endian":"little"}},{"name":"crc32c"}]}}]})",
    // Index at the start, no checksum, raw big-endian inner chunks, missing chunks allowed.
    R"({"zarr_format":3,"node_type":"array","shape":[4,4],"data_type":"int16","fill_value":7,
        "chunk_grid":{"name":"regular","configuration":{"chunk_shape":[4,4]}},"chunk_key_encoding":{"name":"default"},
        "codecs":[{"name":"sharding_indexed","configuration":{"chunk_shape":[2,2],"index_location":"start",
          "codecs":[{"name":"bytes","configuration":{"endian":"big"}}],
          "index_codecs":[{"name":"bytes","configuration":{"endian":"big"}}]}}]})",
    // A transpose, then nested shards with blosc inside, zstd outside.
    R"({"zarr_format":3,"node_type":"array","shape":[4,8],"data_type":"uint8","fill_value":0,
        "chunk_grid":{"name":"regular","configuration":{"chunk_shape":[4,8]}},"chunk_key_encoding":{"name":"default"},
        "codecs":[{"name":"transpose","configuration":{"order":[1,0]}},
          {"name":"sharding_indexed","configuration":{"chunk_shape":[4,2],
            "codecs":[{"name":"sharding_indexed","configuration":{"chunk_shape":[2,2],
                "codecs":[{"name":"bytes"},{"name":"blosc","configuration":{"cname":"lz4","clevel":5,"shuffle":"shuffle","typesize":1,"blocksize":0}}],
                "index_codecs":[{"name":"bytes","configuration":{"endian":"little"}},{"name":"crc32c"}]}}],
            "index_codecs":[{"name":"bytes","configuration":{"endian":"little"}}]}},
          {"name":"zstd","configuration":{"level":1,"checksum":true}}]})",
    // zarr v2: Fortran order, big-endian complex, zlib.
    R"({"zarr_format":2,"shape":[3,5],"chunks":[3,5],"dtype":">c8","fill_value":null,"order":"F",
        "compressor":{"id":"zlib","level":1},"filters":null,"dimension_separator":"."})",
    // zarr v2: bfloat16, zstd, as Orbax writes.
    R"({"zarr_format":2,"shape":[9],"chunks":[9],"dtype":"bfloat16","fill_value":null,"order":"C",
        "compressor":{"id":"zstd","level":1},"filters":null,"dimension_separator":"."})",
};
constexpr std::size_t kNumConfigs = sizeof(kConfigs) / sizeof(kConfigs[0]);

const std::vector<ckb::zarr::ZarrMetadata>& metas() {
  static const std::vector<ckb::zarr::ZarrMetadata> m = [] {
    std::vector<ckb::zarr::ZarrMetadata> v;
    for (std::size_t i = 0; i < kNumConfigs; ++i) {
      std::string_view t = kConfigs[i];
      v.push_back(t.find("\"zarr_format\":3") != std::string_view::npos ? ckb::zarr::parse_zarr_json(t, "cfg")
                                                                         : ckb::zarr::parse_zarray(t, "cfg"));
    }
    return v;
  }();
  return m;
}
}  // namespace

CKB_FUZZ_TARGET(sharding) {
  if (size < 1) return;
  const auto& m = metas()[data[0] % kNumConfigs];
  ckb::zarr::ChunkContext ctx{&m, (data[0] & 0x80) != 0, "fuzz/c/0/0", 0, "array 'fuzz' chunk 'c/0/0'"};
  auto out = ckb::zarr::decode_chunk(m.codecs, ckb::fuzz::bytes(data + 1, size - 1), m.chunks, ctx);
  if (out.size() != m.chunk_numel() * m.dtype.itemsize) ::abort();
}
