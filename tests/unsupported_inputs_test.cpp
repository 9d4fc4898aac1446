// Inputs ckptbridge cannot read get a message that says what they are: sparse and quantized
// torch tensors (real torch.save files from tools/gen_strict_torch.py, plus hand-built
// pickles for the layout/qscheme globals of other torch versions), Git LFS pointer files in
// place of a checkpoint, and paths that do not exist. Exit 2, the path named, nothing executed.
#include <filesystem>

#include "core/errors.h"
#include "formats/format.h"
#include "io/lfs_pointer.h"
#include "io/output.h"
#include "io/zip.h"
#include "test_util.h"

namespace ckb {
namespace {

#define EXPECT_HAS(hay, needle) EXPECT_NE((hay).find(needle), std::string::npos) << (hay)

std::string strict(const std::string& rel) { return test::data_path("strict/" + rel); }

TEST(UnsupportedTorch, RealSparseAndQuantizedFilesNameTheTensor) {
  struct Case {
    const char* file;
    const char* message;
  };
  const Case cases[] = {
      {"sparse_coo.pt", "'layer/w': sparse tensors are not supported"},
      {"sparse_coo_legacy.pt", "'layer/w': sparse tensors are not supported"},
      {"sparse_csr.pt", "'w': sparse tensors are not supported"},
      {"quant_per_tensor.pt", "'q': quantized tensors are not supported"},
      {"quant_per_channel.pt", "'qc': quantized tensors are not supported"},
  };
  for (const auto& c : cases) {
    const std::string p = strict(c.file);
    auto r = test::run_cli("inspect " + p);
    EXPECT_EQ(r.exit_code, 2) << c.file << r.err;
    EXPECT_HAS(r.err, p + ": " + c.message);
    EXPECT_EQ(r.err.find("refusing GLOBAL"), std::string::npos) << r.err;
    EXPECT_EQ(r.err.find("execute code"), std::string::npos) << r.err;
  }
}

// Pickle bytes: GLOBAL, short unicode.
std::string glob_one(const std::string& m, const std::string& n) { return "c" + m + "\n" + n + "\n"; }
std::string unsupported_case(const std::string& s) { return "X" + std::string{static_cast<char>(s.size()), 0, 0, 0} + s; }

std::string torch_zip(const test::TempDir& d, const std::string& name, const std::string& pkl) {
  const std::string p = d / name;
  const std::pair<std::string, std::string> all[] = {{"archive/data.pkl", pkl}, {"archive/version", "3\n"}};
  AtomicFile out(p);
  std::vector<ZipWriter::Member> ms;
  for (const auto& [n, data] : all) ms.push_back({n, data.size()});
  ZipWriter zw(out, ms, 64, false);
  for (std::size_t i = 0; i < 2; ++i) zw.write(i, 0, std::as_bytes(std::span(all[i].second.data(), all[i].second.size())));
  zw.finish();
  out.commit();
  return p;
}

TEST(UnsupportedTorch, LayoutAndQSchemeGlobalsOfOtherTorchVersions) {
  test::TempDir d;
  const std::string proto = "\x80\x02";
  // {'s': _rebuild_sparse_tensor(torch.sparse_coo, ())} with the layout as a bare GLOBAL.
  const std::string sparse = proto + "}" + unsupported_case("s") + glob_one("torch._utils", "_rebuild_sparse_tensor") +
                             glob_one("torch", "sparse_coo") + ")" + "\x86" + "R" + "s.";
  auto r = test::run_cli("inspect " + torch_zip(d, "s.pt", sparse));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_HAS(r.err, "s.pt: 's': sparse tensors are not supported");
  // A bare qscheme value: not a checkpoint value, and said so without "execute code".
  const std::string qs = proto + "}" + unsupported_case("q") + glob_one("torch", "per_channel_symmetric") + "s.";
  r = test::run_cli("inspect " + torch_zip(d, "q.pt", qs));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_HAS(r.err, "q.pt: 'q': ");
  EXPECT_HAS(r.err, "torch.per_channel_symmetric");
  EXPECT_EQ(r.err.find("execute code"), std::string::npos) << r.err;
  // A quantized dtype object.
  const std::string qd = proto + "}" + unsupported_case("d") + glob_one("torch._utils", "_rebuild_qtensor") + glob_one("torch", "qint8") +
                         "\x85" + "R" + "s.";
  r = test::run_cli("inspect " + torch_zip(d, "d.pt", qd));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_HAS(r.err, "d.pt: 'd': quantized tensors are not supported");
  // Code-execution globals are still refused as such.
  const std::string evil = proto + "}" + unsupported_case("e") + glob_one("os", "system") + "s.";
  r = test::run_cli("inspect " + torch_zip(d, "e.pt", evil));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_HAS(r.err, "refusing GLOBAL 'os.system'");
}

const std::string kPointer =
    "version https://git-lfs.github.com/spec/v1\n"
    "oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\n"
    "size 12345\n";

TEST(LfsPointer, Parses) {
  auto p = parse_lfs_pointer(std::as_bytes(std::span(kPointer.data(), kPointer.size())));
  ASSERT_TRUE(p);
  EXPECT_EQ(p->oid, "sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393");
  EXPECT_EQ(p->size, "12345");
  const std::string no_size = kPointer.substr(0, kPointer.rfind("size"));
  EXPECT_FALSE(parse_lfs_pointer(std::as_bytes(std::span(no_size.data(), no_size.size()))));
  const std::string other = "version 1\n";
  EXPECT_FALSE(parse_lfs_pointer(std::as_bytes(std::span(other.data(), other.size()))));
}

TEST(LfsPointer, GivenAsACheckpoint) {
  test::TempDir d;
  const std::string msg =
      "a Git LFS pointer (oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393, size 12345), "
      "not the file itself: run `git lfs pull`";
  test::write_file(d / "model.safetensors", kPointer);
  auto r = test::run_cli("inspect " + d / "model.safetensors");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_HAS(r.err, d / "model.safetensors: " + msg);
  r = test::run_cli("convert " + d / "model.safetensors" + " " + d / "o.npz");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_HAS(r.err, msg);
  EXPECT_FALSE(std::filesystem::exists(d / "o.npz"));
  // A directory of pointers (a clone without git-lfs).
  std::filesystem::create_directories(d / "repo");
  test::write_file(d / "repo/pytorch_model.bin", kPointer);
  test::write_file(d / "repo/config.json", "{}");
  r = test::run_cli("inspect " + d / "repo");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_HAS(r.err, d / "repo: holds Git LFS pointers instead of the files (" + d / "repo/pytorch_model.bin is " + msg);
  // A sharded safetensors set whose shards are pointers: the shard is named.
  std::filesystem::create_directories(d / "sh");
  test::write_file(d / "sh/model.safetensors.index.json", R"({"weight_map":{"w":"model-00001-of-00001.safetensors"}})");
  test::write_file(d / "sh/model-00001-of-00001.safetensors", kPointer);
  r = test::run_cli("inspect " + d / "sh");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_HAS(r.err, d / "sh/model-00001-of-00001.safetensors: " + msg);
}

TEST(MissingPath, IsNotCalledAnUnknownFormat) {
  test::TempDir d;
  const std::string p = d / "no/such/model.safetensors";
  auto r = test::run_cli("inspect " + p);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_HAS(r.err, p + ": no such file or directory");
  EXPECT_EQ(r.err.find("not a checkpoint format"), std::string::npos) << r.err;
  r = test::run_cli("convert " + d / "missing.pt" + " " + d / "o.safetensors");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_HAS(r.err, d / "missing.pt: no such file or directory");
  // An existing file of no known format keeps the old message.
  test::write_file(d / "junk.bin", "just some text\n");
  r = test::run_cli("inspect " + d / "junk.bin");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_HAS(r.err, d / "junk.bin: not a checkpoint format ckptbridge recognises");
}

}  // namespace
}  // namespace ckb
