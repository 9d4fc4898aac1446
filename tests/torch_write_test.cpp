// The torch writer: every fixture survives read -> write -> read with identical tensor
// bytes (sha256 against torch's own manifest), identical non-tensor leaves and container
// kinds; the zip layout is what torch.load expects (records, 64-byte alignment, version);
// data.pkl uses only opcodes on torch's weights-only allowlist; new dtypes go through
// _rebuild_tensor_v3 + UntypedStorage; output is deterministic and atomic.
#include <cstring>
#include <filesystem>
#include <set>

#include "core/errors.h"
#include "core/hash.h"
#include "formats/format.h"
#include "io/zip.h"
#include "test_util.h"
#include "torch_samples.h"

namespace ckb {
namespace {

using test::all_kinds_checkpoint;
using test::fixture_file;


// Leaves and empty containers with their values, for exact tree comparison.
std::vector<std::string> describe_tree(const Node& root) {
  std::vector<std::string> out;
  visit_leaves(root, [&](const Path& p, const Node& n) {
    std::string s = join_path(p) + ":" + std::string(n.type_name()) + "=";
    std::visit(
        [&](const auto& v) {
          using T = std::decay_t<decltype(v)>;
          if constexpr (std::is_same_v<T, Tensor>) s += std::string(dtype_name(v.info.dtype)) + shape_str(v.info.shape) + tensor_sha256(v);
          else if constexpr (std::is_same_v<T, bool>) s += v ? "True" : "False";
          else if constexpr (std::is_same_v<T, std::int64_t>) s += std::to_string(v);
          else if constexpr (std::is_same_v<T, double>) {
            char buf[32];
            std::snprintf(buf, sizeof buf, "%a", v);
            s += buf;
          } else if constexpr (std::is_same_v<T, std::string>) s += v;
          else if constexpr (std::is_same_v<T, RawBytes>) s += "b'" + v.data + "'";
        },
        n.value());
    for (const auto& [k, v] : n.attrs) s += " " + k + "=" + v;
    out.push_back(s);
  });
  // Container kinds along the way.
  std::function<void(const Node&, const std::string&)> walk = [&](const Node& n, const std::string& at) {
    if (!n.is_container()) return;
    std::string s = at + "<" + std::string(n.type_name()) + ">";
    for (const auto& [k, v] : n.attrs) s += " " + k + "=" + v;
    out.push_back(s);
    for (const auto& c : n.container().children) walk(*c.node, at + "/" + c.key);
  };
  walk(root, "");
  return out;
}

// Walks a protocol-2 pickle and returns the opcode names it uses; fails on anything the
// writer must not emit.
std::set<std::string> opcodes_of(const std::string& p) {
  std::set<std::string> ops;
  std::size_t i = 0;
  auto u32 = [&](std::size_t at) {
    std::uint32_t v;
    std::memcpy(&v, p.data() + at, 4);
    return v;
  };
  while (i < p.size()) {
    auto op = static_cast<unsigned char>(p[i++]);
    switch (op) {
      case 0x80: ops.insert("PROTO"); i += 1; break;
      case '.': ops.insert("STOP"); return ops;
      case 'c': {
        ops.insert("GLOBAL");
        i = p.find('\n', i) + 1;
        i = p.find('\n', i) + 1;
        break;
      }
      case '(': ops.insert("MARK"); break;
      case 't': ops.insert("TUPLE"); break;
      case ')': ops.insert("EMPTY_TUPLE"); break;
      case 0x85: case 0x86: case 0x87: ops.insert("TUPLE1-3"); break;
      case 'X': ops.insert("BINUNICODE"); i += 4 + u32(i); break;
      case 'K': ops.insert("BININT1"); i += 1; break;
      case 'M': ops.insert("BININT2"); i += 2; break;
      case 'J': ops.insert("BININT"); i += 4; break;
      case 0x8a: ops.insert("LONG1"); i += 1 + static_cast<unsigned char>(p[i]); break;
      case 0x88: ops.insert("NEWTRUE"); break;
      case 0x89: ops.insert("NEWFALSE"); break;
      case 'R': ops.insert("REDUCE"); break;
      case 'Q': ops.insert("BINPERSID"); break;
      case 'u': ops.insert("SETITEMS"); break;
      case '}': ops.insert("EMPTY_DICT"); break;
      case ']': ops.insert("EMPTY_LIST"); break;
      case 'e': ops.insert("APPENDS"); break;
      case 'N': ops.insert("NONE"); break;
      case 'G': ops.insert("BINFLOAT"); i += 8; break;
      default: ADD_FAILURE() << "writer emitted opcode " << int(op) << " at " << i - 1; return ops;
    }
  }
  ADD_FAILURE() << "no STOP";
  return ops;
}

std::string record(const ZipReader& zr, const std::string& name) {
  const ZipEntry* e = zr.find(name);
  if (!e) return "<missing " + name + ">";
  Bytes b = zr.read(*e);
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

class TorchRoundTrip : public ::testing::TestWithParam<std::string> {};

TEST_P(TorchRoundTrip, WriteThenReadIsIdentical) {
  const std::string dir = GetParam();
  Checkpoint in = read_checkpoint(fixture_file(dir));
  test::TempDir tmp;
  const std::string out = tmp / "round.pt";
  write_checkpoint(in, out, format_by_name("torch"), {}, 3);
  Checkpoint back = read_checkpoint(out);
  EXPECT_EQ(back.format, "torch");
  test::expect_matches_manifest(back, test::load_json(test::fixture(dir + "/manifest.json")));
  EXPECT_EQ(describe_tree(back.root), describe_tree(in.root));

  // Layout torch.load needs.
  ZipReader zr(MappedFile::open(out));
  const auto tensors = tensor_list(in.root);
  ASSERT_EQ(zr.entries().size(), tensors.size() + 5);
  EXPECT_EQ(zr.entries().front().name, "round/data.pkl");
  EXPECT_EQ(record(zr, "round/version"), "3\n");
  EXPECT_EQ(record(zr, "round/byteorder"), "little");
  EXPECT_EQ(record(zr, "round/.format_version"), "1");
  EXPECT_EQ(record(zr, "round/.storage_alignment"), "64");
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const ZipEntry* e = zr.find("round/data/" + std::to_string(i));
    ASSERT_NE(e, nullptr);
    EXPECT_EQ(e->uncompressed_size, tensors[i].second->info.nbytes()) << tensors[i].first;
    EXPECT_EQ(e->data_offset % 64, 0u);
    EXPECT_EQ(sha256_hex(zr.stored_bytes(*e)), tensor_sha256(*tensors[i].second)) << tensors[i].first;
  }
  const auto ops = opcodes_of(record(zr, "round/data.pkl"));
  EXPECT_TRUE(ops.count("BINPERSID"));
  EXPECT_FALSE(ops.count("BINGET"));

  // Deterministic and idempotent: writing the read-back tree again (one thread, same
  // archive name) gives the very same bytes.
  std::filesystem::create_directory(tmp / "again");
  write_checkpoint(back, tmp / "again/round.pt", format_by_name("torch"), {}, 1);
  EXPECT_EQ(test::read_file(tmp / "again/round.pt"), test::read_file(out));
}

INSTANTIATE_TEST_SUITE_P(Torch, TorchRoundTrip, ::testing::Values("torch_zip", "torch_legacy", "torch_with_extras"));


TEST(TorchWrite, NewDTypesParametersAndExtrasRoundTrip) {
  Checkpoint ck = all_kinds_checkpoint();
  test::TempDir tmp;
  write_checkpoint(ck, tmp / "new.pt", format_by_name("torch"), {}, 2);
  Checkpoint back = read_checkpoint(tmp / "new.pt");
  // The writer sets the root's dict kind explicitly on read-back; otherwise identical.
  ck.root.attrs["torch.type"] = "OrderedDict";
  std::function<void(Node&)> mark_dicts = [&](Node& n) {
    if (!n.is_container()) return;
    if (n.container().kind == ContainerKind::Dict && !n.attrs.count("torch.type")) n.attrs["torch.type"] = "dict";
    for (auto& c : n.container().children) mark_dicts(*c.node);
  };
  mark_dicts(ck.root);
  EXPECT_EQ(describe_tree(back.root), describe_tree(ck.root));

  ZipReader zr(MappedFile::open(tmp / "new.pt"));
  const std::string pkl = record(zr, "new/data.pkl");
  EXPECT_NE(pkl.find("ctorch._utils\n_rebuild_tensor_v3\n"), std::string::npos);
  EXPECT_NE(pkl.find("ctorch.storage\nUntypedStorage\n"), std::string::npos);
  EXPECT_NE(pkl.find("ctorch\nfloat8_e4m3fn\n"), std::string::npos);
  EXPECT_NE(pkl.find("ctorch\nfloat8_e5m2\n"), std::string::npos);
  EXPECT_NE(pkl.find("ctorch\nuint16\n"), std::string::npos);
  EXPECT_NE(pkl.find("ctorch\nBFloat16Storage\n"), std::string::npos);
  EXPECT_NE(pkl.find("ctorch._utils\n_rebuild_parameter\n"), std::string::npos);
  EXPECT_NE(pkl.find("c_codecs\nencode\n"), std::string::npos);
  const auto ops = opcodes_of(pkl);
  EXPECT_TRUE(ops.count("LONG1"));
  EXPECT_TRUE(ops.count("BINFLOAT"));
}

TEST(TorchWrite, ForcedZip64AndAtomicity) {
  Checkpoint in = read_checkpoint(fixture_file("torch_zip"));
  test::TempDir tmp;
  WriteOptions opts;
  opts.options["zip64"] = "1";
  write_checkpoint(in, tmp / "z64.pt", format_by_name("torch"), opts, 2);
  test::expect_matches_manifest(read_checkpoint(tmp / "z64.pt"), test::load_json(test::fixture("torch_zip/manifest.json")));
  EXPECT_NE(test::read_file(tmp / "z64.pt").find(std::string("PK\x06\x06", 4)), std::string::npos);

  // Nothing appears at the destination before commit, and an abandoned writer leaves nothing.
  {
    auto w = format_by_name("torch").make_writer(tmp / "partial.pt", {});
    w->begin(in.root);
    EXPECT_FALSE(std::filesystem::exists(tmp / "partial.pt"));
  }
  EXPECT_FALSE(std::filesystem::exists(tmp / "partial.pt"));
  std::size_t files = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(tmp.path())) ++files;
  EXPECT_EQ(files, 1u);  // only z64.pt
  // Committing with a tensor missing is refused.
  auto w = format_by_name("torch").make_writer(tmp / "incomplete.pt", {});
  w->begin(in.root);
  EXPECT_THROW(w->commit(), Error);
  EXPECT_FALSE(std::filesystem::exists(tmp / "incomplete.pt"));
}

}  // namespace
}  // namespace ckb
