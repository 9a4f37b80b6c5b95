// The one kernel skeleton behind weight_gemv.h, and the device helpers the formats share.
//
// Orientation: the weights are the tensor-core A operand (a tile = 16 output rows n), the
// activations the B operand (8 tokens per n8 tile; a second tile when M > 8), so M = 1..16 costs
// one or two mma per weight fragment and the weights are read exactly once. Lane (g = lane / 4,
// t = lane % 4) owns rows g and g + 8 of a tile. The product sums over k, so any permutation of k
// shared by A and B is valid: each lane takes a contiguous run of k (16 bytes of each row per
// chunk) and loads the matching activations as 16-byte vectors; no shuffles, no shared memory in
// the main loop.
//
// Work split: a group of SK CTAs (split-K; a thread-block cluster when SK > 1) owns RT row tiles
// and its SK · WK warps split K (each warp a contiguous range of chunks); the warps' partial sums
// meet in shared memory (across the cluster through distributed shared memory, each CTA summing a
// share of the outputs in a fixed order) and the CTAs write bf16 outputs.
// Streaming: each warp keeps a ring of DEPTH chunk slots in shared memory filled by cp.async
// (weights L1-bypassing with a 256-byte L2 prefetch, activations and qparams through L1), so
// DEPTH − 1 chunks stay in flight while it dequantizes and multiplies the current one. Every lane
// reads back only the 16-byte vectors it copied itself: no barrier in the main loop.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>
#include <cooperative_groups.h>

#include <atomic>
#include <cstdint>

#include "kernels/cuda/ops_common.cuh"
#include "kernels/cuda/weight_gemv.h"
#include "lowbit/core/error.h"

namespace lowbit::cuda::detail {

struct GemvParams {
  const void* x;        // activations [M, K]: bf16, or int8 / e4m3 for the dq formats
  const float* xscale;  // dq: [M]
  const void* w;        // weights in the format's layout
  const void* aux;      // int8/float8: float scale [N]; int4: packed (scale, zero) words
  __nv_bfloat16* y;     // [M, N]
  int M, N, K;
  int log2g;  // int4 group size
  int glu;    // SwiGLU epilogue (GemvOptions::swiglu): y is [M, N / 2]
  int sk;     // split-K: CTAs (one cluster) per row block, 1 .. kGemvMaxSplit
};

// ------------------------------------------------------------------ asynchronous copies

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
// Weights are read once: L2 only, with the L2 fetching whole 256-byte blocks.
__device__ __forceinline__ void cp_async_stream16(uint32_t dst, const void* src) {
  asm volatile("cp.async.cg.shared.global.L2::256B [%0], [%1], 16;" ::"r"(dst), "l"(src)
               : "memory");
}
// Activations and qparams are re-read by other warps: through L1. `bytes` = 0 writes zeros only.
__device__ __forceinline__ void cp_async_cached16(uint32_t dst, const void* src, int bytes) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 16, %2;" ::"r"(dst), "l"(src), "r"(bytes)
               : "memory");
}
__device__ __forceinline__ void cp_async_cached8(uint32_t dst, const void* src) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 8;" ::"r"(dst), "l"(src) : "memory");
}
__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;" ::: "memory");
}
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
}

__device__ __forceinline__ uint32_t word(const uint4& v, int i) {
  return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w;
}

// Programmatic dependent launch (sm_90): let the next kernel launch, wait for the previous one.
__device__ __forceinline__ void pdl_launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// Thread-block clusters (sm_90): a barrier over the cluster's CTAs (release/acquire: shared
// memory written before it is visible to the peers after it), and a peer CTA's copy of a
// shared-memory object. Split-K launches clusters only on sm_90+.
__device__ __forceinline__ void cluster_sync() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  cooperative_groups::this_cluster().sync();
#endif
}
template <class T>
__device__ __forceinline__ const T* cluster_peer(const T* p, int rank) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  void* mine = const_cast<void*>(static_cast<const void*>(p));
  return static_cast<const T*>(cooperative_groups::this_cluster().map_shared_rank(mine, rank));
#else
  return p;
#endif
}

// ------------------------------------------------------------------ tensor-core steps

