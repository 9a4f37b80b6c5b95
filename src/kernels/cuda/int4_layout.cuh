// Index arithmetic of the GPU int4 layout (weight_gemv.h), shared by the kernels that write it
// (repack from the CPU layout, random weights) and the one that reads it back to bf16.
#pragma once

#include <cstdint>

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

}  // namespace lowbit::cuda::int4
