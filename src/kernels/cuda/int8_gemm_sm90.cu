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
#include <cuda.h>
#include <cudaTypedefs.h>

#include "kernels/cuda/ops_common.cuh"
#include "kernels/cuda/scaled_gemm.h"

namespace lowbit::cuda {
namespace {

constexpr int kBM = 128, kBN = 256, kBK = 128, kStages = 4, kThreads = 384;
constexpr int kABytes = kBM * kBK, kStageBytes = kABytes + kBN * kBK;
constexpr int kSlab = kBM * 128;  // staging: two slabs of 64 columns (128 bytes) × 128 rows, half a tile
// 232,000 bytes of the 232,448 a block may have.
constexpr size_t kSmem = kStages * kStageBytes + 2 * kSlab + 2 * kStages * 8 + (kBN + kBM) * 4 + 1024;

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
__device__ __forceinline__ uint32_t su32(const void* p) { return static_cast<uint32_t>(__cvta_generic_to_shared(p)); }
__device__ __forceinline__ void mbar_init(uint64_t* b, uint32_t n) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(su32(b)), "r"(n));
}
__device__ __forceinline__ void mbar_expect_tx(uint64_t* b, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(su32(b)), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint64_t* b) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(su32(b)) : "memory");
}
__device__ __forceinline__ void mbar_wait(uint64_t* b, uint32_t parity) {
  asm volatile(
      "{\n.reg .pred p;\nLB_WAIT:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1;\n"
      "@!p bra LB_WAIT;\n}\n" ::"r"(su32(b)),
      "r"(parity)
      : "memory");
}
__device__ __forceinline__ void tma_load(void* dst, const CUtensorMap* map, uint64_t* bar, int c0, int c1) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4}], [%2];\n" ::"r"(
          su32(dst)),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(su32(bar)), "r"(c0), "r"(c1)
      : "memory");
}
__device__ __forceinline__ void tma_store(const CUtensorMap* map, const void* src, int c0, int c1) {
  asm volatile("cp.async.bulk.tensor.2d.global.shared::cta.bulk_group [%0, {%2, %3}], [%1];\n" ::"l"(
                   reinterpret_cast<uint64_t>(map)),
               "r"(su32(src)), "r"(c0), "r"(c1)
               : "memory");
}
__device__ __forceinline__ void cp_async4(float* dst, const float* src, bool ok) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(su32(dst)), "l"(src), "r"(ok ? 4 : 0) : "memory");
}
__device__ __forceinline__ void sync_consumers() { asm volatile("bar.sync 1, 256;\n" ::: "memory"); }
// Shared-memory matrix descriptor of a K-major operand in 128-byte swizzled rows (8-row groups
// 1024 bytes apart), as TMA's SWIZZLE_128B lays it out.
__device__ __forceinline__ uint64_t smem_desc(uint32_t saddr) {
  return (static_cast<uint64_t>((saddr & 0x3FFFF) >> 4)) | (static_cast<uint64_t>(1) << 16) |
         (static_cast<uint64_t>(1024 >> 4) << 32) | (static_cast<uint64_t>(1) << 62);
}
#define LB_R8(i) "+r"(d[i]), "+r"(d[i + 1]), "+r"(d[i + 2]), "+r"(d[i + 3]), "+r"(d[i + 4]), "+r"(d[i + 5]), "+r"(d[i + 6]), "+r"(d[i + 7])
#define LB_R32(i) LB_R8(i), LB_R8(i + 8), LB_R8(i + 16), LB_R8(i + 24)
__device__ __forceinline__ void wgmma_s8_n256(int32_t (&d)[128], uint64_t da, uint64_t db) {
  asm volatile(
      "wgmma.mma_async.sync.aligned.m64n256k32.s32.s8.s8 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, "
      "%23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, "
      "%45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, %64, %65, %66, "
      "%67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, %80, %81, %82, %83, %84, %85, %86, %87, %88, "
      "%89, %90, %91, %92, %93, %94, %95, %96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, "
      "%109, %110, %111, %112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, "
      "%127}, %128, %129, 1;\n"
      : LB_R32(0), LB_R32(32), LB_R32(64), LB_R32(96)
      : "l"(da), "l"(db));
}
#undef LB_R32
#undef LB_R8
__device__ __forceinline__ void stmatrix4(uint32_t addr, uint32_t r0, uint32_t r1, uint32_t r2, uint32_t r3) {
  asm volatile("stmatrix.sync.aligned.m8n8.x4.shared.b16 [%0], {%1, %2, %3, %4};\n" ::"r"(addr), "r"(r0), "r"(r1),
               "r"(r2), "r"(r3)
               : "memory");
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
  uint64_t* full = reinterpret_cast<uint64_t*>(ebuf + 2 * kSlab);
  uint64_t* empty = full + kStages;
  // The tile's weight and row scales; every consumer has read the last tile's before the barrier
  // that ends its epilogue, after which the next tile's copies start.
  float* sws = reinterpret_cast<float*>(empty + kStages);  // [kBN]
  float* sxs = sws + kBN;                                  // [kBM]
  const int wg = threadIdx.x / 128, tid = threadIdx.x % 128;
  const int MT = (M + kBM - 1) / kBM, T = MT * (N / kBN), nk = K / kBK;
  if (threadIdx.x == 0) {
    for (int s = 0; s < kStages; ++s) {
      mbar_init(&full[s], 1);
      mbar_init(&empty[s], 2);  // one arrival per consumer warpgroup
    }
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  __syncthreads();
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
  // stmatrix .x4: lane l gives row l % 8 of matrix l / 8 (matrices: the warp's top and bottom 8 rows
  // of n8 blocks j and j + 1); its 16-byte chunk sits at chunk ^ (row % 8) in the swizzled slab.
  const int srow = c * 64 + 16 * w + ((l >> 3) & 1) * 8 + (l & 7), sblk = l >> 4;
  const uint32_t ebase = su32(ebuf) + srow * 128;
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
    if (storer) asm volatile("cp.async.bulk.wait_group.read 0;\n" ::: "memory");  // the last tile's stores read ebuf
    sync_consumers();
    const float sx0 = sxs[lr0], sx1 = sxs[lr0 + 8];
#pragma unroll
    for (int h = 0; h < 2; ++h) {  // columns 128h .. 128h + 127
      if (h == 1) {
        if (storer) asm volatile("cp.async.bulk.wait_group.read 0;\n" ::: "memory");  // the first half is read
        sync_consumers();
      }
#pragma unroll
      for (int j = 16 * h; j < 16 * h + 16; j += 2) {
        const float2 w0 = *reinterpret_cast<const float2*>(sws + 8 * j + 2 * (l & 3));
        const float2 w1 = *reinterpret_cast<const float2*>(sws + 8 * (j + 1) + 2 * (l & 3));
        const uint32_t r0 = scaled_pair(acc[4 * j], acc[4 * j + 1], sx0, w0);
        const uint32_t r1 = scaled_pair(acc[4 * j + 2], acc[4 * j + 3], sx1, w0);
        const uint32_t r2 = scaled_pair(acc[4 * j + 4], acc[4 * j + 5], sx0, w1);
        const uint32_t r3 = scaled_pair(acc[4 * j + 6], acc[4 * j + 7], sx1, w1);
        const int jj = j - 16 * h + sblk;
        stmatrix4(ebase + (jj >> 3) * kSlab + (((jj & 7) ^ (srow & 7)) * 16), r0, r1, r2, r3);
      }
      asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");  // visible to the TMA stores
      sync_consumers();
      if (storer) {
        tma_store(&tmY, ebuf, n0 + 128 * h, m0);
        tma_store(&tmY, ebuf + kSlab, n0 + 128 * h + 64, m0);
        asm volatile("cp.async.bulk.commit_group;\n" ::: "memory");
      }
    }
  }
  if (storer) asm volatile("cp.async.bulk.wait_group 0;\n" ::: "memory");
#endif
}

