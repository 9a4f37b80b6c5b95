// Integer products on the CPU: int8 activations times unsigned 8- or 4-bit weight codes, with int32 dot
// products (AVX-512 VNNI's vpdpbusd: unsigned x signed bytes) and a float epilogue per 32-block.
//
// Weights are stored offset to unsigned (w + 128 for int8, q in 0..15 for int4), so
// Σ w·x = Σ u·x − offset·Σ x, and Σ x per block is computed once with the activations.
// int4 codes come in two orders: 64-weight chunks (byte j holds weight j in its low nibble and j + 32 in
// its high nibble; the a8wx/w4a8 kernels) and 512-weight windows (the int4wo kernels, below).
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
  // Window order (quantize_q8_windows): q is [M, ldq] with each row permuted as u4_window_x_pos says.
  bool windowed = false;
  int64_t ldq = 0;
};

// int4 window order. A row of K weights is cut into windows of 512 (the last one padded with code 0);
// a window is 8 vectors of 32 bytes, and vector v's byte j holds, in its low nibble, weight
// 32·(j/4) + 4v + j%4 of the window and, in its high nibble, weight 32·(8 + j/4) + 4v + j%4. Read as 64
// bytes (32 low nibbles, then the same 32 bytes' high nibbles), int32 lane l of a vpdpbusd covers four
// weights of 32-block l, so a window's eight products accumulate each block in its own lane with no float
// work until the window ends. The activations are permuted to match (byte 4l + b of vector v = weight
// 32l + 4v + b) and zero-padded.
constexpr int64_t kU4Window = 512;
inline int64_t u4_window_padded(int64_t K) { return (K + kU4Window - 1) / kU4Window * kU4Window; }
inline int64_t u4_window_x_pos(int64_t k) {
  return (k / 512) * 512 + ((k % 32) / 4) * 64 + ((k % 512) / 32) * 4 + k % 4;
}
inline int u4_window_code(const uint8_t* row, int64_t k) {
  const int64_t l = (k % 512) / 32;
  const uint8_t byte = row[(k / 512) * 256 + ((k % 32) / 4) * 32 + (l % 8) * 4 + k % 4];
  return l < 8 ? (byte & 0xf) : (byte >> 4);
}
// Codes q[K] in 0..15 of one row into u4_window_padded(K) / 2 bytes.
void pack_u4_windows(const uint8_t* q, int64_t K, uint8_t* out);

// Symmetric int8 per block of 32 (like llama.cpp's Q8_0) or 256 (its Q8_K): d = amax/127, q = round(x / d).
// K % 64 == 0 and K % block == 0. The int4 kernels take blocks of 32; int8 weights either.
void quantize_q8_blocks(const float* x, int64_t M, int64_t K, Q8Acts& out, int64_t block = 32);
// Blocks of 32 in window order, for the int4 weights.
void quantize_q8_windows(const float* x, int64_t M, int64_t K, Q8Acts& out);
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
// int4 weights (codes 0..15 meaning (q − 8)·s + z) in window order, rows of u4_window_padded(K) / 2
// bytes, per group of G (32 .. 256) with bf16 scale and zero: int4wo, window-ordered block activations.
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
// x [a.M, a.K] into a's window-ordered q, d and dsum (already sized, q zeroed).
void quantize_q8_windows(const float* x, Q8Acts& a);
}  // namespace vnni

}  // namespace lowbit::kernels::cpu
