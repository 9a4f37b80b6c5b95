// The prefill path's weight side: each GPU weight format back to bf16 rows for cuBLAS, the dynamic
// schemes' activation math as bf16 (quantize, dequantize; float8dq-tensor's per-tensor codes for
// decode too), and the CPU int4 layout repacked into the
// GPU one on the device (uploading a checkpoint needs no host-side repacking loop).
#include <cuda_fp8.h>

#include "kernels/cuda/int4_layout.cuh"
#include "kernels/cuda/ops_common.cuh"
#include "kernels/cuda/weight_gemv.h"

namespace lowbit::cuda {
namespace {

int blocks_for(int64_t n, int threads = 256) {
  return static_cast<int>(std::min<int64_t>((n + threads - 1) / threads, 1 << 20));
}

__device__ __forceinline__ float e4m3_to_float(uint8_t b) {
  const __half_raw h = __nv_cvt_fp8_to_halfraw(static_cast<__nv_fp8_storage_t>(b), __NV_E4M3);
  return __half2float(__half(h));
}
// The value of an int8 or e4m3 code.
template <bool kFloat8>
__device__ __forceinline__ float code_value(uint8_t b) {
  return kFloat8 ? e4m3_to_float(b) : static_cast<float>(static_cast<int8_t>(b));
}

// A lane's 32-byte output run (lo, hi) whose partner lane (lane ^ 1, in `mask`) holds the adjacent
// run of the same row, the even lane's first: the two trade halves, so each store instruction
// writes whole 32-byte sectors (the even run's two halves, then the odd run's) instead of half of
// every sector twice. int4wo-64 prefill 39.6k → 42.4k tok/s with it (H200, dequantizing before each
// GEMM). write = false: trade only (the partner may still write).
__device__ __forceinline__ void store_run_pair(uint4* even_run, const uint4& lo, const uint4& hi, bool odd,
                                               unsigned mask, bool write) {
  const uint4 send = odd ? lo : hi;
  uint4 got;
  got.x = __shfl_xor_sync(mask, send.x, 1);
  got.y = __shfl_xor_sync(mask, send.y, 1);
  got.z = __shfl_xor_sync(mask, send.z, 1);
  got.w = __shfl_xor_sync(mask, send.w, 1);
  if (!write) return;
  even_run[odd ? 1 : 0] = odd ? got : lo;
  even_run[odd ? 3 : 2] = odd ? hi : got;
}

// 16 codes per thread: one 16-byte load, two 16-byte stores (K is a multiple of 64, so the
// threads of a pair share a row).
template <bool kFloat8>
__global__ void dequant_bytes_kernel(const uint8_t* q, const float* scale, int64_t n0, int64_t rows,
                                     int K, __nv_bfloat16* out) {
  const int64_t per_row = K / 16, total = rows * per_row;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = e / per_row, c = e % per_row;
    const float s = scale[n0 + r];
    const uint4 v = reinterpret_cast<const uint4*>(q + (n0 + r) * K)[c];
    const uint8_t* b = reinterpret_cast<const uint8_t*>(&v);
    __align__(16) __nv_bfloat16 o[16];
#pragma unroll
    for (int i = 0; i < 16; ++i) {
      o[i] = __float2bfloat16_rn(code_value<kFloat8>(b[i]) * s);
    }
    store_run_pair(reinterpret_cast<uint4*>(out + r * K + (c & ~int64_t{1}) * 16), reinterpret_cast<const uint4*>(o)[0],
                   reinterpret_cast<const uint4*>(o)[1], c & 1, __activemask(), true);
  }
}

// One thread per 16-byte lane of a (tile, chunk) block: rows g and g + 8 of the tile at k = 16t ..
// 16t + 15 of the chunk (one group), written as 32 contiguous bytes per row. In word s, row g's
// nibbles 0, 4, 2, 6 are k0 .. k0 + 3 (k0 = 16t + 4s); row g + 8's are nibbles 1, 5, 3, 7.
__global__ void dequant_int4_kernel(const uint4* packed, const uint32_t* qp, int64_t n0, int64_t n1,
                                    int K, int group, __nv_bfloat16* out) {
  const int64_t chunks = K / 64, groups = K / group;
  const int64_t tile0 = n0 / 16, lanes = ((n1 - n0 + 15) / 16) * chunks * 32;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < lanes;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t idx = tile0 * chunks * 32 + e;
    const int lane = static_cast<int>(idx & 31), g = lane >> 2, t = lane & 3;
    const int64_t tc = idx >> 5, chunk = tc % chunks, tile = tc / chunks;
    const uint4 v = packed[idx];
    const uint32_t w[4] = {v.x, v.y, v.z, v.w};
    const int64_t k0 = chunk * 64 + 16 * t, grp = k0 / group;
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int r = g + 8 * half;
      const int64_t n = tile * 16 + r;
      const uint32_t sz = qp[int4::qparam_index(tile, groups, grp, r)];  // pad rows have qparams too
      const float s = ops::bf_bits(sz & 0xffffu), z = ops::bf_bits(sz >> 16);
      __align__(16) __nv_bfloat16 o[16];
#pragma unroll
      for (int ws = 0; ws < 4; ++ws) {
        constexpr int nib[4] = {0, 4, 2, 6};
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          const float q = static_cast<float>((w[ws] >> (4 * (nib[j] + half))) & 0xfu) - 8.0f;
          o[4 * ws + j] = __float2bfloat16_rn(__fmaf_rn(q, s, z));
        }
      }
      // Lanes t and t ^ 1 hold adjacent runs of the same row (every lane of the warp is active).
      store_run_pair(reinterpret_cast<uint4*>(out + (n - n0) * K + (k0 - 16 * (t & 1))),
                     reinterpret_cast<const uint4*>(o)[0], reinterpret_cast<const uint4*>(o)[1], t & 1, 0xffffffffu,
                     n < n1);
    }
  }
}

