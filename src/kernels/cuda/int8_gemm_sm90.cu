// int8dq's prefill product on Hopper (scaled_gemm.h, int8_gemm_bf16): y = bf16(acc · xs[m] · ws[j])
// with acc = xq · wqᵀ summed exactly in int32 by the integer tensor cores, the scales applied in the
// epilogue, so no int32 product goes through memory.
//
// One CTA per SM walks 128 × 256 output tiles (M fastest, so concurrent CTAs share W tiles in L2).
// Warp specialisation: one thread of warpgroup 0 issues TMA loads of 128-byte k-slices (128-byte
// swizzle) into a four-stage shared-memory ring guarded by mbarriers; warpgroups 1 and 2 each
// issue wgmma m64n256k32 on their 64 rows of the tile. The epilogue scales the accumulators to
// bf16 and writes them, half the tile's columns at a time, into a swizzled staging buffer with
// stmatrix; one thread hands each half to TMA stores, the second of which overlaps the next tile's
// products (rows past M are clipped by the tensor map). The tile's scales are copied into shared
// memory (cp.async) while its products run.
#include "kernels/cuda/scaled_gemm.h"
#include "kernels/cuda/sm90_common.cuh"

namespace lowbit::cuda {
namespace {

using namespace sm90;
constexpr int kBM = 128, kBN = 256, kBK = 128, kStages = 4;
constexpr int kABytes = kBM * kBK, kStageBytes = kABytes + kBN * kBK;
// The epilogue stages half a tile at a time: two slabs of 64 bf16 columns (128 bytes) × 128 rows.
constexpr int kSlab = kBM * 128, kSlabs = 2;
// 232,000 bytes of the 232,448 a block may have.
constexpr size_t kSmem = kStages * kStageBytes + kSlabs * kSlab + 2 * kStages * 8 + (kBN + kBM) * 4 + 1024;

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
__device__ __forceinline__ void cp_async4(float* dst, const float* src, bool ok) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(su32(dst)), "l"(src), "r"(ok ? 4 : 0) : "memory");
}
__device__ __forceinline__ void wgmma_s8_n256(int32_t (&d)[128], uint64_t da, uint64_t db) {
  asm volatile(
      "wgmma.mma_async.sync.aligned.m64n256k32.s32.s8.s8 "
      LB_WGMMA_D128 ", %128, %129, 1;\n"
      : LB_WGMMA_D128_RW(LB_RW_INT)
      : "l"(da), "l"(db));
}
__device__ __forceinline__ void stmatrix4(uint32_t addr, uint32_t r0, uint32_t r1, uint32_t r2, uint32_t r3) {
  asm volatile("stmatrix.sync.aligned.m8n8.x4.shared.b16 [%0], {%1, %2, %3, %4};\n" ::"r"(addr), "r"(r0), "r"(r1),
               "r"(r2), "r"(r3)
               : "memory");
}
// Writes a consumer warpgroup's 64 × 256 share of the tile at (m0, n0), kSlabs slabs of 64 columns
// per round, through the staging buffer `ebuf`; thread `storer` hands each round's rows to TMA
// stores (the last round's stores overlap what follows; the next call waits for their reads).
// quad(j, r) gives the four bf16 pairs stmatrix takes for n8 blocks j and j + 1 of the accumulator
// layout (m64nNk*: lane l holds rows l / 4 and l / 4 + 8 of its warp's 16, columns 8j + 2(l % 4) + 0, 1):
// r[0] row l / 4 block j, r[1] row l / 4 + 8 block j, r[2] and r[3] the same of block j + 1.
template <class Quad>
__device__ __forceinline__ void store_tile(Quad&& quad, unsigned char* ebuf, const CUtensorMap* tmY, int m0, int n0,
                                           int c, bool storer) {
  const int w = (threadIdx.x % 128) / 32, l = threadIdx.x % 32;
  // stmatrix .x4: lane l gives row l % 8 of matrix l / 8 (the warp's top and bottom 8 rows of n8
  // blocks j and j + 1); its 16-byte chunk sits at chunk ^ (row % 8) in the swizzled slab.
  const int srow = c * 64 + 16 * w + ((l >> 3) & 1) * 8 + (l & 7), sblk = l >> 4;
  const uint32_t ebase = su32(ebuf) + srow * 128;
  constexpr int kBlocks = 8 * kSlabs;  // n8 blocks per round
#pragma unroll
  for (int h = 0; h < 4 / kSlabs; ++h) {
    if (storer) asm volatile("cp.async.bulk.wait_group.read 0;\n" ::: "memory");  // ebuf's last stores are read
    sync_consumers();
#pragma unroll
    for (int j = kBlocks * h; j < kBlocks * h + kBlocks; j += 2) {
      uint32_t r[4];
      quad(j, r);
      const int jj = j - kBlocks * h + sblk;
      stmatrix4(ebase + (jj >> 3) * kSlab + (((jj & 7) ^ (srow & 7)) * 16), r[0], r[1], r[2], r[3]);
    }
    fence_async_smem();  // visible to the TMA stores
    sync_consumers();
    if (storer) {
#pragma unroll
      for (int s = 0; s < kSlabs; ++s) tma_store(tmY, ebuf + s * kSlab, n0 + 64 * (kSlabs * h + s), m0);
      asm volatile("cp.async.bulk.commit_group;\n" ::: "memory");
    }
  }
}
// Two scaled outputs as a bf16 pair: scale_int32_to_bf16's arithmetic.
__device__ __forceinline__ uint32_t scaled_pair(int32_t a, int32_t b, float sx, float2 sw) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(static_cast<float>(a) * sx * sw.x, static_cast<float>(b) * sx * sw.y);
  return *reinterpret_cast<const uint32_t*>(&v);
}
#endif

