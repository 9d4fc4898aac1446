// .npz archives written by NumPy with non-numeric members (tests/data/npz_cases, made by
// tools/make_npz_cases.py): Unicode and bytes arrays become string / bytes leaves (0-d: one
// leaf, N-d: nested Lists in C order), exactly as np.load returns them (expected.json is
// NumPy's output); an object array is refused by name; every member error names the member.
#include <cstring>

#include "core/errors.h"
#include "core/hash.h"
#include "formats/format.h"
#include "formats/numpy/npy.h"
#include "io/file.h"
#include "test_util.h"

namespace ckb {
namespace {

using nlohmann::json;
using test::error_of;

std::string cases(const std::string& rel) { return test::data_path("npz_cases/" + rel); }

std::string hex_of(const std::string& s) {
  static const char* d = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s) {
    out += d[c >> 4];
    out += d[c & 15];
  }
  return out;
}

// A string/bytes subtree as NumPy's .tolist() shows it (bytes as hex).
json as_json(const Node& n) {
  if (n.is_container()) {
    EXPECT_EQ(n.type_name(), "list");
    json a = json::array();
    for (const auto& ch : n.container().children) a.push_back(as_json(*ch.node));
    return a;
  }
  if (const auto* s = std::get_if<std::string>(&n.value())) return *s;
  if (const auto* b = std::get_if<RawBytes>(&n.value())) return hex_of(b->data);
  ADD_FAILURE() << "unexpected leaf type " << n.type_name();
  return nullptr;
}

void expect_matches_numpy(const std::string& file) {
  const json want = test::load_json(cases("expected.json"))["members"];
  Checkpoint ck = read_checkpoint(file);
  EXPECT_EQ(ck.format, "npz");
  std::size_t members = 0;
  for (const auto& [name, w] : want.items()) {
    if (name.rfind("__", 0) == 0) continue;
    ++members;
    const Node* n = ck.root.find(name);
    ASSERT_NE(n, nullptr) << name;
    if (w["kind"] == "tensor") {
      ASSERT_TRUE(n->is_tensor()) << name;
      EXPECT_EQ(tensor_sha256(n->tensor()), w["sha256"]) << name;
      EXPECT_EQ(n->tensor().info.shape, w["shape"].get<Shape>()) << name;
      continue;
    }
    EXPECT_EQ(as_json(*n), w["value"]) << file << ": " << name;
    // A 0-d array is one leaf of the element's type; an N-d one a List.
    if (w["shape"].empty()) {
      EXPECT_EQ(n->type_name(), w["kind"] == "str" ? "string" : "bytes") << name;
    }
  }
  EXPECT_EQ(ck.root.size(), members);
  EXPECT_EQ(members, 11u);
}

TEST(NpzStrings, StoredMembersMatchNumPy) { expect_matches_numpy(cases("strings.npz")); }
TEST(NpzStrings, DeflatedMembersMatchNumPy) { expect_matches_numpy(cases("strings_compressed.npz")); }

TEST(NpzStrings, ObjectMemberIsRefusedByName) {
  const std::string path = cases("objects.npz");
  EXPECT_EQ(detect_format(path).name, "npz");
  const std::string msg = error_of([&] { read_checkpoint(path); });
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find("member 'meta.npy' holds Python objects (dtype object); ckptbridge does not unpickle"),
            std::string::npos)
      << msg;
  auto r = test::run_cli("inspect " + path);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("member 'meta.npy' holds Python objects"), std::string::npos) << r.err;
}

TEST(NpzStrings, ConvertRefusesStringLeavesUnlessDropped) {
  test::TempDir dir;
  // safetensors holds tensors only: like any other non-tensor leaf, strings need --drop-non-tensors.
  auto r = test::run_cli("convert " + cases("strings.npz") + " " + dir / "a.safetensors");
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("--drop-non-tensors"), std::string::npos) << r.err;
  EXPECT_FALSE(path_exists(dir / "a.safetensors"));
  r = test::run_cli("convert " + cases("strings.npz") + " " + dir / "b.safetensors --drop-non-tensors --report " +
                    dir / "r.json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  Checkpoint out = read_checkpoint(dir / "b.safetensors");
  ASSERT_EQ(out.root.size(), 1u);
  const json want = test::load_json(cases("expected.json"))["members"]["weights"];
  EXPECT_EQ(tensor_sha256(out.root.find("weights")->tensor()), want["sha256"]);
  const json report = test::load_json(dir / "r.json");
  std::vector<std::string> dropped;
  for (const auto& d : report["dropped_leaves"]) dropped.push_back(d["name"]);
  EXPECT_NE(std::find(dropped.begin(), dropped.end(), "greeting (string)"), dropped.end());
  EXPECT_NE(std::find(dropped.begin(), dropped.end(), "raw_scalar (bytes)"), dropped.end());
  EXPECT_NE(std::find(dropped.begin(), dropped.end(), "grid/1/2 (string)"), dropped.end());
}

TEST(NpzStrings, HeaderErrorsNameTheMember) {
  test::TempDir dir;
  std::string z = test::read_file(cases("strings.npz"));
  // Turn names.npy's descr '<U3' into '<Q3' (no such dtype): a stored member, absolute offset.
  const std::size_t at = z.find("'<U3'", z.find("names.npy"));
  ASSERT_NE(at, std::string::npos);
  z[at + 2] = 'Q';
  test::write_file(dir / "bad.npz", z);
  const std::string msg = error_of([&] { read_checkpoint(dir / "bad.npz"); });
  EXPECT_NE(msg.find(dir / "bad.npz"), std::string::npos) << msg;
  EXPECT_NE(msg.find("npz member 'names.npy': unsupported .npy dtype '<Q3'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("(offset "), std::string::npos) << msg;
}

}  // namespace
}  // namespace ckb
