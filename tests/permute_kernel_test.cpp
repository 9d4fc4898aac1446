// The blocked permute kernel (ops/permute_kernel.h), the range-serving permute source built on
// it, and the executor's stream chains (engine/stream_chains.h): every output byte is checked
// against an independent element-by-element index computation.
#include <cstring>
#include <random>

#include "engine/stream_chains.h"
#include "ops/ops.h"
#include "ops/permute_kernel.h"
#include "test_util.h"

namespace ckb {
namespace {

std::vector<std::byte> pattern(std::size_t n) {
  std::vector<std::byte> b(n);
  for (std::size_t i = 0; i < n; ++i) b[i] = static_cast<std::byte>((i * 131 + i / 253 + 7) & 0xff);
  return b;
}

// Output element e of the permutation, by unravelling e in the output shape and
// re-ravelling the index in the input shape.
std::vector<std::byte> naive(const std::vector<std::byte>& src, const Shape& in, const std::vector<int>& perm,
                             std::size_t elem) {
  const std::size_t rank = in.size();
  Shape out(rank);
  for (std::size_t i = 0; i < rank; ++i) out[i] = in[static_cast<std::size_t>(perm[i])];
  std::vector<std::byte> dst(src.size());
  const std::uint64_t n = src.size() / elem;
  for (std::uint64_t e = 0; e < n; ++e) {
    std::vector<std::int64_t> o(rank);
    std::uint64_t r = e;
    for (std::size_t d = rank; d-- > 0;) {
      o[d] = static_cast<std::int64_t>(r % static_cast<std::uint64_t>(out[d]));
      r /= static_cast<std::uint64_t>(out[d]);
    }
    std::vector<std::int64_t> idx(rank);
    for (std::size_t i = 0; i < rank; ++i) idx[static_cast<std::size_t>(perm[i])] = o[i];
    std::uint64_t off = 0;
    for (std::size_t d = 0; d < rank; ++d) off = off * static_cast<std::uint64_t>(in[d]) + static_cast<std::uint64_t>(idx[d]);
    std::memcpy(dst.data() + e * elem, src.data() + off * elem, elem);
  }
  return dst;
}

struct Case {
  Shape in;
  std::vector<int> perm;
};

const std::vector<Case> kCases = {
    {{37, 70}, {1, 0}},                 // 2-D transpose, partial tiles both ways
    {{1, 65, 33}, {0, 2, 1}},           // "c d f -> (c f) d" with c = 1
    {{3, 50, 2, 40}, {2, 3, 1, 0}},     // innermost axis in the middle of the output
    {{14, 14, 3, 20}, {3, 2, 0, 1}},    // "kh kw ch o -> o ch kh kw"
    {{9, 8, 7}, {1, 2, 0}},             // "d n h -> (n h) d": merged pair
    {{5, 6, 7, 8}, {0, 1, 3, 2}},       // batched transpose
    {{4, 1, 6, 1, 5}, {4, 2, 1, 0, 3}}, // size-1 axes anywhere
    {{6, 7, 8}, {0, 1, 2}},             // identity order: whole runs
    {{300}, {0}},
};

TEST(PermuteKernel, EveryRangeMatchesTheIndexComputation) {
  std::mt19937 rng(7);
  for (std::size_t elem : {1u, 2u, 4u, 8u, 16u}) {
    for (const auto& c : kCases) {
      std::uint64_t n = 1;
      for (auto d : c.in) n *= static_cast<std::uint64_t>(d);
      const auto src = pattern(n * elem);
      const auto want = naive(src, c.in, c.perm, elem);
      std::vector<std::byte> got(n * elem);
      permute_range(src.data(), c.in, c.perm, elem, 0, n, got.data());
      ASSERT_EQ(got, want) << "whole, elem " << elem << " shape " << shape_str(c.in);
      for (int k = 0; k < 20; ++k) {
        std::uint64_t a = rng() % (n + 1), b = rng() % (n + 1);
        if (a > b) std::swap(a, b);
        std::vector<std::byte> part((b - a) * elem + 1, std::byte{0x5a});
        permute_range(src.data(), c.in, c.perm, elem, a, b, part.data());
        ASSERT_EQ(0, std::memcmp(part.data(), want.data() + a * elem, (b - a) * elem))
            << "range [" << a << ", " << b << "), elem " << elem << " shape " << shape_str(c.in);
        ASSERT_EQ(part.back(), std::byte{0x5a}) << "wrote past the range";
      }
    }
  }
}

TEST(PermuteKernel, SourceServesUnalignedPiecesExactly) {
  const Shape in{33, 3, 47};
  const std::vector<int> perm{2, 0, 1};
  const auto src = pattern(33 * 3 * 47 * 4);
  const auto want = naive(src, in, perm, 4);
  // `src` laid out as [:, 1] of a [33, 2, 3, 47] tensor and sliced out again: a
  // non-contiguous input, which the permute materialises.
  Bytes inter(2 * src.size());
  for (std::size_t i = 0; i < 33; ++i)
    for (std::size_t h = 0; h < 2; ++h)
      std::memcpy(inter.data() + (i * 2 + h) * 141 * 4, src.data() + i * 141 * 4, 141 * 4);
  Tensor t = make_memory_tensor({DType::F32, {33, 2, 3, 47}}, std::move(inter));
  Tensor x = ops::index(t, 1, 1, "x");
  ASSERT_EQ(x.source->contiguous(), nullptr);
  Tensor p = ops::permute(x, perm, "p");
  EXPECT_TRUE(p.source->parallel_reads());
  std::vector<std::byte> got(want.size());
  for (std::size_t off = 0; off < got.size();) {
    const std::size_t len = std::min<std::size_t>(got.size() - off, 1 + (off * 7) % 1013);  // odd sizes and offsets
    p.source->read(off, {got.data() + off, len});
    off += len;
  }
  EXPECT_EQ(got, want);
  p.source->release();
  std::vector<std::byte> again(want.size());
  p.source->read(0, {again.data(), again.size()});
  EXPECT_EQ(again, want);
}

// A stored stream stand-in: reads are never called, only the origin matters.
class StreamStandIn final : public TensorSource {
 public:
  void read(std::uint64_t, std::span<std::byte> out) const override { std::memset(out.data(), 0, out.size()); }
  std::string describe() const override { return "stand-in"; }
  StreamOrigin stream_origin(std::uint64_t offset) const override { return {this, offset}; }
};

TEST(StreamChains, ViewsOfOneStreamRunInItsByteOrder) {
  auto s = std::make_shared<StreamStandIn>();
  Tensor stacked{{DType::BF16, {4, 2, 8, 16}}, s};
  // The per-layer halves, as split + unstack make them; listed out of order.
  std::vector<Tensor> views;
  for (std::int64_t layer : {2, 0, 3, 1})
    for (std::int64_t half : {1, 0})
      views.push_back(ops::index(ops::slice(stacked, 1, half, half + 1, "s"), 0, layer, "v"));
  // Cast and permute pass the origin on: a cast of layer 0 half 0, permuted.
  Tensor permuted = ops::permute(cast_tensor(ops::index(ops::index(stacked, 0, 0, "a"), 0, 1, "b"), DType::F32, nullptr),
                                 {1, 0}, "p");
  auto other = std::make_shared<StreamStandIn>();
  Tensor lone{{DType::F32, {3}}, other};             // a whole array: its own origin, no chain
  Tensor single = ops::index(Tensor{{DType::F32, {2, 3}}, std::make_shared<StreamStandIn>()}, 0, 1, "one");
  Tensor mem = make_memory_tensor({DType::F32, {2}}, Bytes(8));
  std::vector<const Tensor*> ts;
  for (auto& v : views) ts.push_back(&v);
  ts.push_back(&permuted);
  ts.push_back(&lone);
  ts.push_back(&single);
  ts.push_back(&mem);
  std::vector<std::size_t> order = {9, 10, 0, 1, 2, 3, 4, 5, 6, 7, 8, 11};
  auto chains = stream_chains(ts, order);
  // View k is (layer, half) = ({2,0,3,1}[k/2], {1,0}[k%2]) at origin offset
  // (2 * layer + half) * 256 bytes; the permuted cast (8) starts where view 2 does, and stays
  // after it (stable). The chain takes the place of its first member in `order`.
  const std::vector<std::vector<std::size_t>> want = {{9}, {10}, {3, 2, 8, 7, 6, 1, 0, 5, 4}, {11}};
  EXPECT_EQ(chains, want);
}
}  // namespace
}  // namespace ckb

namespace ckb {
namespace {

// The fill source copies whole periods of its value: every byte at every offset still
// matches the value's little-endian bytes.
TEST(FillSource, LargeReadsAtAnyOffsetRepeatTheValue) {
  const std::vector<std::byte> one = {std::byte{0x00}, std::byte{0x00}, std::byte{0xc0}, std::byte{0x3f}};  // 1.5f
  Tensor f = ops::fill({DType::F32, {1 << 16}}, 1.5, "fill");
  for (std::uint64_t off : {0u, 1u, 3u, 4u, 1001u}) {
    std::vector<std::byte> got(100000 - off);
    f.source->read(off, {got.data(), got.size()});
    for (std::size_t i = 0; i < got.size(); ++i) ASSERT_EQ(got[i], one[(off + i) % 4]) << off << " " << i;
  }
}

}  // namespace
}  // namespace ckb