__global__ void __launch_bounds__(kThreads, 1)
    int8_gemm_kernel(const __grid_constant__ CUtensorMap tmX, const __grid_constant__ CUtensorMap tmW,
                     const __grid_constant__ CUtensorMap tmY, int M, int N, int K, const float* __restrict__ xs,
                     const float* __restrict__ ws) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  extern __shared__ unsigned char smem_raw[];
  unsigned char* smem = reinterpret_cast<unsigned char*>((reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~uintptr_t(1023));
  unsigned char* ebuf = smem + kStages * kStageBytes;
  uint64_t* full = reinterpret_cast<uint64_t*>(ebuf + kSlabs * kSlab);
  uint64_t* empty = full + kStages;
  // The tile's weight and row scales; every consumer has read the last tile's before the barrier
  // that ends its epilogue, after which the next tile's copies start.
  float* sws = reinterpret_cast<float*>(empty + kStages);  // [kBN]
  float* sxs = sws + kBN;                                  // [kBM]
  const int wg = threadIdx.x / 128, tid = threadIdx.x % 128;
  const int MT = (M + kBM - 1) / kBM, T = MT * (N / kBN), nk = K / kBK;
  init_ring(full, empty, kStages);
  if (wg == 0) {  // the producer
    if (tid == 0) {
      int g = 0;
      for (int t = blockIdx.x; t < T; t += gridDim.x) {
        const int m0 = (t % MT) * kBM, n0 = (t / MT) * kBN;
        for (int kb = 0; kb < nk; ++kb, ++g) {
          const int s = g % kStages;
          if (g >= kStages) mbar_wait(&empty[s], ((g / kStages) - 1) & 1);
          mbar_expect_tx(&full[s], kStageBytes);
          tma_load(smem + s * kStageBytes, &tmX, &full[s], kb * kBK, m0);
          tma_load(smem + s * kStageBytes + kABytes, &tmW, &full[s], kb * kBK, n0);
        }
      }
    }
    return;
  }
  const int c = wg - 1, ct = threadIdx.x - 128;
  const bool storer = ct == 0;
  const int w = tid / 32, l = tid % 32;
  const int lr0 = c * 64 + 16 * w + l / 4;  // the accumulator rows of this lane: lr0 and lr0 + 8
  int g = 0;
  for (int t = blockIdx.x; t < T; t += gridDim.x) {
    const int m0 = (t % MT) * kBM, n0 = (t / MT) * kBN;
    cp_async4(sws + ct, ws + n0 + ct, true);
    if (ct < kBM) cp_async4(sxs + ct, xs + min(m0 + ct, M - 1), m0 + ct < M);
    asm volatile("cp.async.commit_group;\n" ::: "memory");
    int32_t acc[128];
#pragma unroll
    for (int i = 0; i < 128; ++i) acc[i] = 0;
    for (int kb = 0; kb < nk; ++kb, ++g) {
      const int s = g % kStages;
      mbar_wait(&full[s], (g / kStages) & 1);
      const uint32_t a = su32(smem + s * kStageBytes) + c * 64 * kBK, b = su32(smem + s * kStageBytes + kABytes);
      asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#pragma unroll
      for (int k = 0; k < kBK / 32; ++k) wgmma_s8_n256(acc, smem_desc(a + 32 * k), smem_desc(b + 32 * k));
      asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
      asm volatile("wgmma.wait_group.sync.aligned 1;\n" ::: "memory");
      if (kb > 0 && tid == 0) mbar_arrive(&empty[(g - 1) % kStages]);  // the previous k-slice is read
    }
    asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
    if (tid == 0) mbar_arrive(&empty[(g - 1) % kStages]);
    asm volatile("cp.async.wait_all;\n" ::: "memory");
    store_tile(
        [&](int j, uint32_t(&r)[4]) {  // called after store_tile's first barrier: every scale copied
          const float sx0 = sxs[lr0], sx1 = sxs[lr0 + 8];
          const float2 w0 = *reinterpret_cast<const float2*>(sws + 8 * j + 2 * (l & 3));
          const float2 w1 = *reinterpret_cast<const float2*>(sws + 8 * (j + 1) + 2 * (l & 3));
          r[0] = scaled_pair(acc[4 * j], acc[4 * j + 1], sx0, w0);
          r[1] = scaled_pair(acc[4 * j + 2], acc[4 * j + 3], sx1, w0);
          r[2] = scaled_pair(acc[4 * j + 4], acc[4 * j + 5], sx0, w1);
          r[3] = scaled_pair(acc[4 * j + 6], acc[4 * j + 7], sx1, w1);
        },
        ebuf, &tmY, m0, n0, c, storer);
  }
  if (storer) asm volatile("cp.async.bulk.wait_group 0;\n" ::: "memory");
#endif
}

