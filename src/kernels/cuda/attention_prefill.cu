// Causal prefill attention over the KV cache on the tensor cores (flash-attention style): a block
// takes 128 query rows of one head, 32 per warp as two groups of 16, and walks the visible keys in
// tiles of 64, staged in shared memory by cp.async two tiles deep. Scores S = Q·Kᵀ and the product
// P·V run as bf16 mma.sync m16n8k16 with float32 accumulators; each K or V fragment read from shared
// memory feeds both row groups (half the shared-memory reads per product of 16 rows per warp), and
// is read one product step ahead. The Q fragments are re-read from shared memory for each key tile
// (registers hold the 32 × HD output instead). The online softmax keeps a running max and sum per
// row in registers, and the probabilities go from the score accumulators straight into the A
// fragments of P·V (the accumulator layout of two n8 tiles is the A layout of one k16 step).
// Shared-memory rows are XOR-swizzled in 16-byte chunks so ldmatrix reads are conflict-free.
// Keys past the visible range are zero-filled (no stale cache values reach the sums) and masked;
// only a key tile that crosses a warp's diagonal is masked, and a warp whose rows all precede a key
// tile skips it. The grid runs heads fastest and query tiles slowest, later tiles first, so every
// head's heaviest tiles (most keys) start before any light one: with the tiles fastest instead,
// the last heads' heavy tiles started last and the SMs sat idle a fifth of the time at the end.
#include "kernels/cuda/ops_common.cuh"

namespace lowbit::cuda {
namespace {

constexpr int kRowsPerBlock = 128, kKeyTile = 64, kWarps = 4, kWarpRows = kRowsPerBlock / kWarps;

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16 bytes global → shared; src_bytes 0 writes zeros.
__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t addr, uint32_t& r0, uint32_t& r1, uint32_t& r2, uint32_t& r3) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
               : "r"(addr));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t addr, uint32_t& r0, uint32_t& r1, uint32_t& r2,
                                                  uint32_t& r3) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
               : "r"(addr));
}

