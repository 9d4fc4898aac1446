// Reading real torch.save fixtures (zip, legacy, nested training dict): every tensor must
// match the manifest written by torch itself (names, dtypes, shapes, sha256), tied weights
// must share one storage, views must read through offsets/strides, non-tensor leaves must
// keep their values and types, and detection must be content-based and never throw.
#include <cstring>

#include "core/errors.h"
#include "core/hash.h"
#include "formats/format.h"
#include "test_util.h"

namespace ckb {
namespace {

const Tensor& tensor_at(const Checkpoint& ck, const std::string& name) {
  const Node* n = find_path(ck.root, name);
  if (!n || !n->is_tensor()) throw std::runtime_error("no tensor " + name);
  return n->tensor();
}

class TorchFixtures : public ::testing::TestWithParam<std::string> {};

TEST_P(TorchFixtures, MatchesManifest) {
  const std::string dir = GetParam();
  std::string file = test::fixture(dir + (dir == "torch_with_extras" ? "/checkpoint.pt" : "/model.pt"));
  Checkpoint ck = read_checkpoint(file);
  EXPECT_EQ(ck.format, "torch");
  test::expect_matches_manifest(ck, test::load_json(test::fixture(dir + "/manifest.json")));
}

INSTANTIATE_TEST_SUITE_P(Torch, TorchFixtures, ::testing::Values("torch_zip", "torch_legacy", "torch_with_extras"));

// zero_copy: the legacy format hands out pointers into the mapping; zip storage records are
// read by range through the CRC-32 verifying source (io/zip.h), so there the sharing is
// checked on the bytes.
void expect_shared_storages(const std::string& file, bool zero_copy) {
  Checkpoint ck = read_checkpoint(file);
  const Tensor& embed = tensor_at(ck, "embed.weight");
  const Tensor& head = tensor_at(ck, "lm_head.weight");
  const Tensor& embed_t = tensor_at(ck, "embed_t");
  const Tensor& big = tensor_at(ck, "big");
  const Tensor& rows = tensor_at(ck, "big_rows_2_to_5");
  if (zero_copy) {
    // Tied weights: the very same mapped bytes, not a copy.
    ASSERT_NE(embed.source->contiguous(), nullptr);
    EXPECT_EQ(embed.source->contiguous(), head.source->contiguous());
    // A row slice: same storage, 2 rows of 384 float32 further on.
    ASSERT_NE(big.source->contiguous(), nullptr);
    EXPECT_EQ(rows.source->contiguous(), big.source->contiguous() + 2 * 384 * 4);
  } else {
    for (const Tensor* t : {&embed, &head, &big, &rows}) EXPECT_EQ(t->source->contiguous(), nullptr);
    Bytes a = embed.read_all(), b = head.read_all(), whole = big.read_all(), part = rows.read_all();
    ASSERT_EQ(a.size(), b.size());
    EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size()), 0);
    ASSERT_EQ(part.size(), 3u * 384 * 4);  // rows 2, 3, 4
    EXPECT_EQ(std::memcmp(part.data(), whole.data() + 2 * 384 * 4, part.size()), 0);
  }
  // The transpose is a strided view of the embedding storage: element (j, i) == embed(i, j).
  EXPECT_EQ(embed_t.source->contiguous(), nullptr);
  EXPECT_EQ(embed_t.info.shape, (Shape{16, 64}));
  Bytes e = embed.read_all(), t = embed_t.read_all();
  const float* ep = reinterpret_cast<const float*>(e.data());
  const float* tp = reinterpret_cast<const float*>(t.data());
  int mismatches = 0;
  for (int i = 0; i < 64; ++i)
    for (int j = 0; j < 16; ++j) mismatches += std::memcmp(&tp[j * 64 + i], &ep[i * 16 + j], 4) != 0;
  EXPECT_EQ(mismatches, 0);
}

TEST(TorchRead, ZipTiedWeightsShareOneStorage) { expect_shared_storages(test::fixture("torch_zip/model.pt"), false); }
TEST(TorchRead, LegacyTiedWeightsShareOneStorage) { expect_shared_storages(test::fixture("torch_legacy/model.pt"), true); }

