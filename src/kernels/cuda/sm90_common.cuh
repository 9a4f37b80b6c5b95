// Pieces shared by lowbit's Hopper GEMMs (int8_gemm_sm90.cu, int4_gemm_sm90.cu): mbarriers and the
// TMA ring's set-up, TMA loads and stores, wgmma's accumulator operands and shared-memory descriptors,
// stmatrix, and the host side's tensor maps and support check.
//
// Both run 384-thread blocks: warpgroup 0 produces (one thread issues the TMA loads), warpgroups 1
// and 2 consume, each computing 64 rows of the tile with m64n256 wgmma. Operands are K-major rows of
// 128 bytes in TMA's 128-byte swizzle: the 16-byte chunk c of row r sits at chunk c ^ (r % 8), rows
// in groups of 8 that are 1024 bytes apart.
#pragma once

#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/ops_common.cuh"

namespace lowbit::cuda::sm90 {

constexpr int kThreads = 384;

// The 128 accumulator operands of an m64n256 wgmma, %0 .. %127, as its asm text.
#define LB_WGMMA_D128                                                                                               \
  "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, " \
  "%24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, "   \
  "%46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, %64, %65, %66, %67, "   \
  "%68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, %80, %81, %82, %83, %84, %85, %86, %87, %88, %89, "   \
  "%90, %91, %92, %93, %94, %95, %96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, "   \
  "%110, %111, %112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127}"
// Their constraints: d[0 .. 127] read and written, with constraint letter C ("r" or "f").
#define LB_WGMMA_R8(C, i) \
  C(d[i]), C(d[i + 1]), C(d[i + 2]), C(d[i + 3]), C(d[i + 4]), C(d[i + 5]), C(d[i + 6]), C(d[i + 7])
#define LB_WGMMA_R32(C, i) LB_WGMMA_R8(C, i), LB_WGMMA_R8(C, i + 8), LB_WGMMA_R8(C, i + 16), LB_WGMMA_R8(C, i + 24)
#define LB_WGMMA_D128_RW(C) LB_WGMMA_R32(C, 0), LB_WGMMA_R32(C, 32), LB_WGMMA_R32(C, 64), LB_WGMMA_R32(C, 96)
#define LB_RW_INT(x) "+r"(x)
#define LB_RW_FLOAT(x) "+f"(x)

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
__device__ __forceinline__ void tma_load(void* dst, const CUtensorMap* map, uint64_t* bar, int c0, int c1, int c2) {
  asm volatile(
      "cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4, %5}], "
      "[%2];\n" ::"r"(su32(dst)),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(su32(bar)), "r"(c0), "r"(c1), "r"(c2)
      : "memory");
}
__device__ __forceinline__ void tma_load(void* dst, const CUtensorMap* map, uint64_t* bar, int c0, int c1, int c2,
                                         int c3) {
  asm volatile(
      "cp.async.bulk.tensor.4d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4, %5, %6}], "
      "[%2];\n" ::"r"(su32(dst)),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(su32(bar)), "r"(c0), "r"(c1), "r"(c2), "r"(c3)
      : "memory");
}
__device__ __forceinline__ void tma_store(const CUtensorMap* map, const void* src, int c0, int c1) {
  asm volatile("cp.async.bulk.tensor.2d.global.shared::cta.bulk_group [%0, {%2, %3}], [%1];\n" ::"l"(
                   reinterpret_cast<uint64_t>(map)),
               "r"(su32(src)), "r"(c0), "r"(c1)
               : "memory");
}
__device__ __forceinline__ void sync_consumers() { asm volatile("bar.sync 1, 256;\n" ::: "memory"); }
// Shared-memory stores of the generic proxy made visible to wgmma and TMA (the async proxy).
__device__ __forceinline__ void fence_async_smem() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }
// The TMA ring's barriers, set up by thread 0 before any thread goes on: full[s] completes on the
// producer's arrival and the stage's bytes, empty[s] on one arrival per consumer warpgroup.
__device__ __forceinline__ void init_ring(uint64_t* full, uint64_t* empty, int stages) {
  if (threadIdx.x == 0) {
    for (int s = 0; s < stages; ++s) {
      mbar_init(&full[s], 1);
      mbar_init(&empty[s], 2);
    }
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  __syncthreads();
}
// Shared-memory matrix descriptor of a K-major operand in 128-byte swizzled rows (8-row groups
// 1024 bytes apart), as TMA's SWIZZLE_128B lays it out.
__device__ __forceinline__ uint64_t smem_desc(uint32_t saddr) {
  return (static_cast<uint64_t>((saddr & 0x3FFFF) >> 4)) | (static_cast<uint64_t>(1) << 16) |
         (static_cast<uint64_t>(1024 >> 4) << 32) | (static_cast<uint64_t>(1) << 62);
}
__device__ __forceinline__ void stmatrix4_trans(uint32_t addr, uint32_t r0, uint32_t r1, uint32_t r2, uint32_t r3) {
  asm volatile("stmatrix.sync.aligned.m8n8.x4.trans.shared.b16 [%0], {%1, %2, %3, %4};\n" ::"r"(addr), "r"(r0),
               "r"(r1), "r"(r2), "r"(r3)
               : "memory");
}

#endif

// The driver's tensor-map encoder (null where the driver has none).
inline PFN_cuTensorMapEncodeTiled_v12000 encode_fn() {
  static const PFN_cuTensorMapEncodeTiled_v12000 fn = [] {
    void* p = nullptr;
    cudaDriverEntryPointQueryResult q{};
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000, cudaEnableDefault, &q) != cudaSuccess ||
        q != cudaDriverEntryPointSuccess)
      p = nullptr;
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(p);
  }();
  return fn;
}

