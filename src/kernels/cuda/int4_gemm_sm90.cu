// int4wo's prefill product on Hopper (int4_gemm.h): y = bf16(x · Wᵀ) with the int4 weights
// dequantized inside the product, so no bf16 copy of the weights goes through memory.
//
// One CTA per SM walks 128 × 256 output tiles (tokens × weight rows, tokens fastest so that
// concurrent CTAs share weight tiles in L2) in k-blocks of 64: one chunk of lowbit's int4 layout.
// Warpgroup 0's first thread issues TMA loads into a four-stage ring: the activations' 128 × 64 bf16
// block (128-byte swizzle), the sixteen 16-row weight tiles' 512-byte packed chunks and their
// (scale, zero) words. Warpgroups 1 and 2 each dequantize half of a stage's weights into a
// three-slot ring of bf16 blocks (256 × 64, laid out as TMA's 128-byte swizzle would) and issue
// wgmma m64n256k16 on their 64 rows of the tile from shared memory. A k-block's weights are
// dequantized while the tensor cores work on the one before:
//   k-block g: wait until both warpgroups have dequantized g; issue its products; wait for g − 1's;
//              release g − 1's stage to the producer; dequantize g + 1 (which may be the next tile's).
// Slot (g + 1) % 3 last held g − 2, whose products both warpgroups have finished by then (the other
// warpgroup dequantized g only after waiting for its g − 2). The epilogue writes the fp32 sums as
// bf16 through a one-slab staging buffer with stmatrix and TMA stores (rows past M are clipped).
#include "kernels/cuda/int4_gemm.h"
#include "kernels/cuda/sm90_common.cuh"

