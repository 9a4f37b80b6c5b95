// Index arithmetic of the GPU int4 layout (weight_gemv.h), shared by the kernels that write it
// (repack from the CPU layout, random weights) and the one that reads it back to bf16; and the
// in-register dequantization of its words shared by the kernels that multiply them.
#pragma once

#include <cstdint>

#include "kernels/cuda/ops_common.cuh"

namespace lowbit::cuda::int4 {

// Packed word `idx` (of N/16 tiles × K/64 chunks × 32 lanes × 4 words) and its 8 nibbles.
struct Word {
  int64_t tile, chunk;
  int g, t, s;
  __device__ explicit Word(int64_t idx, int64_t chunks) {
    s = static_cast<int>(idx & 3);
    const int lane = static_cast<int>((idx >> 2) & 31);
    g = lane >> 2;
    t = lane & 3;
    const int64_t tc = idx >> 7;
    chunk = tc % chunks;
    tile = tc / chunks;
  }
  // Row within the tile and column of nibble i.
  __device__ int row(int i) const { return g + 8 * (i & 1); }
  __device__ int64_t col(int i) const {
    return chunk * 64 + 16 * t + 4 * s + 2 * ((i >> 1) & 1) + (i >> 2);
  }
};

// Index of the (scale, zero) word of row r (0..15) of `tile` for group `grp`.
__device__ __forceinline__ int64_t qparam_index(int64_t tile, int64_t groups, int64_t grp, int r) {
  return (tile * groups + grp) * 16 + 2 * (r % 8) + r / 8;
}

// Pair p (0..3) of a packed word as bf16x2 128 + q: nibbles 4p and 4p + 16, masked into the low
// bits of 0x4300 (bf16 128).
__device__ __forceinline__ uint32_t biased_pair(uint32_t v, int p) {
  return ops::and_or<0x000f000fu, 0x43004300u>(v >> (4 * p));
}
// The same pair dequantized as tinygemm does it: q − 8 exactly ((128 + q) − 136), then one bf16 fma
// with (scale, scale) and (zero, zero), so each weight is rounded to bf16 once.
__device__ __forceinline__ uint32_t dequant_pair(uint32_t v, int p, uint32_t scale2, uint32_t zero2) {
  return ops::bf16x2_fma(ops::bf16x2_sub(biased_pair(v, p), 0x43084308u), scale2, zero2);
}
// A (scale, zero) word as the bf16x2 pairs (scale, scale) and (zero, zero).
__device__ __forceinline__ uint32_t scale2(uint32_t sz) { return __byte_perm(sz, 0, 0x1010); }
__device__ __forceinline__ uint32_t zero2(uint32_t sz) { return __byte_perm(sz, 0, 0x3232); }

}  // namespace lowbit::cuda::int4