__device__ __forceinline__ void mma_bf16(float* c, const uint32_t* a, uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

using ops::bf16x2_pack;

// Byte offset of (row, 16-byte chunk) in a tile of rows of HD bf16, chunks XOR-swizzled by row.
template <int HD>
__device__ __forceinline__ uint32_t tile_off(int row, int chunk) {
  return static_cast<uint32_t>(row * HD * 2 + ((chunk ^ (row & 7)) << 4));
}

template <int HD>
__global__ void __launch_bounds__(kWarps * 32, 2) prefill_kernel(const PrefillAttnArgs a) {
  constexpr int CH = HD / 8;                        // 16-byte chunks per row
  constexpr int TILE_BYTES = kKeyTile * HD * 2;     // one K or V tile
  constexpr int KSTEPS = HD / 16, DTILES = HD / 8;  // Q·Kᵀ k-steps; output column tiles
  extern __shared__ __align__(128) unsigned char smem[];
  unsigned char* qs = smem;                                 // [128][HD]
  unsigned char* ks = qs + kRowsPerBlock * HD * 2;          // [2][64][HD]
  unsigned char* vs = ks + 2 * TILE_BYTES;                  // [2][64][HD]
  ops::wait_prior();
  ops::allow_dependents();

  // Blocks start in the order of their linear index (x fastest): every head's and sequence's
  // heaviest query tile (most keys) first.
  const int tile = gridDim.z - 1 - blockIdx.z;
  const int h = blockIdx.x, b = blockIdx.y, kvh = h / (a.H / a.KV);
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int t0 = tile * kRowsPerBlock;
  const int kend = a.p0 + min(a.T, t0 + kRowsPerBlock);  // keys [0, kend) for this block
  const int ntiles = (kend + kKeyTile - 1) / kKeyTile;
  const int64_t kvbase = (static_cast<int64_t>(b) * a.KV + kvh) * a.cap * HD;
  const __nv_bfloat16* K = static_cast<const __nv_bfloat16*>(a.k_cache) + kvbase;
  const __nv_bfloat16* V = static_cast<const __nv_bfloat16*>(a.v_cache) + kvbase;
  const __nv_bfloat16* Q = static_cast<const __nv_bfloat16*>(a.q);

  // Q tile (rows past T zero-filled) with the first key tile, one cp.async group.
  for (int i = tid; i < kRowsPerBlock * CH; i += kWarps * 32) {
    const int r = i / CH, c = i % CH, t = t0 + r;
    const bool in = t < a.T;
    const __nv_bfloat16* src = Q + ((static_cast<int64_t>(b) * a.T + (in ? t : 0)) * a.H + h) * HD + c * 8;
    cp_async16(smem_addr(qs) + tile_off<HD>(r, c), src, in ? 16 : 0);
  }
  auto load_kv = [&](int j, int stage) {
    const int k0 = j * kKeyTile;
    const uint32_t kd = smem_addr(ks + stage * TILE_BYTES), vd = smem_addr(vs + stage * TILE_BYTES);
    for (int i = tid; i < kKeyTile * CH; i += kWarps * 32) {
      const int r = i / CH, c = i % CH, kp = k0 + r;
      const bool in = kp < kend;
      const int64_t off = static_cast<int64_t>(in ? kp : 0) * HD + c * 8;
      cp_async16(kd + tile_off<HD>(r, c), K + off, in ? 16 : 0);
      cp_async16(vd + tile_off<HD>(r, c), V + off, in ? 16 : 0);
    }
  };
  load_kv(0, 0);
  cp_async_commit();

  const int g = lane >> 2, c4 = lane & 3;
  // This thread's rows: g and g + 8 of each of the warp's two groups of 16; [group][0 / 1].
  const int wpos = a.p0 + t0 + warp * kWarpRows;  // the warp's first row position
  int qpos[2][2];
#pragma unroll
  for (int q = 0; q < 2; ++q) qpos[q][0] = wpos + q * 16 + g, qpos[q][1] = wpos + q * 16 + g + 8;
  const float sl2 = a.scale * 1.4426950408889634f;  // exp(x·scale) = exp2(x·sl2)
  // ldmatrix lanes of an A fragment: rows 0-7 / 8-15 of a group, chunks 2k / 2k + 1 of a k16 step.
  const int arow = warp * kWarpRows + (lane & 7) + ((lane >> 3) & 1) * 8, achunk = lane >> 4;

  float o[2][DTILES][4];
#pragma unroll
  for (int q = 0; q < 2; ++q)
#pragma unroll
    for (int d = 0; d < DTILES; ++d) o[q][d][0] = o[q][d][1] = o[q][d][2] = o[q][d][3] = 0.0f;
  float m[2][2] = {{-INFINITY, -INFINITY}, {-INFINITY, -INFINITY}}, l[2][2] = {{0.0f, 0.0f}, {0.0f, 0.0f}};

  for (int j = 0; j < ntiles; ++j) {
    if (j + 1 < ntiles) {
      load_kv(j + 1, (j + 1) & 1);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    const int k0 = j * kKeyTile;
    if (k0 <= wpos + kWarpRows - 1) {  // some row of this warp sees a key of the tile (warp-uniform)
      const uint32_t qb = smem_addr(qs), kb = smem_addr(ks + (j & 1) * TILE_BYTES),
                     vb = smem_addr(vs + (j & 1) * TILE_BYTES);
      const bool diagonal = k0 + kKeyTile - 1 > wpos;

      // S = Q·Kᵀ: 8 tiles of 8 keys for each row group; each K fragment serves both groups.
      float s[2][8][4];
#pragma unroll
      for (int q = 0; q < 2; ++q)
#pragma unroll
        for (int nt = 0; nt < 8; ++nt) s[q][nt][0] = s[q][nt][1] = s[q][nt][2] = s[q][nt][3] = 0.0f;
#pragma unroll 1  // unrolled, the Q fragments of every step are hoisted and the output spills
      for (int kk = 0; kk < KSTEPS; kk += 2) {
        // K fragments one key tile ahead of the products that use them (ldmatrix latency hidden).
        uint32_t kf[2][4];
        auto load_k = [&](int nt, uint32_t(&f)[4]) {
          ldmatrix_x4(kb + tile_off<HD>(nt * 8 + (lane & 7), kk * 2 + (lane >> 3)), f[0], f[1], f[2], f[3]);
        };
        load_k(0, kf[0]);
        uint32_t qf[2][2][4];  // [group][k step kk, kk + 1]
#pragma unroll
        for (int q = 0; q < 2; ++q)
#pragma unroll
          for (int e = 0; e < 2; ++e)
            ldmatrix_x4(qb + tile_off<HD>(arow + q * 16, (kk + e) * 2 + achunk), qf[q][e][0], qf[q][e][1],
                        qf[q][e][2], qf[q][e][3]);
#pragma unroll
        for (int nt = 0; nt < 8; ++nt) {
          if (nt + 1 < 8) load_k(nt + 1, kf[(nt + 1) & 1]);
          const uint32_t* f = kf[nt & 1];
#pragma unroll
          for (int q = 0; q < 2; ++q) {
            mma_bf16(s[q][nt], qf[q][0], f[0], f[1]);
            mma_bf16(s[q][nt], qf[q][1], f[2], f[3]);
          }
        }
      }
      // The first V fragments, read while the softmax runs.
      constexpr int PV_STEPS = 4 * (DTILES / 2);  // (k16 step, pair of output column tiles)
      uint32_t vf[2][4];
      auto load_v = [&](int i, uint32_t(&f)[4]) {
        const int kk = i / (DTILES / 2), d = (i % (DTILES / 2)) * 2;
        ldmatrix_x4_trans(vb + tile_off<HD>(kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8, d + (lane >> 4)), f[0],
                          f[1], f[2], f[3]);
      };
      load_v(0, vf[0]);
      uint32_t pf[2][4][4];  // P as the A fragments of four k16 steps, per group
#pragma unroll
      for (int q = 0; q < 2; ++q) {
        // Mask and the online softmax (row g: elements 0, 1; row g + 8: elements 2, 3).
        if (diagonal) {
#pragma unroll
          for (int nt = 0; nt < 8; ++nt) {
            const int kp = k0 + nt * 8 + 2 * c4;
            if (kp > qpos[q][0]) s[q][nt][0] = -INFINITY;
            if (kp + 1 > qpos[q][0]) s[q][nt][1] = -INFINITY;
            if (kp > qpos[q][1]) s[q][nt][2] = -INFINITY;
            if (kp + 1 > qpos[q][1]) s[q][nt][3] = -INFINITY;
          }
        }
        // Maxima of the raw scores (the scale is positive), scaled once; p = exp2(s·sl2 − max·sl2).
        float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
        for (int nt = 0; nt < 8; ++nt) {
          mx0 = fmaxf(mx0, fmaxf(s[q][nt][0], s[q][nt][1]));
          mx1 = fmaxf(mx1, fmaxf(s[q][nt][2], s[q][nt][3]));
        }
        mx0 *= sl2, mx1 *= sl2;
#pragma unroll
        for (int off = 1; off < 4; off <<= 1) {
          mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, off));
          mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, off));
        }
        // Key 0 is visible to every row, so after the first tile the maxima are finite (a group
        // whose rows all precede this tile keeps its maxima: every p is 0).
        const float n0 = fmaxf(m[q][0], mx0), n1 = fmaxf(m[q][1], mx1);
        const float corr0 = exp2f(m[q][0] - n0), corr1 = exp2f(m[q][1] - n1);
        m[q][0] = n0, m[q][1] = n1;
        l[q][0] *= corr0, l[q][1] *= corr1;
#pragma unroll
        for (int d = 0; d < DTILES; ++d)
          o[q][d][0] *= corr0, o[q][d][1] *= corr0, o[q][d][2] *= corr1, o[q][d][3] *= corr1;
#pragma unroll
        for (int nt = 0; nt < 8; ++nt) {
          const float p0 = exp2f(fmaf(s[q][nt][0], sl2, -n0)), p1 = exp2f(fmaf(s[q][nt][1], sl2, -n0));
          const float p2 = exp2f(fmaf(s[q][nt][2], sl2, -n1)), p3 = exp2f(fmaf(s[q][nt][3], sl2, -n1));
          l[q][0] += p0 + p1, l[q][1] += p2 + p3;
          pf[q][nt >> 1][(nt & 1) * 2] = bf16x2_pack(p0, p1);
          pf[q][nt >> 1][(nt & 1) * 2 + 1] = bf16x2_pack(p2, p3);
        }
      }
      // O += P·V: V rows are keys, read transposed; two output column tiles per ldmatrix, both groups,
      // each V fragment read one step ahead.
#pragma unroll
      for (int i = 0; i < PV_STEPS; ++i) {
        if (i + 1 < PV_STEPS) load_v(i + 1, vf[(i + 1) & 1]);
        const int kk = i / (DTILES / 2), d = (i % (DTILES / 2)) * 2;
        const uint32_t* f = vf[i & 1];
#pragma unroll
        for (int q = 0; q < 2; ++q) {
          mma_bf16(o[q][d], pf[q][kk], f[0], f[1]);
          mma_bf16(o[q][d + 1], pf[q][kk], f[2], f[3]);
        }
      }
    }
    __syncthreads();  // this stage is consumed before the next iteration refills it
  }

  auto* out = static_cast<__nv_bfloat16*>(a.out);