// One block per row, the arithmetic of quantize_rows_kernel (gemv_common.cu), dequantized to bf16.
template <bool kFloat8>
__global__ void fake_quant_kernel(const __nv_bfloat16* x, int K, __nv_bfloat16* out) {
  const int64_t r = blockIdx.x;
  const __nv_bfloat16* row = x + r * K;
  float amax = 0.0f;
  for (int i = threadIdx.x; i < K; i += blockDim.x) amax = fmaxf(amax, fabsf(ops::bf(row[i])));
  amax = ops::block_max(amax);
  const float scale = ops::row_quant_scale<kFloat8>(amax);
  const float recip = 1.0f / scale;
  for (int i = threadIdx.x; i < K; i += blockDim.x) {
    const uint8_t q = ops::row_quant_code<kFloat8>(ops::bf(row[i]), scale, recip);
    out[r * K + i] = __float2bfloat16_rn(code_value<kFloat8>(q) * scale);
  }
}

__global__ void amax_kernel(const __nv_bfloat16* x, int64_t n, unsigned* amax) {
  ops::wait_prior();
  ops::allow_dependents();
  float m = 0.0f;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    m = fmaxf(m, fabsf(ops::bf(x[i])));
  m = ops::block_max(m);
  if (threadIdx.x == 0) atomicMax(amax, __float_as_uint(m));  // non-negative floats order as integers
}

// One scale for the whole tensor: codes and the scale per row (kCodes), or the dequantized values.
template <bool kCodes>
__global__ void tensor_float8_kernel(const __nv_bfloat16* x, int M, int64_t n, const unsigned* amax,
                                     uint8_t* xq, float* xscale, __nv_bfloat16* out) {
  ops::wait_prior();
  ops::allow_dependents();
  const float scale = __uint_as_float(*amax) / 448.0f;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const uint8_t q = ops::row_quant_code<true>(ops::bf(x[i]), scale, 0.0f);  // e4m3: no reciprocal
    if constexpr (kCodes)
      xq[i] = q;
    else
      out[i] = __float2bfloat16_rn(e4m3_to_float(q) * scale);
  }
  if (kCodes && blockIdx.x == 0)
    for (int m = threadIdx.x; m < M; m += blockDim.x) xscale[m] = scale;
}

