// Small device helpers shared by the forward-pass kernels (llama_ops.h): launch checks, block
// reductions, programmatic-dependent-launch triggers, bf16 vector access.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <utility>

#include "kernels/cuda/llama_ops.h"
#include "lowbit/core/error.h"

namespace lowbit::cuda::ops {

// Every launch is followed by this: a bad configuration surfaces at the call that caused it.
inline void check_launch(const char* kernel) {
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess)
    fail("CUDA launch of {} failed: {} ({})", kernel, cudaGetErrorString(e), cudaGetErrorName(e));
}

// Launches `kernel` with programmatic stream serialization when set_programmatic_launch(true): its
// blocks may start while the previous kernel finishes (hiding the launch gap between the many small
// kernels of a decode step); every kernel launched so calls wait_prior() before touching memory.
// launch_overlap: the same with the overlap chosen per call (on only where set_programmatic_launch
// is on too). Kernels reading the output of cuBLASLt's int8 GEMM turn it off: that GEMM lets
// dependents launch early, and their blocks, parked waiting, took SMs its later waves needed
// (int8dq prefill 63.5–64.6k tok/s with the overlap, 66.4–66.5k without, H200).
template <typename... KArgs, typename... Args>
void launch_overlap(bool overlap, const char* name, void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem,
                    cudaStream_t stream, Args&&... args) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  if (overlap && programmatic_launch()) {
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = attr;
    cfg.numAttrs = 1;
  }
  const cudaError_t e = cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();  // a failed launch is not sticky: later checks must not see it again
    fail("CUDA launch of {} failed: {} ({})", name, cudaGetErrorString(e), cudaGetErrorName(e));
  }
}
template <typename... KArgs, typename... Args>
void launch(const char* name, void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
            Args&&... args) {
  launch_overlap(true, name, kernel, grid, block, smem, stream, std::forward<Args>(args)...);
}

// Waits until the previous kernel on the stream has completed and its writes are visible (a no-op
// for a normal launch, which starts only then anyway).
__device__ __forceinline__ void wait_prior() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// Lets the next kernel, when launched with programmatic stream serialization (the GEMVs), start its
// weight prefetch now; it still waits for this grid's completion before reading our outputs.
__device__ __forceinline__ void allow_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum over the block (blockDim.x a multiple of 32, ≤ 1024); every thread gets the result.
__device__ __forceinline__ float block_sum(float v) {
  __shared__ float part[32];
  __shared__ float total;
  v = warp_sum(v);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) part[warp] = v;
  __syncthreads();
  if (warp == 0) {
    float s = lane < (int)(blockDim.x >> 5) ? part[lane] : 0.0f;
    s = warp_sum(s);
    if (lane == 0) total = s;
  }
  __syncthreads();
  return total;
}

// Maximum over the block, as block_sum.
__device__ __forceinline__ float block_max(float v) {
  __shared__ float part[32];
  __shared__ float total;
  v = warp_max(v);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) part[warp] = v;
  __syncthreads();
  if (warp == 0) {
    float s = lane < (int)(blockDim.x >> 5) ? part[lane] : -INFINITY;
    s = warp_max(s);
    if (lane == 0) total = s;
  }
  __syncthreads();
  return total;
}

