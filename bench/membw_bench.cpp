// Memory bandwidth of this machine: a streaming read (sum) and a copy of a buffer far larger than the
// caches, on every OpenMP thread. The ceiling that memory-bound decode kernels are measured against.
#include <benchmark/benchmark.h>
#include <omp.h>

#include <cstdlib>
#include <cstring>

namespace {

constexpr size_t kBytes = size_t{1} << 30;

float* buffer(size_t n) {
  static float* p = nullptr;
  if (!p) {
    p = static_cast<float*>(std::aligned_alloc(64, kBytes * 2));
    std::memset(p, 1, kBytes * 2);  // touch every page
  }
  return p + n;
}

void BM_StreamRead(benchmark::State& state) {
  const float* p = buffer(0);
  const size_t n = kBytes / sizeof(float);
  for (auto _ : state) {
    float total = 0;
#pragma omp parallel for reduction(+ : total) schedule(static)
    for (size_t i = 0; i < n; i += 16) {
      float s = 0;
#pragma omp simd reduction(+ : s)
      for (size_t j = 0; j < 16; ++j) s += p[i + j];
      total += s;
    }
    benchmark::DoNotOptimize(total);
  }
  state.counters["GB/s"] = benchmark::Counter(double(kBytes) * state.iterations() / 1e9, benchmark::Counter::kIsRate);
  state.counters["threads"] = omp_get_max_threads();
}

void BM_Copy(benchmark::State& state) {
  const float* src = buffer(0);
  float* dst = buffer(kBytes / sizeof(float));
  const size_t n = kBytes / sizeof(float);
  for (auto _ : state) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i += 4096) std::memcpy(dst + i, src + i, 4096 * sizeof(float));
    benchmark::ClobberMemory();
  }
  // Bytes moved: read + write.
  state.counters["GB/s"] =
      benchmark::Counter(2.0 * double(kBytes) * state.iterations() / 1e9, benchmark::Counter::kIsRate);
}

BENCHMARK(BM_StreamRead)->UseRealTime()->MinTime(2.0);
BENCHMARK(BM_Copy)->UseRealTime()->MinTime(2.0);

}  // namespace