namespace lowbit::cuda {
namespace {

using namespace sm90;
constexpr int kBM = kTileM, kBN = kTileN, kBK = 64, kStages = 4, kSlots = 3;
constexpr int kXBytes = kBM * kBK * 2;         // activations, one stage
constexpr int kWBytes = (kBN / 16) * 512;      // packed weights, one stage
constexpr int kQBytes = (kBN / 16) * 64 * 2;   // (scale, zero) words: up to two groups per chunk
constexpr int kBBytes = kBN * kBK * 2;         // dequantized weights, one slot
constexpr int kOffB = kStages * kXBytes, kOffW = kOffB + kSlots * kBBytes, kOffQ = kOffW + kStages * kWBytes;
constexpr int kOffE = kOffQ + kStages * kQBytes, kOffBar = kOffE + kSlab;
constexpr size_t kSmem = kOffBar + (2 * kStages + kSlots) * 8 + 1024;  // 222,296 bytes
static_assert(kSmem <= 232448, "more shared memory than a block may have");

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define LB_R8(i) "+f"(d[i]), "+f"(d[i + 1]), "+f"(d[i + 2]), "+f"(d[i + 3]), "+f"(d[i + 4]), "+f"(d[i + 5]), "+f"(d[i + 6]), "+f"(d[i + 7])
#define LB_R32(i) LB_R8(i), LB_R8(i + 8), LB_R8(i + 16), LB_R8(i + 24)
// D (64 × 256, f32) += A (64 × 16 bf16) · B (256 × 16 bf16)ᵀ, both K-major in shared memory.
__device__ __forceinline__ void wgmma_bf16_n256(float (&d)[128], uint64_t da, uint64_t db) {
  asm volatile(
      "wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, "
      "%23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, "
      "%45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, %64, %65, %66, "
      "%67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, %80, %81, %82, %83, %84, %85, %86, %87, %88, "
      "%89, %90, %91, %92, %93, %94, %95, %96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, "
      "%109, %110, %111, %112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, "
      "%127}, %128, %129, 1, 1, 1, 0, 0;\n"
      : LB_R32(0), LB_R32(32), LB_R32(64), LB_R32(96)
      : "l"(da), "l"(db));
}
#undef LB_R32
#undef LB_R8
__device__ __forceinline__ uint32_t bf16_pair(float a, float b) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(a, b);
  return *reinterpret_cast<const uint32_t*>(&v);
}
// A stage's weights dequantized as tinygemm and the int4 GEMV (G < 64) do it: q − 8 exactly, then one
// bf16 fma with (scale, scale) and (zero, zero) that rounds the weight to bf16 once. Pair p of a word,
// nibbles p and p + 4 (bits 4p and 4p + 16) masked into the low bits of 0x4300 (bf16 128), is 128 + q;
// less 136 it is q − 8.
__device__ __forceinline__ uint32_t dequant_pair(uint32_t word, int p, uint32_t s, uint32_t z) {
  return ops::bf16x2_fma(ops::bf16x2_sub(ops::and_or<0x000f000fu, 0x43004300u>(word >> (4 * p)), 0x43084308u), s, z);
}
// Consumer warpgroup c's half of a stage (16-row tiles 8c .. 8c + 7; warp w takes 8c + 2w and the
// next) into the bf16 slot. Lane (g, t) = (l / 4, l % 4) of a tile holds rows g and g + 8 at
// k = 16t .. 16t + 15: word s has k 16t + 4s + 0..3 of row g in nibbles 0, 4, 2, 6 and of row g + 8 in
// 1, 5, 3, 7 (int4_layout.cuh). It writes the 16-byte chunks 2t and 2t + 1 of both rows.
__device__ __forceinline__ void dequant_stage(const unsigned char* raw, const unsigned char* qp, unsigned char* slot,
                                              int c, int w, int l, int gpc) {
  const int g = l >> 2, t = l & 3;
#pragma unroll
  for (int jj = 0; jj < 2; ++jj) {
    const int j = 8 * c + 2 * w + jj, r0 = 16 * j + g;  // r0 % 8 == (r0 + 8) % 8 == g
    const uint4 v = *reinterpret_cast<const uint4*>(raw + j * 512 + l * 16);
    const uint2 sz = *reinterpret_cast<const uint2*>(qp + (j * gpc + ((t * gpc) >> 2)) * 64 + g * 8);
    const uint32_t s0 = __byte_perm(sz.x, 0, 0x1010), z0 = __byte_perm(sz.x, 0, 0x3232);
    const uint32_t s1 = __byte_perm(sz.y, 0, 0x1010), z1 = __byte_perm(sz.y, 0, 0x3232);
    const uint32_t wd[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const uint32_t a = wd[2 * h], b = wd[2 * h + 1];
      const int off = ((2 * t + h) ^ g) * 16;
      *reinterpret_cast<uint4*>(slot + r0 * 128 + off) = make_uint4(
          dequant_pair(a, 0, s0, z0), dequant_pair(a, 2, s0, z0), dequant_pair(b, 0, s0, z0), dequant_pair(b, 2, s0, z0));
      *reinterpret_cast<uint4*>(slot + (r0 + 8) * 128 + off) = make_uint4(
          dequant_pair(a, 1, s1, z1), dequant_pair(a, 3, s1, z1), dequant_pair(b, 1, s1, z1), dequant_pair(b, 3, s1, z1));
    }
  }
}
#endif

__global__ void __launch_bounds__(kThreads, 1)
    int4_gemm_kernel(const __grid_constant__ CUtensorMap tmX, const __grid_constant__ CUtensorMap tmW,
                     const __grid_constant__ CUtensorMap tmQ, const __grid_constant__ CUtensorMap tmY, int M, int N,
                     int K, int group) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  extern __shared__ unsigned char smem_raw[];
  unsigned char* smem = reinterpret_cast<unsigned char*>((reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~uintptr_t(1023));
  unsigned char* ebuf = smem + kOffE;
  uint64_t* full = reinterpret_cast<uint64_t*>(smem + kOffBar);
  uint64_t* empty = full + kStages;
  uint64_t* ready = empty + kStages;
  const int wg = threadIdx.x / 128, tid = threadIdx.x % 128;
  const int MT = (M + kBM - 1) / kBM, T = MT * (N / kBN), nk = K / kBK, gpc = group < 64 ? 64 / group : 1;
  if (threadIdx.x == 0) {
    for (int s = 0; s < kStages; ++s) {
      mbar_init(&full[s], 1);
      mbar_init(&empty[s], 2);  // one arrival per consumer warpgroup
    }
    for (int s = 0; s < kSlots; ++s) mbar_init(&ready[s], 256);  // every consumer thread's share
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  __syncthreads();
  if (wg == 0) {  // the producer
    asm volatile("setmaxnreg.dec.sync.aligned.u32 40;\n");
    if (tid == 0) {
      int g = 0;
      for (int t = blockIdx.x; t < T; t += gridDim.x) {
        const int m0 = (t % MT) * kBM, tile0 = (t / MT) * (kBN / 16);
        for (int kb = 0; kb < nk; ++kb, ++g) {
          const int s = g % kStages;
          if (g >= kStages) mbar_wait(&empty[s], ((g / kStages) - 1) & 1);
          mbar_expect_tx(&full[s], kXBytes + kWBytes + 1024 * gpc);
          tma_load(smem + s * kXBytes, &tmX, &full[s], kb * kBK, m0);
          tma_load(smem + kOffW + s * kWBytes, &tmW, &full[s], 0, kb, tile0);
          tma_load(smem + kOffQ + s * kQBytes, &tmQ, &full[s], 0, kb * kBK / group, tile0);
        }
      }
    }
    return;
  }
  asm volatile("setmaxnreg.inc.sync.aligned.u32 232;\n");
  const int c = wg - 1, w = tid / 32, l = tid % 32;
  const bool storer = threadIdx.x == 128;
  const int total = (T - static_cast<int>(blockIdx.x) + static_cast<int>(gridDim.x) - 1) / gridDim.x * nk;
  auto prepare = [&](int gg) {  // dequantize k-block gg's weights (this warpgroup's half)
    const int s = gg % kStages, slot = gg % kSlots;
    mbar_wait(&full[s], (gg / kStages) & 1);
    dequant_stage(smem + kOffW + s * kWBytes, smem + kOffQ + s * kQBytes, smem + kOffB + slot * kBBytes, c, w, l, gpc);
    fence_async_smem();  // visible to wgmma
    mbar_arrive(&ready[slot]);
  };
  int g = 0;
  prepare(0);
  for (int t = blockIdx.x; t < T; t += gridDim.x) {
    const int m0 = (t % MT) * kBM, n0 = (t / MT) * kBN;
    float acc[128];
#pragma unroll
    for (int i = 0; i < 128; ++i) acc[i] = 0.0f;
    for (int kb = 0; kb < nk; ++kb, ++g) {
      const int s = g % kStages, slot = g % kSlots;
      mbar_wait(&ready[slot], (g / kSlots) & 1);
      const uint32_t a = su32(smem + s * kXBytes) + c * 64 * 128, b = su32(smem + kOffB + slot * kBBytes);
      asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#pragma unroll
      for (int k = 0; k < kBK / 16; ++k) wgmma_bf16_n256(acc, smem_desc(a + 32 * k), smem_desc(b + 32 * k));
      asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
      asm volatile("wgmma.wait_group.sync.aligned 1;\n" ::: "memory");
      if (kb > 0 && tid == 0) mbar_arrive(&empty[(g - 1) % kStages]);  // the previous stage is read
      if (g + 1 < total) prepare(g + 1);
    }
    asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
    if (tid == 0) mbar_arrive(&empty[(g - 1) % kStages]);
    store_tile<1>(
        [&](int j, uint32_t(&r)[4]) {
          r[0] = bf16_pair(acc[4 * j], acc[4 * j + 1]);
          r[1] = bf16_pair(acc[4 * j + 2], acc[4 * j + 3]);
          r[2] = bf16_pair(acc[4 * j + 4], acc[4 * j + 5]);
          r[3] = bf16_pair(acc[4 * j + 6], acc[4 * j + 7]);
        },
        ebuf, &tmY, m0, n0, c, storer);
  }
  if (storer) asm volatile("cp.async.bulk.wait_group 0;\n" ::: "memory");
#endif
}

int sms() {
  static const int n = support(reinterpret_cast<const void*>(int4_gemm_kernel), kSmem);
  return n;
}

}  // namespace

bool int4_gemm_bf16_ok(int n, int K, int group) {
  return n > 0 && n % kBN == 0 && K > 0 && K % kBK == 0 && group >= 32 && group % 32 == 0 && K % group == 0 &&
         sms() > 0;
}

void int4_gemm_bf16(const void* x, const void* packed, const void* qparams, void* y, int M, int n, int K, int group,
                    int64_t ldy, cudaStream_t stream) {
  LB_CHECK(M > 0 && int4_gemm_bf16_ok(n, K, group) && ldy >= n && ldy % 8 == 0,
           "int4_gemm_bf16: M {}, n {}, K {}, group {}, ldy {} not supported here", M, n, K, group, ldy);
  LB_CHECK(x && packed && qparams && y && reinterpret_cast<uintptr_t>(x) % 16 == 0 &&
               reinterpret_cast<uintptr_t>(y) % 16 == 0 && reinterpret_cast<uintptr_t>(packed) % 16 == 0 &&
               reinterpret_cast<uintptr_t>(qparams) % 16 == 0,
           "int4_gemm_bf16: null or misaligned operands");
  const char* what = "int4_gemm_bf16";
  const int64_t tiles16 = n / 16, chunks = K / 64, groups = K / group;
  const CUtensorMap mx = matrix_map(what, x, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, M, K, int64_t(K) * 2, kBK, kBM,
                                    CU_TENSOR_MAP_L2_PROMOTION_L2_256B);
  // Packed weights as [tiles][chunks][128 words], (scale, zero) words as [tiles][groups][16].
  const cuuint64_t wdims[3] = {128, static_cast<cuuint64_t>(chunks), static_cast<cuuint64_t>(tiles16)};
  const cuuint64_t wstrides[2] = {512, static_cast<cuuint64_t>(chunks * 512)};
  const cuuint32_t wbox[3] = {128, 1, kBN / 16};
  const CUtensorMap mw = tensor_map(what, packed, CU_TENSOR_MAP_DATA_TYPE_UINT32, 3, wdims, wstrides, wbox,
                                    CU_TENSOR_MAP_SWIZZLE_NONE, CU_TENSOR_MAP_L2_PROMOTION_L2_256B);
  const cuuint64_t qdims[3] = {16, static_cast<cuuint64_t>(groups), static_cast<cuuint64_t>(tiles16)};
  const cuuint64_t qstrides[2] = {64, static_cast<cuuint64_t>(groups * 64)};
  const cuuint32_t qbox[3] = {16, static_cast<cuuint32_t>(group < 64 ? 64 / group : 1), kBN / 16};
  const CUtensorMap mq = tensor_map(what, qparams, CU_TENSOR_MAP_DATA_TYPE_UINT32, 3, qdims, qstrides, qbox,
                                    CU_TENSOR_MAP_SWIZZLE_NONE, CU_TENSOR_MAP_L2_PROMOTION_L2_256B);
  const CUtensorMap my = matrix_map(what, y, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, M, n, ldy * 2, 64, kBM,
                                    CU_TENSOR_MAP_L2_PROMOTION_NONE);
  const int tiles = (M + kBM - 1) / kBM * (n / kBN);
  int4_gemm_kernel<<<std::min(tiles, sms()), kThreads, kSmem, stream>>>(mx, mw, mq, my, M, n, K, group);
  ops::check_launch("int4_gemm_bf16");
}

}  // namespace lowbit::cuda