#pragma unroll
  for (int q = 0; q < 2; ++q) {
    float l0 = l[q][0], l1 = l[q][1];
#pragma unroll
    for (int off = 1; off < 4; off <<= 1) {
      l0 += __shfl_xor_sync(0xffffffffu, l0, off);
      l1 += __shfl_xor_sync(0xffffffffu, l1, off);
    }
    const float inv0 = 1.0f / l0, inv1 = 1.0f / l1;
    const int t_0 = t0 + warp * kWarpRows + q * 16 + g, t_1 = t_0 + 8;
#pragma unroll
    for (int d = 0; d < DTILES; ++d) {
      const int col = d * 8 + 2 * c4;
      if (t_0 < a.T)
        *reinterpret_cast<uint32_t*>(out + ((static_cast<int64_t>(b) * a.T + t_0) * a.H + h) * HD + col) =
            bf16x2_pack(o[q][d][0] * inv0, o[q][d][1] * inv0);
      if (t_1 < a.T)
        *reinterpret_cast<uint32_t*>(out + ((static_cast<int64_t>(b) * a.T + t_1) * a.H + h) * HD + col) =
            bf16x2_pack(o[q][d][2] * inv1, o[q][d][3] * inv1);
    }
  }
}

template <int HD>
void launch_prefill(const PrefillAttnArgs& a, cudaStream_t stream) {
  constexpr size_t smem = (kRowsPerBlock + 4 * kKeyTile) * HD * 2;  // 96 KB at HD 128: two blocks per SM
  static bool configured = false;  // the shared-memory opt-in, once per process
  if (!configured) {
    const cudaError_t e =
        cudaFuncSetAttribute(prefill_kernel<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
    if (e != cudaSuccess) fail("attention_prefill: cudaFuncSetAttribute failed: {}", cudaGetErrorString(e));
    configured = true;
  }
  const dim3 grid(a.H, a.B, (a.T + kRowsPerBlock - 1) / kRowsPerBlock);
  ops::launch("attention_prefill", prefill_kernel<HD>, grid, kWarps * 32, smem, stream, a);
}

}  // namespace

void attention_prefill(const PrefillAttnArgs& a, cudaStream_t stream) {
  LB_CHECK(a.q && a.k_cache && a.v_cache && a.out, "attention_prefill: null pointer");
  LB_CHECK(a.B > 0 && a.T > 0 && a.p0 >= 0 && a.KV > 0 && a.H % a.KV == 0 && a.p0 + a.T <= a.cap,
           "attention_prefill: bad shape (B {}, T {}, p0 {}, H {}, KV {}, cap {})", a.B, a.T, a.p0,
           a.H, a.KV, a.cap);
  if (a.HD == 128)
    launch_prefill<128>(a, stream);
  else if (a.HD == 64)
    launch_prefill<64>(a, stream);
  else
    fail("attention_prefill: head_dim {} (supported: 64, 128)", a.HD);
}

}  // namespace lowbit::cuda
