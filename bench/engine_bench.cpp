// Google Benchmark micro-benchmarks of the engine's hot paths: casts, layout ops, the LoRA
// merge (einsum_add on GEMM) at a gemma_2b layer's shapes, and hashing.
#include <benchmark/benchmark.h>

#include <cstring>
#include <random>

#include "core/hash.h"
#include "ops/cast.h"
#include "ops/einsum.h"
#include "ops/ops.h"

namespace ckb {
namespace {

Tensor random_tensor(DType dt, Shape s) {
  TensorInfo info{dt, s};
  Bytes b(info.nbytes());
  std::mt19937 g(1);
  std::normal_distribution<float> nd(0, 0.05f);
  const std::size_t n = info.numel();
  std::vector<float> f(n);
  for (auto& x : f) x = nd(g);
  convert_elements(DType::F32, dt, reinterpret_cast<const std::byte*>(f.data()), b.data(), n, nullptr);
  return make_memory_tensor(info, std::move(b));
}

void BM_CastBf16ToF32(benchmark::State& st) {
  auto t = random_tensor(DType::BF16, {4096, 4096});
  Bytes out(t.info.numel() * 4);
  for (auto _ : st) convert_elements(DType::BF16, DType::F32, t.source->contiguous(), out.data(), t.info.numel(), nullptr);
  st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations() * t.info.nbytes()));
}
BENCHMARK(BM_CastBf16ToF32);

void BM_CastF32ToBf16(benchmark::State& st) {
  auto t = random_tensor(DType::F32, {4096, 4096});
  Bytes out(t.info.numel() * 2);
  for (auto _ : st) convert_elements(DType::F32, DType::BF16, t.source->contiguous(), out.data(), t.info.numel(), nullptr);
  st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations() * t.info.nbytes()));
}
BENCHMARK(BM_CastF32ToBf16);

void BM_Transpose2D(benchmark::State& st) {
  auto t = random_tensor(DType::BF16, {2048, 8192});
  for (auto _ : st) {
    auto p = ops::permute(t, {1, 0}, "t");
    auto b = p.read_all();
    benchmark::DoNotOptimize(b.data());
  }
  st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations() * t.info.nbytes()));
}
BENCHMARK(BM_Transpose2D)->Unit(benchmark::kMillisecond);

// One layer of gemma_2b's MLP gating LoRA (r=16): W[2, 2048, 16384] + A[2,2048,16] B[2,16,16384].
void BM_LoraMergeGatingLayer(benchmark::State& st) {
  auto w = random_tensor(DType::BF16, {2, 2048, 16384});
  auto a = random_tensor(DType::F32, {2, 2048, 16});
  auto b = random_tensor(DType::F32, {2, 16, 16384});
  for (auto _ : st) {
    auto m = einsum_add(w, {a, b}, "cDL,cLF->cDF", 1.0, DType::F32, "gating");
    auto out = m.read_all();
    benchmark::DoNotOptimize(out.data());
  }
  st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations() * w.info.numel() * 4));
}
BENCHMARK(BM_LoraMergeGatingLayer)->Unit(benchmark::kMillisecond);

void BM_Sha256(benchmark::State& st) {
  auto t = random_tensor(DType::F32, {4096, 4096});
  for (auto _ : st) benchmark::DoNotOptimize(tensor_sha256(t));
  st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations() * t.info.nbytes()));
}
BENCHMARK(BM_Sha256)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace ckb
