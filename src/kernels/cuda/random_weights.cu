// Random models generated and quantized on the GPU: an 8B benchmark model takes well under a second
// here against minutes of host quantization on a small machine. Element (n, k) of a matrix is a pure
// function of (seed, n · K + k), so each kernel recomputes the values it needs instead of keeping a
// bf16 copy around (no 16 GB staging for int4).
#include <cuda_fp8.h>

#include "kernels/cuda/int4_layout.cuh"
#include "kernels/cuda/ops_common.cuh"
#include "kernels/cuda/weight_gemv.h"

namespace lowbit::cuda {
namespace {

__device__ __forceinline__ uint64_t mix(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// N(0, std²) through the inverse normal CDF of a 23-bit uniform strictly inside (0, 1), rounded to
// bf16 (the model's dtype: every scheme quantizes these bf16 values). (With 24 bits the largest
// draw, 2^24 − 0.5, rounds to 2^24 in fp32: u = 1, an infinite weight.)
__device__ __forceinline__ float weight_at(uint64_t seed, int64_t i, float std) {
  const uint64_t h = mix(seed ^ mix(static_cast<uint64_t>(i)));
  const float u = (static_cast<float>(h >> 41) + 0.5f) * (1.0f / 8388608.0f);
  return __bfloat162float(__float2bfloat16_rn(normcdfinvf(u) * std));
}

int blocks_for(int64_t n) {
  return static_cast<int>(std::min<int64_t>((n + 255) / 256, 1 << 20));
}

__global__ void bf16_kernel(__nv_bfloat16* w, int64_t n, uint64_t seed, float std) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    w[i] = __float2bfloat16_rn(weight_at(seed, i, std));
}

// One block per row: the row's amax, then its codes.
template <bool kFloat8>
__global__ void byte_rows_kernel(uint8_t* q, float* scale, int64_t K, uint64_t seed, float std) {
  const int64_t n = blockIdx.x, base = n * K;
  float amax = 0.0f;
  for (int64_t k = threadIdx.x; k < K; k += blockDim.x) amax = fmaxf(amax, fabsf(weight_at(seed, base + k, std)));
  amax = ops::block_max(amax);
  const float s = kFloat8 ? fmaxf(amax / 448.0f, 1e-12f) : fmaxf(amax / 127.5f, 1e-8f);
  const float recip = 1.0f / s;
  for (int64_t k = threadIdx.x; k < K; k += blockDim.x) {
    const float w = weight_at(seed, base + k, std);
    uint8_t b;
    if constexpr (kFloat8) {
      b = static_cast<uint8_t>(__nv_cvt_float_to_fp8(fminf(fmaxf(w / s, -448.0f), 448.0f), __NV_SATFINITE, __NV_E4M3));
    } else {
      b = static_cast<uint8_t>(static_cast<int8_t>(fminf(fmaxf(rintf(w * recip), -128.0f), 127.0f)));
    }
    q[base + k] = b;
  }
  if (threadIdx.x == 0) scale[n] = s;
}

// torchao int4wo (float zero point): scale = max((max − min) / 15, 1e-6), zero = min + 8 · scale,
// both bf16; a thread per (row, group), written in the GPU qparam order.
__global__ void int4_qparams_kernel(uint32_t* qp, int64_t N, int64_t K, int group, uint64_t seed,
                                    float std) {
  const int64_t groups = K / group, total = (N + 15) / 16 * 16 * groups;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t n = e / groups, grp = e % groups;
    uint32_t v = 0;
    if (n < N) {
      float lo = INFINITY, hi = -INFINITY;
      for (int j = 0; j < group; ++j) {
        const float w = weight_at(seed, n * K + grp * group + j, std);
        lo = fminf(lo, w);
        hi = fmaxf(hi, w);
      }
      const __nv_bfloat16 s = __float2bfloat16_rn(fmaxf((hi - lo) / 15.0f, 1e-6f));
      const __nv_bfloat16 z = __float2bfloat16_rn(lo + __bfloat162float(s) * 8.0f);
      v = uint32_t(__bfloat16_as_ushort(s)) | uint32_t(__bfloat16_as_ushort(z)) << 16;
    }
    qp[int4::qparam_index(n / 16, groups, grp, static_cast<int>(n % 16))] = v;
  }
}

// Codes q = clamp(round((w − (zero − 8 · scale)) / scale), 0, 15), one packed word per thread.
__global__ void int4_codes_kernel(uint32_t* packed, const uint32_t* qp, int64_t N, int64_t K,
                                  int group, uint64_t seed, float std) {
  const int64_t chunks = K / 64, groups = K / group, words = (N + 15) / 16 * chunks * 128;
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < words;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int4::Word wd(idx, chunks);
    const int64_t grp = wd.col(0) / group;
    uint32_t word = 0;
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const int64_t n = wd.tile * 16 + wd.row(i);
      if (n >= N) continue;
      const uint32_t sz = qp[int4::qparam_index(wd.tile, groups, grp, wd.row(i))];
      const float s = ops::bf_bits(sz & 0xffffu), z = ops::bf_bits(sz >> 16);
      const float w = weight_at(seed, n * K + wd.col(i), std);
      const float q = fminf(fmaxf(rintf((w - (z - 8.0f * s)) / s), 0.0f), 15.0f);
      word |= static_cast<uint32_t>(q) << (4 * i);
    }
    packed[idx] = word;
  }
}