// D += A(16×16 bf16) · B(16×8 bf16), fp32 accumulators.
__device__ __forceinline__ void mma_bf16(float (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2,
                                         uint32_t a3, uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
      "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// D += A(16×32 s8) · B(32×8 s8), int32 accumulators (exact).
__device__ __forceinline__ void mma_s8(int (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2,
                                       uint32_t a3, uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 "
      "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
      : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// ------------------------------------------------------------------ conversions to bf16x2

using ops::and_or;
using ops::bf16x2_fma;
using ops::bf16x2_mul;
using ops::bf16x2_sub;

// Two int8 (bytes 0 and 1 of `pair`, placed at bits 0..7 and 16..23) → bf16x2, exact: with l the
// low 7 bits, 0x4300 | l is the bf16 128 + l, and subtracting 128 (0x4300) or, for a negative
// byte, 256 (0x4380) leaves the value.
__device__ __forceinline__ uint32_t i8pair_to_bf16x2(uint32_t pair) {
  const uint32_t v = and_or<0x007f007fu, 0x43004300u>(pair);
  const uint32_t c = and_or<0x00800080u, 0x43004300u>(pair);
  return bf16x2_sub(v, c);
}
// int8x4 → bf16x2 of bytes (0, 1) and (2, 3).
__device__ __forceinline__ void i8x4_to_bf16(uint32_t u, uint32_t& lo, uint32_t& hi) {
  lo = i8pair_to_bf16x2(__byte_perm(u, 0, 0x4140));
  hi = i8pair_to_bf16x2(__byte_perm(u, 0, 0x4342));
}

// Two e4m3 bytes placed at bits 8..15 and 24..31 → bf16x2, exact: sign stays, exponent and
// mantissa move down 4 bits (a bf16 2^-120 times the value, subnormals included), then × 2^120.
__device__ __forceinline__ uint32_t e4m3pair_to_bf16x2(uint32_t w) {
  const uint32_t mag = (w >> 4) & 0x07f007f0u;
  return bf16x2_mul((w & 0x80008000u) | mag, 0x7b807b80u);
}
__device__ __forceinline__ void e4m3x4_to_bf16(uint32_t u, uint32_t& lo, uint32_t& hi) {
  lo = e4m3pair_to_bf16x2(__byte_perm(u, 0, 0x1404));
  hi = e4m3pair_to_bf16x2(__byte_perm(u, 0, 0x3424));
}

// A lane's weights for one chunk and tile: WL 16-byte vectors, plus (int4) its (scale, zero) pair.
template <int WL>
struct WFrag {
  uint4 v[WL];
  uint2 qp;
};

// Row-major weights, 64 bytes of each row per chunk: lane (g, t) copies bytes 16t .. 16t + 15 of
// rows g (i = 0) and g + 8 (i = 1); rows past N re-read the last row (their outputs are dropped).
__device__ __forceinline__ const void* row_major_src(const GemvParams& p, int tile, int c, int g,
                                                     int t, int i, int row_bytes) {
  const int n = min(tile * 16 + g + 8 * i, p.N - 1);
  return static_cast<const char*>(p.w) + (size_t)n * row_bytes + (size_t)c * 64 + t * 16;
}

// The weight side shared by the one-byte formats (int8, e4m3): row-major [N, K], 64 k per chunk, two
// 16-byte vectors per lane (rows g and g + 8), no separate qparams stream.
struct ByteRowWeights {
  static constexpr int KC = 64, WL = 2;
  static constexpr bool QP = false, XSUM = false;
  __device__ static const void* wsrc(const GemvParams& p, int tile, int c, int g, int t, int,
                                     int i) {
    return row_major_src(p, tile, c, g, t, i, p.K);
  }
};

// ------------------------------------------------------------------ the kernel

// Per-warp ring geometry (in 16-byte vectors): a slot holds one chunk's weights [RT][WL][lane],
// activations [MT][XV][lane] and (int4) qparams [RT][lane] (8 bytes each). About 13 KB per warp:
// two 8-warp or four 4-warp CTAs fit an SM.
template <class F, int MT, int RT>
struct Ring {
  static constexpr int W = RT * F::WL * 32, X = MT * F::XV * 32, Q = F::QP ? RT * 16 : 0;
  static constexpr int SLOT = W + X + Q;
  static constexpr int FIT = 13312 / (SLOT * 16);
  static constexpr int DEPTH = FIT < 3 ? 3 : FIT > 8 ? 8 : FIT;
  static constexpr int WARP_BYTES = DEPTH * SLOT * 16;
};

// F (a format) provides: Acc, KC (k per chunk), WL (16-byte weight vectors per lane, chunk and
// tile), QP (int4 qparams), XV (16-byte activation vectors per lane, chunk and token tile), XB
// (bytes per activation), XSUM (the format needs each token's sum of the chunk's activations),
// wsrc(p, tile, chunk, g, t, lane, i), qsrc(p, tile, chunk, g, t) (when QP), xsum<MT>(x, sums)
// (when XSUM: sums[j][i] of token 8j + 2t + i, computed once per chunk for all row tiles),
// mma<MT>(p, acc, frag, x[, sums]) and epilogue(p, sum, n, m).
template <class F, int MT, int RT, int WK>
__global__ void __launch_bounds__(WK * 32, WK == 8 ? 2 : 4) gemv_kernel(const GemvParams p) {
  using Acc = typename F::Acc;
  using R = Ring<F, MT, RT>;
  constexpr int DEPTH = R::DEPTH, KL = F::KC / 4;  // KL: k per lane per chunk
  extern __shared__ uint4 smem[];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, t = lane & 3;
  const int ntiles = (p.N + 15) >> 4;
  // Split-K: the cluster's CTAs are consecutive in x; CTA `rank` takes the rank-th share of K.
  const int sk = p.sk, rank = blockIdx.x % sk;
  const int tile0 = blockIdx.x / sk * RT;
  const int chunks = p.K / F::KC;
  const int parts = sk * WK, part = rank * WK + warp;
  const int c_begin = chunks * part / parts, c_end = chunks * (part + 1) / parts;
  uint4* ring = smem + warp * (DEPTH * R::SLOT);
  const uint32_t ring_s = smem_addr(ring);
  const char* xb = static_cast<const char*>(p.x);

  auto issue_weights = [&](int c, int slot) {
    if (c >= c_end) return;
    const uint32_t base = ring_s + slot * (R::SLOT * 16);
#pragma unroll
    for (int r = 0; r < RT; ++r) {
      const int tile = min(tile0 + r, ntiles - 1);
#pragma unroll
      for (int i = 0; i < F::WL; ++i)
        cp_async_stream16(base + ((r * F::WL + i) * 32 + lane) * 16,
                          F::wsrc(p, tile, c, g, t, lane, i));
      if constexpr (F::QP)
        cp_async_cached8(base + (R::W + R::X) * 16 + (r * 32 + lane) * 8,
                         F::qsrc(p, tile, c, g, t));
    }
  };
  auto issue_x = [&](int c, int slot) {
    if (c >= c_end) return;
    const uint32_t base = ring_s + (slot * R::SLOT + R::W) * 16;
#pragma unroll
    for (int j = 0; j < MT; ++j) {
      const int m = g + 8 * j;
      const char* src = xb + ((size_t)min(m, p.M - 1) * p.K + (size_t)c * F::KC + t * KL) * F::XB;
      // Lanes of tokens past M copy nothing: they feed zeros from registers (below).
      if (m < p.M) {
#pragma unroll
        for (int v = 0; v < F::XV; ++v)
          cp_async_cached16(base + ((j * F::XV + v) * 32 + lane) * 16, src + 16 * v, 16);
      }
    }
  };

  Acc acc[RT][MT][4];
#pragma unroll
  for (int r = 0; r < RT; ++r)
#pragma unroll
    for (int j = 0; j < MT; ++j)
#pragma unroll
      for (int i = 0; i < 4; ++i) acc[r][j][i] = Acc(0);

        // Prologue: the weights of DEPTH − 1 chunks are requested before waiting for the previous
        // kernel (PDL; they do not depend on it), the activations after. Group i completes chunk i.
#pragma unroll
  for (int i = 0; i < DEPTH - 1; ++i) issue_weights(c_begin + i, i);
  pdl_wait();
#pragma unroll
  for (int i = 0; i < DEPTH - 1; ++i) {
    issue_x(c_begin + i, i);
    cp_async_commit();
  }

  int rd = 0, wr = DEPTH - 1;  // ring slots of the chunk computed and of the chunk requested next
#pragma unroll 1
  for (int c = c_begin; c < c_end; ++c) {
    issue_weights(c + DEPTH - 1, wr);
    issue_x(c + DEPTH - 1, wr);
    cp_async_commit();
    cp_async_wait<DEPTH - 1>();  // chunk c has landed
    const uint4* slot = ring + rd * R::SLOT;
    uint4 xf[MT][F::XV];
#pragma unroll
    for (int j = 0; j < MT; ++j)
#pragma unroll
      for (int v = 0; v < F::XV; ++v)
        xf[j][v] = g + 8 * j < p.M ? slot[R::W + (j * F::XV + v) * 32 + lane] : make_uint4(0, 0, 0, 0);
    [[maybe_unused]] float xs[MT][2];
    if constexpr (F::XSUM) F::template xsum<MT>(xf, xs);
#pragma unroll
    for (int r = 0; r < RT; ++r) {
      WFrag<F::WL> f;
#pragma unroll
      for (int i = 0; i < F::WL; ++i) f.v[i] = slot[(r * F::WL + i) * 32 + lane];
      if constexpr (F::QP) f.qp = reinterpret_cast<const uint2*>(slot + R::W + R::X)[r * 32 + lane];
      if constexpr (F::XSUM)
        F::template mma<MT>(p, acc[r], f, xf, xs);
      else
        F::template mma<MT>(p, acc[r], f, xf);
    }
    rd = rd == DEPTH - 1 ? 0 : rd + 1;
    wr = wr == DEPTH - 1 ? 0 : wr + 1;
  }
  // The next kernel may start its prologue now (launching it earlier crowds SMs with waiting CTAs).
  pdl_launch_dependents();
  cp_async_wait<0>();
  __syncthreads();  // every warp is done with its ring: the reduction reuses the memory

  // The warps' partial sums meet in shared memory: red[warp][row in CTA][token] (rows padded by
  // one word against bank conflicts).
  using Red = Acc[RT * 16][MT * 8 + 1];
  Red* red = reinterpret_cast<Red*>(smem);
#pragma unroll
  for (int r = 0; r < RT; ++r)
#pragma unroll
    for (int j = 0; j < MT; ++j) {
      red[warp][r * 16 + g][8 * j + 2 * t] = acc[r][j][0];
      red[warp][r * 16 + g][8 * j + 2 * t + 1] = acc[r][j][1];
      red[warp][r * 16 + g + 8][8 * j + 2 * t] = acc[r][j][2];
      red[warp][r * 16 + g + 8][8 * j + 2 * t + 1] = acc[r][j][3];
    }
  if (sk > 1)
    cluster_sync();  // every CTA of the cluster has its partial sums in place
  else
    __syncthreads();
  // Sum of row r (in the CTA), token m over the cluster's CTAs and their warps, in K order.
  auto total = [&](int r, int m) {
    Acc s = Acc(0);
    for (int q = 0; q < sk; ++q) {
      const Red* rq = q == rank ? red : cluster_peer(red, q);
#pragma unroll
      for (int k = 0; k < WK; ++k) s += rq[k][r][m];
    }
    return s;
  };
  // CTA `rank` of the cluster writes outputs rank · threads + i, stepping over the whole cluster.
  const int step = sk * WK * 32, first = rank * WK * 32 + threadIdx.x;
  if (p.glu) {
    // Rows g (gate) and g + 8 (up) of each tile give output column 8 · tile + g. Both products are
    // rounded to bf16 first, as the unfused path stores them, so the result is the same.
    for (int i = first; i < RT * 8 * p.M; i += step) {
      const int m = i / (RT * 8), j = i % (RT * 8);
      const int r = (j >> 3) * 16 + (j & 7);
      const int n = tile0 * 16 + r;
      if (n >= p.N) continue;
      const Acc sg = total(r, m), su = total(r + 8, m);
      const float gv = __bfloat162float(__float2bfloat16_rn(F::epilogue(p, sg, n, m)));
      const float uv = __bfloat162float(__float2bfloat16_rn(F::epilogue(p, su, n + 8, m)));
      p.y[(size_t)m * (p.N >> 1) + tile0 * 8 + j] = __float2bfloat16_rn(ops::silu_mul(gv, uv));
    }
  } else {
    for (int i = first; i < RT * 16 * p.M; i += step) {
      const int m = i / (RT * 16), r = i % (RT * 16);
      const int n = tile0 * 16 + r;
      if (n >= p.N) continue;
      p.y[(size_t)m * p.N + n] = __float2bfloat16_rn(F::epilogue(p, total(r, m), n, m));
    }
  }
  if (sk > 1) cluster_sync();  // the peers read this CTA's shared memory until here
}

// ------------------------------------------------------------------ host side

template <class F, int MT, int RT, int WK>
void launch_config(const GemvParams& p, const GemvOptions& o) {
  using R = Ring<F, MT, RT>;
  constexpr size_t red_bytes = sizeof(typename F::Acc) * WK * RT * 16 * (MT * 8 + 1);
  constexpr size_t smem = WK * R::WARP_BYTES > red_bytes ? WK * R::WARP_BYTES : red_bytes;
  auto kernel = gemv_kernel<F, MT, RT, WK>;
  // Over 48 KB of dynamic shared memory must be allowed once per kernel and device.
  static std::atomic<uint64_t> ready{0};
  int dev = 0;
  cudaGetDevice(&dev);
  const uint64_t bit = uint64_t(1) << (dev & 63);
  if (!(ready.load(std::memory_order_acquire) & bit)) {
    const cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                               static_cast<int>(smem));
    if (e != cudaSuccess)
      fail("gemv: cannot reserve {} bytes of shared memory: {}", smem, cudaGetErrorString(e));
    ready.fetch_or(bit, std::memory_order_release);
  }
  const int ntiles = (p.N + 15) / 16;
  const dim3 grid((ntiles + RT - 1) / RT * p.sk), block(WK * 32);
  cudaError_t e;
  if (o.pdl || p.sk > 1) {
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = o.stream;
    cudaLaunchAttribute attrs[2];
    unsigned n = 0;
    if (o.pdl) {
      attrs[n].id = cudaLaunchAttributeProgrammaticStreamSerialization;
      attrs[n++].val.programmaticStreamSerializationAllowed = 1;
    }
    if (p.sk > 1) {
      attrs[n].id = cudaLaunchAttributeClusterDimension;
      attrs[n].val.clusterDim.x = static_cast<unsigned>(p.sk);
      attrs[n].val.clusterDim.y = 1;
      attrs[n++].val.clusterDim.z = 1;
    }
    cfg.attrs = attrs;
    cfg.numAttrs = n;
    e = cudaLaunchKernelEx(&cfg, kernel, p);
  } else {
    kernel<<<grid, block, smem, o.stream>>>(p);
    e = cudaGetLastError();
  }
  if (e != cudaSuccess)
    fail("gemv launch failed: {} ({})", cudaGetErrorString(e), cudaGetErrorName(e));
}

// The configurations: (row tiles per CTA, warps per CTA) = (1, 8), (2, 8), (1, 4), (2, 4), (4, 4).
template <class F, int MT>
void launch_mt(int config, const GemvParams& p, const GemvOptions& o) {
  switch (config) {
    case 0:
      return launch_config<F, MT, 1, 8>(p, o);
    case 1:
      return launch_config<F, MT, 2, 8>(p, o);
    case 2:
      return launch_config<F, MT, 1, 4>(p, o);
    case 3:
      return launch_config<F, MT, 2, 4>(p, o);
    default:
      return launch_config<F, MT, 4, 4>(p, o);
  }
}

void check_gemv_args(const char* what, const void* x, const void* w, const void* y, int M, int N,
                     int K);

template <class F>
void launch_gemv(GemvFormat fmt, const GemvParams& p, const GemvOptions& o) {
  LB_CHECK(o.config >= -1 && o.config < kGemvConfigs, "gemv: config {} out of range", o.config);
  LB_CHECK(!o.swiglu || p.N % 16 == 0, "gemv: the SwiGLU epilogue needs N = {} a multiple of 16", p.N);
  LB_CHECK(o.split_k >= 0 && o.split_k <= kGemvMaxSplit, "gemv: split_k {} out of [0, {}]",
           o.split_k, kGemvMaxSplit);
  const int config = o.config >= 0 ? o.config : gemv_default_config(fmt, p.M, p.N, p.K);
  GemvParams q = p;
  q.glu = o.swiglu ? 1 : 0;
  q.sk = o.split_k > 0 ? o.split_k : gemv_default_split(fmt, p.M, p.N, p.K, config);
  if (p.M <= 8)
    launch_mt<F, 1>(config, q, o);
  else
    launch_mt<F, 2>(config, q, o);
}

}  // namespace lowbit::cuda::detail
