// AVX-512 (F, BW, VL) build of the GEMM in gemm_kernel.inc; compiled with -mavx512f -mavx512bw -mavx512vl.
// GCC 12 warns about the deliberately undefined lanes inside its own AVX-512 intrinsic headers.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>
#include <cstdlib>
#include <vector>

#include "kernels/cpu/gemm.h"

namespace lowbit::kernels::cpu {
namespace {

struct S {
  using V = __m512;
  static constexpr int L = 16;
  static V zero() { return _mm512_setzero_ps(); }
  static V load(const float* p) { return _mm512_loadu_ps(p); }
  static V load_tail(const float* p, int n) { return _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << n) - 1), p); }
  static V widen_bf16(__m256i h) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)); }
  template <WType T>
  static V load_w(const char* p) {
    if constexpr (T == WType::F32) return _mm512_loadu_ps(reinterpret_cast<const float*>(p));
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    if constexpr (T == WType::BF16) return widen_bf16(h);
    return _mm512_cvtph_ps(h);
  }
  template <WType T>
  static V load_w_tail(const char* p, int n) {
    const auto m = static_cast<__mmask16>((1u << n) - 1);
    if constexpr (T == WType::F32) return _mm512_maskz_loadu_ps(m, reinterpret_cast<const float*>(p));
    const __m256i h = _mm256_maskz_loadu_epi16(m, p);
    if constexpr (T == WType::BF16) return widen_bf16(h);
    return _mm512_cvtph_ps(h);
  }
  template <WType T>
  static void convert_row(const char* p, int64_t K, float* out) {
    int64_t k = 0;
    for (; k + L <= K; k += L) _mm512_storeu_ps(out + k, load_w<T>(p + 2 * k));
    if (k < K) _mm512_mask_storeu_ps(out + k, static_cast<__mmask16>((1u << (K - k)) - 1), load_w_tail<T>(p + 2 * k, static_cast<int>(K - k)));
  }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static float sum(V v) {
    const __m512 swapped = _mm512_shuffle_f32x4(v, v, 0x4e);  // 256-bit halves exchanged
    const __m256 h = _mm512_castps512_ps256(_mm512_add_ps(v, swapped));
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
};

#include "kernels/cpu/gemm_kernel.inc"

}  // namespace

void gemm_serial_avx512(const GemmArgs& a) { gemm_serial_entry(a); }

}  // namespace lowbit::kernels::cpu