__global__ void fill_kernel(float* p, int64_t n, float v) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    p[i] = v;
}

}  // namespace

void random_bf16(void* w, int64_t N, int64_t K, uint64_t seed, float std, cudaStream_t stream) {
  LB_CHECK(w && N > 0 && K > 0, "random_bf16: bad arguments");
  bf16_kernel<<<blocks_for(N * K), 256, 0, stream>>>(static_cast<__nv_bfloat16*>(w), N * K, seed, std);
  ops::check_launch("random_bf16");
}

void random_int8(int8_t* q, float* scale, int64_t N, int64_t K, uint64_t seed, float std,
                 cudaStream_t stream) {
  LB_CHECK(q && scale && N > 0 && K > 0, "random_int8: bad arguments");
  byte_rows_kernel<false><<<static_cast<unsigned>(N), 256, 0, stream>>>(reinterpret_cast<uint8_t*>(q), scale, K, seed, std);
  ops::check_launch("random_int8");
}

void random_float8(uint8_t* q, float* scale, int64_t N, int64_t K, uint64_t seed, float std,
                   cudaStream_t stream) {
  LB_CHECK(q && scale && N > 0 && K > 0, "random_float8: bad arguments");
  byte_rows_kernel<true><<<static_cast<unsigned>(N), 256, 0, stream>>>(q, scale, K, seed, std);
  ops::check_launch("random_float8");
}

void random_int4(void* packed, void* qparams, int64_t N, int64_t K, int group, uint64_t seed,
                 float std, cudaStream_t stream) {
  LB_CHECK(packed && qparams && N > 0 && K % 64 == 0 && group >= 16 && K % group == 0,
           "random_int4: bad arguments (N {}, K {}, group {})", N, K, group);
  const int64_t groups = K / group, words = (N + 15) / 16 * (K / 64) * 128;
  int4_qparams_kernel<<<blocks_for((N + 15) / 16 * 16 * groups), 256, 0, stream>>>(
      static_cast<uint32_t*>(qparams), N, K, group, seed, std);
  ops::check_launch("random_int4 (qparams)");
  int4_codes_kernel<<<blocks_for(words), 256, 0, stream>>>(static_cast<uint32_t*>(packed),
                                                           static_cast<const uint32_t*>(qparams), N,
                                                           K, group, seed, std);
  ops::check_launch("random_int4 (codes)");
}

void fill_f32(float* p, int64_t n, float v, cudaStream_t stream) {
  if (n <= 0) return;
  fill_kernel<<<blocks_for(n), 256, 0, stream>>>(p, n, v);
  ops::check_launch("fill_f32");
}

}  // namespace lowbit::cuda
