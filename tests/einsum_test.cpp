// The GEMM-lowered einsum and the blocked einsum_add source against a direct reference
// implementation (nested loops over all labels), on openpi's LoRA equations and others.
#include <cmath>
#include <cstring>
#include <map>
#include <random>

#include <zstd.h>

#include <filesystem>

#include "core/errors.h"
#include "formats/zarr/zarr_array.h"
#include "io/kvstore.h"
#include "test_util.h"
#include "formats/format.h"
#include "ops/cast.h"
#include "ops/einsum.h"
#include "engine/execute.h"
#include "ops/ops.h"

namespace ckb {
namespace {

// Reference: out[o] = sum over all other labels of prod operands.
std::vector<double> reference(const std::string& eq, const std::vector<std::vector<double>>& v, const std::vector<Shape>& s) {
  auto spec = parse_einsum(eq, s, "ref");
  std::map<char, std::int64_t> dim;
  for (std::size_t k = 0; k < s.size(); ++k)
    for (std::size_t d = 0; d < s[k].size(); ++d) dim[spec.inputs[k][d]] = s[k][d];
  std::string labels = spec.output;
  for (auto& [c, n] : dim)
    if (labels.find(c) == std::string::npos) labels += c;
  std::map<char, std::int64_t> idx;
  for (char c : labels) idx[c] = 0;
  std::uint64_t total = 1, nout = 1;
  for (char c : labels) total *= static_cast<std::uint64_t>(dim[c]);
  for (char c : spec.output) nout *= static_cast<std::uint64_t>(dim[c]);
  std::vector<double> out(nout, 0.0);
  for (std::uint64_t t = 0; t < total; ++t) {
    double p = 1;
    for (std::size_t k = 0; k < v.size(); ++k) {
      std::uint64_t off = 0;
      for (std::size_t d = 0; d < s[k].size(); ++d) off = off * static_cast<std::uint64_t>(s[k][d]) + static_cast<std::uint64_t>(idx[spec.inputs[k][d]]);
      p *= v[k][off];
    }
    std::uint64_t o = 0;
    for (char c : spec.output) o = o * static_cast<std::uint64_t>(dim[c]) + static_cast<std::uint64_t>(idx[c]);
    out[o] += p;
    for (std::size_t i = labels.size(); i-- > 0;) {
      if (++idx[labels[i]] < dim[labels[i]]) break;
      idx[labels[i]] = 0;
    }
  }
  return out;
}

Tensor f64_tensor(const std::vector<double>& v, Shape s) {
  Bytes b(v.size() * 8);
  std::memcpy(b.data(), v.data(), b.size());
  return make_memory_tensor({DType::F64, s}, std::move(b));
}

std::vector<double> randn(std::size_t n, unsigned seed) {
  std::mt19937 g(seed);
  std::normal_distribution<double> d;
  std::vector<double> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

struct Case {
  const char* eq;
  std::vector<Shape> shapes;
};

TEST(Einsum, MatchesReferenceOnLoraAndGeneralEquations) {
  const std::vector<Case> cases = {
      {"NDL,NLH->NDH", {{3, 5, 2}, {3, 2, 4}}},                 // openpi q_einsum delta
      {"CKDL,CKLH->CKDH", {{2, 1, 5, 2}, {2, 1, 2, 4}}},         // kv_einsum delta
      {"NHL,MLD->NHD", {{3, 4, 2}, {3, 2, 5}}},                  // attn_vec: lora_b summed over heads
      {"lNHL,lMLD->lNHD", {{2, 3, 4, 2}, {2, 3, 2, 5}}},         // ... with a layer axis
      {"ij,jk->ki", {{3, 4}, {4, 5}}},
      {"ij,kl->ijkl", {{2, 3}, {2, 2}}},                         // outer product (no K)
      {"bij,bjk->bik", {{2, 3, 4}, {2, 4, 2}}},
      {"abc->cb", {{2, 3, 4}}},                                  // one operand: sum + permute
      {"ij,kl->ikjl", {{2, 3}, {2, 2}}},                         // interleaved output: block path
      {"bij,bjk->ibk", {{2, 3, 4}, {2, 4, 2}}},                  // batch label not leading: block path
  };
  unsigned seed = 1;
  for (const auto& c : cases) {
    std::vector<std::vector<double>> vals;
    std::vector<Tensor> ts;
    for (const auto& s : c.shapes) {
      std::uint64_t n = 1;
      for (auto d : s) n *= static_cast<std::uint64_t>(d);
      vals.push_back(randn(n, seed++));
      ts.push_back(f64_tensor(vals.back(), s));
    }
    auto want = reference(c.eq, vals, c.shapes);
    for (std::uint64_t block : {1ull, 3ull, 7ull, 1ull << 20}) {  // tiny blocks force every blocking path
      auto t = einsum_add(std::nullopt, ts, c.eq, 1.0, DType::F64, c.eq, block);
      auto got = ops::to_doubles(t);
      ASSERT_EQ(got.size(), want.size()) << c.eq;
      for (std::size_t i = 0; i < want.size(); ++i) ASSERT_NEAR(got[i], want[i], 1e-12 * (1 + std::fabs(want[i]))) << c.eq << " block " << block;
    }
  }
}

TEST(Einsum, BaseAddScaleAndRoundingToF32) {
  auto a = randn(3 * 4 * 2, 7), b = randn(3 * 2 * 5, 8), w = randn(3 * 4 * 5, 9);
  Tensor A = f64_tensor(a, {3, 4, 2}), B = f64_tensor(b, {3, 2, 5}), W = f64_tensor(w, {3, 4, 5});
  auto delta = reference("NHL,MLD->NHD", {a, b}, {{3, 4, 2}, {3, 2, 5}});
  auto merged = einsum_add(W, {A, B}, "NHL,MLD->NHD", 0.5, DType::F32, "m", 5);
  EXPECT_EQ(merged.info.dtype, DType::F32);
  auto bytes = merged.read_all();
  std::vector<float> got(60);
  std::memcpy(got.data(), bytes.data(), 240);
  for (std::size_t i = 0; i < 60; ++i) EXPECT_EQ(got[i], static_cast<float>(w[i] + 0.5 * delta[i])) << i;  // rounded once
  EXPECT_THROW(einsum_add(W, {A, B}, "NHL,MLD->NHL", 1.0, DType::F32, "bad"), MappingError);
  EXPECT_THROW(einsum_add(std::nullopt, {A, W}, "NHL,NLD->NHD", 1.0, DType::F32, "bad"), MappingError);  // L is 2 and 4
}

// Any byte range of a merged tensor, aligned or not, crossing GEMM rows and batches, equals
// the same bytes of the whole tensor.
TEST(Einsum, RangesOfTheProductMatchTheWhole) {
  const Shape a{2, 3, 5, 4}, b{2, 3, 4, 7};  // lNHL,lMLD->lNHD: [2, 3, 5, 7]
  auto A = f64_tensor(randn(2 * 3 * 5 * 4, 11), a), B = f64_tensor(randn(2 * 3 * 4 * 7, 12), b);
  auto W = cast_tensor(f64_tensor(randn(2 * 3 * 5 * 7, 13), {2, 3, 5, 7}), DType::BF16, nullptr);
  auto t = einsum_add(W, {A, B}, "lNHL,lMLD->lNHD", 0.75, DType::F32, "m");
  const Bytes whole = t.read_all();
  for (std::uint64_t off : {0u, 1u, 3u, 27u, 28u, 140u, 417u}) {
    for (std::uint64_t len : {1u, 5u, 28u, 29u, 333u}) {
      if (off + len > whole.size()) continue;
      std::vector<std::byte> part(len);
      t.source->read(off, part);
      EXPECT_EQ(std::memcmp(part.data(), whole.data() + off, len), 0) << off << "+" << len;
    }
  }
}

// A merge over a streaming base (a zstd zarr array) reads the base once, front to back, and
// helpers merge parts of each request: the bytes equal the same merge over an in-memory base.
TEST(Einsum, StreamedBaseMergedByHelpersEqualsInMemoryBase) {
  const std::int64_t L = 2, N = 1024, D = 1024, R = 4;
  auto w = randn(static_cast<std::size_t>(L * N * D), 21);
  std::vector<float> wf(w.begin(), w.end());
  test::TempDir tmp;
  std::filesystem::create_directories(tmp / "w");
  test::write_file(tmp / "w/.zarray",
                   "{\"chunks\":[2,1024,1024],\"compressor\":{\"id\":\"zstd\"},\"dtype\":\"<f4\",\"fill_value\":0,"
                   "\"filters\":null,\"order\":\"C\",\"shape\":[2,1024,1024],\"zarr_format\":2}");
  std::string plain(reinterpret_cast<const char*>(wf.data()), wf.size() * 4);
  std::string z(ZSTD_compressBound(plain.size()), '\0');
  z.resize(ZSTD_compress(z.data(), z.size(), plain.data(), plain.size(), 1));
  test::write_file(tmp / "w/0.0.0", z);
  auto store = std::make_shared<DirectoryKvStore>(tmp.path());
  auto zw = zarr::ZarrArray::open(store, "w/", "w")->tensor();
  ASSERT_EQ(zw.source->sequential_resident_bytes(), 0u);  // it streams
  auto A = f64_tensor(randn(static_cast<std::size_t>(L * N * R), 22), {L, N, R});
  auto B = f64_tensor(randn(static_cast<std::size_t>(L * R * D), 23), {L, R, D});
  Bytes wbytes(plain.size());
  std::memcpy(wbytes.data(), plain.data(), plain.size());
  auto mem = make_memory_tensor({DType::F32, {L, N, D}}, std::move(wbytes));
  auto streamed = einsum_add(zw, {A, B}, "lnr,lrd->lnd", 0.5, DType::F32, "m");
  auto in_memory = einsum_add(mem, {A, B}, "lnr,lrd->lnd", 0.5, DType::F32, "m");
  EXPECT_FALSE(streamed.source->parallel_reads());  // read by one worker, helped inside
  EXPECT_TRUE(in_memory.source->parallel_reads());
  const Bytes got = streamed.read_all(), want = in_memory.read_all();
  ASSERT_EQ(got.size(), want.size());
  EXPECT_EQ(std::memcmp(got.data(), want.data(), got.size()), 0);
}

// Large computed tensors are cut into ranges that several workers produce at once; the
// result and the statistics must not depend on it.
TEST(Einsum, SplitAcrossWorkersIsIdenticalToOneWorker) {
  const Shape a{4, 96, 8}, b{4, 8, 512};  // -> [4, 96, 512] F32 = 768 KiB, 12 ranges of 64 KiB
  auto A = f64_tensor(randn(4 * 96 * 8, 1), a), B = f64_tensor(randn(4 * 8 * 512, 2), b);
  auto W = f64_tensor(randn(4 * 96 * 512, 3), {4, 96, 512});
  Node tree = Node::dict();
  tree.add("merged", Node::tensor(einsum_add(cast_tensor(W, DType::F32, nullptr), {A, B}, "lnr,lrd->lnd", 0.25, DType::F32, "m", 1000)));
  tree.add("cast", Node::tensor(cast_tensor(W, DType::BF16, std::make_shared<CastStats>())));
  test::TempDir tmp;
  std::vector<std::string> files;
  std::vector<ExecResult> results;
  for (unsigned threads : {1u, 4u}) {
    ExecOptions eo;
    eo.threads = threads;
    eo.chunk_bytes = 1 << 16;
    eo.stats = true;
    const std::string out = tmp / ("t" + std::to_string(threads) + ".safetensors");
    results.push_back(execute(tree, format_by_name("safetensors"), out, {}, eo));
    files.push_back(test::read_file(out));
  }
  EXPECT_EQ(files[0], files[1]);
  for (std::size_t i = 0; i < 2; ++i) {
    const auto &s1 = results[0].stats[i], &s4 = results[1].stats[i];
    EXPECT_EQ(s1.count, s4.count);
    EXPECT_EQ(s1.min, s4.min);
    EXPECT_EQ(s1.max, s4.max);
    EXPECT_NEAR(s1.mean, s4.mean, 1e-12);
  }
}

}  // namespace
}  // namespace ckb