PFN_cuTensorMapEncodeTiled_v12000 encode_fn() {
  static PFN_cuTensorMapEncodeTiled_v12000 fn = [] {
    void* p = nullptr;
    cudaDriverEntryPointQueryResult q{};
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000, cudaEnableDefault, &q) != cudaSuccess ||
        q != cudaDriverEntryPointSuccess)
      p = nullptr;
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(p);
  }();
  return fn;
}

// A row-major [rows, cols] operand of `bytes`-byte elements with row stride `stride` bytes, read or
// written in boxes of box_cols × box_rows, 128-byte swizzle.
CUtensorMap tensor_map(const void* p, CUtensorMapDataType type, int64_t rows, int64_t cols, int64_t stride,
                       int box_cols, int box_rows, CUtensorMapL2promotion promo) {
  CUtensorMap m;
  const cuuint64_t dims[2] = {static_cast<cuuint64_t>(cols), static_cast<cuuint64_t>(rows)};
  const cuuint64_t strides[1] = {static_cast<cuuint64_t>(stride)};
  const cuuint32_t box[2] = {static_cast<cuuint32_t>(box_cols), static_cast<cuuint32_t>(box_rows)};
  const cuuint32_t es[2] = {1, 1};
  const CUresult r = encode_fn()(&m, type, 2, const_cast<void*>(p), dims, strides, box, es, CU_TENSOR_MAP_INTERLEAVE_NONE,
                                 CU_TENSOR_MAP_SWIZZLE_128B, promo, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS) fail("int8_gemm_bf16: tensor map encoding failed ({})", static_cast<int>(r));
  return m;
}