void tensor_float8(const void* x, int M, int K, unsigned* amax, uint8_t* xq, float* xscale, void* out,
                   cudaStream_t stream) {
  LB_CHECK(x && amax && M > 0 && K > 0 && (out || (xq && xscale)),
           "quantize_tensor_float8: bad arguments (M {}, K {})", M, K);
  const int64_t n = static_cast<int64_t>(M) * K;
  const cudaError_t e = cudaMemsetAsync(amax, 0, sizeof(unsigned), stream);
  if (e != cudaSuccess) fail("quantize_tensor_float8: cudaMemsetAsync failed: {}", cudaGetErrorString(e));
  const int blocks = std::min(blocks_for(n), 264);
  ops::launch("quantize_tensor_float8 (amax)", amax_kernel, blocks, 256, 0, stream,
              static_cast<const __nv_bfloat16*>(x), n, amax);
  const __nv_bfloat16* xb = static_cast<const __nv_bfloat16*>(x);
  if (out)
    ops::launch("fake_quantize_tensor_float8", tensor_float8_kernel<false>, blocks_for(n), 256, 0, stream, xb, M,
                n, static_cast<const unsigned*>(amax), xq, xscale, static_cast<__nv_bfloat16*>(out));
  else
    ops::launch("quantize_tensor_float8", tensor_float8_kernel<true>, blocks_for(n), 256, 0, stream, xb, M, n,
                static_cast<const unsigned*>(amax), xq, xscale, static_cast<__nv_bfloat16*>(nullptr));
}

__global__ void repack_int4_words(const uint8_t* cpu, int64_t N, int64_t K, uint32_t* packed) {
  const int64_t chunks = K / 64, words = (N + 15) / 16 * chunks * 128;
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < words;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int4::Word wd(idx, chunks);
    uint32_t word = 0;
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const int64_t n = wd.tile * 16 + wd.row(i), k = wd.col(i);
      if (n >= N) continue;
      const int64_t j = k % 64;
      const uint8_t byte = cpu[n * (K / 2) + (k / 64) * 32 + (j % 32)];
      word |= static_cast<uint32_t>(j < 32 ? byte & 0xf : byte >> 4) << (4 * i);
    }
    packed[idx] = word;
  }
}

__global__ void repack_int4_qparams(const uint16_t* scale, const uint16_t* zero, int64_t N,
                                    int64_t groups, uint32_t* qp) {
  const int64_t total = (N + 15) / 16 * 16 * groups;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t n = e / groups, grp = e % groups;
    const uint32_t v = n < N ? (uint32_t(scale[n * groups + grp]) | uint32_t(zero[n * groups + grp]) << 16) : 0u;
    qp[int4::qparam_index(n / 16, groups, grp, static_cast<int>(n % 16))] = v;
  }
}

}  // namespace

void dequant_rows_int8(const int8_t* q, const float* scale, int64_t n0, int64_t n1, int K, void* out,
                       cudaStream_t stream) {
  LB_CHECK(q && scale && out && n1 > n0 && n0 >= 0 && K > 0 && K % 16 == 0, "dequant_rows_int8: bad arguments");
  dequant_bytes_kernel<false><<<blocks_for((n1 - n0) * K / 16), 256, 0, stream>>>(
      reinterpret_cast<const uint8_t*>(q), scale, n0, n1 - n0, K, static_cast<__nv_bfloat16*>(out));
  ops::check_launch("dequant_rows_int8");
}

