// AVX2 + FMA + F16C build of the GEMM in gemm_kernel.inc.
#include <immintrin.h>

#include <algorithm>
#include <cstdlib>
#include <vector>
#include <cstring>

#include "kernels/cpu/gemm.h"

namespace lowbit::kernels::cpu {
namespace {

struct S {
  using V = __m256;
  static constexpr int L = 8;
  static V zero() { return _mm256_setzero_ps(); }
  static V load(const float* p) { return _mm256_loadu_ps(p); }
  static V load_tail(const float* p, int n) {
    alignas(32) float buf[8] = {};
    std::memcpy(buf, p, static_cast<size_t>(n) * 4);
    return _mm256_load_ps(buf);
  }
  static V widen_bf16(__m128i h) { return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16)); }
  template <WType T>
  static V load_w(const char* p) {
    if constexpr (T == WType::F32) return _mm256_loadu_ps(reinterpret_cast<const float*>(p));
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    if constexpr (T == WType::BF16) return widen_bf16(h);
    return _mm256_cvtph_ps(h);
  }
  template <WType T>
  static V load_w_tail(const char* p, int n) {
    alignas(32) char buf[32] = {};
    std::memcpy(buf, p, static_cast<size_t>(n) * (T == WType::F32 ? 4 : 2));
    return load_w<T>(buf);
  }
  template <WType T>
  static void convert_row(const char* p, int64_t K, float* out) {
    int64_t k = 0;
    for (; k + L <= K; k += L) _mm256_storeu_ps(out + k, load_w<T>(p + 2 * k));
    if (k < K) {
      alignas(32) float buf[8];
      _mm256_store_ps(buf, load_w_tail<T>(p + 2 * k, static_cast<int>(K - k)));
      std::memcpy(out + k, buf, static_cast<size_t>(K - k) * 4);
    }
  }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static float sum(V v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
};

#include "kernels/cpu/gemm_kernel.inc"

}  // namespace

void gemm_serial_avx2(const GemmArgs& a) { gemm_serial_entry(a); }

}  // namespace lowbit::kernels::cpu