__device__ __forceinline__ float bf(const __nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float bf_bits(uint16_t bits) {
  return __uint_as_float(static_cast<uint32_t>(bits) << 16);
}

// bf16x2 arithmetic on packed pairs.
// (lo, hi) rounded to bf16 and packed, lo in the low half.
__device__ __forceinline__ uint32_t bf16x2_pack(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}
__device__ __forceinline__ uint32_t bf16x2_sub(uint32_t a, uint32_t b) {
  __nv_bfloat162 r =
      __hsub2(*reinterpret_cast<__nv_bfloat162*>(&a), *reinterpret_cast<__nv_bfloat162*>(&b));
  return *reinterpret_cast<uint32_t*>(&r);
}
__device__ __forceinline__ uint32_t bf16x2_mul(uint32_t a, uint32_t b) {
  __nv_bfloat162 r =
      __hmul2(*reinterpret_cast<__nv_bfloat162*>(&a), *reinterpret_cast<__nv_bfloat162*>(&b));
  return *reinterpret_cast<uint32_t*>(&r);
}
__device__ __forceinline__ uint32_t bf16x2_fma(uint32_t a, uint32_t b, uint32_t c) {
  __nv_bfloat162 r =
      __hfma2(*reinterpret_cast<__nv_bfloat162*>(&a), *reinterpret_cast<__nv_bfloat162*>(&b),
              *reinterpret_cast<__nv_bfloat162*>(&c));
  return *reinterpret_cast<uint32_t*>(&r);
}

// (a & mask) | bits in one LOP3 (the compiler splits the two constants into two instructions).
template <uint32_t kMask, uint32_t kBits>
__device__ __forceinline__ uint32_t and_or(uint32_t a) {
  uint32_t r;
  asm("lop3.b32 %0, %1, %2, %3, 0xEA;" : "=r"(r) : "r"(a), "n"(kMask), "n"(kBits));
  return r;
}

// silu(g) · u with the fast exponential and division (a few ulp of float32 from g / (1 + e^-g) · u;
// the bf16 rounding that follows absorbs nearly all of it). e^-g overflowing gives silu = −0. Every
// SwiGLU on the GPU (the standalone kernels and the decode GEMV's epilogue) computes this.
__device__ __forceinline__ float silu_mul(float g, float u) { return __fdividef(g, 1.0f + __expf(-g)) * u; }

__device__ __forceinline__ float round_bf16(float v) { return __bfloat162float(__float2bfloat16_rn(v)); }

// Per-row dynamic quantization (quantize_rows_int8 / quantize_rows_float8 of weight_gemv.h, and the
// kernels that write RowCodes): the scale of a row from the largest |value| of its bf16 values, and
// one value's code. e4m3: scale = amax / 448, code = e4m3(clamp(v / scale, ±448)) (0 stays 0, also
// when the row is all zeros); int8: scale = max(amax / 127, 1e-5), code = clamp(rint(v / scale), ±127).
template <bool kFloat8>
__device__ __forceinline__ float row_quant_scale(float amax) {
  return kFloat8 ? amax / 448.0f : fmaxf(amax / 127.0f, 1e-5f);
}
template <bool kFloat8>
__device__ __forceinline__ uint8_t row_quant_code(float v, float scale, float recip) {
  if constexpr (kFloat8) {
    const float s = v == 0.0f ? 0.0f : fminf(fmaxf(v / scale, -448.0f), 448.0f);
    return static_cast<uint8_t>(__nv_cvt_float_to_fp8(s, __NV_SATFINITE, __NV_E4M3));
  } else {
    return static_cast<uint8_t>(static_cast<int8_t>(fminf(fmaxf(rintf(v * recip), -127.0f), 127.0f)));
  }
}

// Eight values of Int32Rows (llama_ops.h) at row m, columns n .. n + 7 (16-byte aligned), as bf16
// values in float.
__device__ __forceinline__ void int32_rows8(const Int32Rows& p, int64_t m, int64_t ld, int64_t n, float (&v)[8]) {
  const ::int4* a = reinterpret_cast<const ::int4*>(p.acc + m * ld + n);
  const float4* w = reinterpret_cast<const float4*>(p.wscale + n);
  const float sx = p.xscale[m];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const ::int4 q = a[h];
    const float4 s = w[h];
    v[4 * h] = round_bf16(static_cast<float>(q.x) * sx * s.x);
    v[4 * h + 1] = round_bf16(static_cast<float>(q.y) * sx * s.y);
    v[4 * h + 2] = round_bf16(static_cast<float>(q.z) * sx * s.z);
    v[4 * h + 3] = round_bf16(static_cast<float>(q.w) * sx * s.w);
  }
}
__device__ __forceinline__ float int32_rows1(const Int32Rows& p, int64_t m, int64_t ld, int64_t n) {
  return round_bf16(static_cast<float>(p.acc[m * ld + n]) * p.xscale[m] * p.wscale[n]);
}

// Eight values of a row → their codes, one 8-byte store.
template <bool kFloat8>
__device__ __forceinline__ void store_codes8(const float (&v)[8], float scale, float recip, uint8_t* dst) {
  uint8_t q[8];
#pragma unroll
  for (int e = 0; e < 8; ++e) q[e] = row_quant_code<kFloat8>(v[e], scale, recip);
  *reinterpret_cast<uint2*>(dst) = *reinterpret_cast<const uint2*>(q);
}

}  // namespace lowbit::cuda::ops
