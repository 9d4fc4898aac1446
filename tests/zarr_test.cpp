// Tests of the zarr layer (formats/zarr): hand-made v2/v3 arrays in temp directories
// covering every codec, C/F order, transposes, big-endian data, edge chunks, sharding (index
// at start and end, missing inner chunks), fill values, partial and parallel reads, and
// the size checks that refuse hostile chunks before allocating.
#include <blosc.h>
#include <zlib.h>
#include <zstd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <numeric>

#include "core/errors.h"
#include "core/hash.h"
#include "formats/zarr/chunk_stream.h"
#include "formats/zarr/zarr_array.h"
#include "formats/zarr/zarr_dtype.h"
#include "io/kvstore.h"
#include "codec/crc32c.h"
#include "test_util.h"

namespace ckb {
namespace {

using test::le64;

using zarr::MissingChunks;
using zarr::ZarrArray;

template <class T>
std::string raw(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}
std::string zstd_of(const std::string& s) {
  std::string z(ZSTD_compressBound(s.size()), '\0');
  z.resize(ZSTD_compress(z.data(), z.size(), s.data(), s.size(), 1));
  return z;
}
std::string zlib_of(const std::string& s, bool gzip) {
  z_stream zs{};
  deflateInit2(&zs, 6, Z_DEFLATED, gzip ? 16 + 15 : 15, 8, Z_DEFAULT_STRATEGY);
  std::string out(deflateBound(&zs, s.size()) + 32, '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(s.data()));
  zs.avail_in = static_cast<uInt>(s.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&zs, Z_FINISH), Z_STREAM_END);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}
std::string blosc_of(const std::string& s, int typesize) {
  std::string out(s.size() + BLOSC_MAX_OVERHEAD, '\0');
  int n = blosc_compress_ctx(5, 1, typesize, s.size(), s.data(), out.data(), out.size(), "lz4", 0, 1);
  out.resize(static_cast<std::size_t>(n));
  return out;
}
std::string le32(std::uint32_t v) { return std::string(reinterpret_cast<const char*>(&v), 4); }

struct Dir {
  test::TempDir tmp;
  KvStorePtr store = std::make_shared<DirectoryKvStore>(tmp.path());
  void put(const std::string& key, const std::string& data) {
    std::filesystem::create_directories(std::filesystem::path(tmp / key).parent_path());
    test::write_file(tmp / key, data);
  }
  std::shared_ptr<const ZarrArray> open(MissingChunks m = MissingChunks::Error) {
    return ZarrArray::open(store, "a/", "a", m);
  }
};

template <class T>
std::vector<T> read_all(const ZarrArray& a) {
  std::vector<T> v(a.metadata().numel());
  a.read(0, std::as_writable_bytes(std::span(v)));
  return v;
}

template <class F>
std::string zarr_error_of(F&& f) {
  try {
    f();
  } catch (const FormatError& e) {
    return e.what();
  }
  return "<no FormatError>";
}

// 3x4 int32 array 0..11 with 2x3 chunks: four chunks, three of them edge chunks (full size,
// padded), C order, zstd.
TEST(ZarrV2, EdgeChunksPartialReadsAndCompressors) {
  const std::vector<std::int32_t> want = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
  auto chunk = [&](int ci, int cj) {
    std::vector<std::int32_t> c(6, -99);  // padding outside the array
    for (int i = 0; i < 2; ++i)
      for (int j = 0; j < 3; ++j) {
        int r = ci * 2 + i, col = cj * 3 + j;
        if (r < 3 && col < 4) c[i * 3 + j] = r * 4 + col;
      }
    return raw(c);
  };
  for (std::string comp : {"zstd", "zlib", "gzip", "blosc", "null"}) {
    Dir d;
    const std::string cjson = comp == "null" ? "null" : "{\"id\":\"" + comp + "\"}";
    d.put("a/.zarray", "{\"chunks\":[2,3],\"compressor\":" + cjson +
                           ",\"dtype\":\"<i4\",\"fill_value\":null,\"filters\":null,\"order\":\"C\",\"shape\":[3,4],"
                           "\"zarr_format\":2}");
    for (int ci = 0; ci < 2; ++ci)
      for (int cj = 0; cj < 2; ++cj) {
        std::string c = chunk(ci, cj);
        if (comp == "zstd") c = zstd_of(c);
        if (comp == "zlib") c = zlib_of(c, false);
        if (comp == "gzip") c = zlib_of(c, true);
        if (comp == "blosc") c = blosc_of(c, 4);
        d.put("a/" + std::to_string(ci) + "." + std::to_string(cj), c);
      }
    auto a = d.open();
    EXPECT_EQ(a->info().dtype, DType::I32);
    EXPECT_EQ(a->info().shape, (Shape{3, 4}));
    EXPECT_EQ(read_all<std::int32_t>(*a), want) << comp;
    // An unaligned range crossing chunk boundaries: bytes [10, 37).
    std::string part(27, '\0');
    a->read(10, std::as_writable_bytes(std::span(part.data(), part.size())));
    EXPECT_EQ(part, raw(want).substr(10, 27)) << comp;
    // Every single element on its own.
    for (int k = 0; k < 12; ++k) {
      std::int32_t x = -1;
      a->read(4 * k, std::as_writable_bytes(std::span(&x, 1)));
      EXPECT_EQ(x, k);
    }
    EXPECT_THROW(a->read(40, std::as_writable_bytes(std::span(part.data(), 9))), FormatError);
  }
}

// formats.md §3.1.2: order "F" chunk [0,4,1,5] for the top-left 2x2 block of a 2x4 array.
TEST(ZarrV2, FortranOrderBigEndianAndSlashSeparator) {
  Dir d;
  d.put("a/.zarray",
        "{\"chunks\":[2,2],\"compressor\":null,\"dimension_separator\":\"/\",\"dtype\":\">i4\",\"fill_value\":0,"
        "\"order\":\"F\",\"shape\":[2,4],\"zarr_format\":2}");
  auto be = [](std::vector<std::int32_t> v) {
    for (auto& x : v) x = static_cast<std::int32_t>(__builtin_bswap32(static_cast<std::uint32_t>(x)));
    return raw(v);
  };
  d.put("a/0/0", be({0, 4, 1, 5}));
  d.put("a/0/1", be({2, 6, 3, 7}));
  EXPECT_EQ(read_all<std::int32_t>(*d.open()), (std::vector<std::int32_t>{0, 1, 2, 3, 4, 5, 6, 7}));
}

TEST(ZarrV2, DtypesScalarsAndFillValues) {
  EXPECT_EQ(zarr::parse_v2_dtype("bfloat16")->dtype, DType::BF16);
  EXPECT_EQ(zarr::parse_v2_dtype("<V2")->dtype, DType::BF16);
  EXPECT_EQ(zarr::parse_v2_dtype("|b1")->dtype, DType::BOOL);
  EXPECT_EQ(zarr::parse_v2_dtype("|u1")->dtype, DType::U8);
  EXPECT_EQ(zarr::parse_v2_dtype(">f8")->big_endian, true);
  EXPECT_EQ(zarr::parse_v2_dtype("<c8")->dtype, DType::C64);
  EXPECT_EQ(zarr::parse_v2_dtype("float8_e4m3fn")->dtype, DType::F8_E4M3);
  EXPECT_EQ(zarr::parse_v2_dtype("float8_e5m2")->dtype, DType::F8_E5M2);
  EXPECT_FALSE(zarr::parse_v2_dtype("|i4"));  // '|' only for 1-byte types
  EXPECT_FALSE(zarr::parse_v2_dtype("<M8"));
  EXPECT_FALSE(zarr::parse_v3_dtype("r16"));
  EXPECT_EQ(zarr::parse_v3_dtype("uint32")->dtype, DType::U32);
  // Fill values as element bytes.
  auto f32 = *zarr::parse_v2_dtype("<f4");
  auto fill_f = zarr::parse_fill_value("NaN", f32);
  float nanv;
  std::memcpy(&nanv, fill_f->data(), 4);
  EXPECT_TRUE(std::isnan(nanv));
  EXPECT_EQ(zarr::float_to_bf16_bits(1.0f), 0x3F80);
  EXPECT_EQ(zarr::float_to_half_bits(1.0f), 0x3C00);
  EXPECT_EQ(zarr::float_to_half_bits(65504.0f), 0x7BFF);
  EXPECT_EQ(zarr::float_to_half_bits(-2.5f), 0xC100);
  EXPECT_EQ(zarr::float_to_half_bits(6e-8f), 0x0001);
  EXPECT_EQ(zarr::float_to_half_bits(1e6f), 0x7C00);
  EXPECT_FALSE(zarr::parse_fill_value(nullptr, f32));
  auto hex = zarr::parse_fill_value("0x3f800000", f32);
  float one;
  std::memcpy(&one, hex->data(), 4);
  EXPECT_EQ(one, 1.0f);
  EXPECT_THROW(zarr::parse_fill_value(300, *zarr::parse_v2_dtype("|u1")), std::invalid_argument);

  // A 0-d array uses chunk key "0"; a missing chunk reads as the fill value when allowed.
  Dir d;
  d.put("a/.zarray",
        "{\"chunks\":[],\"compressor\":{\"id\":\"zstd\",\"level\":1},\"dtype\":\"<i8\",\"fill_value\":null,"
        "\"order\":\"C\",\"shape\":[],\"zarr_format\":2}");
  d.put("a/0", zstd_of(raw(std::vector<std::int64_t>{7})));
  EXPECT_EQ(read_all<std::int64_t>(*d.open()), (std::vector<std::int64_t>{7}));
  Dir f;
  f.put("a/.zarray",
        "{\"chunks\":[2],\"compressor\":null,\"dtype\":\"<i4\",\"fill_value\":5,\"order\":\"C\",\"shape\":[3],"
        "\"zarr_format\":2}");
  f.put("a/0", raw(std::vector<std::int32_t>{1, 2}));
  EXPECT_EQ(read_all<std::int32_t>(*f.open(MissingChunks::Fill)), (std::vector<std::int32_t>{1, 2, 5}));
  const auto msg = zarr_error_of([&] { read_all<std::int32_t>(*f.open()); });
  EXPECT_NE(msg.find("array 'a'"), std::string::npos) << msg;
  EXPECT_NE(msg.find(f.tmp / "a/1"), std::string::npos) << msg;
  EXPECT_NE(msg.find("missing"), std::string::npos) << msg;
}

TEST(ZarrV2, HostileChunksAreRefusedBeforeAllocating) {
  Dir d;
  d.put("a/.zarray",
        "{\"chunks\":[4],\"compressor\":{\"id\":\"zstd\"},\"dtype\":\"<f4\",\"fill_value\":null,\"order\":\"C\","
        "\"shape\":[4],\"zarr_format\":2}");
  // A zstd frame declaring 2^40 content bytes (single segment, 8-byte FCS) with a 4-byte raw block.
  std::string huge = "\x28\xB5\x2F\xFD\xE0" + le64(1ull << 40) + std::string("\x21\x00\x00", 3) + "abcd";
  d.put("a/0", huge);
  auto msg = zarr_error_of([&] { read_all<float>(*d.open()); });
  EXPECT_NE(msg.find("declares 1099511627776"), std::string::npos) << msg;
  EXPECT_NE(msg.find("array 'a'"), std::string::npos) << msg;
  EXPECT_NE(msg.find(d.tmp / "a/0"), std::string::npos) << msg;
  // Decodes to the wrong size (the chunk holds 3 floats instead of 4).
  d.put("a/0", zstd_of(raw(std::vector<float>{1, 2, 3})));
  msg = zarr_error_of([&] { read_all<float>(*d.open()); });
  EXPECT_NE(msg.find("expected 16"), std::string::npos) << msg;
  // Not zstd at all; blosc header lying about its size; uncompressed chunk of the wrong size.
  d.put("a/0", "this is not a zstd frame");
  EXPECT_NE(zarr_error_of([&] { read_all<float>(*d.open()); }).find("zstd"), std::string::npos);
  // Metadata: chunk too large, rank mismatch, filters, unknown compressor.
  d.put("a/.zarray",
        "{\"chunks\":[4000000000,4000000000],\"compressor\":null,\"dtype\":\"<f4\",\"fill_value\":null,"
        "\"order\":\"C\",\"shape\":[4,4],\"zarr_format\":2}");
  EXPECT_NE(zarr_error_of([&] { d.open(); }).find("too large"), std::string::npos);
  d.put("a/.zarray", "{\"chunks\":[4],\"compressor\":null,\"dtype\":\"<f4\",\"shape\":[4,4],\"zarr_format\":2}");
  EXPECT_NE(zarr_error_of([&] { d.open(); }).find("rank"), std::string::npos);
  d.put("a/.zarray",
        "{\"chunks\":[4],\"compressor\":null,\"dtype\":\"<f4\",\"filters\":[{\"id\":\"delta\"}],\"shape\":[4],"
        "\"zarr_format\":2}");
  EXPECT_NE(zarr_error_of([&] { d.open(); }).find("filter 'delta': 'dtype' must be a dtype string"), std::string::npos);
  d.put("a/.zarray", "{\"chunks\":[4],\"compressor\":{\"id\":\"lzma\"},\"dtype\":\"<f4\",\"shape\":[4],\"zarr_format\":2}");
  EXPECT_NE(zarr_error_of([&] { d.open(); }).find("lzma"), std::string::npos);
  d.put("a/.zarray", "{\"chunks\":[4],\"compressor\":{\"id\":\"blosc\"},\"dtype\":\"<f4\",\"shape\":[4],\"zarr_format\":2}");
  std::string b = blosc_of(raw(std::vector<float>{1, 2, 3, 4, 5, 6, 7, 8}), 4);  // 32 bytes, not 16
  d.put("a/0", b);
  EXPECT_NE(zarr_error_of([&] { read_all<float>(*d.open()); }).find("blosc header declares 32"), std::string::npos);
  std::filesystem::remove(d.tmp / "a/.zarray");
  EXPECT_NE(zarr_error_of([&] { d.open(); }).find("missing"), std::string::npos);
}

// A v3 array: transpose [1,0] then big-endian bytes then gzip then crc32c.
TEST(ZarrV3, TransposeEndianGzipCrc32c) {
  Dir d;
  d.put("a/zarr.json",
        R"({"zarr_format":3,"node_type":"array","shape":[2,4],"data_type":"int32",
            "chunk_grid":{"name":"regular","configuration":{"chunk_shape":[2,4]}},
            "chunk_key_encoding":{"name":"default"},"fill_value":0,
            "codecs":[{"name":"transpose","configuration":{"order":[1,0]}},{"name":"bytes","configuration":{"endian":"big"}},
                      {"name":"gzip","configuration":{"level":1}},{"name":"crc32c"}]})");
  // logical [[0,1,2,3],[4,5,6,7]]; transposed (4,2) C order: 0 4 1 5 2 6 3 7; big endian.
  std::vector<std::uint32_t> t = {0, 4, 1, 5, 2, 6, 3, 7};
  for (auto& x : t) x = __builtin_bswap32(x);
  std::string enc = zlib_of(raw(t), true);
  enc += le32(ocdbt::crc32c(std::as_bytes(std::span(enc.data(), enc.size()))));
  d.put("a/c/0/0", enc);
  EXPECT_EQ(read_all<std::int32_t>(*d.open()), (std::vector<std::int32_t>{0, 1, 2, 3, 4, 5, 6, 7}));
  enc[3] ^= 1;
  d.put("a/c/0/0", enc);
  EXPECT_NE(zarr_error_of([&] { read_all<std::int32_t>(*d.open()); }).find("crc32c mismatch"), std::string::npos);
}

std::string v3_sharded(const std::string& loc, const std::string& extra = "") {
  return R"({"zarr_format":3,"node_type":"array","shape":[4,4],"data_type":"uint16",
      "chunk_grid":{"name":"regular","configuration":{"chunk_shape":[4,4]}},"fill_value":9,)" + extra +
         R"("codecs":[{"name":"sharding_indexed","configuration":{"chunk_shape":[2,2],
        "codecs":[{"name":"bytes","configuration":{"endian":"little"}},{"name":"zstd","configuration":{"level":3,"checksum":false}}],
        "index_codecs":[{"name":"bytes","configuration":{"endian":"little"}},{"name":"crc32c"}],
        "index_location":")" + loc + R"("}}]})";
}

