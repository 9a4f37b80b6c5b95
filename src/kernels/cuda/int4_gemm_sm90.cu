// int4wo's prefill product on Hopper (int4_gemm.h): y = bf16(x · Wᵀ) with the int4 weights
// dequantized in registers inside the product, so no bf16 copy of the weights goes through memory.
//
// One CTA per SM walks tiles of 128 weight rows × 256 tokens (tokens fastest, so that concurrent CTAs
// share weight tiles in L2), computing Yᵀ = W · Xᵀ in k-blocks of 64 (one chunk of lowbit's int4
// layout). Warpgroup 0's first thread issues TMA loads into a four-stage ring: the activations'
// 256 × 64 bf16 block (128-byte swizzle) and the eight 16-row weight tiles' 512-byte packed chunks
// (as four 128-byte lines each, 128-byte swizzle) with their (scale, zero) words. Warpgroups 1 and 2
// take 64 weight rows each: warp w of warpgroup c dequantizes 16-row tile 4c + w straight into wgmma's
// A fragments (registers) and issues wgmma m64n256k16 with the activations as B from shared memory.
// A lane (g, t) wants rows g, g + 8 at k = 2t, 2t + 1, 2t + 8, 2t + 9 of each k16 step s; packed lane
// (g, s) holds them (int4_layout.cuh), two 4-byte words of its 16 bytes, read without bank conflicts
// thanks to the swizzle. The next k-block's fragments are dequantized while the tensor cores work on
// this one (two fragment sets). The epilogue stores the accumulators (rows = weight rows, columns =
// tokens) transposed with stmatrix.trans into a [256 tokens][128] staging tile written by TMA stores
// (rows past M are clipped).
#include "kernels/cuda/int4_gemm.h"
#include "kernels/cuda/int4_layout.cuh"
#include "kernels/cuda/sm90_common.cuh"

