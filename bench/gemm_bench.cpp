// CPU GEMM micro-benchmarks: GFLOP/s for prefill-sized products, GB/s of weight read for decode.
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "kernels/cpu/gemm.h"
#include "lowbit/core/float_formats.h"

namespace lowbit::kernels::cpu {
namespace {

void BM_Gemm(benchmark::State& state) {
  const int64_t M = state.range(0), N = state.range(1), K = state.range(2);
  const auto wt = static_cast<WType>(state.range(3));
  std::mt19937 rng(1);
  std::normal_distribution<float> nd;
  std::vector<float> x(M * K), wf(N * K), y(M * N);
  for (auto& v : x) v = nd(rng);
  for (auto& v : wf) v = nd(rng);
  std::vector<uint16_t> wb(wf.size());
  for (size_t i = 0; i < wf.size(); ++i) wb[i] = f32_to_bf16(wf[i]);
  const void* w = wt == WType::F32 ? static_cast<const void*>(wf.data()) : wb.data();
  for (auto _ : state) {
    gemm({x.data(), K, w, wt, K, y.data(), N, M, N, K});
    benchmark::DoNotOptimize(y.data());
  }
  const double flops = 2.0 * M * N * K;
  const double wbytes = static_cast<double>(N) * K * (wt == WType::F32 ? 4 : 2);
  state.counters["GFLOP/s"] = benchmark::Counter(flops * state.iterations() / 1e9, benchmark::Counter::kIsRate);
  state.counters["weight_GB/s"] = benchmark::Counter(wbytes * state.iterations() / 1e9, benchmark::Counter::kIsRate);
}

// {M, N, K, wtype}: decode (M=1) over a tinyllama MLP weight, and sotu-llama prefill shapes.
BENCHMARK(BM_Gemm)
    ->Args({1, 5632, 2048, 1})
    ->Args({1, 5632, 2048, 0})
    ->Args({512, 768, 256, 1})
    ->Args({512, 256, 768, 1})
    ->Args({512, 32000, 256, 1})
    ->Args({512, 512, 512, 0})
    ->UseRealTime();

}  // namespace
}  // namespace lowbit::kernels::cpu

BENCHMARK_MAIN();

namespace lowbit::kernels::cpu {
namespace {

// Decode over a weight far larger than the caches: the DRAM-bound regime of real models.
void BM_GemvDram(benchmark::State& state) {
  const int64_t N = state.range(0), K = state.range(1);
  static std::vector<uint16_t> w;
  if (w.size() != static_cast<size_t>(N * K)) {
    w.assign(N * K, 0);
#pragma omp parallel for
    for (int64_t i = 0; i < N * K; ++i) w[i] = f32_to_bf16(static_cast<float>((i * 2654435761u) % 1000) * 1e-5f);
  }
  std::vector<float> x(K, 0.5f), y(N);
  for (auto _ : state) {
    gemm({x.data(), K, w.data(), WType::BF16, K, y.data(), N, 1, N, K});
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["weight_GB/s"] =
      benchmark::Counter(2.0 * N * K * state.iterations() / 1e9, benchmark::Counter::kIsRate);
}
BENCHMARK(BM_GemvDram)->Args({65536, 8192})->UseRealTime()->MinTime(2.0);

}  // namespace
}  // namespace lowbit::kernels::cpu

namespace lowbit::kernels::cpu {
namespace {

// Decode-sized products over many distinct weights (as a model's layers are), so none stays cached.
void BM_GemvRotating(benchmark::State& state) {
  const int64_t N = state.range(0), K = state.range(1);
  const int64_t count = std::max<int64_t>(2, (int64_t{768} << 20) / (N * K * 2));
  std::vector<std::vector<uint16_t>> ws(count, std::vector<uint16_t>(N * K, f32_to_bf16(0.01f)));
  std::vector<float> x(K, 0.5f), y(N);
  int64_t i = 0;
  for (auto _ : state) {
    gemm({x.data(), K, ws[i++ % count].data(), WType::BF16, K, y.data(), N, 1, N, K});
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["weight_GB/s"] = benchmark::Counter(2.0 * N * K * state.iterations() / 1e9, benchmark::Counter::kIsRate);
}
BENCHMARK(BM_GemvRotating)->Args({256, 2048})->Args({2048, 2048})->Args({5632, 2048})->Args({2048, 5632})->UseRealTime();

}  // namespace
}  // namespace lowbit::kernels::cpu
