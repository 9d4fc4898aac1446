// Every tensor op: byte-exactness of layout ops (against an independent index computation),
// shape/dtype checks at build time, einsum and add numerics.
#include <cstring>
#include <numeric>

#include "core/errors.h"
#include "core/hash.h"
#include "test_util.h"
#include "ops/ops.h"

namespace ckb {
namespace {

using test::bytes_of;

Tensor iota(DType dt, Shape shape) {
  TensorInfo info{dt, shape};
  Bytes b(info.nbytes());
  // Distinct byte patterns per element so any misplaced byte is caught.
  for (std::size_t i = 0; i < b.size(); ++i) b.data()[i] = static_cast<std::byte>((i * 7 + i / 251) & 0xff);
  return make_memory_tensor(info, std::move(b), "iota");
}
Tensor f32(std::vector<float> v, Shape shape) {
  Bytes b(v.size() * 4);
  std::memcpy(b.data(), v.data(), b.size());
  return make_memory_tensor({DType::F32, shape}, std::move(b));
}
std::vector<float> floats(const Tensor& t) {
  auto b = t.read_all();
  std::vector<float> v(b.size() / 4);
  std::memcpy(v.data(), b.data(), b.size());
  return v;
}
// Element at a multi-index, read through the tensor's C-order bytes.
std::string elem(const Tensor& t, const std::vector<std::int64_t>& idx) {
  std::uint64_t off = 0;
  for (std::size_t d = 0; d < idx.size(); ++d) off = off * static_cast<std::uint64_t>(t.info.shape[d]) + static_cast<std::uint64_t>(idx[d]);
  std::string out(dtype_size(t.info.dtype), '\0');
  t.source->read(off * out.size(), std::as_writable_bytes(std::span(out.data(), out.size())));
  return out;
}
void for_each_index(const Shape& s, const std::function<void(const std::vector<std::int64_t>&)>& fn) {
  std::vector<std::int64_t> idx(s.size(), 0);
  std::uint64_t n = 1;
  for (auto d : s) n *= static_cast<std::uint64_t>(d);
  for (std::uint64_t k = 0; k < n; ++k) {
    fn(idx);
    for (std::size_t d = s.size(); d-- > 0;) {
      if (++idx[d] < s[d]) break;
      idx[d] = 0;
    }
  }
}

TEST(Ops, ReshapeIsZeroCostAndChecked) {
  auto t = iota(DType::BF16, {2, 3, 4});
  auto r = ops::reshape(t, {6, -1}, "r");
  EXPECT_EQ(r.info.shape, (Shape{6, 4}));
  EXPECT_EQ(r.source, t.source);
  EXPECT_THROW(ops::reshape(t, {5, 5}, "r"), MappingError);
  EXPECT_THROW(ops::reshape(t, {-1, -1}, "r"), MappingError);
}

TEST(Ops, PermuteMovesEveryByte) {
  for (DType dt : {DType::F32, DType::BF16, DType::I64, DType::BOOL}) {
    auto t = iota(dt, {3, 4, 5, 2});
    std::vector<int> perm = {2, 0, 3, 1};
    auto p = ops::permute(t, perm, "p");
    EXPECT_EQ(p.info.shape, (Shape{5, 3, 2, 4}));
    for_each_index(p.info.shape, [&](const std::vector<std::int64_t>& o) {
      std::vector<std::int64_t> in(4);
      for (int i = 0; i < 4; ++i) in[static_cast<std::size_t>(perm[static_cast<std::size_t>(i)])] = o[static_cast<std::size_t>(i)];
      ASSERT_EQ(elem(p, o), elem(t, in));
    });
    // Inverse permutation restores the original bytes exactly.
    auto back = ops::permute(p, {1, 3, 0, 2}, "q");
    EXPECT_EQ(bytes_of(back), bytes_of(t));
  }
  EXPECT_THROW(ops::permute(iota(DType::F32, {2, 2}), {0, 0}, "p"), MappingError);
  EXPECT_THROW(ops::permute(iota(DType::F32, {2, 2}), {0}, "p"), MappingError);
}

TEST(Ops, SliceIndexSplitAreByteExact) {
  auto t = iota(DType::F16, {4, 6, 3});
  auto s = ops::slice(t, 1, 2, 5, "s");
  EXPECT_EQ(s.info.shape, (Shape{4, 3, 3}));
  for_each_index(s.info.shape, [&](const std::vector<std::int64_t>& o) {
    ASSERT_EQ(elem(s, o), elem(t, {o[0], o[1] + 2, o[2]}));
  });
  auto i = ops::index(t, 0, 2, "i");
  EXPECT_EQ(i.info.shape, (Shape{6, 3}));
  EXPECT_NE(i.source->contiguous(), nullptr);  // an outer-axis index of mmap'd data stays zero-copy
  for_each_index(i.info.shape, [&](const std::vector<std::int64_t>& o) { ASSERT_EQ(elem(i, o), elem(t, {2, o[0], o[1]})); });
  auto parts = ops::split(t, -1, 3, "sp");
  ASSERT_EQ(parts.size(), 3u);
  EXPECT_EQ(bytes_of(ops::concat(parts, 2, "c")), bytes_of(t));
  EXPECT_THROW(ops::split(t, 1, 4, "sp"), MappingError);
  EXPECT_THROW(ops::slice(t, 1, 4, 7, "s"), MappingError);
  EXPECT_THROW(ops::index(t, 3, 0, "i"), MappingError);
}

TEST(Ops, StackUnstackRoundTripsScannedLayers) {
  // A scanned stack [layers=5, d, h] on axis 0, and on axis 1 as MaxText scans.
  auto t = iota(DType::BF16, {5, 4, 3});
  for (int axis : {0, 1}) {
    std::vector<Tensor> layers;
    for (std::int64_t l = 0; l < t.info.shape[static_cast<std::size_t>(axis)]; ++l) layers.push_back(ops::index(t, axis, l, "u"));
    auto back = ops::stack(layers, axis, "st");
    EXPECT_EQ(back.info.shape, t.info.shape);
    EXPECT_EQ(bytes_of(back), bytes_of(t)) << axis;
    EXPECT_EQ(tensor_sha256(back), tensor_sha256(t));
  }
  EXPECT_THROW(ops::stack({iota(DType::F32, {2}), iota(DType::F32, {3})}, 0, "st"), MappingError);
  EXPECT_THROW(ops::concat({iota(DType::F32, {2}), iota(DType::BF16, {2})}, 0, "c"), MappingError);
}

TEST(Ops, PartialReadsOfCompositeSourcesMatchWholeReads) {
  auto t = iota(DType::F32, {6, 5, 4});
  auto c = ops::concat({ops::slice(t, 1, 0, 2, "a"), ops::permute(ops::slice(t, 1, 2, 5, "b"), {0, 1, 2}, "p")}, 1, "c");
  auto whole = bytes_of(c);
  std::string pieces(whole.size(), '\0');
  for (std::size_t off = 0; off < whole.size(); off += 52) {
    std::size_t n = std::min<std::size_t>(52, whole.size() - off);
    c.source->read(off, std::as_writable_bytes(std::span(pieces.data() + off, n)));
  }
  EXPECT_EQ(pieces, whole);
  EXPECT_EQ(whole, bytes_of(t));
}

TEST(Ops, AddAndFill) {
  auto a = f32({1, 2, 3}, {3});
  auto b = f32({0.5f, 0.25f, -1}, {3});
  EXPECT_EQ(floats(ops::add(a, b, 2.0, DType::F32, "add")), (std::vector<float>{2, 2.5f, 1}));
  EXPECT_THROW(ops::add(a, f32({1}, {1}), 1.0, DType::F32, "add"), MappingError);
  auto z = ops::fill({DType::BF16, {2, 2}}, 1.0, "ones");
  auto zb = z.read_all();
  for (int k = 0; k < 4; ++k) {
    std::uint16_t v;
    std::memcpy(&v, zb.data() + 2 * k, 2);
    EXPECT_EQ(v, 0x3f80);
  }
}

TEST(Ops, EinsumMatchesHandComputedProducts) {
  // (2x3) @ (3x2)
  auto a = f32({1, 2, 3, 4, 5, 6}, {2, 3});
  auto b = f32({7, 8, 9, 10, 11, 12}, {3, 2});
  EXPECT_EQ(floats(ops::einsum("ik,kj->ij", {a, b}, 1.0, DType::F32, "mm")), (std::vector<float>{58, 64, 139, 154}));
  // Transposed output and a scale.
  EXPECT_EQ(floats(ops::einsum("ik,kj->ji", {a, b}, 0.5, DType::F32, "mm")), (std::vector<float>{29, 69.5f, 32, 77}));
  // Sum over a label present in only one operand: "nhl,mld->nhd" sums B over m separately.
  auto A = f32({1, 2, 3, 4}, {2, 1, 2});      // n=2 h=1 l=2
  auto B = f32({1, 0, 0, 1, 2, 0, 0, 2}, {2, 2, 2});  // m=2 l=2 d=2 ; sum_m B = [[3,0],[0,3]]
  EXPECT_EQ(floats(ops::einsum("nhl,mld->nhd", {A, B}, 1.0, DType::F32, "lora")), (std::vector<float>{3, 6, 9, 12}));
  EXPECT_THROW(ops::einsum("ij,jk->ik", {a, a}, 1.0, DType::F32, "bad"), MappingError);
  EXPECT_THROW(ops::einsum("ij,jk", {a, b}, 1.0, DType::F32, "bad"), MappingError);
}

}  // namespace
}  // namespace ckb