void dequant_rows_float8(const uint8_t* q, const float* scale, int64_t n0, int64_t n1, int K,
                         void* out, cudaStream_t stream) {
  LB_CHECK(q && scale && out && n1 > n0 && n0 >= 0 && K > 0 && K % 16 == 0, "dequant_rows_float8: bad arguments");
  dequant_bytes_kernel<true><<<blocks_for((n1 - n0) * K / 16), 256, 0, stream>>>(
      q, scale, n0, n1 - n0, K, static_cast<__nv_bfloat16*>(out));
  ops::check_launch("dequant_rows_float8");
}

void dequant_rows_int4(const void* packed, const void* qparams, int64_t n0, int64_t n1, int K,
                       int group, void* out, cudaStream_t stream) {
  LB_CHECK(packed && qparams && out && n1 > n0 && n0 >= 0 && n0 % 16 == 0 && K % 64 == 0 &&
               group >= 16 && K % group == 0,
           "dequant_rows_int4: bad arguments (rows [{}, {}), K {}, group {})", n0, n1, K, group);
  const int64_t lanes = (n1 - n0 + 15) / 16 * (K / 64) * 32;
  dequant_int4_kernel<<<blocks_for(lanes), 256, 0, stream>>>(
      static_cast<const uint4*>(packed), static_cast<const uint32_t*>(qparams), n0, n1, K, group,
      static_cast<__nv_bfloat16*>(out));
  ops::check_launch("dequant_rows_int4");
}

void fake_quantize_rows_int8(const void* x, int M, int K, void* out, cudaStream_t stream) {
  LB_CHECK(x && out && M > 0 && K > 0, "fake_quantize_rows_int8: bad arguments");
  fake_quant_kernel<false><<<M, 256, 0, stream>>>(static_cast<const __nv_bfloat16*>(x), K,
                                                  static_cast<__nv_bfloat16*>(out));
  ops::check_launch("fake_quantize_rows_int8");
}

void fake_quantize_rows_float8(const void* x, int M, int K, void* out, cudaStream_t stream) {
  LB_CHECK(x && out && M > 0 && K > 0, "fake_quantize_rows_float8: bad arguments");
  fake_quant_kernel<true><<<M, 256, 0, stream>>>(static_cast<const __nv_bfloat16*>(x), K,
                                                 static_cast<__nv_bfloat16*>(out));
  ops::check_launch("fake_quantize_rows_float8");
}

void quantize_tensor_float8(const void* x, int M, int K, unsigned* amax, uint8_t* xq, float* xscale,
                            cudaStream_t stream) {
  tensor_float8(x, M, K, amax, xq, xscale, nullptr, stream);
}

void fake_quantize_tensor_float8(const void* x, int M, int K, unsigned* amax, void* out,
                                 cudaStream_t stream) {
  tensor_float8(x, M, K, amax, nullptr, nullptr, out, stream);
}

void repack_int4(const uint8_t* cpu_packed, const uint16_t* scale, const uint16_t* zero, int64_t N,
                 int64_t K, int group, void* packed, void* qparams, cudaStream_t stream) {
  LB_CHECK(cpu_packed && scale && zero && packed && qparams && N > 0 && K % 64 == 0 &&
               group >= 16 && K % group == 0,
           "repack_int4: bad arguments (N {}, K {}, group {})", N, K, group);
  const int64_t words = (N + 15) / 16 * (K / 64) * 128;
  repack_int4_words<<<blocks_for(words), 256, 0, stream>>>(cpu_packed, N, K,
                                                           static_cast<uint32_t*>(packed));
  ops::check_launch("repack_int4 (codes)");
  const int64_t groups = K / group;
  repack_int4_qparams<<<blocks_for((N + 15) / 16 * 16 * groups), 256, 0, stream>>>(
      scale, zero, N, groups, static_cast<uint32_t*>(qparams));
  ops::check_launch("repack_int4 (qparams)");
}

}  // namespace lowbit::cuda
