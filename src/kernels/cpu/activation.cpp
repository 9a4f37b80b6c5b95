#include "kernels/cpu/activation.h"

#include <algorithm>
#include <cmath>

#include "kernels/cpu/gemm.h"

namespace lowbit::kernels::cpu {

void silu_mul_reference(float* gate, const float* up, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    gate[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

void softmax_masked_reference(float* s, int64_t visible, int64_t n, float scale) {
  float mx = -INFINITY;
  for (int64_t l = 0; l < visible; ++l) {
    s[l] *= scale;
    mx = std::max(mx, s[l]);
  }
  float sum = 0.0f;
  for (int64_t l = 0; l < visible; ++l) {
    s[l] = std::exp(s[l] - mx);
    sum += s[l];
  }
  const float inv = 1.0f / sum;
  for (int64_t l = 0; l < visible; ++l) s[l] *= inv;
  std::fill(s + visible, s + n, 0.0f);
}

void silu_mul(float* gate, const float* up, int64_t n) {
  if (active_isa() == Isa::Avx512) return avx512::silu_mul(gate, up, n);
  silu_mul_reference(gate, up, n);
}

void softmax_masked(float* s, int64_t visible, int64_t n, float scale) {
  if (active_isa() == Isa::Avx512) return avx512::softmax_masked(s, visible, n, scale);
  softmax_masked_reference(s, visible, n, scale);
}

}  // namespace lowbit::kernels::cpu
