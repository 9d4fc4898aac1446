// Tests of the Orbax writer (formats/orbax/orbax_writer.h) and the OCDBT writer under it:
// the files Orbax itself wrote for the same tree are reproduced byte for byte (_METADATA,
// _sharding, array_metadatas, zarr metadata); every tensor reads back with the manifest's
// sha256; multi-level B+trees, chunked and uncompressed arrays, odd write orders, step
// directories and every refusal leave either a complete checkpoint or nothing.
#include <algorithm>
#include <cstring>
#include <filesystem>
#include <random>
#include <thread>

#include "core/errors.h"
#include "core/hash.h"
#include "formats/format.h"
#include "formats/orbax/py_json.h"
#include "formats/zarr/zarr_writer.h"
#include "io/file.h"
#include "io/ocdbt/ocdbt_kvstore.h"
#include "io/ocdbt/ocdbt_writer.h"
#include "test_util.h"
#include "recipe/diff.h"

namespace ckb {
namespace {

namespace fs = std::filesystem;


void expect_same_leaves_orbax_write(const Node& a, const Node& b) {
  auto d = diff_trees(a, b, {});
  EXPECT_GT(d.leaves.size(), 0u);
  for (const auto& l : d.leaves) EXPECT_EQ(l.status, "equal") << l.name << " " << l.detail;
}

struct Layout {
  const char* fixture;
  bool zarr3, ocdbt;
};

// The unsharded fixtures: real Orbax wrote them from a single-device tree, so our files for
// the same tree must be identical.
const Layout kLayouts[] = {
    {"orbax_ocdbt_zarr2/ckpt", false, true},
    {"orbax_ocdbt_zarr3/ckpt", true, true},
    {"orbax_plain_zarr2/ckpt", false, false},
    {"orbax_plain_zarr3/ckpt", true, false},
};

WriteOptions options_for(const Layout& l) {
  WriteOptions wo;
  if (l.zarr3) wo.options["zarr-version"] = "3";
  if (!l.ocdbt) wo.options["no-ocdbt"] = "1";
  return wo;
}

TEST(OrbaxWrite, ReproducesOrbaxFilesByteForByte) {
  for (const auto& l : kLayouts) {
    SCOPED_TRACE(l.fixture);
    const std::string src = test::fixture(l.fixture);
    Checkpoint ck = read_checkpoint(src);
    test::TempDir tmp;
    const std::string out = tmp / "item";
    write_checkpoint(ck, out, format_by_name("orbax"), options_for(l));
    for (const char* f : {"_METADATA", "_sharding", "array_metadatas/process_0", "_strings.json"})
      EXPECT_EQ(test::read_file(out + "/" + f), test::read_file(src + "/" + f)) << f;
    EXPECT_TRUE(path_exists(out + "/commit_success.txt"));
    EXPECT_EQ(test::load_json(out + "/_CHECKPOINT_METADATA")["item_handlers"],
              test::load_json(src + "/_CHECKPOINT_METADATA")["item_handlers"]);
    if (!l.ocdbt) {  // per-array directories: the zarr metadata files are TensorStore's bytes
      for (const char* p : {"big", "bf16_specials", "scalar", "mask", "i8", "layers.0.attn.q.kernel"}) {
        const std::string m = l.zarr3 ? "/zarr.json" : "/.zarray";
        EXPECT_EQ(test::read_file(out + "/" + p + m), test::read_file(src + "/" + p + m)) << p;
      }
    }
    Checkpoint back = read_checkpoint(out);
    // sha256 against the manifest (i64 and scalar: fixture generator bugs, see orbax_test.cpp).
    const std::string dir = std::string(l.fixture).substr(0, std::string(l.fixture).find('/'));
    const auto m = test::load_json(test::fixture(dir + "/manifest.json"))["tensors"];
    int hashed = 0;
    for (const auto& [name, t] : tensor_list(back.root)) {
      if (name == "i64" || name == "scalar") continue;
      ASSERT_TRUE(m.contains(name)) << name;
      EXPECT_EQ(tensor_sha256(*t), m[name]["sha256"].get<std::string>()) << name;
      ++hashed;
    }
    EXPECT_EQ(hashed, 14);
    expect_same_leaves_orbax_write(ck.root, back.root);
  }
}

TEST(OrbaxWrite, ChunkValuesEqualOrbaxsWhenUncompressedOrPerArray) {
  // zarr2 per-array chunks: zstd level 1 of the same bytes gives the same frame.
  const std::string src = test::fixture("orbax_plain_zarr2/ckpt");
  test::TempDir tmp;
  write_checkpoint(read_checkpoint(src), tmp / "item", format_by_name("orbax"), options_for(kLayouts[2]));
  for (const char* p : {"big/0.0", "embed.weight/0.0", "scalar/0", "i64/0"})
    EXPECT_EQ(test::read_file(tmp / ("item/" + std::string(p))), test::read_file(src + "/" + p)) << p;
}

TEST(OrbaxWrite, ManagerStepDirectories) {
  const std::string root = test::fixture("orbax_manager/run");
  test::TempDir tmp;
  const std::string out = tmp / "run";
  for (int step : {1, 2}) {
    ReadOptions ro;
    ro.step = step;
    Checkpoint ck = read_checkpoint(root, ro);
    WriteOptions wo;
    wo.options["step"] = std::to_string(step);
    wo.options["item"] = "params";
    write_checkpoint(ck, out, format_by_name("orbax"), wo);
    const std::string s = "/" + std::to_string(step);
    EXPECT_EQ(test::read_file(out + s + "/params/_METADATA"), test::read_file(root + s + "/params/_METADATA"));
    EXPECT_EQ(test::load_json(out + s + "/_CHECKPOINT_METADATA")["item_handlers"],
              test::load_json(root + s + "/_CHECKPOINT_METADATA")["item_handlers"]);
    EXPECT_TRUE(path_exists(out + s + "/commit_success.txt"));
    EXPECT_TRUE(path_exists(out + s + "/params/commit_success.txt"));
    Checkpoint back = read_checkpoint(out, ro);
    EXPECT_EQ(back.metadata["orbax.step"], std::to_string(step));
    expect_same_leaves_orbax_write(ck.root, back.root);
  }
  // Latest step is found; an existing step is refused and left as it was.
  EXPECT_EQ(read_checkpoint(out).metadata["orbax.step"], "2");
  const std::string before = test::read_file(out + "/2/params/_METADATA");
  WriteOptions again;
  again.options["step"] = "2";
  EXPECT_THROW(write_checkpoint(read_checkpoint(root), out, format_by_name("orbax"), again), UsageError);
  EXPECT_EQ(test::read_file(out + "/2/params/_METADATA"), before);
  // Default item name.
  WriteOptions dflt;
  dflt.options["step"] = "7";
  write_checkpoint(read_checkpoint(root), out, format_by_name("orbax"), dflt);
  EXPECT_TRUE(path_exists(out + "/7/default/_METADATA"));
  EXPECT_EQ(test::load_json(out + "/7/_CHECKPOINT_METADATA")["item_handlers"].begin().key(), "default");
}

// A tree with every kind of leaf, written through Writer directly with chunks arriving in
// pieces, out of order and from several threads' worth of offsets.
Node mixed_tree(std::vector<std::string>& blobs) {
  auto tensor = [&](DType t, Shape shape, std::uint32_t seed) {
    TensorInfo info{t, shape};
    std::string b(info.nbytes(), '\0');
    std::mt19937 rng(seed);
    for (auto& c : b) c = static_cast<char>(rng());
    if (t == DType::BOOL)
      for (auto& c : b) c = static_cast<char>(c & 1);
    blobs.push_back(b);
    auto bytes = std::make_shared<Bytes>(b.size());
    if (!b.empty()) std::memcpy(bytes->data(), b.data(), b.size());
    return Node::tensor(Tensor{info, std::make_shared<MemorySource>(bytes, "mem")});
  };
  blobs.reserve(16);
  Node root = Node::dict();
  Node& model = root.add("model", Node::dict());
  model.add("w", tensor(DType::BF16, {37, 5, 3}, 1));
  model.add("b", tensor(DType::F32, {7}, 2));
  model.add("empty", tensor(DType::F32, {0, 4}, 3));
  model.add("zero_d", tensor(DType::F64, {}, 4));
  Node& layers = root.add("layers", Node::list());
  layers.append(tensor(DType::I8, {9, 2}, 5));
  layers.append(tensor(DType::BOOL, {11}, 6));
  Node key = tensor(DType::U32, {4, 2}, 7);
  key.attrs["random_key_impl"] = "threefry2x32";
  root.add("rng", std::move(key));
  root.add("step", Node(Node::Value(std::int64_t{42})));
  root.add("lr", Node(Node::Value(0.125)));
  root.add("flag", Node(Node::Value(true)));
  root.add("name", Node(Node::Value(std::string("run \"x\" é"))));
  root.add("nothing", Node::none());
  root.add("empty_list", Node::list());
  root.add("10", tensor(DType::U16, {3}, 8));  // sorts before "2" in _METADATA (string keys)
  root.add("2", tensor(DType::U16, {3}, 9));
  return root;
}

void write_scrambled(Writer& w, const Node& layout, std::size_t piece) {
  w.begin(layout);
  struct Piece { std::size_t slot; std::uint64_t off; std::span<const std::byte> data; };
  std::vector<Piece> pieces;
  auto tensors = tensor_list(layout);
  std::vector<Bytes> bufs;
  for (std::size_t s = 0; s < tensors.size(); ++s) {
    const Tensor& t = *tensors[s].second;
    bufs.emplace_back(t.info.nbytes());
    if (t.info.nbytes()) t.source->read(0, bufs.back().span());
    for (std::uint64_t off = 0; off < t.info.nbytes(); off += piece)
      pieces.push_back({s, off, bufs.back().span().subspan(off, std::min<std::uint64_t>(piece, t.info.nbytes() - off))});
  }
  std::mt19937 rng(11);
  std::shuffle(pieces.begin(), pieces.end(), rng);
  for (const auto& p : pieces) w.write(p.slot, p.off, p.data);
  w.commit();
}

TEST(OrbaxWrite, EveryLeafKindChunkedScrambledAndBothZarrVersions) {
  std::vector<std::string> blobs;
  Node tree = mixed_tree(blobs);
  for (bool zarr3 : {false, true})
    for (const char* compression : {"zstd", "none"})
      for (bool ocdbt : {true, false}) {
        SCOPED_TRACE(std::string(zarr3 ? "zarr3 " : "zarr2 ") + compression + (ocdbt ? " ocdbt" : " dirs"));
        test::TempDir tmp;
        WriteOptions wo;
        wo.options["zarr-version"] = zarr3 ? "3" : "2";
        wo.options["no-ocdbt"] = ocdbt ? "0" : "1";
        wo.options["compression"] = compression;
        wo.options["chunk-size"] = "64";  // w: 30 bytes a row -> 2 rows a chunk, 19 chunks, the last partial
        auto w = format_by_name("orbax").make_writer(tmp / "item", wo);
        write_scrambled(*w, tree, 7);
        Checkpoint back = read_checkpoint(tmp / "item");
        expect_same_leaves_orbax_write(tree, back.root);
        EXPECT_EQ(back.root.find("rng")->attrs.at("random_key_impl"), "threefry2x32");
        EXPECT_EQ(back.root.find("layers")->container().kind, ContainerKind::List);
        auto am = test::load_json(tmp / "item/array_metadatas/process_0")["array_metadatas"];
        bool saw_w = false;
        for (const auto& e : am) {
          if (e["array_metadata"]["param_name"] == "model.w") {
            saw_w = true;
            EXPECT_EQ(e["array_metadata"]["chunk_shape"], nlohmann::json({2, 5, 3}));
          }
        }
        EXPECT_TRUE(saw_w);
        // _METADATA follows JAX's flattening order: "10" < "2" < "empty_list" ... < "step".
        const std::string meta = test::read_file(tmp / "item/_METADATA");
        EXPECT_LT(meta.find("('10',)"), meta.find("('2',)"));
        EXPECT_LT(meta.find("('layers', '0')"), meta.find("('layers', '1')"));
        EXPECT_NE(meta.find(R"x("('name',)": {"key_metadata": [{"key": "name", "key_type": 2}], "value_metadata": {"value_type": "string", "skip_deserialize": false}})x"),
                  std::string::npos);
      }
}

TEST(OrbaxWrite, RefusalsLeaveNothingBehind) {
  test::TempDir tmp;
  const std::string out = tmp / "item";
  std::vector<std::string> blobs;
  {  // "a.b" as a key and a/b as a path name the same array.
    Node t = Node::dict();
    t.add("a.b", Node(Node::Value(std::int64_t{1})));
    t.add("a", Node::dict()).add("b", Node(Node::Value(std::int64_t{2})));
    EXPECT_THROW(format_by_name("orbax").make_writer(out, {})->begin(t), MappingError);
  }
  {
    Node t = Node::dict();
    t.add("blob", Node(Node::Value(RawBytes{})));
    EXPECT_THROW(format_by_name("orbax").make_writer(out, {})->begin(t), MappingError);
  }
  {  // not all bytes written: commit refuses, nothing is published
    Node t = mixed_tree(blobs);
    auto w = format_by_name("orbax").make_writer(out, {});
    w->begin(t);
    EXPECT_THROW(w->commit(), MappingError);
  }
  {
    Node t = Node::dict();
    t.add("x", Node(Node::Value(std::int64_t{1})));
    EXPECT_THROW(format_by_name("orbax").make_writer(out, {{{"compression", "lz4"}}, {}, false}), UsageError);
    EXPECT_THROW(format_by_name("orbax").make_writer(out, {{{"item", "p"}}, {}, false}), UsageError);
    EXPECT_THROW(format_by_name("orbax").make_writer(out, {{{"step", "-1"}}, {}, false}), UsageError);
  }
  EXPECT_FALSE(path_exists(out));
  EXPECT_TRUE(fs::is_empty(tmp.path()));
}

TEST(OcdbtWriter, MultiLevelTreeRoundTripsThroughTheReader) {
  for (bool zstd : {false, true}) {
    test::TempDir tmp;
    ocdbt::WriterConfig cfg;
    cfg.max_inline_value_bytes = 16;
    cfg.max_decoded_node_bytes = 300;  // forces several leaves and interior levels
    cfg.node_zstd_level = zstd ? std::optional<int>(0) : std::nullopt;
    std::map<std::string, std::string> want;
    {
      ocdbt::OcdbtWriter w(tmp.path(), cfg);
      for (int i = 0; i < 500; ++i) {
        const std::string key = "params.layer_" + std::to_string(i % 37) + "/" + std::to_string(i);
        std::string value(static_cast<std::size_t>(i % 41), static_cast<char>('a' + i % 26));
        want[key] = value;
        w.put(key, value);
      }
      const auto st = w.finish();
      EXPECT_EQ(st.num_keys, 500u);
      EXPECT_GE(st.height, 2u);
    }
    ocdbt::OcdbtKvStore store(tmp.path());
    const auto keys = store.list();
    ASSERT_EQ(keys.size(), want.size());
    std::size_t i = 0;
    for (const auto& [k, v] : want) {
      EXPECT_EQ(keys[i++], k);
      auto got = store.get(k);
      ASSERT_TRUE(got) << k;
      EXPECT_EQ(got->text(), v) << k;
    }
    EXPECT_FALSE(store.get("params.layer_0/"));
    EXPECT_FALSE(store.get("zzz"));
  }
}

TEST(OcdbtWriter, EmptyDatabaseAndDuplicateKeys) {
  {
    test::TempDir tmp;
    ocdbt::OcdbtWriter(tmp.path()).finish();
    EXPECT_TRUE(ocdbt::OcdbtKvStore(tmp.path()).list().empty());
  }
  test::TempDir tmp;
  ocdbt::OcdbtWriter w(tmp.path());
  w.put("k", std::string_view("1"));
  w.put("k", std::string_view("2"));
  EXPECT_THROW(w.finish(), MappingError);
}

TEST(PyJson, MatchesPythonJsonDumpsAndRepr) {
  nlohmann::ordered_json j;
  j["b"] = {1, 2.5, nullptr, true};
  j["a"] = "é\"\n\x01 😀";
  EXPECT_EQ(orbax::py_json_dumps(j), R"({"b": [1, 2.5, null, true], "a": "\u00e9\"\n\u0001 \ud83d\ude00"})");
  EXPECT_EQ(orbax::py_tuple_repr({"a"}), "('a',)");
  EXPECT_EQ(orbax::py_tuple_repr({"it's", "q\"'", "t\\"}), R"(("it's", 'q"\'', 't\\'))");
}

// Several workers reading ranges of one single-chunk array at once decode it once and see
// the same bytes; when the chunk is corrupt every one of them gets the FormatError.
TEST(OrbaxWrite, ConcurrentReadersOfOneChunk) {
  std::vector<std::string> blobs;
  Node tree = Node::dict();
  {
    TensorInfo info{DType::F32, {256, 1024}};
    auto bytes = std::make_shared<Bytes>(info.nbytes());
    std::mt19937 rng(5);
    for (std::size_t i = 0; i < bytes->size(); ++i) bytes->data()[i] = static_cast<std::byte>(rng() & 0x3F);
    tree.add("w", Node::tensor(Tensor{info, std::make_shared<MemorySource>(bytes, "mem")}));
  }
  test::TempDir tmp;
  WriteOptions wo;
  wo.options["no-ocdbt"] = "1";
  write_scrambled(*format_by_name("orbax").make_writer(tmp / "item", wo), tree, 1 << 20);
  const Bytes want = tree.find("w")->tensor().read_all();
  auto read_all_threads = [&](std::vector<std::string>& errors) {
    Checkpoint ck = read_checkpoint(tmp / "item");
    const Tensor& t = ck.root.find("w")->tensor();
    Bytes got(t.info.nbytes());
    const std::size_t part = got.size() / 8;
    std::vector<std::thread> pool;
    std::mutex mu;
    for (int k = 0; k < 8; ++k)
      pool.emplace_back([&, k] {
        try {
          t.source->read(k * part, {got.data() + k * part, part});
        } catch (const FormatError& e) {
          std::lock_guard lock(mu);
          errors.push_back(e.what());
        }
      });
    for (auto& th : pool) th.join();
    return got;
  };
  std::vector<std::string> errors;
  Bytes got = read_all_threads(errors);
  EXPECT_TRUE(errors.empty());
  EXPECT_EQ(std::memcmp(got.data(), want.data(), want.size()), 0);
  // Corrupt the zstd frame: every reader fails with the chunk's name.
  std::string chunk = test::read_file(tmp / "item/w/0.0");
  for (std::size_t i = 20; i < chunk.size(); i += 7) chunk[i] = static_cast<char>(chunk[i] ^ 0x5A);
  test::write_file(tmp / "item/w/0.0", chunk);
  errors.clear();
  read_all_threads(errors);
  ASSERT_EQ(errors.size(), 8u);
  for (const auto& e : errors) EXPECT_NE(e.find("w/0.0"), std::string::npos) << e;
}

}  // namespace
}  // namespace ckb
