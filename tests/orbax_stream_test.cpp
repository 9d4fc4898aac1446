// Tests of the streaming write path under the Orbax writer: multithreaded zstd frames fed
// in pieces (codec/zstd_stream.h), zarr chunks encoded as their bytes arrive
// (formats/zarr/zarr_chunk_encoder.h), values streamed into both key-value stores
// (io/kvstore_writer.h begin_value, OCDBT data-file pool) and large Orbax arrays written in
// pieces in and out of order; a stream that is abandoned leaves nothing behind.
#include <zstd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <functional>
#include <random>
#include <thread>

#include "codec/crc32c.h"
#include "codec/zstd_stream.h"
#include "core/errors.h"
#include "formats/format.h"
#include "formats/zarr/zarr_chunk_encoder.h"
#include "formats/zarr/zarr_writer.h"
#include "io/kvstore_writer.h"
#include "io/ocdbt/ocdbt_kvstore.h"
#include "test_util.h"

namespace ckb {
namespace {

namespace fs = std::filesystem;

// bf16-like bytes: a random mantissa byte and a narrow exponent byte, so zstd compresses
// them a little (as it does real weights) and every block is a compressed one.
std::string weights(std::size_t n, std::uint32_t seed) {
  std::string s(n, '\0');
  std::mt19937 rng(seed);
  for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>(i % 2 ? 0x3C + (rng() % 3) : rng() & 0xFF);
  return s;
}

// The message of whatever `fn` throws (test::error_of expects a FormatError); MappingError
// carries its path, checked separately.
std::string thrown(const std::function<void()>& fn, const std::string& path = "") {
  try {
    fn();
  } catch (const Error& e) {
    EXPECT_EQ(e.path(), path);
    return e.detail();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "NO ERROR";
}

std::span<const std::byte> bytes_of_str(const std::string& s) { return std::as_bytes(std::span(s.data(), s.size())); }

std::string zstd_decode(const std::string& frame) {
  const unsigned long long size = ZSTD_getFrameContentSize(frame.data(), frame.size());
  EXPECT_NE(size, ZSTD_CONTENTSIZE_UNKNOWN);
  EXPECT_NE(size, ZSTD_CONTENTSIZE_ERROR);
  std::string out(static_cast<std::size_t>(size), '\0');
  const std::size_t r = ZSTD_decompress(out.data(), out.size(), frame.data(), frame.size());
  EXPECT_FALSE(ZSTD_isError(r)) << ZSTD_getErrorName(r);
  EXPECT_EQ(r, out.size());
  return out;
}

// Compresses `in` fed in pieces of `piece` bytes; returns the frame and the largest output piece.
std::pair<std::string, std::size_t> stream_encode(const std::string& in, std::size_t piece, int level,
                                                  std::size_t out_piece) {
  std::string out;
  std::size_t largest = 0;
  ZstdStreamEncoder enc(level, in.size(), [&](std::span<const std::byte> b) {
    out.append(reinterpret_cast<const char*>(b.data()), b.size());
    largest = std::max(largest, b.size());
  }, out_piece);
  for (std::size_t off = 0; off < in.size(); off += piece)
    enc.append(bytes_of_str(in).subspan(off, std::min(piece, in.size() - off)));
  enc.finish();
  return {out, largest};
}

TEST(ZstdStream, PiecesOfAnySizeGiveOneFrameThatDecodes) {
  const std::string in = weights(9u << 20, 1);
  const auto [whole, largest_whole] = stream_encode(in, in.size(), 1, 1 << 20);
  EXPECT_EQ(zstd_decode(whole), in);
  EXPECT_LT(whole.size(), in.size());  // every byte of the exponent half compresses
  EXPECT_LE(largest_whole, std::size_t{1} << 20);
  // The frame does not depend on how the input was cut.
  for (std::size_t piece : {std::size_t{4096}, std::size_t{1000003}, std::size_t{3} << 20})
    EXPECT_EQ(stream_encode(in, piece, 1, 1 << 20).first, whole) << piece;
  EXPECT_EQ(zstd_decode(stream_encode(in, 1 << 20, 3, 1 << 20).first), in);
  // An empty frame is a valid frame of content size 0.
  EXPECT_EQ(zstd_decode(stream_encode("", 1, 1, 1 << 20).first), "");
}

TEST(ZstdStream, WrongAmountsOfInputAreRefused) {
  std::string sink;
  auto out = [&](std::span<const std::byte> b) { sink.append(reinterpret_cast<const char*>(b.data()), b.size()); };
  {
    ZstdStreamEncoder enc(1, 10, out);
    enc.append(bytes_of_str("12345"));
    EXPECT_EQ(thrown([&] { enc.finish(); }), "zstd stream: 5 of 10 announced bytes came in");
  }
  ZstdStreamEncoder enc(1, 4, out);
  EXPECT_EQ(thrown([&] { enc.append(bytes_of_str("12345")); }),
            "zstd stream: more input than the 4 bytes announced");
}

// The streamed value of a chunk decodes to what encode_chunk()'s value decodes to (and is
// byte-identical when nothing is compressed), for both zarr versions and a padded last chunk.
TEST(ZarrChunkEncoder, StreamedChunksMatchOneShotEncoding) {
  zarr::WriteSpec s;
  s.info = {DType::BF16, {37, 4096}};  // 8 KiB rows
  s.chunk_rows = 16;                   // chunks 0, 1 full; chunk 2 holds 5 rows, padded to 16
  const std::string all = weights(s.info.nbytes(), 2);
  for (int version : {2, 3})
    for (bool compress : {true, false}) {
      SCOPED_TRACE(std::to_string(version) + (compress ? " zstd" : " raw"));
      s.zarr_format = version;
      s.compress = compress;
      for (std::uint64_t i = 0; i < s.num_chunks(); ++i) {
        const auto [b, e] = s.chunk_range(i);
        const auto raw = bytes_of_str(all).subspan(b, e - b);
        std::string streamed;
        zarr::ChunkEncoder enc(s, i, [&](std::span<const std::byte> v) {
          streamed.append(reinterpret_cast<const char*>(v.data()), v.size());
        });
        for (std::size_t off = 0; off < raw.size(); off += 5000) enc.append(raw.subspan(off, std::min<std::size_t>(5000, raw.size() - off)));
        enc.finish();
        const auto one = zarr::encode_chunk(s, raw);
        const std::string oneshot(reinterpret_cast<const char*>(one.bytes().data()), one.bytes().size());
        std::string padded(reinterpret_cast<const char*>(raw.data()), raw.size());
        padded.resize(s.chunk_bytes(), '\0');
        std::string body = streamed, one_body = oneshot;
        if (version == 3) {  // shard index: offset 0, length of the body, crc32c of those 16 bytes
          ASSERT_GE(streamed.size(), 20u);
          body = streamed.substr(0, streamed.size() - 20);
          one_body = oneshot.substr(0, oneshot.size() - 20);
          std::string index = test::le64(0) + test::le64(body.size());
          const std::uint32_t crc = ocdbt::crc32c(bytes_of_str(index));
          index.append(reinterpret_cast<const char*>(&crc), 4);
          EXPECT_EQ(streamed.substr(streamed.size() - 20), index);
        }
        if (compress) {
          EXPECT_EQ(zstd_decode(body), padded) << i;
          EXPECT_EQ(zstd_decode(one_body), padded) << i;
        } else {
          EXPECT_EQ(streamed, oneshot) << i;
          EXPECT_EQ(body, padded) << i;
        }
      }
    }
}

std::vector<std::string> dir_entries(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir)) out.push_back(fs::relative(e.path(), dir).string());
  std::sort(out.begin(), out.end());
  return out;
}

// Two values streamed at once (interleaved appends), a put, a small streamed value and an
// abandoned stream: each store reads back exactly what was closed, and nothing else.
TEST(KvWriterStreams, BothStoresReadBackClosedValuesOnly) {
  const std::string big1 = weights(3u << 20, 3), big2 = weights((2u << 20) + 7, 4), small = "tiny value";
  for (bool ocdbt : {true, false}) {
    SCOPED_TRACE(ocdbt ? "ocdbt" : "directory");
    test::TempDir tmp;
    {
      auto kv = ocdbt ? make_ocdbt_kv_writer(tmp.path()) : make_directory_kv_writer(tmp.path());
      auto a = kv->begin_value("arr/a/0.0");
      auto b = kv->begin_value("arr/b/0.0");
      auto lost = kv->begin_value("arr/lost/0.0");
      lost->append(bytes_of_str(big2).first(1 << 20));
      for (std::size_t off = 0, k = 0; off < std::max(big1.size(), big2.size()); off += 300000, ++k) {
        if (off < big1.size()) a->append(bytes_of_str(big1).subspan(off, std::min<std::size_t>(300000, big1.size() - off)));
        if (off < big2.size()) b->append(bytes_of_str(big2).subspan(off, std::min<std::size_t>(300000, big2.size() - off)));
        if (k == 3) lost.reset();  // abandoned half-way, while the others are still open
      }
      a->close();
      b->close();
      auto s = kv->begin_value("arr/s/0");
      s->append(bytes_of_str(small).first(4));
      s->append(bytes_of_str(small).subspan(4));
      s->close();
      kv->put("arr/p/.zarray", std::string_view("{}"));
      kv->finish();
    }
    std::map<std::string, std::string> want{
        {"arr/a/0.0", big1}, {"arr/b/0.0", big2}, {"arr/p/.zarray", "{}"}, {"arr/s/0", small}};
    if (ocdbt) {
      ocdbt::OcdbtKvStore store(tmp.path());
      std::vector<std::string> keys;
      for (const auto& [k, v] : want) keys.push_back(k);
      EXPECT_EQ(store.list(), keys);
      for (const auto& [k, v] : want) {
        auto got = store.get(k);
        ASSERT_TRUE(got) << k;
        EXPECT_TRUE(got->text() == v) << k << ": " << got->text().size() << " bytes, want " << v.size();
      }
      // Two values were open at once: two data files, each no longer than what it holds.
      std::vector<std::string> data;
      std::uintmax_t data_bytes = 0;
      for (const auto& e : fs::directory_iterator(tmp / "d")) {
        data.push_back(e.path().filename().string());
        data_bytes += fs::file_size(e.path());
      }
      EXPECT_EQ(data.size(), 2u);
      for (const auto& n : data) EXPECT_EQ(n.size(), 32u) << n;  // no temporaries left
      EXPECT_LT(data_bytes, big1.size() + big2.size() + 4096);
    } else {
      EXPECT_EQ(dir_entries(tmp.path()),
                (std::vector<std::string>{"arr", "arr/a", "arr/a/0.0", "arr/b", "arr/b/0.0", "arr/lost", "arr/p",
                                          "arr/p/.zarray", "arr/s", "arr/s/0"}));
      for (const auto& [k, v] : want) EXPECT_TRUE(test::read_file(tmp / k) == v) << k;
    }
  }
}

TEST(KvWriterStreams, OcdbtRefusesFinishWithAnOpenStream) {
  test::TempDir tmp;
  ocdbt::OcdbtWriter w(tmp.path());
  auto s = w.begin_value("k");
  s->append(bytes_of_str(weights(5000, 5)));
  EXPECT_EQ(thrown([&] { w.finish(); }, tmp.path()), "OCDBT writer: finish() while a value is still being written");
}

// One array of 37 MiB rows split into two streamed chunks (19 MiB and a padded 18 MiB one),
// written as the executor writes it (in order) and as several threads might (pieces in
// reverse and shuffled order from 4 threads): it reads back exactly in every layout.
Node big_tree(std::shared_ptr<Bytes>& bytes) {
  TensorInfo info{DType::BF16, {37, 1 << 19}};  // 1 MiB rows
  const std::string w = weights(info.nbytes(), 6);
  bytes = std::make_shared<Bytes>(w.size());
  std::memcpy(bytes->data(), w.data(), w.size());
  Node root = Node::dict();
  root.add("layer", Node::dict()).add("w", Node::tensor(Tensor{info, std::make_shared<MemorySource>(bytes, "mem")}));
  return root;
}

TEST(OrbaxStreamedChunks, InOrderAndOutOfOrderPiecesReadBackExactly) {
  std::shared_ptr<Bytes> bytes;
  const Node tree = big_tree(bytes);
  const std::size_t n = bytes->size(), piece = (3u << 20) + 17;
  for (int order = 0; order < 2; ++order)
    for (bool zarr3 : {false, true})
      for (bool ocdbt : {true, false}) {
        SCOPED_TRACE(std::string(order ? "threads " : "in order ") + (zarr3 ? "zarr3 " : "zarr2 ") + (ocdbt ? "ocdbt" : "dirs"));
        test::TempDir tmp;
        WriteOptions wo;
        wo.options["zarr-version"] = zarr3 ? "3" : "2";
        if (!ocdbt) wo.options["no-ocdbt"] = "1";
        wo.options["chunk-size"] = "20MiB";
        auto w = format_by_name("orbax").make_writer(tmp / "item", wo);
        EXPECT_TRUE(w->streams_in_order());
        w->begin(tree);
        std::vector<std::uint64_t> offs;
        for (std::uint64_t off = 0; off < n; off += piece) offs.push_back(off);
        auto put = [&](std::uint64_t off) { w->write(0, off, {bytes->data() + off, std::min<std::size_t>(piece, n - off)}); };
        if (order == 0) {
          for (auto off : offs) put(off);
        } else {
          std::reverse(offs.begin(), offs.end());
          std::shuffle(offs.begin() + 1, offs.end(), std::mt19937(3));
          std::vector<std::thread> pool;
          for (std::size_t k = 0; k < 4; ++k)
            pool.emplace_back([&, k] {
              for (std::size_t j = k; j < offs.size(); j += 4) put(offs[j]);
            });
          for (auto& t : pool) t.join();
        }
        w->commit();
        auto am = test::load_json(tmp / "item/array_metadatas/process_0")["array_metadatas"];
        EXPECT_EQ(am[0]["array_metadata"]["chunk_shape"], nlohmann::json({19, 1 << 19}));
        Checkpoint back = read_checkpoint(tmp / "item");
        const Bytes got = back.root.find("layer")->find("w")->tensor().read_all();
        ASSERT_EQ(got.size(), n);
        EXPECT_EQ(std::memcmp(got.data(), bytes->data(), n), 0);
      }
}

TEST(OrbaxStreamedChunks, AbandonedWriterLeavesNothing) {
  std::shared_ptr<Bytes> bytes;
  const Node tree = big_tree(bytes);
  for (bool ocdbt : {true, false}) {
    test::TempDir tmp;
    {
      WriteOptions wo;
      if (!ocdbt) wo.options["no-ocdbt"] = "1";
      auto w = format_by_name("orbax").make_writer(tmp / "item", wo);
      w->begin(tree);
      w->write(0, 0, {bytes->data(), 5u << 20});  // a stream is open when the writer goes away
      w->write(0, 9u << 20, {bytes->data() + (9u << 20), 1u << 20});  // and a piece is waiting
      EXPECT_EQ(thrown([&] { w->commit(); }, tmp / "item"), "orbax writer: tensor 'layer.w' was not completely written");
    }
    EXPECT_TRUE(fs::is_empty(tmp.path())) << (ocdbt ? "ocdbt" : "dirs");
  }
}

TEST(OrbaxStreamedChunks, BytesWrittenTwiceAreRefused) {
  std::shared_ptr<Bytes> bytes;
  const Node tree = big_tree(bytes);
  test::TempDir tmp;
  auto w = format_by_name("orbax").make_writer(tmp / "item", {});
  w->begin(tree);
  w->write(0, 0, {bytes->data(), 2u << 20});
  EXPECT_EQ(thrown([&] { w->write(0, 1u << 20, {bytes->data(), 1u << 20}); }, tmp / "item"),
            "orbax writer: bytes of 'layer.w' written twice");
}

}  // namespace
}  // namespace ckb