int sms() { return sms_for<int8_gemm_kernel>(kSmem); }

}  // namespace

bool int8_gemm_bf16_ok(int M, int n, int K, int64_t ldy) {
  return M > 0 && n > 0 && n % kBN == 0 && K > 0 && K % kBK == 0 && ldy >= n && ldy % 8 == 0 && sms() > 0;
}

void int8_gemm_bf16(const int8_t* xq, const float* xs, const int8_t* wq, const float* ws, void* y, int M, int n, int K,
                    int64_t ldy, cudaStream_t stream) {
  LB_CHECK(int8_gemm_bf16_ok(M, n, K, ldy), "int8_gemm_bf16: M {}, n {}, K {}, ldy {} not supported here", M, n, K,
           ldy);
  LB_CHECK(xq && xs && wq && ws && y && reinterpret_cast<uintptr_t>(xq) % 16 == 0 &&
               reinterpret_cast<uintptr_t>(wq) % 16 == 0 && reinterpret_cast<uintptr_t>(y) % 16 == 0,
           "int8_gemm_bf16: null or misaligned operands");
  const CUtensorMap mx = matrix_map("int8_gemm_bf16", xq, CU_TENSOR_MAP_DATA_TYPE_UINT8, M, K, K, kBK, kBM, CU_TENSOR_MAP_L2_PROMOTION_L2_256B);
  const CUtensorMap mw = matrix_map("int8_gemm_bf16", wq, CU_TENSOR_MAP_DATA_TYPE_UINT8, n, K, K, kBK, kBN, CU_TENSOR_MAP_L2_PROMOTION_L2_256B);
  const CUtensorMap my = matrix_map("int8_gemm_bf16", y, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, M, n, ldy * 2, 64, kBM, CU_TENSOR_MAP_L2_PROMOTION_NONE);
  const int tiles = (M + kBM - 1) / kBM * (n / kBN);
  int8_gemm_kernel<<<std::min(tiles, sms()), kThreads, kSmem, stream>>>(mx, mw, my, M, n, K, xs, ws);
  ops::check_launch("int8_gemm_bf16");
}

}  // namespace lowbit::cuda
