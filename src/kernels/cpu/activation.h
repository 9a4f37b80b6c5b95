// Elementwise and row-wise activations of the CPU forward pass, with an AVX-512 path chosen at run time
// (active_isa() of gemm.h) and a scalar one (std::exp) that is the reference.
#pragma once

#include <cstdint>

namespace lowbit::kernels::cpu {

// gate[i] = SiLU(gate[i]) · up[i] = gate[i] / (1 + e^-gate[i]) · up[i].
void silu_mul(float* gate, const float* up, int64_t n);
// s[0..visible) ← softmax(scale · s[0..visible)); s[visible..n) ← 0 (the causal mask).
void softmax_masked(float* s, int64_t visible, int64_t n, float scale);

// The scalar versions (tests compare the fast path with them).
void silu_mul_reference(float* gate, const float* up, int64_t n);
void softmax_masked_reference(float* s, int64_t visible, int64_t n, float scale);

namespace avx512 {
void silu_mul(float* gate, const float* up, int64_t n);
void softmax_masked(float* s, int64_t visible, int64_t n, float scale);
}  // namespace avx512

}  // namespace lowbit::kernels::cpu