// One 4x4 shard of 2x2 inner chunks, index at the start or end, one inner chunk missing.
TEST(ZarrV3, ShardingIndexedStartEndAndMissingInner) {
  for (std::string loc : {"start", "end"}) {
    std::vector<std::string> inner;
    for (int ci = 0; ci < 2; ++ci)
      for (int cj = 0; cj < 2; ++cj) {
        std::vector<std::uint16_t> v;
        for (int i = 0; i < 2; ++i)
          for (int j = 0; j < 2; ++j) v.push_back(static_cast<std::uint16_t>((ci * 2 + i) * 4 + cj * 2 + j));
        inner.push_back(zstd_of(raw(v)));
      }
    auto shard = [&](bool drop_last) {
      const std::uint64_t index_size = 16 * 4 + 4;
      std::string body, index;
      std::uint64_t off = loc == "start" ? index_size : 0;
      for (int k = 0; k < 4; ++k) {
        if (drop_last && k == 3) {
          index += le64(~0ull) + le64(~0ull);
          continue;
        }
        index += le64(off) + le64(inner[k].size());
        body += inner[k];
        off += inner[k].size();
      }
      index += le32(ocdbt::crc32c(std::as_bytes(std::span(index.data(), index.size()))));
      return loc == "start" ? index + body : body + index;
    };
    Dir d;
    d.put("a/zarr.json", v3_sharded(loc));
    d.put("a/c/0/0", shard(false));
    std::vector<std::uint16_t> want(16);
    std::iota(want.begin(), want.end(), 0);
    EXPECT_EQ(read_all<std::uint16_t>(*d.open()), want) << loc;
    d.put("a/c/0/0", shard(true));
    auto msg = zarr_error_of([&] { read_all<std::uint16_t>(*d.open()); });
    EXPECT_NE(msg.find("inner chunk 3 of the shard is missing"), std::string::npos) << msg;
    EXPECT_NE(msg.find(d.tmp / "a/c/0/0"), std::string::npos) << msg;
    for (int k : {10, 11, 14, 15}) want[k] = 9;  // fill_value
    EXPECT_EQ(read_all<std::uint16_t>(*d.open(MissingChunks::Fill)), want) << loc;
    std::string s = shard(false);
    s[loc == "start" ? 1 : s.size() - 10] ^= 1;  // corrupt the index
    d.put("a/c/0/0", s);
    EXPECT_NE(zarr_error_of([&] { read_all<std::uint16_t>(*d.open()); }).find("shard index crc32c mismatch"),
              std::string::npos);
  }
}