// A tensor of `rank` dimensions (dims innermost first, byte strides of the outer ones) read or
// written in boxes of `box` elements; `what` names the caller in errors.
inline CUtensorMap tensor_map(const char* what, const void* p, CUtensorMapDataType type, int rank, const cuuint64_t* dims,
                              const cuuint64_t* strides, const cuuint32_t* box, CUtensorMapSwizzle swizzle,
                              CUtensorMapL2promotion promo) {
  CUtensorMap m;
  const cuuint32_t es[4] = {1, 1, 1, 1};
  const CUresult r = encode_fn()(&m, type, rank, const_cast<void*>(p), dims, strides, box, es,
                                 CU_TENSOR_MAP_INTERLEAVE_NONE, swizzle, promo, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS) fail("{}: tensor map encoding failed ({})", what, static_cast<int>(r));
  return m;
}
// A row-major [rows, cols] matrix with row stride `stride` bytes in boxes of box_cols × box_rows,
// 128-byte swizzle.
inline CUtensorMap matrix_map(const char* what, const void* p, CUtensorMapDataType type, int64_t rows, int64_t cols,
                              int64_t stride, int box_cols, int box_rows, CUtensorMapL2promotion promo) {
  const cuuint64_t dims[2] = {static_cast<cuuint64_t>(cols), static_cast<cuuint64_t>(rows)};
  const cuuint64_t strides[1] = {static_cast<cuuint64_t>(stride)};
  const cuuint32_t box[2] = {static_cast<cuuint32_t>(box_cols), static_cast<cuuint32_t>(box_rows)};
  return tensor_map(what, p, type, 2, dims, strides, box, CU_TENSOR_MAP_SWIZZLE_128B, promo);
}

// Whether this process's GPU runs `kernel`: an sm_90 device with this build's sm_90a code, and the
// driver's tensor-map encoder; sets its dynamic shared memory to `smem`. Returns the SM count, or
// 0 where it does not run. Call once per kernel (a function-local static).
inline int support(const void* kernel, size_t smem) {
  int dev = 0, major = 0, minor = 0, sms = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) ||
      cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) ||
      cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev)) {
    (void)cudaGetLastError();
    return 0;
  }
  cudaFuncAttributes fa{};
  if (major != 9 || minor != 0 || cudaFuncGetAttributes(&fa, kernel) != cudaSuccess || fa.binaryVersion != 90 ||
      !encode_fn() ||
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)) !=
          cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return sms;
}

// support() for `Kernel`, decided once.
template <auto Kernel>
int sms_for(size_t smem) {
  static const int n = support(reinterpret_cast<const void*>(Kernel), smem);
  return n;
}

}  // namespace lowbit::cuda::sm90
