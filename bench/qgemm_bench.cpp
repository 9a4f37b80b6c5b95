// Integer kernel micro-benchmarks: decode (M = 1, weights rotating through DRAM) and prefill (M = 128).
// Set LOWBIT_BENCH_CACHED=1 to keep one decode weight in cache and measure compute throughput instead.
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <random>
#include <vector>

#include "kernels/cpu/gemm.h"
#include "kernels/cpu/qgemm.h"
#include "lowbit/core/float_formats.h"

namespace lowbit::kernels::cpu {
namespace {

enum Kind { kU8Blocks, kU8Tokens, kU4Blocks };

void BM_Qgemm(benchmark::State& state) {
  const int64_t M = state.range(0), N = state.range(1), K = state.range(2);
  const auto kind = static_cast<Kind>(state.range(3));
  const int64_t wbytes = kind == kU4Blocks ? N * u4_window_padded(K) / 2 : N * K;
  const int64_t count = ((M == 1 || std::getenv("LOWBIT_BENCH_ROTATE")) && !std::getenv("LOWBIT_BENCH_CACHED")) ? std::max<int64_t>(2, (int64_t{768} << 20) / wbytes) : 1;
  std::mt19937 rng(1);
  std::vector<std::vector<uint8_t>> ws(count, std::vector<uint8_t>(wbytes));
  for (auto& w : ws)
    for (auto& v : w) v = static_cast<uint8_t>(rng());
  std::vector<float> scale(N, 0.01f), x(M * K), y(M * N);
  std::vector<uint16_t> s16(N * K / 32, f32_to_bf16(0.01f)), z16(N * K / 32, f32_to_bf16(0.001f));
  std::normal_distribution<float> nd;
  for (auto& v : x) v = nd(rng);
  Q8Acts a;
  if (kind == kU8Tokens)
    quantize_q8_tokens(x.data(), M, K, false, K, a);
  else if (kind == kU4Blocks)
    quantize_q8_windows(x.data(), M, K, a);
  else
    quantize_q8_blocks(x.data(), M, K, a);
  const int64_t chunk = row_chunk(N, M), chunks = (N + chunk - 1) / chunk;
  int64_t it = 0;
  for (auto _ : state) {
    const uint8_t* w = ws[it++ % count].data();
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t c = 0; c < chunks; ++c) {
      const int64_t n0 = c * chunk, n1 = std::min(N, n0 + chunk);
      if (kind == kU8Blocks) qgemm_u8_blocks(a, w, scale.data(), y.data(), N, n0, n1);
      if (kind == kU8Tokens) qgemm_u8_tokens(a, w, scale.data(), y.data(), N, n0, n1);
      if (kind == kU4Blocks) qgemm_u4_blocks(a, w, s16.data(), z16.data(), 32, y.data(), N, n0, n1);
    }
    benchmark::DoNotOptimize(y.data());
  }
  const double qbytes = kind == kU4Blocks ? wbytes + N * K / 32 * 4.0 : wbytes + N * 4.0;
  state.counters["weight_GB/s"] = benchmark::Counter(qbytes * state.iterations() / 1e9, benchmark::Counter::kIsRate);
  state.counters["GOPS"] = benchmark::Counter(2.0 * M * N * K * state.iterations() / 1e9, benchmark::Counter::kIsRate);
}

BENCHMARK(BM_Qgemm)
    ->Args({1, 5632, 2048, kU8Blocks})
    ->Args({1, 5632, 2048, kU8Tokens})
    ->Args({1, 5632, 2048, kU4Blocks})
    ->Args({128, 5632, 2048, kU8Blocks})
    ->Args({128, 5632, 2048, kU8Tokens})
    ->Args({128, 5632, 2048, kU4Blocks})
    // the other tinyllama prefill shapes: q/k/v, o, gate+up, down
    ->Args({128, 2560, 2048, kU4Blocks})
    ->Args({128, 2048, 2048, kU4Blocks})
    ->Args({128, 11264, 2048, kU4Blocks})
    ->Args({128, 2048, 5632, kU4Blocks})
    // L2-resident weights (with LOWBIT_BENCH_CACHED=1): the kernels' compute rate alone
    ->Args({1, 256, 2048, kU8Blocks})
    ->Args({1, 256, 2048, kU4Blocks})
    ->UseRealTime();

}  // namespace
}  // namespace lowbit::kernels::cpu