// A larger array read in parallel: 2048x1024 float32 (8 MiB) in 16 chunks of 512x256, with
// v2 chunk key encoding "0.0"; also read through a TensorSource with an odd offset.
TEST(ZarrV3, LargeParallelReadMatchesHash) {
  Dir d;
  d.put("a/zarr.json",
        R"({"zarr_format":3,"node_type":"array","shape":[2048,1024],"data_type":"float32",
            "chunk_grid":{"name":"regular","configuration":{"chunk_shape":[512,256]}},
            "chunk_key_encoding":{"name":"v2"},"fill_value":0.0,
            "codecs":[{"name":"bytes","configuration":{"endian":"little"}},{"name":"blosc","configuration":{"cname":"lz4","clevel":5,"shuffle":"shuffle","typesize":4,"blocksize":0}}]})");
  std::vector<float> full(2048 * 1024);
  for (std::size_t i = 0; i < full.size(); ++i) full[i] = static_cast<float>(i) * 0.5f;
  for (int ci = 0; ci < 4; ++ci)
    for (int cj = 0; cj < 4; ++cj) {
      std::vector<float> c;
      for (int i = 0; i < 512; ++i)
        for (int j = 0; j < 256; ++j) c.push_back(full[(ci * 512 + i) * 1024 + cj * 256 + j]);
      d.put("a/" + std::to_string(ci) + "." + std::to_string(cj), blosc_of(raw(c), 4));
    }
  auto a = d.open();
  Tensor t = a->tensor();
  EXPECT_EQ(t.info.shape, (Shape{2048, 1024}));
  EXPECT_EQ(tensor_sha256(t), sha256_hex(std::as_bytes(std::span(full))));
  EXPECT_EQ(read_all<float>(*a), full);  // one 8 MiB read: decoded by several threads
  std::vector<char> part(5 * 1024 * 1024 + 3);
  t.source->read(4097, std::as_writable_bytes(std::span(part)));
  EXPECT_EQ(std::memcmp(part.data(), reinterpret_cast<const char*>(full.data()) + 4097, part.size()), 0);
}