namespace lowbit::cuda {
namespace {

using namespace sm90;
constexpr int kBW = 128, kBT = 256, kBK = 64, kStages = 4;
constexpr int kXBytes = kBT * kBK * 2;        // activations, one stage
constexpr int kWBytes = (kBW / 16) * 512;     // packed weights, one stage
constexpr int kQBytes = (kBW / 16) * 64 * 2;  // (scale, zero) words: up to two groups per chunk
constexpr int kSlabT = kBT * 128;             // staging: 64 weight columns × 256 tokens, one per warpgroup
constexpr int kOffW = kStages * kXBytes, kOffQ = kOffW + kStages * kWBytes, kOffE = kOffQ + kStages * kQBytes;
constexpr int kOffBar = kOffE + 2 * kSlabT;
constexpr size_t kSmem = kOffBar + 2 * kStages * 8 + 1024;  // 218,176 bytes
static_assert(kSmem <= 232448, "more shared memory than a block may have");
static_assert(kOffW % 1024 == 0 && kOffE % 1024 == 0, "swizzled buffers are 1024-byte aligned");

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
// D (64 × 256, f32) += A (64 × 16 bf16, registers) · B (256 × 16 bf16, K-major in shared memory)ᵀ.
__device__ __forceinline__ void wgmma_rs_bf16_n256(float (&d)[128], const uint32_t (&a)[4], uint64_t db) {
  asm volatile(
      "wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16 "
      LB_WGMMA_D128 ", {%128, %129, %130, %131}, %132, 1, 1, 1, 0;\n"
      : LB_WGMMA_D128_RW(LB_RW_FLOAT)
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db));
}
// The A fragments of this warp's 16-row tile j for the four k16 steps of a stage. Lane (g, t) takes,
// for step s, words t / 2 and t / 2 + 2 of packed lane (g, s) (k = 16s + 4·word + 0..3 of rows g, g + 8),
// shifted so that its pairs (k 2t, 2t + 1) sit at pairs 0 (row g) and 1 (row g + 8). Packed lane L is
// 16-byte chunk L % 8 of line L / 8 of the tile's four 128-byte lines, swizzled by line % 8.
__device__ __forceinline__ void fragments(const unsigned char* raw, const unsigned char* qp, int j, int l, int gpc,
                                          uint32_t (&frag)[4][4]) {
  const int g = l >> 2, t = l & 3, line = 4 * j + (g >> 1), shift = 8 * (t & 1);
  const unsigned char* base = raw + line * 128 + (t >> 1) * 4;
#pragma unroll
  for (int s = 0; s < 4; ++s) {
    const uint2 sz = *reinterpret_cast<const uint2*>(qp + ((j * gpc + ((s * gpc) >> 2)) * 16 + 2 * g) * 4);
    const uint32_t s0 = int4::scale2(sz.x), z0 = int4::zero2(sz.x);
    const uint32_t s1 = int4::scale2(sz.y), z1 = int4::zero2(sz.y);
    const unsigned char* chunk = base + (((4 * (g & 1) + s) ^ (line & 7)) << 4);
    const uint32_t u = *reinterpret_cast<const uint32_t*>(chunk) >> shift;
    const uint32_t v = *reinterpret_cast<const uint32_t*>(chunk + 8) >> shift;
    // The weights as tinygemm dequantizes them (int4_layout.cuh).
    frag[s][0] = int4::dequant_pair(u, 0, s0, z0);
    frag[s][1] = int4::dequant_pair(u, 1, s1, z1);
    frag[s][2] = int4::dequant_pair(v, 0, s0, z0);
    frag[s][3] = int4::dequant_pair(v, 1, s1, z1);
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
  const int wg = threadIdx.x / 128, tid = threadIdx.x % 128;
  const int TT = (M + kBT - 1) / kBT, T = TT * (N / kBW), nk = K / kBK, gpc = group < 64 ? 64 / group : 1;
  init_ring(full, empty, kStages);
  if (wg == 0) {  // the producer
    asm volatile("setmaxnreg.dec.sync.aligned.u32 40;\n");
    if (tid == 0) {
      int g = 0;
      for (int t = blockIdx.x; t < T; t += gridDim.x) {
        const int m0 = (t % TT) * kBT, tile0 = (t / TT) * (kBW / 16);
        for (int kb = 0; kb < nk; ++kb, ++g) {
          const int s = g % kStages;
          if (g >= kStages) mbar_wait(&empty[s], ((g / kStages) - 1) & 1);
          mbar_expect_tx(&full[s], kXBytes + kWBytes + 512 * gpc);
          tma_load(smem + s * kXBytes, &tmX, &full[s], kb * kBK, m0);
          tma_load(smem + kOffW + s * kWBytes, &tmW, &full[s], 0, 0, kb, tile0);
          tma_load(smem + kOffQ + s * kQBytes, &tmQ, &full[s], 0, kb * kBK / group, tile0);
        }
      }
    }
    return;
  }
  asm volatile("setmaxnreg.inc.sync.aligned.u32 232;\n");
  const int c = wg - 1, w = tid / 32, l = tid % 32, j = 4 * c + w;
  const bool storer = threadIdx.x == 128;
  const int total = (T - static_cast<int>(blockIdx.x) + static_cast<int>(gridDim.x) - 1) / gridDim.x * nk;
  auto prepare = [&](int gg, uint32_t(&frag)[4][4]) {  // k-block gg's fragments, once its stage has landed
    const int s = gg % kStages;
    mbar_wait(&full[s], (gg / kStages) & 1);
    fragments(smem + kOffW + s * kWBytes, smem + kOffQ + s * kQBytes, j, l, gpc, frag);
  };
  // stmatrix.trans: lane l gives token row l % 8 of matrix l / 8: (rows 0-7, block j'), (rows 8-15,
  // block j'), (rows 0-7, block j' + 1), (rows 8-15, block j' + 1) of the warp's 16 weight rows.
  const int q = l >> 3, wchunk = 2 * w + (q & 1);
  uint32_t fa[4][4], fb[4][4];
  int g = 0;
  prepare(0, fa);
  for (int t = blockIdx.x; t < T; t += gridDim.x) {
    const int m0 = (t % TT) * kBT, n0 = (t / TT) * kBW;
    float acc[128];
#pragma unroll
    for (int i = 0; i < 128; ++i) acc[i] = 0.0f;
    // k-block g: issue its products on fragments `cur`; once g − 1's are done, release its stage and
    // dequantize g + 1 (possibly the next tile's) into `nxt`, which g − 1 read.
    auto step = [&](int kb, uint32_t(&cur)[4][4], uint32_t(&nxt)[4][4]) {
      const uint32_t b = su32(smem + (g % kStages) * kXBytes);
      asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#pragma unroll
      for (int k = 0; k < kBK / 16; ++k) wgmma_rs_bf16_n256(acc, cur[k], smem_desc(b + 32 * k));
      asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
      asm volatile("wgmma.wait_group.sync.aligned 1;\n" ::: "memory");
      if (kb > 0 && tid == 0) mbar_arrive(&empty[(g - 1) % kStages]);
      if (g + 1 < total) prepare(g + 1, nxt);
    };
    for (int kb = 0; kb < nk; ++kb, ++g) {
      if (g & 1)
        step(kb, fb, fa);
      else
        step(kb, fa, fb);
    }
    asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
    if (tid == 0) mbar_arrive(&empty[(g - 1) % kStages]);
    if (storer) asm volatile("cp.async.bulk.wait_group.read 0;\n" ::: "memory");  // the last tile's stores read ebuf
    sync_consumers();
#pragma unroll
    for (int jb = 0; jb < 32; jb += 2) {
      const int tok = 8 * (jb + (q >> 1)) + (l & 7);
      const float* a = acc + 4 * jb;
      stmatrix4_trans(su32(ebuf) + c * kSlabT + tok * 128 + ((wchunk ^ (tok & 7)) * 16), ops::bf16x2_pack(a[0], a[1]),
                      ops::bf16x2_pack(a[2], a[3]), ops::bf16x2_pack(a[4], a[5]), ops::bf16x2_pack(a[6], a[7]));
    }
    fence_async_smem();  // visible to the TMA stores
    sync_consumers();
    if (storer) {
      tma_store(&tmY, ebuf, n0, m0);
      tma_store(&tmY, ebuf + kSlabT, n0 + 64, m0);
      asm volatile("cp.async.bulk.commit_group;\n" ::: "memory");
    }
  }
  if (storer) asm volatile("cp.async.bulk.wait_group 0;\n" ::: "memory");
#endif
}

int sms() { return sms_for<int4_gemm_kernel>(kSmem); }

}  // namespace

bool int4_gemm_bf16_ok(int n, int K, int group) {
  return n > 0 && n % kBW == 0 && K > 0 && K % kBK == 0 && group >= 32 && group % 32 == 0 && K % group == 0 &&
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
  const CUtensorMap mx = matrix_map(what, x, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, M, K, int64_t(K) * 2, kBK, kBT,
                                    CU_TENSOR_MAP_L2_PROMOTION_L2_256B);
  // Packed weights as [tiles][chunks][4 lines][32 words] (128-byte swizzle), (scale, zero) words as
  // [tiles][groups][16].
  const cuuint64_t wdims[4] = {32, 4, static_cast<cuuint64_t>(chunks), static_cast<cuuint64_t>(tiles16)};
  const cuuint64_t wstrides[3] = {128, 512, static_cast<cuuint64_t>(chunks * 512)};
  const cuuint32_t wbox[4] = {32, 4, 1, kBW / 16};
  const CUtensorMap mw = tensor_map(what, packed, CU_TENSOR_MAP_DATA_TYPE_UINT32, 4, wdims, wstrides, wbox,
                                    CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B);
  const cuuint64_t qdims[3] = {16, static_cast<cuuint64_t>(groups), static_cast<cuuint64_t>(tiles16)};
  const cuuint64_t qstrides[2] = {64, static_cast<cuuint64_t>(groups * 64)};
  const cuuint32_t qbox[3] = {16, static_cast<cuuint32_t>(group < 64 ? 64 / group : 1), kBW / 16};
  const CUtensorMap mq = tensor_map(what, qparams, CU_TENSOR_MAP_DATA_TYPE_UINT32, 3, qdims, qstrides, qbox,
                                    CU_TENSOR_MAP_SWIZZLE_NONE, CU_TENSOR_MAP_L2_PROMOTION_L2_256B);
  const CUtensorMap my = matrix_map(what, y, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, M, n, ldy * 2, 64, kBT,
                                    CU_TENSOR_MAP_L2_PROMOTION_NONE);
  const int tiles = (M + kBT - 1) / kBT * (n / kBW);
  int4_gemm_kernel<<<std::min(tiles, sms()), kThreads, kSmem, stream>>>(mx, mw, mq, my, M, n, K, group);
  ops::check_launch("int4_gemm_bf16");
}

}  // namespace lowbit::cuda
