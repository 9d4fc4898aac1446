// Unit tests for the core tree model and strided views.
#include <cstring>

#include "core/errors.h"
#include "core/hash.h"
#include "core/tree.h"
#include "test_util.h"

namespace ckb {
namespace {

Tensor f32_tensor(std::vector<float> v, Shape shape) {
  Bytes b(v.size() * 4);
  std::memcpy(b.data(), v.data(), b.size());
  return make_memory_tensor({DType::F32, std::move(shape)}, std::move(b));
}

TEST(Tree, PathsKeepOrderAndKinds) {
  Node root = Node::dict();
  auto& model = root.add("model", Node::dict());
  model.add("w", Node::tensor(f32_tensor({1, 2}, {2})));
  auto& sizes = root.add("sizes", Node::list());
  sizes.append(Node(std::int64_t{1}));
  sizes.append(Node(std::int64_t{2}));
  root.add("empty", Node::dict());
  root.add("nothing", Node::none());
  std::vector<std::string> seen;
  visit_leaves(root, [&](const Path& p, const Node& n) { seen.push_back(join_path(p) + ":" + std::string(n.type_name())); });
  EXPECT_EQ(seen, (std::vector<std::string>{"model/w:tensor", "sizes/0:int", "sizes/1:int", "empty:dict", "nothing:none"}));
  ASSERT_NE(find_path(root, "sizes/1"), nullptr);
  EXPECT_EQ(std::get<std::int64_t>(find_path(root, "sizes/1")->value()), 2);
  EXPECT_THROW(root.add("model", Node::dict()), FormatError);
  Node copy = root;  // deep copy
  copy.find("sizes")->append(Node(std::int64_t{3}));
  EXPECT_EQ(root.find("sizes")->size(), 2u);
}

TEST(StridedSource, TransposedViewReadsCOrder) {
  // base 2x3 row-major: 0 1 2 / 3 4 5 ; transposed view 3x2 strides (1,3)
  auto base = f32_tensor({0, 1, 2, 3, 4, 5}, {6});
  StridedSource view(base.source, 24, DType::F32, {3, 2}, {1, 3}, 0, "t");
  std::vector<float> out(6);
  view.read(0, std::as_writable_bytes(std::span(out)));
  EXPECT_EQ(out, (std::vector<float>{0, 3, 1, 4, 2, 5}));
  EXPECT_EQ(view.contiguous(), nullptr);
  // partial read starting mid-tensor
  std::vector<float> part(3);
  view.read(8, std::as_writable_bytes(std::span(part)));
  EXPECT_EQ(part, (std::vector<float>{1, 4, 2}));
}

TEST(StridedSource, OutOfRangeViewIsRejected) {
  auto base = f32_tensor({0, 1, 2, 3}, {4});
  EXPECT_THROW(StridedSource(base.source, 16, DType::F32, {2, 2}, {2, 1}, 1, "v"), FormatError);
  EXPECT_NO_THROW(StridedSource(base.source, 16, DType::F32, {2}, {2}, 1, "v"));
}

TEST(Hash, Sha256OfEmptyAndAbc) {
  EXPECT_EQ(sha256_hex({}), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  std::string abc = "abc";
  EXPECT_EQ(sha256_hex(std::as_bytes(std::span(abc.data(), 3))),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

}  // namespace
}  // namespace ckb