// zstd without the content-size field, so a wrong size shows only while decoding.
std::string zstd_unsized(const std::string& s) {
  ZSTD_CCtx* c = ZSTD_createCCtx();
  ZSTD_CCtx_setParameter(c, ZSTD_c_contentSizeFlag, 0);
  std::string z(ZSTD_compressBound(s.size()), '\0');
  z.resize(ZSTD_compress2(c, z.data(), z.size(), s.data(), s.size()));
  ZSTD_freeCCtx(c);
  return z;
}

// A 10x6 uint16 array in row bands of 4 (three chunks, the last with two padding rows):
// sequential reads of 7 bytes cross every chunk boundary and stream (nothing resident);
// reads elsewhere (fallback to whole decoded chunks) and reads that restart at a chunk
// boundary give the same bytes; zstd, raw and a missing (filled) chunk.
TEST(ZarrStream, RowBandsStreamInPiecesAcrossChunks) {
  std::vector<std::uint16_t> want(60);
  std::iota(want.begin(), want.end(), 100);
  auto band = [&](int c) {
    std::vector<std::uint16_t> v(24, 0xDEAD);  // padding rows stay junk
    for (int k = 0; k < 24 && c * 24 + k < 60; ++k) v[k] = want[c * 24 + k];
    return raw(v);
  };
  for (std::string comp : {"zstd", "null", "missing"}) {
    Dir d;
    const std::string cjson = comp == "zstd" ? "{\"id\":\"zstd\"}" : "null";
    d.put("a/.zarray", "{\"chunks\":[4,6],\"compressor\":" + cjson +
                           ",\"dtype\":\"<u2\",\"fill_value\":7,\"filters\":null,\"order\":\"C\",\"shape\":[10,6],"
                           "\"zarr_format\":2}");
    auto expect = want;
    for (int c = 0; c < 3; ++c) {
      if (comp == "missing" && c == 1) {
        std::fill(expect.begin() + 24, expect.begin() + 48, 7);
        continue;
      }
      d.put("a/" + std::to_string(c) + ".0", comp == "zstd" ? zstd_of(band(c)) : band(c));
    }
    auto a = d.open(comp == "missing" ? MissingChunks::Fill : MissingChunks::Error);
    EXPECT_GT(a->resident_bytes(), 0u);
    EXPECT_EQ(a->sequential_resident_bytes(), 0u) << comp;
    const std::string all = raw(expect);
    std::string got;
    for (std::size_t off = 0; off < all.size(); off += 7) {
      std::string piece(std::min<std::size_t>(7, all.size() - off), '\0');
      a->read(off, std::as_writable_bytes(std::span(piece.data(), piece.size())));
      got += piece;
    }
    EXPECT_EQ(got, all) << comp;
    for (std::uint64_t off : {48u, 3u, 47u, 0u, 96u}) {  // chunk starts stream, the others do not
      std::string piece(all.size() - off, '\0');
      a->read(off, std::as_writable_bytes(std::span(piece.data(), piece.size())));
      EXPECT_EQ(piece, all.substr(off)) << comp << " at " << off;
    }
  }
}

