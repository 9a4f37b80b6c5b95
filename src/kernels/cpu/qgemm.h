// Integer products on the CPU: int8 activations times unsigned 8- or 4-bit weight codes, with int32 dot
// products (AVX-512 VNNI's vpdpbusd: unsigned x signed bytes) and a float epilogue per 32-block.
//
// Weights are stored offset to unsigned (w + 128 for int8, q in 0..15 for int4), so
// Σ w·x = Σ u·x − offset·Σ x, and Σ x per block is computed once with the activations.
// int4 codes are packed in 64-weight chunks: byte j holds weight j (low nibble) and j + 32 (high).
#pragma once

#include <cstdint>
#include <vector>

namespace lowbit::kernels::cpu {

// Activations quantized to int8.
struct Q8Acts {
  int64_t M = 0, K = 0;
  std::vector<int8_t> q;  // [M, K]
  // Block mode (symmetric, one scale per 32 values, like llama.cpp's Q8_0):
  std::vector<float> d;     // [M, K/block] (block = group below)
  std::vector<float> dexp;  // [M, K/64, 16]: per 64-chunk, block 2c's scale in lanes 0-7, 2c+1's in 8-15
  std::vector<float> dsum;  // [M, K/block]: d_b · Σ_{k in b} q_k
  // Token mode (one scale per row; torchao's dynamic activations):
  std::vector<float> scale;   // [M]
  std::vector<int32_t> zero;  // [M] (0 when symmetric)
  std::vector<int32_t> gsum;  // [M, K/group]: Σ q per weight group
  int64_t group = 0;
};

// Symmetric int8 per block of 32 (like llama.cpp's Q8_0) or 256 (its Q8_K): d = amax/127, q = round(x / d).
// K % 64 == 0 and K % block == 0. The int4 kernels take blocks of 32; int8 weights either.
void quantize_q8_blocks(const float* x, int64_t M, int64_t K, Q8Acts& out, int64_t block = 32);
// torchao's per-token activations: symmetric in [-127, 127] with scale max(amax/127, 1e-5) and
// q = round(x * (1/scale)); or asymmetric in [-128, 127] (scale (max⁺ − min⁻)/255 ≥ fp32 eps, integer zero).
// Group sums are kept for weights grouped by `group` (K itself for per-channel weights).
void quantize_q8_tokens(const float* x, int64_t M, int64_t K, bool asymmetric, int64_t group, Q8Acts& out);

// y[m, n] for n in [n0, n1), single-threaded; y has leading dimension ldy.
// int8 weights per channel (u = w + 128, [N, K] row-major) with block activations: int8wo.
void qgemm_u8_blocks(const Q8Acts& a, const uint8_t* w, const float* wscale, float* y, int64_t ldy, int64_t n0,
                     int64_t n1);
// int8 weights per channel with token activations: int8dq. Exact int32 sums.
void qgemm_u8_tokens(const Q8Acts& a, const uint8_t* w, const float* wscale, float* y, int64_t ldy, int64_t n0,
                     int64_t n1);
// int4 weights (codes 0..15 meaning (q − 8)·s + z) per group of G with bf16 scale and zero: int4wo, block
// activations.
void qgemm_u4_blocks(const Q8Acts& a, const uint8_t* w, const uint16_t* scale_bf16, const uint16_t* zero_bf16,
                     int64_t G, float* y, int64_t ldy, int64_t n0, int64_t n1);

// Signed weights per group with token activations (a8wx, w4a8): w = (u − offset)·gscale[g]·cscale[n].
struct GroupWeights {
  const uint8_t* w;        // u8 [N, K] (bits 8) or u4 chunks [N, K/2] (bits 4)
  int bits;                // 8 or 4
  const float* gscale;     // [N, K/G]
  const float* cscale;     // [N] or nullptr
  const float* wsum;       // [N]: Σ_g gscale[g] · Σ_{k in g} (u − offset), for asymmetric activations
  int64_t G;
};
void qgemm_group_tokens(const Q8Acts& a, const GroupWeights& w, float* y, int64_t ldy, int64_t n0, int64_t n1);

// Whether the VNNI kernels run (else the scalar ones, same math); LOWBIT_KERNELS=reference in the
// environment turns the integer paths off altogether (layouts then use their weight-only reference).
bool integer_kernels_enabled();
bool vnni_kernels_active();
void force_scalar_integer_kernels(bool on);  // tests

// The ISA-specific implementations (same contracts as above).
namespace vnni {
void qgemm_u8_blocks(const Q8Acts&, const uint8_t*, const float*, float*, int64_t, int64_t, int64_t);
void qgemm_u8_tokens(const Q8Acts&, const uint8_t*, const float*, float*, int64_t, int64_t, int64_t);
void qgemm_u4_blocks(const Q8Acts&, const uint8_t*, const uint16_t*, const uint16_t*, int64_t, float*, int64_t,
                     int64_t, int64_t);
void qgemm_group_tokens(const Q8Acts&, const GroupWeights&, float*, int64_t, int64_t, int64_t);
}  // namespace vnni

}  // namespace lowbit::kernels::cpu