TEST(TorchRead, ZipKeepsStateDictOrderAndKinds) {
  Checkpoint ck = read_checkpoint(test::fixture("torch_zip/model.pt"));
  EXPECT_EQ(ck.root.attrs.at("torch.type"), "OrderedDict");
  EXPECT_EQ(ck.metadata.at("torch.archive"), "model");
  ASSERT_EQ(ck.root.size(), 19u);
  EXPECT_EQ(ck.root.container().children.front().key, "embed.weight");
  EXPECT_EQ(ck.root.container().children[1].key, "layers.0.attn.q.kernel");
  // bf16 specials read raw: 9 values, 18 bytes.
  EXPECT_EQ(tensor_at(ck, "bf16_specials").info.dtype, DType::BF16);
  EXPECT_EQ(tensor_at(ck, "bf16_specials").info.nbytes(), 18u);
  EXPECT_EQ(tensor_at(ck, "empty").info.shape, (Shape{0, 4}));
}

TEST(TorchRead, ExtrasNonTensorLeaves) {
  Checkpoint ck = read_checkpoint(test::fixture("torch_with_extras/checkpoint.pt"));
  auto manifest = test::load_json(test::fixture("torch_with_extras/manifest.json"));
  EXPECT_EQ(ck.root.attrs.at("torch.type"), "dict");
  std::vector<std::string> seen;
  visit_leaves(ck.root, [&](const Path& p, const Node& n) { seen.push_back(join_path(p) + ":" + std::string(n.type_name())); });
  EXPECT_EQ(seen, (std::vector<std::string>{"model/w:tensor", "epoch:int", "lr:float", "name:string", "sizes/0:int",
                                            "sizes/1:int", "sizes/2:int"}));
  const auto& want = manifest.at("non_tensor_leaves");
  EXPECT_EQ(std::get<std::int64_t>(find_path(ck.root, "epoch")->value()), want.at("epoch").get<std::int64_t>());
  EXPECT_EQ(std::get<double>(find_path(ck.root, "lr")->value()), want.at("lr").get<double>());
  EXPECT_EQ(std::get<std::string>(find_path(ck.root, "name")->value()), want.at("name").get<std::string>());
  const Node* sizes = find_path(ck.root, "sizes");
  ASSERT_NE(sizes, nullptr);
  EXPECT_EQ(sizes->container().kind, ContainerKind::Tuple);
  for (int i = 0; i < 3; ++i)
    EXPECT_EQ(std::get<std::int64_t>(find_path(ck.root, "sizes/" + std::to_string(i))->value()),
              want.at("sizes").at(i).get<std::int64_t>());
  EXPECT_EQ(find_path(ck.root, "model")->attrs.at("torch.type"), "dict");
}

TEST(TorchRead, DetectionIsByContentAndNeverThrows) {
  const Format& torch = format_by_name("torch");
  EXPECT_TRUE(torch.detect(test::fixture("torch_zip/model.pt")));
  EXPECT_TRUE(torch.detect(test::fixture("torch_legacy/model.pt")));
  EXPECT_TRUE(torch.detect(test::fixture("torch_with_extras/checkpoint.pt")));
  EXPECT_FALSE(torch.detect(test::fixture("npz/arrays.npz")));
  EXPECT_FALSE(torch.detect(test::fixture("npz/arrays_compressed.npz")));
  EXPECT_FALSE(torch.detect(test::fixture("npz/big.npy")));
  EXPECT_FALSE(torch.detect(test::fixture("torch_zip/manifest.json")));
  EXPECT_FALSE(torch.detect(test::fixture("torch_zip")));
  EXPECT_FALSE(torch.detect("/nonexistent/file.pt"));
  test::TempDir dir;
  test::write_file(dir / "empty.pt", "");
  EXPECT_FALSE(torch.detect(dir / "empty.pt"));
  test::write_file(dir / "pk.pt", "PK\x03\x04garbage");
  EXPECT_FALSE(torch.detect(dir / "pk.pt"));
  EXPECT_EQ(detect_format(test::fixture("torch_legacy/model.pt")).name, "torch");
}

}  // namespace
}  // namespace ckb