// Chunks that split the trailing axes too (Orbax splits an array above its 2 GiB target along
// the last axis): a C-order reader keeps one stream per chunk of the current band open and
// skips each edge chunk's padding; pieces of 7 bytes, zstd chunks with junk padding.
TEST(ZarrStream, BandsOfSeveralChunksWithPadding) {
  struct Case {
    std::vector<std::uint64_t> shape, chunks;
  };
  for (const Case& c : {Case{{6, 8}, {6, 4}}, Case{{5, 3, 7}, {2, 2, 4}}, Case{{4, 3, 6}, {3, 3, 4}}, Case{{9}, {4}}}) {
    const std::size_t rank = c.shape.size();
    std::uint64_t n = 1;
    std::vector<std::uint64_t> grid(rank);
    for (std::size_t d = 0; d < rank; ++d) {
      n *= c.shape[d];
      grid[d] = (c.shape[d] + c.chunks[d] - 1) / c.chunks[d];
    }
    std::vector<std::uint16_t> want(n);
    std::iota(want.begin(), want.end(), 1);
    Dir d;
    std::string shape_json, chunks_json;
    for (std::size_t k = 0; k < rank; ++k) {
      shape_json += (k ? "," : "") + std::to_string(c.shape[k]);
      chunks_json += (k ? "," : "") + std::to_string(c.chunks[k]);
    }
    d.put("a/.zarray", "{\"chunks\":[" + chunks_json + "],\"compressor\":{\"id\":\"zstd\"},\"dtype\":\"<u2\","
                       "\"fill_value\":0,\"filters\":null,\"order\":\"C\",\"shape\":[" + shape_json + "],\"zarr_format\":2}");
    std::vector<std::uint64_t> ci(rank, 0);
    while (true) {  // every chunk: elements in its C order, junk outside the array
      std::uint64_t cn = 1;
      for (auto x : c.chunks) cn *= x;
      std::vector<std::uint16_t> chunk(cn, 0xBEEF);
      for (std::uint64_t l = 0; l < cn; ++l) {
        std::uint64_t rest = l, lin = 0;
        bool inside = true;
        std::vector<std::uint64_t> li(rank);
        for (std::size_t k = rank; k-- > 0;) {
          li[k] = rest % c.chunks[k];
          rest /= c.chunks[k];
        }
        for (std::size_t k = 0; k < rank; ++k) {
          const std::uint64_t g = ci[k] * c.chunks[k] + li[k];
          inside = inside && g < c.shape[k];
          lin = lin * c.shape[k] + g;
        }
        if (inside) chunk[l] = want[lin];
      }
      std::string key;
      for (std::size_t k = 0; k < rank; ++k) key += (k ? "." : "") + std::to_string(ci[k]);
      d.put("a/" + key, zstd_of(raw(chunk)));
      std::size_t k = rank;
      while (k-- > 0 && ++ci[k] == grid[k]) ci[k] = 0;
      if (k == static_cast<std::size_t>(-1)) break;
    }
    auto a = d.open();
    EXPECT_EQ(a->sequential_resident_bytes(), 0u);
    const std::string all = raw(want);
    std::string got;
    for (std::size_t off = 0; off < all.size(); off += 7) {
      std::string piece(std::min<std::size_t>(7, all.size() - off), '\0');
      a->read(off, std::as_writable_bytes(std::span(piece.data(), piece.size())));
      got += piece;
    }
    EXPECT_EQ(got, all) << c.shape.size() << "-d " << c.shape[0];
    EXPECT_EQ(read_all<std::uint16_t>(*a), want);
  }
}

