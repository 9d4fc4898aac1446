// Hostile and malformed torch pickles, hand-assembled byte by byte: code-execution globals,
// REDUCE tricks, forbidden or unknown opcodes, absurd lengths, oversized ints, deep nesting,
// memo cycles and DAG bombs, truncation, short storages, path-traversal zip names. Each must
// end in a FormatError whose message names the problem; nothing may crash or hang.
#include <cstring>

#include "core/errors.h"
#include "formats/format.h"
#include "formats/torch/pickle.h"
#include "io/zip.h"
#include "test_util.h"

namespace ckb {
namespace {

// ---- pickle assembly helpers --------------------------------------------------------------
std::string u32le(std::uint32_t v) {
  std::string s(4, '\0');
  std::memcpy(s.data(), &v, 4);
  return s;
}
std::string uni(const std::string& s) { return "X" + u32le(static_cast<std::uint32_t>(s.size())) + s; }
std::string glob(const std::string& m, const std::string& n) { return "c" + m + "\n" + n + "\n"; }
std::string i1(int v) { return std::string("K") + static_cast<char>(v); }
std::string i2(int v) { return std::string("M") + static_cast<char>(v & 0xff) + static_cast<char>(v >> 8); }
const std::string kProto = "\x80\x02";
const std::string kOrderedDict = glob("collections", "OrderedDict") + ")R";

std::string tuple_of_torch_pickle(const std::vector<std::string>& items) {
  std::string s = "(";
  for (const auto& i : items) s += i;
  return s + "t";
}

// _rebuild_tensor_v2 of a 1-D/2-D view over storage `key`.
std::string tensor_v2(const std::string& storage_cls, const std::string& key, int numel, int offset,
                      const std::vector<int>& size, const std::vector<int>& stride) {
  std::vector<std::string> sz, st;
  for (int v : size) sz.push_back(i2(v));
  for (int v : stride) st.push_back(i2(v));
  return glob("torch._utils", "_rebuild_tensor_v2") + "(" +
         tuple_of_torch_pickle({uni("storage"), glob("torch", storage_cls), uni(key), uni("cpu"), i2(numel)}) + "Q" + i2(offset) +
         tuple_of_torch_pickle(sz) + tuple_of_torch_pickle(st) + "\x89" + kOrderedDict + "tR";
}

std::string state_dict(const std::vector<std::pair<std::string, std::string>>& items) {
  std::string s = kProto + kOrderedDict + "(";
  for (const auto& [k, v] : items) s += uni(k) + v;
  return s + "u.";
}

std::string unpickle_error(const std::string& bytes) {
  pickle::Arena arena;
  pickle::Unpickler u(std::as_bytes(std::span(bytes.data(), bytes.size())), "evil.pt", 0, arena);
  try {
    u.load();
  } catch (const FormatError& e) {
    EXPECT_EQ(e.path(), "evil.pt");
    EXPECT_TRUE(e.offset().has_value());
    return e.what();
  }
  return "";
}

// Writes a torch zip with archive "t" whose data.pkl is `pkl` plus storage records.
std::string write_torch_zip(const test::TempDir& dir, const std::string& pkl,
                            const std::vector<std::pair<std::string, std::string>>& records,
                            const std::string& archive = "t") {
  const std::string path = dir / "t.pt";
  std::vector<std::pair<std::string, std::string>> all = {{archive + "/data.pkl", pkl}};
  for (const auto& r : records) all.push_back(r);
  all.push_back({archive + "/version", "3\n"});
  AtomicFile out(path);
  std::vector<ZipWriter::Member> ms;
  for (const auto& [n, d] : all) ms.push_back({n, d.size()});
  ZipWriter zw(out, ms, 64, false);
  for (std::size_t i = 0; i < all.size(); ++i)
    zw.write(i, 0, std::as_bytes(std::span(all[i].second.data(), all[i].second.size())));
  zw.finish();
  out.commit();
  return path;
}

std::string read_error(const std::string& path) {
  try {
    read_checkpoint(path);
  } catch (const FormatError& e) {
    EXPECT_EQ(e.path().substr(0, path.size()), path) << e.what();
    return e.what();
  }
  return "";
}

#define EXPECT_MSG(msg, needle) EXPECT_NE((msg).find(needle), std::string::npos) << "message: " << (msg)

// ---- code execution ----------------------------------------------------------------------
TEST(PickleHostile, CodeExecutionGlobalsAreRefused) {
  for (auto [m, n] : std::vector<std::pair<std::string, std::string>>{{"os", "system"},
                                                                      {"posix", "system"},
                                                                      {"nt", "system"},
                                                                      {"builtins", "eval"},
                                                                      {"builtins", "exec"},
                                                                      {"__builtin__", "eval"},
                                                                      {"subprocess", "Popen"},
                                                                      {"torch", "load"},
                                                                      {"torch._utils", "_import_dotted_name"},
                                                                      {"collections", "namedtuple"}}) {
    std::string msg = unpickle_error(kProto + glob(m, n) + "(" + uni("touch /tmp/pwned") + "tR.");
    EXPECT_MSG(msg, "refusing GLOBAL '" + m + "." + n + "'");
    EXPECT_MSG(msg, "pickle offset 2");
  }
  // The same through STACK_GLOBAL (protocol 4 spelling).
  std::string sg = std::string("\x80\x04") + "\x8c\x02os" + "\x8c\x06system" + "\x93" + uni("id") + "\x85R.";
  EXPECT_MSG(unpickle_error(sg), "refusing GLOBAL 'os.system'");
  // A refused global hidden inside an otherwise valid tensor rebuild.
  std::string inner = state_dict({{"w", glob("torch._utils", "_rebuild_tensor_v2") + "(" + glob("os", "system") +
                                            uni("id") + "\x85R" + "tR"}});
  EXPECT_MSG(unpickle_error(inner), "refusing GLOBAL 'os.system'");
  // And inside a whole torch file, through the public read path.
  test::TempDir dir;
  EXPECT_MSG(read_error(write_torch_zip(dir, kProto + glob("os", "system") + uni("id") + "\x85R.", {})),
             "refusing GLOBAL 'os.system'");
}

TEST(PickleHostile, ReduceTricks) {
  // REDUCE on a string / on a result of REDUCE / with non-tuple args.
  EXPECT_MSG(unpickle_error(kProto + uni("os.system") + ")R."), "not callable");
  EXPECT_MSG(unpickle_error(kProto + kOrderedDict + ")R."), "not callable");
  EXPECT_MSG(unpickle_error(kProto + glob("collections", "OrderedDict") + uni("x") + "R."), "must be a tuple");
  // Calling allowlisted non-functions.
  EXPECT_MSG(unpickle_error(kProto + glob("torch", "FloatStorage") + ")R."), "calling torch.FloatStorage");
  EXPECT_MSG(unpickle_error(kProto + glob("torch", "float32") + ")R."), "calling torch.float32");
  // _codecs.encode only as the protocol-2 bytes idiom.
  EXPECT_MSG(unpickle_error(kProto + glob("_codecs", "encode") + uni("x") + uni("rot13") + "\x86R."), "latin1");
  // Rebuild functions with the wrong arity or argument types.
  EXPECT_MSG(unpickle_error(kProto + glob("torch._utils", "_rebuild_tensor_v2") + ")R."), "takes 6-7 arguments");
  EXPECT_MSG(unpickle_error(kProto + glob("torch._utils", "_rebuild_tensor_v2") +
                            tuple_of_torch_pickle({uni("a"), i1(0), ")", ")", "\x89", "N"}) + "R."),
             "first argument must be a storage");
  // Persistent ids that are not storages.
  EXPECT_MSG(unpickle_error(kProto + tuple_of_torch_pickle({uni("module"), glob("torch", "FloatStorage"), uni("0"), uni("cpu"), i1(1)}) + "Q."),
             "persistent id kind must be 'storage'");
  EXPECT_MSG(unpickle_error(kProto + tuple_of_torch_pickle({uni("storage"), uni("x"), uni("0"), uni("cpu"), i1(1)}) + "Q."),
             "storage type must be a torch storage class");
  // BUILD, NEWOBJ and SETITEM/APPEND on the wrong objects.
  EXPECT_MSG(unpickle_error(kProto + "]" + "N" + "b."), "BUILD on a list");
  EXPECT_MSG(unpickle_error(kProto + glob("torch", "FloatStorage") + ")\x81."), "NEWOBJ of torch.FloatStorage");
  EXPECT_MSG(unpickle_error(kProto + "]" + uni("k") + "Ns."), "SETITEM(S) on a list");
  EXPECT_MSG(unpickle_error(kProto + "}" + "Na."), "APPEND on a dict");
}

TEST(PickleHostile, ForbiddenAndUnknownOpcodes) {
  EXPECT_MSG(unpickle_error(kProto + "\xff."), "opcode 0xff (unknown)");
  EXPECT_MSG(unpickle_error(kProto + "ios\nsystem\n."), "opcode 0x69 (INST)");
  EXPECT_MSG(unpickle_error(kProto + "(o."), "opcode 0x6f (OBJ)");
  EXPECT_MSG(unpickle_error(kProto + "\x82\x01."), "EXT1");
  EXPECT_MSG(unpickle_error(kProto + "S'x'\n."), "STRING");
  EXPECT_MSG(unpickle_error(kProto + "N0."), "POP");
  EXPECT_MSG(unpickle_error(kProto + "Pfoo\n."), "PERSID");
  std::string msg = unpickle_error(kProto + "N" + "\x92.");
  EXPECT_MSG(msg, "NEWOBJ_EX");
  EXPECT_MSG(msg, "pickle offset 3");
}

TEST(PickleHostile, AbsurdLengthsAndIntegers) {
  EXPECT_MSG(unpickle_error(kProto + "X" + u32le(0xFFFFFFF0u) + "abc."), "BINUNICODE length 4294967280 exceeds");
  EXPECT_MSG(unpickle_error(kProto + "B" + u32le(0xFFFFFFF0u) + "abc."), "BINBYTES length");
  EXPECT_MSG(unpickle_error(kProto + std::string("\x8d") + std::string(8, '\xff') + "."), "BINUNICODE8 length");
  EXPECT_MSG(unpickle_error(kProto + std::string("\x95") + std::string(8, '\x7f') + "N."), "FRAME length");
  EXPECT_MSG(unpickle_error(kProto + "\x8a\xff" + std::string(255, '\x01') + "."), "LONG1 integer of 255 bytes");
  EXPECT_MSG(unpickle_error(kProto + "\x8a\x09" + std::string(9, '\x01') + "."), "does not fit in 64 bits");
  EXPECT_MSG(unpickle_error(kProto + "\x8a\xff" + "\x01\x02."), "truncated LONG1 bytes");
  EXPECT_MSG(unpickle_error(kProto + "X" + u32le(2) + "\xc3\x28."), "not valid UTF-8");
  EXPECT_MSG(unpickle_error(kProto + "c" + std::string(600, 'a')), "overlong GLOBAL module");
  EXPECT_MSG(unpickle_error(kProto + "h\x07."), "memo index 7 was never stored");
  // LONG1 sign extension and 8-byte values are exact.
  pickle::Arena arena;
  std::string neg = kProto + std::string("\x8a\x02\x00\xff.", 5);  // -256
  pickle::Unpickler u(std::as_bytes(std::span(neg.data(), neg.size())), "x", 0, arena);
  EXPECT_EQ(u.load()->i, -256);
  std::string mn = kProto + "\x8a\x08" + std::string(7, '\0') + "\x80.";
  pickle::Unpickler u2(std::as_bytes(std::span(mn.data(), mn.size())), "x", 0, arena);
  EXPECT_EQ(u2.load()->i, std::numeric_limits<std::int64_t>::min());
}

TEST(PickleHostile, DeepNestingIsCapped) {
  EXPECT_MSG(unpickle_error(kProto + std::string(5000, '(') + "."), "MARKs nested deeper than 1000");
  EXPECT_MSG(unpickle_error(kProto + "N" + std::string(5000, '\x85') + "."), "nested deeper than 1000");
  std::string lists = kProto + std::string(3000, ']') + std::string(2999, 'a') + ".";
  EXPECT_MSG(unpickle_error(lists), "nested deeper than 1000");
  std::string dicts = kProto;
  for (int i = 0; i < 1500; ++i) dicts += "}" + uni("k");
  dicts += "N" + std::string(1500, 's');  // d1500[k] = None, d1499[k] = d1500, ...
  EXPECT_MSG(unpickle_error(dicts), "nested deeper than 1000");
}

TEST(PickleHostile, MemoCyclesAndDagBombsFailCleanly) {
  test::TempDir dir;
  // A list that contains itself: L = []; L.append(L).
  std::string cyc = kProto + std::string("]q\0h\0a.", 7);
  EXPECT_MSG(read_error(write_torch_zip(dir, cyc, {})), "nested deeper than 1000");
  // 2^40 leaves through shared sublists: must be refused quickly, not expanded.
  std::string dag = kProto + "]q" + std::string(1, '\0');
  for (int i = 1; i <= 40; ++i)
    dag += "h" + std::string(1, static_cast<char>(i - 1)) + "\x86q" + std::string(1, static_cast<char>(i));
  dag += ".";
  EXPECT_MSG(read_error(write_torch_zip(dir, dag, {})), "nodes");
}

TEST(PickleHostile, TruncatedDataPklAlwaysFailsCleanly) {
  auto zr = ZipReader(MappedFile::open(test::fixture("torch_zip/model.pt")));
  Bytes full = zr.read(*zr.find("model/data.pkl"));
  std::string pkl(reinterpret_cast<const char*>(full.data()), full.size());
  int failures = 0;
  for (std::size_t n = 0; n < pkl.size(); ++n) {
    std::string msg = unpickle_error(pkl.substr(0, n));
    failures += !msg.empty();
    if (n == 100) {
      EXPECT_MSG(msg, "truncated");
    }
  }
  EXPECT_EQ(failures, static_cast<int>(pkl.size()));
  // Through the reader: a truncated data.pkl in a real archive.
  test::TempDir dir;
  EXPECT_MSG(read_error(write_torch_zip(dir, pkl.substr(0, 700), {})), "t.pt:t/data.pkl");
}

TEST(PickleHostile, StoragesAndViewsAreBoundsChecked) {
  test::TempDir dir;
  const std::string sixteen_floats(64, '\x01');
  // Record shorter than the declared storage.
  std::string pkl = state_dict({{"w", tensor_v2("FloatStorage", "0", 16, 0, {4, 4}, {4, 1})}});
  EXPECT_MSG(read_error(write_torch_zip(dir, pkl, {{"t/data/0", std::string(40, '\0')}})),
             "storage record 't/data/0' has 40 bytes but its torch.FloatStorage of 16 elements needs 64");
  // View reaching past its storage (offset 10 + 4x4).
  pkl = state_dict({{"w", tensor_v2("FloatStorage", "0", 16, 10, {4, 4}, {4, 1})}});
  EXPECT_MSG(read_error(write_torch_zip(dir, pkl, {{"t/data/0", sixteen_floats}})),
             "'w': tensor view (storage offset 10, shape [4, 4], stride [4, 1], F32) needs 104 bytes");
  // Strides past the end (transposed view with a wrong stride).
  pkl = state_dict({{"w", tensor_v2("FloatStorage", "0", 16, 0, {4, 4}, {1, 5})}});
  EXPECT_MSG(read_error(write_torch_zip(dir, pkl, {{"t/data/0", sixteen_floats}})), "'w': tensor view");
  // Missing record.
  pkl = state_dict({{"w", tensor_v2("FloatStorage", "7", 16, 0, {16}, {1})}});
  EXPECT_MSG(read_error(write_torch_zip(dir, pkl, {{"t/data/0", sixteen_floats}})), "'t/data/7' is missing");
  // Rank mismatch between size and stride.
  pkl = state_dict({{"w", tensor_v2("FloatStorage", "0", 16, 0, {16}, {1, 1})}});
  EXPECT_MSG(read_error(write_torch_zip(dir, pkl, {{"t/data/0", sixteen_floats}})), "size has 1 dims but stride has 2");
  // A valid one for contrast: a transposed 4x4 view reads in C order.
  std::string data(64, '\0');
  for (int i = 0; i < 16; ++i) {
    float f = static_cast<float>(i);
    std::memcpy(data.data() + 4 * i, &f, 4);
  }
  pkl = state_dict({{"w", tensor_v2("FloatStorage", "0", 16, 0, {4, 4}, {1, 4})}});
  Checkpoint ck = read_checkpoint(write_torch_zip(dir, pkl, {{"t/data/0", data}}));
  Bytes b = find_path(ck.root, "w")->tensor().read_all();
  const float* f = reinterpret_cast<const float*>(b.data());
  EXPECT_EQ(f[1], 4.0f);
  EXPECT_EQ(f[4], 1.0f);
  EXPECT_EQ(f[15], 15.0f);
}

TEST(PickleHostile, UnsupportedTensorKindsNameTheTensor) {
  test::TempDir dir;
  const std::string storage = std::string(64, '\0');
  auto v3 = [&](const std::string& dtype) {
    return glob("torch._utils", "_rebuild_tensor_v3") + "(" +
           tuple_of_torch_pickle({uni("storage"), glob("torch.storage", "UntypedStorage"), uni("0"), uni("cpu"), i1(16)}) + "Q" +
           i1(0) + tuple_of_torch_pickle({i1(16)}) + tuple_of_torch_pickle({i1(1)}) + "\x89" + kOrderedDict + glob("torch", dtype) + "tR";
  };
  EXPECT_MSG(read_error(write_torch_zip(dir, state_dict({{"enc.w", v3("float8_e4m3fnuz")}}), {{"t/data/0", storage}})),
             "'enc.w': dtype torch.float8_e4m3fnuz is not supported");
  // float8_e4m3fn via v3 is fine and exact.
  Checkpoint ok = read_checkpoint(write_torch_zip(dir, state_dict({{"f8", v3("float8_e4m3fn")}}), {{"t/data/0", storage}}));
  EXPECT_EQ(find_path(ok.root, "f8")->tensor().info.dtype, DType::F8_E4M3);
  EXPECT_MSG(read_error(write_torch_zip(dir, state_dict({{"q", tensor_v2("QInt8Storage", "0", 16, 0, {16}, {1})}}),
                                        {{"t/data/0", storage}})),
             "'q': quantized tensors are not supported (storage torch.QInt8Storage)");
  EXPECT_MSG(read_error(write_torch_zip(dir, state_dict({{"s", glob("torch._utils", "_rebuild_sparse_tensor") + ")R"}}), {})),
             "'s': sparse tensors are not supported");
  EXPECT_MSG(read_error(write_torch_zip(
                 dir, state_dict({{"m", glob("torch._utils", "_rebuild_meta_tensor_no_storage") + ")R"}}), {})),
             "'m': meta tensors");
  EXPECT_MSG(read_error(write_torch_zip(dir, state_dict({{"st", "\x8f"}}), {})), "'st': Python sets");
  // Non-string dict keys.
  EXPECT_MSG(read_error(write_torch_zip(dir, kProto + "}" + ")" + i1(1) + "s.", {})),
             "dict key of type tuple is not supported");
  // Int keys become strings.
  Checkpoint ik = read_checkpoint(write_torch_zip(dir, kProto + "}" + i1(7) + uni("seven") + "s.", {}));
  EXPECT_EQ(std::get<std::string>(find_path(ik.root, "7")->value()), "seven");
}

TEST(PickleHostile, HostileZipEntriesAndStructure) {
  test::TempDir dir;
  const std::string pkl = state_dict({});
  // An entry escaping the archive: detect says no, read names the problem.
  const std::string path = dir / "t.pt";
  {
    std::string evil = write_torch_zip(dir, pkl, {});
    std::string bytes = test::read_file(evil);
    // Rename "t/version" (9 chars) to "../evil/" in both headers.
    for (std::size_t at = bytes.find("t/version"); at != std::string::npos; at = bytes.find("t/version", at + 1))
      bytes.replace(at, 9, "../evil/x");
    test::write_file(path, bytes);
  }
  EXPECT_FALSE(format_by_name("torch").detect(path));
  try {
    format_by_name("torch").read(path, {});
    ADD_FAILURE() << "no error";
  } catch (const FormatError& e) {
    EXPECT_MSG(std::string(e.what()), "'../evil/x' rejected: '..' component");
  }
  // Archive without data.pkl, TorchScript archives, big-endian byteorder.
  {
    std::string p = write_torch_zip(dir, pkl, {{"t/constants.pkl", pkl}});
    try {
      format_by_name("torch").read(p, {});
      ADD_FAILURE();
    } catch (const FormatError& e) {
      EXPECT_MSG(std::string(e.what()), "TorchScript");
    }
    p = write_torch_zip(dir, pkl, {{"t/byteorder", "big"}});
    try {
      format_by_name("torch").read(p, {});
      ADD_FAILURE();
    } catch (const FormatError& e) {
      EXPECT_MSG(std::string(e.what()), "big-endian");
    }
  }
  // An empty state dict reads as an empty root.
  Checkpoint ck = read_checkpoint(write_torch_zip(dir, pkl, {}));
  EXPECT_TRUE(ck.root.is_empty_container());
}

TEST(PickleHostile, LegacyFileCorruptionsFailCleanly) {
  const std::string good = test::read_file(test::fixture("torch_legacy/model.pt"));
  test::TempDir dir;
  // Every truncation point must fail with FormatError (never crash).
  int ok = 0;
  for (std::size_t n = 15; n < good.size(); n += (n < 200 ? 1 : n < 2200 ? 5 : 4093)) {
    test::write_file(dir / "l.pt", good.substr(0, n));
    try {
      format_by_name("torch").read(dir / "l.pt", {});
      ++ok;
    } catch (const FormatError&) {
    }
  }
  EXPECT_EQ(ok, 0);
  // Wrong protocol version pickle (1001 -> 1002).
  std::string bad = good;
  bad[18] = '\xea';
  test::write_file(dir / "v.pt", bad);
  try {
    format_by_name("torch").read(dir / "v.pt", {});
    ADD_FAILURE();
  } catch (const FormatError& e) {
    EXPECT_MSG(std::string(e.what()), "protocol version");
  }
}

// A legacy file with storage view metadata, assembled by hand: the pid
// ('storage', FloatStorage, 'root', 'cpu', 8, ('view1', 2, 4)) is elements [2, 6) of root.
std::string legacy_file(int view_offset, int view_size) {
  std::string magic("\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19\x2e", 15);
  std::string version = kProto + i2(1001) + ".";
  std::string sys_info = kProto + "}(" + uni("protocol_version") + i2(1001) + uni("little_endian") + "\x88" +
                         uni("type_sizes") + "}(" + uni("short") + i1(2) + uni("int") + i1(4) + uni("long") + i1(4) +
                         "uu.";
  std::string pid = tuple_of_torch_pickle({uni("storage"), glob("torch", "FloatStorage"), uni("root"), uni("cpu"), i1(8),
                              tuple_of_torch_pickle({uni("view1"), i1(view_offset), i1(view_size)})});
  std::string obj = state_dict({{"v", glob("torch._utils", "_rebuild_tensor_v2") + "(" + pid + "Q" + i1(1) +
                                          tuple_of_torch_pickle({i1(3)}) + tuple_of_torch_pickle({i1(1)}) + "\x89" + kOrderedDict + "tR"}});
  std::string keys = kProto + "](" + uni("root") + "e.";
  std::string data(8, '\0');
  data[0] = 8;
  for (int i = 0; i < 8; ++i) {
    float f = static_cast<float>(i);
    data.append(reinterpret_cast<const char*>(&f), 4);
  }
  return magic + version + sys_info + obj + keys + data;
}

TEST(TorchLegacy, StorageViewMetadata) {
  test::TempDir dir;
  test::write_file(dir / "legacy.pt", legacy_file(2, 4));
  ASSERT_TRUE(format_by_name("torch").detect(dir / "legacy.pt"));
  Checkpoint ck = read_checkpoint(dir / "legacy.pt");
  Bytes b = find_path(ck.root, "v")->tensor().read_all();
  ASSERT_EQ(b.size(), 12u);
  const float* f = reinterpret_cast<const float*>(b.data());
  EXPECT_EQ(f[0], 3.0f);
  EXPECT_EQ(f[1], 4.0f);
  EXPECT_EQ(f[2], 5.0f);
  // The tensor (offset 1, 3 elements) must fit in the 2-element view, not just in the root.
  test::write_file(dir / "small_view.pt", legacy_file(2, 2));
  EXPECT_MSG(read_error(dir / "small_view.pt"), "'v': tensor view (storage offset 1, shape [3]");
  // A view reaching past its root storage.
  test::write_file(dir / "bad_view.pt", legacy_file(6, 4));
  EXPECT_MSG(read_error(dir / "bad_view.pt"), "legacy storage view 'view1' lies outside storage 'root'");
  // Truncated storage data.
  std::string cut = legacy_file(2, 4);
  test::write_file(dir / "cut.pt", cut.substr(0, cut.size() - 3));
  EXPECT_MSG(read_error(dir / "cut.pt"), "legacy storage 'root' declares 8 elements but only 29 bytes remain");
}

}  // namespace
}  // namespace ckb
