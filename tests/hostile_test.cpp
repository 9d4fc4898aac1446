// Hostile inputs through the real CLI: pickles that reach for code, forged safetensors
// headers, zip bombs and path traversal, overflowing zarr shapes, decompression bombs, deep
// nesting, absurd npy headers. Every case must end with exit status 2 and a one-line
// message naming the file, within a deadline, under an address-space limit (outside ASan)
// and with a bounded peak RSS; none may crash (the sanitizer build runs them too). The
// inputs are built here, byte by byte, so the suite does not depend on Python.
#include <zlib.h>
#include <zstd.h>

#include <filesystem>

#include "child_process.h"
#include "test_util.h"

namespace ckb {
namespace {
namespace fs = std::filesystem;
using namespace std::string_literals;
using test::fixture;

constexpr std::uint64_t kGiB = 1ull << 30;

// ---------------------------------------------------------------------------------------
// Byte builders

std::string le(std::uint64_t v, int n) {
  std::string s;
  for (int i = 0; i < n; ++i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  return s;
}

struct ZipMember {
  ZipMember(std::string n, std::string d, std::uint16_t m = 0) : name(std::move(n)), data(std::move(d)), method(m) {}
  std::string name;
  std::string data;                          // bytes as stored in the archive
  std::uint16_t method = 0;                  // 0 stored, 8 deflated
  std::optional<std::uint64_t> declared;     // uncompressed size to declare (default: the real one)
  std::optional<std::uint32_t> crc;          // default: CRC-32 of `plain`
  std::string plain;                         // uncompressed bytes (for the CRC); default = data
};

std::uint32_t crc32_of(const std::string& s) {
  return static_cast<std::uint32_t>(::crc32(0, reinterpret_cast<const Bytef*>(s.data()), static_cast<uInt>(s.size())));
}

// A minimal zip writer that lies on request (declared sizes, names), with zip64 extra
// fields when a size needs them.
std::string make_zip(const std::vector<ZipMember>& members) {
  std::string out, central;
  for (const auto& m : members) {
    const std::string& plain = m.plain.empty() && m.method == 0 ? m.data : m.plain;
    const std::uint64_t usize = m.declared.value_or(plain.size()), csize = m.data.size();
    const std::uint32_t crc = m.crc.value_or(crc32_of(plain));
    const bool z64 = usize >= 0xffffffffu || csize >= 0xffffffffu;
    std::string extra = z64 ? le(1, 2) + le(16, 2) + le(usize, 8) + le(csize, 8) : "";
    const std::uint64_t local = out.size();
    out += le(0x04034b50, 4) + le(z64 ? 45 : 20, 2) + le(0, 2) + le(m.method, 2) + le(0, 4) + le(crc, 4) +
           le(z64 ? 0xffffffffu : csize, 4) + le(z64 ? 0xffffffffu : usize, 4) + le(m.name.size(), 2) +
           le(extra.size(), 2) + m.name + extra + m.data;
    central += le(0x02014b50, 4) + le(45, 2) + le(z64 ? 45 : 20, 2) + le(0, 2) + le(m.method, 2) + le(0, 4) +
               le(crc, 4) + le(z64 ? 0xffffffffu : csize, 4) + le(z64 ? 0xffffffffu : usize, 4) +
               le(m.name.size(), 2) + le(extra.size(), 2) + le(0, 2) + le(0, 2) + le(0, 2) + le(0, 4) +
               le(local, 4) + m.name + extra;
  }
  const std::uint64_t cd_off = out.size();
  out += central;
  out += le(0x06054b50, 4) + le(0, 2) + le(0, 2) + le(members.size(), 2) + le(members.size(), 2) +
         le(central.size(), 4) + le(cd_off, 4) + le(0, 2);
  return out;
}

std::string deflate_raw(const std::string& in) {
  z_stream zs{};
  deflateInit2(&zs, 9, Z_DEFLATED, -MAX_WBITS, 9, Z_DEFAULT_STRATEGY);
  std::string out(deflateBound(&zs, in.size()) + 64, '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  deflate(&zs, Z_FINISH);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

// A torch.save-style zip whose data.pkl is `pkl` (plus optional storage records).
std::string torch_zip(const std::string& pkl, std::vector<ZipMember> extra = {}) {
  std::vector<ZipMember> m{{"archive/data.pkl", pkl}, {"archive/byteorder", "little"}};
  for (auto& e : extra) m.push_back(std::move(e));
  m.push_back({"archive/version", "3\n"});
  return make_zip(m);
}

std::string safetensors_file(const std::string& header, const std::string& data) {
  return le(header.size(), 8) + header + data;
}

std::string npy_file(const std::string& dict, const std::string& data) {
  std::string h = dict;
  while ((10 + h.size() + 1) % 64) h += ' ';
  h += '\n';
  return std::string("\x93NUMPY\x01\x00", 8) + le(h.size(), 2) + h + data;
}

// ---------------------------------------------------------------------------------------
// The check every case shares.

struct Expect {
  std::string mentions;      // a substring the message must contain besides the file name
  double timeout_s = 30;
  long max_rss_mb = 1024;
};

void expect_clean_rejection(const std::vector<std::string>& args, const std::string& file, const Expect& x = {}) {
  test::ChildLimits lim;
  lim.timeout_s = x.timeout_s;
  lim.address_space = 4 * kGiB;  // a declared terabyte must never be asked for
  auto r = test::run_cli_child(args, lim);
  std::string cmd;
  for (const auto& a : args) cmd += a + " ";
  SCOPED_TRACE(cmd);
  if (std::getenv("CKB_TEST_VERBOSE"))  // prints every message, to review them
    std::printf("%s-> exit %d, %.2f s, peak RSS %ld MiB: %s", cmd.c_str(), r.exit_code, r.seconds, r.max_rss_kb / 1024,
                r.err.c_str());
  EXPECT_FALSE(r.timed_out) << "took longer than " << x.timeout_s << " s";
  EXPECT_EQ(r.signal, 0) << "killed by signal " << r.signal << "\n" << r.err;
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("ckptbridge: error: "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(fs::path(file).filename().string()), std::string::npos) << "message does not name the file: " << r.err;
  if (!x.mentions.empty()) {
    EXPECT_NE(r.err.find(x.mentions), std::string::npos) << r.err;
  }
  // One error line (notes such as the list of dropped leaves may precede it).
  std::size_t error_lines = 0;
  for (std::size_t p = r.err.find("ckptbridge: "); p != std::string::npos; p = r.err.find("ckptbridge: ", p + 1))
    error_lines += r.err.compare(p, 19, "ckptbridge: error: ") == 0;
  EXPECT_EQ(error_lines, 1u) << r.err;
  EXPECT_LT(r.max_rss_kb / 1024, x.max_rss_mb) << "peak RSS";
}

class Hostile : public ::testing::Test {
 protected:
  // Writes `bytes` to `name` in the temp dir, then checks both `inspect` and a `convert`
  // of it reject it cleanly (and that the convert leaves no output behind).
  void check(const std::string& name, const std::string& bytes, const Expect& x = {}, bool also_inspect = true) {
    const std::string p = tmp / name;
    test::write_file(p, bytes);
    if (also_inspect) expect_clean_rejection({"inspect", p}, p, x);
    expect_clean_rejection({"convert", p, tmp / "out.safetensors", "--max-memory", "64MiB"}, p, x);
    EXPECT_FALSE(fs::exists(tmp / "out.safetensors"));
    for (const auto& e : fs::directory_iterator(tmp.path()))
      EXPECT_EQ(e.path().filename().string().find("ckb-tmp"), std::string::npos) << "temporary left: " << e.path();
  }
  test::TempDir tmp;
};

// ---------------------------------------------------------------------------------------
// Pickles

const std::string kProto2 = "\x80\x02";
// BINUNICODE: 'X', u32 length, UTF-8 bytes.
std::string BU(const std::string& s) { return "X" + le(s.size(), 4) + s; }

TEST_F(Hostile, PickleOsSystem) {
  // GLOBAL 'posix system'; 'id'; TUPLE1; REDUCE; STOP -- what pickle.dumps(os.system-object) looks like.
  std::string p = kProto2 + "cposix\nsystem\nq\x00"s + BU("id") + "q\x01\x85q\x02Rq\x03.";
  check("os_system.pt", torch_zip(p), {"refusing GLOBAL 'posix.system'"});
  std::string p2 = kProto2 + "cos\nsystem\n" + BU("id") + "\x85R.";
  check("os_system2.pt", torch_zip(p2), {"refusing GLOBAL 'os.system'"});
}

TEST_F(Hostile, PickleBuiltinsEvalViaStackGlobal) {
  // Protocol 4: FRAME, SHORT_BINUNICODE 'builtins', MEMOIZE, 'eval', MEMOIZE, STACK_GLOBAL.
  std::string body = "\x8c\x08"s + "builtins" + "\x94" + "\x8c\x04" + "eval" + "\x94" + "\x93" + "\x94" +
                     "\x8c\x02" + "id" + "\x94\x85\x94R\x94.";
  std::string p = std::string("\x80\x04\x95", 3) + le(body.size(), 8) + body;
  check("eval.pt", torch_zip(p), {"refusing GLOBAL 'builtins.eval'"});
}

TEST_F(Hostile, PickleSubprocessPopen) {
  // INST opcode ('i'): instantiates subprocess.Popen with the marked arguments.
  std::string p = kProto2 + "(" + BU("id") + "isubprocess\nPopen\n.";
  check("popen_inst.pt", torch_zip(p), {"INST"});
  // GLOBAL + NEWOBJ.
  std::string p2 = kProto2 + "csubprocess\nPopen\n)\x81.";
  check("popen_newobj.pt", torch_zip(p2), {"refusing GLOBAL 'subprocess.Popen'"});
  // OBJ opcode ('o') with a class fetched by STACK_GLOBAL.
  std::string p3 = "\x80\x04(\x8c\x0a"s + "subprocess" + "\x8c\x05" + "Popen" + "\x93" + BU("id") + "o.";
  check("popen_obj.pt", torch_zip(p3), {"subprocess.Popen"});
}

TEST_F(Hostile, PickleNestedReduceTricks) {
  // An allowlisted OrderedDict whose argument is the result of a forbidden call.
  std::string p = kProto2 + "ccollections\nOrderedDict\n(cbuiltins\ngetattr\n(cbuiltins\nobject\n" + BU("__a") + "\x86R\x85R.";
  check("nested_reduce.pt", torch_zip(p), {"refusing GLOBAL 'builtins.getattr'"});
  // _rebuild_tensor_v2 called on something that is not a storage (a REDUCE result of a string).
  std::string p2 = kProto2 + "ctorch._utils\n_rebuild_tensor_v2\n(" + BU("s") + "K\x00))\x89)tR."s;
  check("rebuild_on_str.pt", torch_zip(p2), {"first argument must be a storage"});
  // REDUCE whose callable is not a global at all (a memoized string), and a storage class called.
  std::string p3 = kProto2 + BU("eval") + "q\x00h\x00)R."s;
  check("reduce_on_str.pt", torch_zip(p3), {"REDUCE on a str"});
  std::string p4 = kProto2 + "ctorch\nFloatStorage\n" + BU("id") + "\x85R.";
  check("call_storage.pt", torch_zip(p4), {"is not supported"});
  // torch.load inside the pickle (torch.storage._load_from_bytes would unpickle again).
  std::string p5 = kProto2 + "ctorch.storage\n_load_from_bytes\nC\x01x\x85R.";
  check("load_from_bytes.pt", torch_zip(p5), {"refusing GLOBAL 'torch.storage._load_from_bytes'"});
}

TEST_F(Hostile, PickleProtocol5Opcodes) {
  // BYTEARRAY8, NEXT_BUFFER, READONLY_BUFFER: out-of-band buffers have no place in a checkpoint.
  check("bytearray8.pt", torch_zip(std::string("\x80\x05\x96", 3) + le(3, 8) + "abc."), {"BYTEARRAY8"});
  check("next_buffer.pt", torch_zip(std::string("\x80\x05\x97.", 4)), {"NEXT_BUFFER"});
  check("readonly_buffer.pt", torch_zip(std::string("\x80\x05\x97\x98.", 5)), {"NEXT_BUFFER"});
  // FRAME longer than the pickle.
  check("frame_huge.pt", torch_zip(std::string("\x80\x04\x95", 3) + le(1ull << 62, 8) + "}."), {"FRAME length"});
  // Protocol 6 does not exist.
  check("proto6.pt", torch_zip(std::string("\x80\x06}.", 4)), {"protocol 6"});
}

TEST_F(Hostile, PickleProtocol4OpcodesInAValidPickleAreData) {
  // FRAME + MEMOIZE + SHORT_BINUNICODE + EMPTY_DICT are harmless: a dict {'epoch': 3} loads.
  std::string body = std::string("}\x94\x8c\x05", 4) + "epoch" + "\x94K\x03s.";
  std::string p = std::string("\x80\x04\x95", 3) + le(body.size(), 8) + body;
  test::write_file(tmp / "p4.pt", torch_zip(p));
  auto r = test::run_cli_child({"inspect", tmp / "p4.pt"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("epoch = 3"), std::string::npos) << r.out;
}

TEST_F(Hostile, PickleHugeLengths) {
  check("long4.pt", torch_zip(kProto2 + "\x8b" + le(0x7fffffff, 4) + "."), {"LONG4"});
  check("binbytes8.pt", torch_zip(std::string("\x80\x04\x8e", 3) + le(~0ull, 8) + "."), {"BINBYTES8 length"});
  check("binunicode8.pt", torch_zip(std::string("\x80\x04\x8d", 3) + le(1ull << 62, 8) + "."), {"BINUNICODE8 length"});
  check("binunicode.pt", torch_zip(kProto2 + "X" + le(0xffffffff, 4) + "."), {"length"});
  check("long1.pt", torch_zip(kProto2 + "\x8a\xff" + std::string(255, '\x01') + "."), {"LONG1"});
  // A MARK bomb and a memo far beyond the data.
  check("marks.pt", torch_zip(kProto2 + std::string(5000, '(')), {"MARKs nested deeper"});
  check("memo_get.pt", torch_zip(kProto2 + "j" + le(0xfffffff0, 4) + "."), {"memo index"});
}

TEST_F(Hostile, PickleDeepNesting) {
  // 100000 nested lists via EMPTY_LIST/APPEND chains would be deep recursion in a naive reader.
  std::string p = kProto2;
  for (int i = 0; i < 100000; ++i) p += "]";
  for (int i = 0; i < 99999; ++i) p += "a";
  p += ".";
  check("deep_lists.pt", torch_zip(p), {"nested deeper"});
}

TEST_F(Hostile, TorchStorageDeclaresATerabyte) {
  // A valid state dict whose one FloatStorage claims 2^38 elements (1 TiB) over an 8-byte record.
  std::string p = kProto2 + "}" + BU("w") + "ctorch._utils\n_rebuild_tensor_v2\n((" + BU("storage") +
                  "ctorch\nFloatStorage\n" + BU("0") + BU("cpu") + "\x8a\x05" + le(1ull << 38, 5) + "tQK\x00"s +
                  "\x8a\x05" + le(1ull << 38, 5) + "\x85K\x01\x85\x89)tRs.";
  check("terabyte.pt", torch_zip(p, {{"archive/data/0", std::string(8, '\0')}}), {"has 8 bytes"});
}

// ---------------------------------------------------------------------------------------
// Zip

TEST_F(Hostile, ZipEntryWithDotDotName) {
  std::string pkl = kProto2 + "}.";
  // Format detection opens the zip first, and a zip with such a name is no format at all:
  // the message is "not a checkpoint format ckptbridge recognises" naming the file.
  check("dotdot.pt", make_zip({{"archive/data.pkl", pkl}, {"archive/../../../etc/evil", "x"}}));
  check("absolute.pt", make_zip({{"archive/data.pkl", pkl}, {"/etc/evil", "x"}}));
  check("dotdot.npz", make_zip({{"../a.npy", npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", "abcd")}}));
  // Nothing is ever extracted: no file appeared outside the temp dir's own entries.
  EXPECT_FALSE(fs::exists(fs::path(tmp.path()).parent_path() / "etc" / "evil"));
}

TEST_F(Hostile, ZipStoredMemberDeclaresATerabyte) {
  ZipMember m{"archive/data.pkl", kProto2 + "}."};
  m.declared = 1ull << 40;
  check("stored_bomb.pt", make_zip({m}));
}

TEST_F(Hostile, ZipDeflatedMemberDeclaresATerabyte) {
  // A 100-byte deflate stream in an npz member that claims to inflate to 1 TiB.
  std::string npy = npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }", std::string(16, '\0'));
  ZipMember m{"a.npy", deflate_raw(npy), 8};
  m.plain = npy;
  m.declared = 1ull << 40;
  // Refused when the zip directory is read (the format probe itself fails, so the message is
  // "not a checkpoint format ckptbridge recognises", naming the file).
  check("deflate_declares_tb.npz", make_zip({m}));
}

TEST_F(Hostile, ZipDeflateBombBeyondItsDeclaredSize) {
  // 64 MiB of zeros deflate to about 64 KiB; the member declares 144 bytes (a small npy).
  // inspect reads only the npy header (the first bytes of the stream) and may succeed;
  // reading the data must stop at the declared size.
  std::string npy = npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }", std::string(16, '\0'));
  z_stream zs{};
  deflateInit2(&zs, 1, Z_DEFLATED, -MAX_WBITS, 9, Z_DEFAULT_STRATEGY);
  std::string zeros(1 << 20, '\0'), out;
  std::string buf(1 << 16, '\0');
  auto pump = [&](const std::string& in, int flush) {
    zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    zs.avail_in = static_cast<uInt>(in.size());
    do {
      zs.next_out = reinterpret_cast<Bytef*>(buf.data());
      zs.avail_out = static_cast<uInt>(buf.size());
      deflate(&zs, flush);
      out.append(buf.data(), buf.size() - zs.avail_out);
    } while (zs.avail_out == 0);
  };
  pump(npy, Z_NO_FLUSH);
  for (int i = 0; i < 64; ++i) pump(zeros, i == 63 ? Z_FINISH : Z_NO_FLUSH);
  deflateEnd(&zs);
  ZipMember m{"a.npy", out, 8};
  m.plain = npy;
  m.declared = npy.size();
  check("deflate_bomb.npz", make_zip({m}), {"beyond its declared size"}, /*also_inspect=*/false);
}

// ---------------------------------------------------------------------------------------
// safetensors

TEST_F(Hostile, SafetensorsOverlappingOffsets) {
  check("overlap.safetensors",
        safetensors_file(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}})",
                         std::string(24, '\0')),
        {"overlap"});
}

TEST_F(Hostile, SafetensorsOffsetsBeyondTheFile) {
  check("beyond.safetensors",
        safetensors_file(R"({"a":{"dtype":"F32","shape":[1000],"data_offsets":[0,4000]}})", std::string(16, '\0')),
        {"beyond the end of the file"});
}

TEST_F(Hostile, SafetensorsLengthsThatOverflow) {
  check("overflow_shape.safetensors",
        safetensors_file(R"({"a":{"dtype":"F64","shape":[4611686018427387904,4],"data_offsets":[0,0]}})", ""), {"'a'"});
  check("overflow_offsets.safetensors",
        safetensors_file(R"({"a":{"dtype":"U8","shape":[18446744073709551615],"data_offsets":[0,18446744073709551615]}})", ""),
        {"'a'"});
  check("wrap_offsets.safetensors",
        safetensors_file(R"({"a":{"dtype":"U8","shape":[16],"data_offsets":[18446744073709551608,8]}})", std::string(16, '\0')),
        {"'a'"});
}

TEST_F(Hostile, SafetensorsHeaderLengthTwoToThe63) {
  // Not detected as safetensors by content (the length is absurd), so it is named as unrecognised
  // by inspect; reading it as safetensors by extension must still fail cleanly.
  check("hdr63.safetensors", le(1ull << 63, 8) + "{}", {});
}

TEST_F(Hostile, SafetensorsDeclaredTerabyteTensor) {
  // 1 TiB of F32 declared, 64 bytes present; --max-memory 64MiB (in check()) and a 4 GiB
  // address-space limit: it must fail on the missing bytes, never try to allocate.
  check("tb.safetensors",
        safetensors_file(R"({"w":{"dtype":"F32","shape":[262144,1048576],"data_offsets":[0,1099511627776]}})",
                         std::string(64, '\0')),
        {"beyond the end of the file"});
}

TEST_F(Hostile, SafetensorsDeepJson) {
  std::string h = "{\"a\":" + std::string(100000, '[') + std::string(100000, ']') + "}";
  check("deep.safetensors", safetensors_file(h, ""), {"nested deeper"});
}

// ---------------------------------------------------------------------------------------
// npy

TEST_F(Hostile, NpyAbsurdShapes) {
  check("overflow.npy", npy_file("{'descr': '<f8', 'fortran_order': False, 'shape': (4611686018427387904, 4), }", ""));
  check("terabyte.npy", npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (262144, 1048576), }", std::string(64, '\0')));
  check("negative.npy", npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }", ""));
  check("hugeint.npy", npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999999,), }", ""));
  std::string many = "(";
  for (int i = 0; i < 20000; ++i) many += "1,";
  check("rank20000.npy", npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': " + many + "), }", ""));
  check("object.npy", npy_file("{'descr': '|O', 'fortran_order': False, 'shape': (1,), }", std::string(8, '\0')), {"|O"});
  // Header length field claiming 4 GiB (v2).
  check("hdrlen.npy", std::string("\x93NUMPY\x02\x00", 8) + le(0xffffffff, 4) + "{");
}

// ---------------------------------------------------------------------------------------
// msgpack

TEST_F(Hostile, MsgpackDeepNesting) {
  std::string m = "\x81\xa1" "a" + std::string(100000, '\x91') + "\xc0";
  check("deep.msgpack", m, {"deeper"});
}

TEST_F(Hostile, MsgpackHugeLengthsAndTerabyteNdarray) {
  // map32 claiming 4 billion entries; bin32 claiming 4 GiB.
  check("map32.msgpack", std::string("\xdf\xff\xff\xff\xff\xa1" "a\xc0", 8));
  check("bin32.msgpack", std::string("\x81\xa1" "a\xc6\xff\xff\xff\xff", 8) + "xx");
  // ext 1 ndarray [shape (2^38,), 'float32', bin of 8 bytes]: declares 1 TiB.
  std::string payload = std::string("\x93\x91\xcf", 3) + [] { std::string s; for (int i = 7; i >= 0; --i) s.push_back(static_cast<char>(((1ull << 38) >> (8 * i)) & 0xff)); return s; }() +
                        "\xa7" "float32" + "\xc4\x08" + std::string(8, '\0');
  std::string ext = std::string("\xc7", 1) + static_cast<char>(payload.size()) + "\x01" + payload;
  check("tb.msgpack", std::string("\x81\xa1w", 3) + ext);
}

// ---------------------------------------------------------------------------------------
// zarr / Orbax (per-array directories, zarr v2)

class HostileOrbax : public Hostile {
 protected:
  std::string copy_fixture_hostile() {
    const std::string d = tmp / "ckpt";
    fs::copy(fixture("orbax_plain_zarr2/ckpt"), d, fs::copy_options::recursive);
    return d;
  }
  void check_dir(const std::string& d, const std::string& file_mentioned, const Expect& x = {}) {
    expect_clean_rejection({"convert", d, tmp / "out.safetensors", "--max-memory", "64MiB", "--drop-non-tensors"}, file_mentioned, x);
    EXPECT_FALSE(fs::exists(tmp / "out.safetensors"));
  }
};

TEST_F(HostileOrbax, ZarrShapeWhoseByteSizeOverflows) {
  auto d = copy_fixture_hostile();
  test::write_file(d + "/big/.zarray",
                   R"({"chunks":[256,384],"compressor":{"id":"zstd","level":1},"dimension_separator":".","dtype":"<f8","fill_value":null,"filters":null,"order":"C","shape":[4611686018427387904,4611686018427387904],"zarr_format":2})");
  check_dir(d, "big");
}

TEST_F(HostileOrbax, ZarrChunkOfTerabytes) {
  auto d = copy_fixture_hostile();
  test::write_file(d + "/big/.zarray",
                   R"({"chunks":[1048576,1048576],"compressor":{"id":"zstd","level":1},"dimension_separator":".","dtype":"<f4","fill_value":null,"filters":null,"order":"C","shape":[1048576,1048576],"zarr_format":2})");
  check_dir(d, "big");
}

TEST_F(HostileOrbax, ZstdFrameDeclaringTerabytes) {
  auto d = copy_fixture_hostile();
  // A 20-byte zstd frame header whose Frame_Content_Size says 4 TiB, followed by one empty raw block.
  std::string f = le(0xFD2FB528u, 4) + std::string("\xe0", 1) + le(4ull << 40, 8) + std::string("\x01\x00\x00", 3);
  test::write_file(d + "/big/0.0", f);
  check_dir(d, "0.0", {"zstd frame declares 4398046511104 decoded bytes"});
}

TEST_F(HostileOrbax, ZstdFrameWithoutContentSizeThatExpandsHugely) {
  auto d = copy_fixture_hostile();
  // 256 MiB of zeros, streamed with no pledged size: a ~10 KB frame with no content size.
  ZSTD_CCtx* c = ZSTD_createCCtx();
  ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, 1);
  ZSTD_CCtx_setParameter(c, ZSTD_c_contentSizeFlag, 0);
  std::string zeros(1 << 20, '\0'), out, buf(ZSTD_CStreamOutSize(), '\0');
  for (int i = 0; i < 256; ++i) {
    ZSTD_inBuffer in{zeros.data(), zeros.size(), 0};
    const auto mode = i == 255 ? ZSTD_e_end : ZSTD_e_continue;
    std::size_t left;
    do {
      ZSTD_outBuffer ob{buf.data(), buf.size(), 0};
      left = ZSTD_compressStream2(c, &ob, &in, mode);
      out.append(buf.data(), ob.pos);
    } while (mode == ZSTD_e_end ? left != 0 : in.pos < in.size);
  }
  ZSTD_freeCCtx(c);
  ASSERT_EQ(ZSTD_getFrameContentSize(out.data(), out.size()), ZSTD_CONTENTSIZE_UNKNOWN);
  test::write_file(d + "/big/0.0", out);
  check_dir(d, "0.0", {"more than the"});
}

TEST_F(HostileOrbax, DeepJsonInMetadata) {
  auto d = copy_fixture_hostile();
  test::write_file(d + "/_METADATA", "{\"tree_metadata\":" + std::string(100000, '[') + std::string(100000, ']') + "}");
  check_dir(d, "_METADATA");
  test::write_file(d + "/_METADATA", test::read_file(fixture("orbax_plain_zarr2/ckpt/_METADATA")));
  test::write_file(d + "/big/.zarray", "{\"shape\":" + std::string(100000, '[') + std::string(100000, ']') + "}");
  check_dir(d, ".zarray");
}

// ---------------------------------------------------------------------------------------
// Recipes

TEST_F(Hostile, DeepRecipe) {
  std::string r;
  for (int i = 0; i < 100000; ++i) r += "{\"stages\":[";
  r += "{\"rules\":[]}";
  for (int i = 0; i < 100000; ++i) r += "]}";
  test::write_file(tmp / "deep_recipe.json", r);
  expect_clean_rejection({"plan", fixture("safetensors_single/model.safetensors"), "--recipe", tmp / "deep_recipe.json"},
                         tmp / "deep_recipe.json");
  test::write_file(tmp / "bad_recipe.json", "{\"rules\": [");
  expect_clean_rejection({"plan", fixture("safetensors_single/model.safetensors"), "--recipe", tmp / "bad_recipe.json"},
                         tmp / "bad_recipe.json");
}

}  // namespace
}  // namespace ckb