// A large zstd chunk is decoded ahead by a helper thread through a 4-block ring: 18 MiB
// (five 4 MiB blocks, so the ring wraps) read in odd pieces and skips equals the data; a
// truncated frame and trailing bytes surface in read() / finish(); dropping a stream
// mid-way stops its helper.
TEST(ZarrStream, DecodeAheadMatchesAndReportsErrors) {
  Dir d;
  d.put("a/.zarray", "{\"chunks\":[4718592],\"compressor\":{\"id\":\"zstd\"},\"dtype\":\"<u4\",\"fill_value\":0,"
                     "\"filters\":null,\"order\":\"C\",\"shape\":[4718592],\"zarr_format\":2}");
  auto a = d.open();
  const auto& meta = a->metadata();
  std::vector<std::uint32_t> v(4718592);
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<std::uint32_t>(i * 2654435761u);
  const std::string plain = raw(v), frame = zstd_of(plain);
  auto stream = [&](const std::string& stored) {
    KvValue kv;
    kv.bytes = std::as_bytes(std::span(stored.data(), stored.size()));
    kv.file = "mem";
    return std::make_unique<zarr::ChunkStream>(meta.codecs, kv, meta.chunks,
                                               zarr::ChunkContext{&meta, true, "mem", 0, "chunk 'a/0'"}, 0);
  };
  auto s = stream(frame);
  std::string got(plain.size(), '\0');
  std::uint64_t pos = 0;
  for (std::uint64_t piece : {7u, 1048583u, 5000000u, 3u}) {
    s->read(std::as_writable_bytes(std::span(got.data() + pos, piece)));
    pos += piece;
  }
  s->skip_to(pos + 4096);
  pos += 4096;
  s->read(std::as_writable_bytes(std::span(got.data() + pos, got.size() - pos)));
  s->finish();
  EXPECT_EQ(got.compare(0, pos - 4096, plain, 0, pos - 4096), 0);
  EXPECT_EQ(got.compare(pos, std::string::npos, plain, pos), 0);

  const std::string cut = frame.substr(0, frame.size() / 2);
  auto t = stream(cut);
  auto msg = zarr_error_of([&] { t->read(std::as_writable_bytes(std::span(got.data(), got.size()))); });
  EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;
  const std::string longer = frame + "zz";
  auto u = stream(longer);
  u->read(std::as_writable_bytes(std::span(got.data(), got.size())));
  msg = zarr_error_of([&] { u->finish(); });
  EXPECT_NE(msg.find("2 trailing bytes"), std::string::npos) << msg;
  auto w = stream(frame);
  w->read(std::as_writable_bytes(std::span(got.data(), 100)));
  w.reset();  // the helper is parked on a full ring: it must stop and join
}