// Whether this process's GPU runs the kernel: an sm_90 device with this build's sm_90a code, and
// the driver's tensor-map encoder. Decided once, with the shared-memory size set.
struct Support {
  bool ok = false;
  int sms = 0;
};
const Support& support() {
  static const Support s = [] {
    Support r;
    int dev = 0, major = 0, minor = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) ||
        cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) ||
        cudaDeviceGetAttribute(&r.sms, cudaDevAttrMultiProcessorCount, dev)) {
      (void)cudaGetLastError();
      return r;
    }
    cudaFuncAttributes fa{};
    if (major != 9 || minor != 0 || cudaFuncGetAttributes(&fa, int8_gemm_kernel) != cudaSuccess ||
        fa.binaryVersion != 90 || !encode_fn() ||
        cudaFuncSetAttribute(int8_gemm_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             static_cast<int>(kSmem)) != cudaSuccess) {
      (void)cudaGetLastError();
      return r;
    }
    r.ok = true;
    return r;
  }();
  return s;
}

}  // namespace

bool int8_gemm_bf16_ok(int M, int n, int K, int64_t ldy) {
  return M > 0 && n > 0 && n % kBN == 0 && K > 0 && K % kBK == 0 && ldy >= n && ldy % 8 == 0 && support().ok;
}

void int8_gemm_bf16(const int8_t* xq, const float* xs, const int8_t* wq, const float* ws, void* y, int M, int n, int K,
                    int64_t ldy, cudaStream_t stream) {
  LB_CHECK(int8_gemm_bf16_ok(M, n, K, ldy), "int8_gemm_bf16: M {}, n {}, K {}, ldy {} not supported here", M, n, K,
           ldy);
  LB_CHECK(xq && xs && wq && ws && y && reinterpret_cast<uintptr_t>(xq) % 16 == 0 &&
               reinterpret_cast<uintptr_t>(wq) % 16 == 0 && reinterpret_cast<uintptr_t>(y) % 16 == 0,
           "int8_gemm_bf16: null or misaligned operands");
  const CUtensorMap mx = tensor_map(xq, CU_TENSOR_MAP_DATA_TYPE_UINT8, M, K, K, kBK, kBM, CU_TENSOR_MAP_L2_PROMOTION_L2_256B);
  const CUtensorMap mw = tensor_map(wq, CU_TENSOR_MAP_DATA_TYPE_UINT8, n, K, K, kBK, kBN, CU_TENSOR_MAP_L2_PROMOTION_L2_256B);
  const CUtensorMap my = tensor_map(y, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, M, n, ldy * 2, 64, kBM, CU_TENSOR_MAP_L2_PROMOTION_NONE);
  const int tiles = (M + kBM - 1) / kBM * (n / kBN);
  int8_gemm_kernel<<<std::min(tiles, support().sms), kThreads, kSmem, stream>>>(mx, mw, my, M, n, K, xs, ws);
  ops::check_launch("int8_gemm_bf16");
}

}  // namespace lowbit::cuda