// Orbax's zarr3 layout (a sharding_indexed shard holding one inner chunk, crc32c index)
// streams too; a corrupt index or stream is reported with the file while streaming.
TEST(ZarrStream, SingleInnerChunkShardAndBrokenStreams) {
  std::vector<std::uint16_t> want(16);
  std::iota(want.begin(), want.end(), 0);
  const std::string json = R"({"zarr_format":3,"node_type":"array","shape":[4,4],"data_type":"uint16",
      "chunk_grid":{"name":"regular","configuration":{"chunk_shape":[4,4]}},"fill_value":0,
      "codecs":[{"name":"sharding_indexed","configuration":{"chunk_shape":[4,4],
        "codecs":[{"name":"bytes","configuration":{"endian":"little"}},{"name":"zstd","configuration":{"level":3,"checksum":false}}],
        "index_codecs":[{"name":"bytes","configuration":{"endian":"little"}},{"name":"crc32c"}],
        "index_location":"end"}}]})";
  auto shard = [&](const std::string& inner) {
    std::string index = le64(0) + le64(inner.size());
    return inner + index + le32(ocdbt::crc32c(std::as_bytes(std::span(index.data(), index.size()))));
  };
  Dir d;
  d.put("a/zarr.json", json);
  d.put("a/c/0/0", shard(zstd_of(raw(want))));
  auto a = d.open();
  EXPECT_EQ(a->sequential_resident_bytes(), 0u);
  std::string got(32, '\0');
  a->read(0, std::as_writable_bytes(std::span(got.data(), 10)));
  a->read(10, std::as_writable_bytes(std::span(got.data() + 10, 22)));
  EXPECT_EQ(got, raw(want));

  auto stream_error = [&](const std::string& stored) {
    d.put("a/c/0/0", stored);
    return zarr_error_of([&] { read_all<std::uint16_t>(*d.open()); });
  };
  const std::string frame = zstd_of(raw(want));
  std::string msg = stream_error(shard(frame.substr(0, frame.size() - 3)));
  EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;
  EXPECT_NE(msg.find("array 'a'"), std::string::npos) << msg;
  EXPECT_NE(msg.find(d.tmp / "a/c/0/0"), std::string::npos) << msg;
  msg = stream_error(shard(frame + "xyz"));
  EXPECT_NE(msg.find("3 trailing bytes"), std::string::npos) << msg;
  auto longer = want;
  longer.push_back(99);
  msg = stream_error(shard(zstd_unsized(raw(longer))));
  EXPECT_NE(msg.find("more than the 32 bytes"), std::string::npos) << msg;
  msg = stream_error(shard(zstd_unsized(raw(std::vector<std::uint16_t>(want.begin(), want.end() - 1)))));
  EXPECT_NE(msg.find("ends after 30 decoded bytes, expected 32"), std::string::npos) << msg;
  std::string s = shard(frame);
  s[s.size() - 6] ^= 1;
  msg = stream_error(s);
  EXPECT_NE(msg.find("shard index crc32c mismatch"), std::string::npos) << msg;
  // After an error the array reads again from a fresh stream.
  d.put("a/c/0/0", shard(frame));
  auto b = d.open();
  EXPECT_THROW(b->read(2, std::as_writable_bytes(std::span(got.data(), 40))), FormatError);
  EXPECT_EQ(read_all<std::uint16_t>(*b), want);
}

}  // namespace
}  // namespace ckb
