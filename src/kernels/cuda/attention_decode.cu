// Decode attention as split-K "flash-decoding", in one kernel with RoPE and the cache append: each
// (split, kv head, sequence) block walks a chunk of the cached positions for the G query heads that
// share the kv head (keys and values are read once for all of them), in tiles of 64 positions: all
// of a tile's keys and values are requested at once as 16-byte loads (a position's head is HD / 8
// lanes), scores are reduced over those lanes by shuffles, the tile's softmax runs over shared
// memory with a running maximum per head, and each thread accumulates its 8 output dimensions for
// its positions. The last block to finish for a (sequence, kv head) merges the splits. Chunks hold
// at least one tile, so short contexts use few splits (a cheap merge) and long ones up to
// `splits`; the chunk size follows the current length read from device memory, so one captured
// graph serves every step. Folding RoPE, the append and the merge in saves launches and dependent
// round trips per layer.
#include "kernels/cuda/ops_common.cuh"

namespace lowbit::cuda {
namespace {

constexpr int kThreads = 128, kWarps = kThreads / 32;
constexpr int kTile = 64;        // positions per tile (two per lane in the softmax step)
constexpr int kMaxSplits = 64;

__device__ __forceinline__ void unpack8(const uint4& u, float (&f)[8]) {
  const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    f[2 * i] = ops::bf_bits(w[i] & 0xffffu);
    f[2 * i + 1] = ops::bf_bits(w[i] >> 16);
  }
}

// Rotate-half RoPE of element d of a head (partner d ± HD/2), from bf16 inputs, in float.
template <int HD>
__device__ __forceinline__ float rope_at(const __nv_bfloat16* head, const float2* cs, int d) {
  constexpr int half = HD / 2;
  const float v = ops::bf(head[d]);
  const float2 c = cs[d % half];
  return d < half ? v * c.x - ops::bf(head[d + half]) * c.y : v * c.x + ops::bf(head[d - half]) * c.y;
}

template <int HD, int G>
__global__ void __launch_bounds__(kThreads, 3) decode_kernel(const DecodeAttnArgs a) {
  constexpr int LPP = HD / 8;          // lanes per position: 8 dimensions (16 bytes) each
  constexpr int PPB = kThreads / LPP;  // positions per block step
  constexpr int NP = kTile / PPB;      // a thread's positions per tile
  __shared__ float sq[G][HD];          // rotated queries
  __shared__ float ss[G][kTile];       // a tile's scores, then its softmax weights
  __shared__ float sm_m[G], sm_l[G], sm_c[G];
  __shared__ __align__(16) float red[PPB][G][HD];
  __shared__ bool last;

  // Before waiting for the previous kernel (the q/k/v product): the position (advanced by the
  // previous step's last kernel) and the first tile of cached keys and values (written by earlier
  // steps) are already final, so their loads overlap that kernel's tail. Only the new position's
  // row is rewritten below; it is loaded again after the append.
  const int split = blockIdx.x, kvh = blockIdx.y, b = blockIdx.z;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int pos = a.pos[b];
  const int L = min(pos + 1, a.cap);
  const int chunk = max(kTile, (L + a.splits - 1) / a.splits);
  const int active = (L + chunk - 1) / chunk;  // splits with positions; every one is non-empty
  if (split >= active) return;
  const int p0 = split * chunk, p1 = min(L, p0 + chunk);
  const float2* cs =
      reinterpret_cast<const float2*>(a.rope) + static_cast<int64_t>(min(pos, a.cap - 1)) * (HD / 2);
  const __nv_bfloat16* row =
      static_cast<const __nv_bfloat16*>(a.qkv) + static_cast<int64_t>(b) * (a.H + 2 * a.KV) * HD;
  const int64_t base = (static_cast<int64_t>(b) * a.KV + kvh) * a.cap * HD;
  __nv_bfloat16* K = static_cast<__nv_bfloat16*>(a.k_cache) + base;
  __nv_bfloat16* V = static_cast<__nv_bfloat16*>(a.v_cache) + base;
  const int sub = tid / LPP, part = tid % LPP;  // position within a step, dimensions part·8 ..
  const __nv_bfloat16* Kp = K + part * 8;
  const __nv_bfloat16* Vp = V + part * 8;
  uint4 kr[NP], vr[NP];
  auto load_tile = [&](int t0, int n) {
#pragma unroll
    for (int i = 0; i < NP; ++i) {
      const int j = sub + PPB * i;
      if (j < n) {
        kr[i] = *reinterpret_cast<const uint4*>(Kp + static_cast<int64_t>(t0 + j) * HD);
        vr[i] = *reinterpret_cast<const uint4*>(Vp + static_cast<int64_t>(t0 + j) * HD);
      } else {
        kr[i] = vr[i] = make_uint4(0u, 0u, 0u, 0u);
      }
    }
  };
  load_tile(p0, min(kTile, p1 - p0));
  ops::wait_prior();
  ops::allow_dependents();

  // The block holding the new position stores its rotated key and its value before reading any
  // (the barrier below makes them visible to the block's own loads).
  if (p0 <= pos && pos < p1) {
    const __nv_bfloat16* kn = row + (a.H + kvh) * HD;
    const __nv_bfloat16* vn = row + (a.H + a.KV + kvh) * HD;
    for (int d = tid; d < HD; d += kThreads) {
      K[static_cast<int64_t>(pos) * HD + d] = __float2bfloat16_rn(rope_at<HD>(kn, cs, d));
      V[static_cast<int64_t>(pos) * HD + d] = vn[d];
    }
  }
  for (int i = tid; i < G * HD; i += kThreads) {
    const int g = i / HD, d = i % HD;
    sq[g][d] = rope_at<HD>(row + (kvh * G + g) * HD, cs, d);
  }
  if (tid < G) {
    sm_m[tid] = -INFINITY;
    sm_l[tid] = 0.0f;
  }
  __syncthreads();

  float q[G][8], acc[G][8];
#pragma unroll
  for (int g = 0; g < G; ++g)
#pragma unroll
    for (int e = 0; e < 8; ++e) {
      q[g][e] = sq[g][part * 8 + e];
      acc[g][e] = 0.0f;
    }

  for (int t0 = p0; t0 < p1; t0 += kTile) {
    const int n = min(kTile, p1 - t0);
    if (t0 != p0) {
      load_tile(t0, n);
    } else if (pos >= t0 && pos < t0 + n) {  // the prefetched tile holds the new position
#pragma unroll
      for (int i = 0; i < NP; ++i)
        if (t0 + sub + PPB * i == pos) {
          kr[i] = *reinterpret_cast<const uint4*>(Kp + static_cast<int64_t>(pos) * HD);
          vr[i] = *reinterpret_cast<const uint4*>(Vp + static_cast<int64_t>(pos) * HD);
        }
    }
#pragma unroll
    for (int i = 0; i < NP; ++i) {
      float kf[8];
      unpack8(kr[i], kf);
#pragma unroll
      for (int g = 0; g < G; ++g) {
        float d = 0.0f;
#pragma unroll
        for (int e = 0; e < 8; ++e) d += q[g][e] * kf[e];
#pragma unroll
        for (int o = LPP / 2; o > 0; o >>= 1) d += __shfl_xor_sync(0xffffffffu, d, o);
        if (part == 0) ss[g][sub + PPB * i] = d * a.scale;
      }
    }
    __syncthreads();
    // The tile's softmax, one warp per head: new running maximum, weights, their sum.
    for (int g = warp; g < G; g += kWarps) {
      const float m_old = sm_m[g], l_old = sm_l[g];
      const float s0 = lane < n ? ss[g][lane] : -INFINITY;
      const float s1 = lane + 32 < n ? ss[g][lane + 32] : -INFINITY;
      const float m_new = fmaxf(m_old, ops::warp_max(fmaxf(s0, s1)));
      const float e0 = lane < n ? expf(s0 - m_new) : 0.0f;
      const float e1 = lane + 32 < n ? expf(s1 - m_new) : 0.0f;
      ss[g][lane] = e0;
      ss[g][lane + 32] = e1;
      const float sum = ops::warp_sum(e0 + e1);
      if (lane == 0) {
        const float c = m_old == -INFINITY ? 0.0f : expf(m_old - m_new);
        sm_c[g] = c;
        sm_l[g] = l_old * c + sum;
        sm_m[g] = m_new;
      }
    }
    __syncthreads();
#pragma unroll
    for (int g = 0; g < G; ++g) {
      const float c = sm_c[g];
#pragma unroll
      for (int e = 0; e < 8; ++e) acc[g][e] *= c;
    }
#pragma unroll
    for (int i = 0; i < NP; ++i) {
      float vf[8];
      unpack8(vr[i], vf);
      const int j = sub + PPB * i;  // past n: weight 0 and value 0
#pragma unroll
      for (int g = 0; g < G; ++g) {
        const float p = ss[g][j];
#pragma unroll
        for (int e = 0; e < 8; ++e) acc[g][e] += p * vf[e];
      }
    }
    __syncthreads();  // the next tile rewrites ss
  }

  // The position groups' sums meet in shared memory: one (max, sum, vector) per head and split.
#pragma unroll
  for (int g = 0; g < G; ++g) {
    float4* r4 = reinterpret_cast<float4*>(&red[sub][g][part * 8]);
    r4[0] = make_float4(acc[g][0], acc[g][1], acc[g][2], acc[g][3]);
    r4[1] = make_float4(acc[g][4], acc[g][5], acc[g][6], acc[g][7]);
  }
  __syncthreads();
  const int64_t head0 = static_cast<int64_t>(b) * a.H + kvh * G;
  for (int idx = tid; idx < G * HD; idx += kThreads) {
    const int g = idx / HD, d = idx % HD;
    float o = 0.0f;
#pragma unroll
    for (int s = 0; s < PPB; ++s) o += red[s][g][d];
    if (active == 1) {  // the only split: the output itself
      static_cast<__nv_bfloat16*>(a.out)[(head0 + g) * HD + d] = __float2bfloat16_rn(o / sm_l[g]);
      continue;
    }
    const int64_t slot = (head0 + g) * a.splits + split;
    a.partial_o[slot * HD + d] = o;
    if (d == 0) {
      a.partial_ml[slot * 2] = sm_m[g];
      a.partial_ml[slot * 2 + 1] = sm_l[g];
    }
  }
  if (active == 1) return;

  // Last block of this (sequence, kv head) in: merge the active splits (threadFenceReduction pattern).
  __threadfence();
  __syncthreads();
  unsigned* counter = a.counters + static_cast<int64_t>(b) * a.KV + kvh;
  if (tid == 0) last = atomicAdd(counter, 1u) == static_cast<unsigned>(active - 1);
  __syncthreads();
  if (!last) return;
  __threadfence();
  float* wts = &red[0][0][0];  // [G][kMaxSplits] split weights, normalized (red is free now)
  for (int g = warp; g < G; g += kWarps) {
    const float* ml = a.partial_ml + (head0 + g) * a.splits * 2;
    const float m0 = lane < active ? __ldcg(ml + 2 * lane) : -INFINITY;
    const float l0 = lane < active ? __ldcg(ml + 2 * lane + 1) : 0.0f;
    const float m1 = lane + 32 < active ? __ldcg(ml + 2 * (lane + 32)) : -INFINITY;
    const float l1 = lane + 32 < active ? __ldcg(ml + 2 * (lane + 32) + 1) : 0.0f;
    const float M = ops::warp_max(fmaxf(m0, m1));
    const float f0 = m0 == -INFINITY ? 0.0f : expf(m0 - M);
    const float f1 = m1 == -INFINITY ? 0.0f : expf(m1 - M);
    const float inv = 1.0f / ops::warp_sum(f0 * l0 + f1 * l1);
    wts[g * kMaxSplits + lane] = f0 * inv;
    wts[g * kMaxSplits + lane + 32] = f1 * inv;
  }
  __syncthreads();
  for (int idx = tid; idx < G * HD / 4; idx += kThreads) {
    const int g = idx * 4 / HD, d = idx * 4 % HD;
    const float4* po = reinterpret_cast<const float4*>(a.partial_o + (head0 + g) * a.splits * HD + d);
    const float* w = wts + g * kMaxSplits;
    float4 o = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll 8
    for (int s = 0; s < active; ++s) {
      const float4 v = __ldcg(po + s * (HD / 4));
      const float f = w[s];
      o.x += f * v.x, o.y += f * v.y, o.z += f * v.z, o.w += f * v.w;
    }
    const __nv_bfloat162 lo = __floats2bfloat162_rn(o.x, o.y), hi = __floats2bfloat162_rn(o.z, o.w);
    uint2 u;
    u.x = *reinterpret_cast<const uint32_t*>(&lo);
    u.y = *reinterpret_cast<const uint32_t*>(&hi);
    *reinterpret_cast<uint2*>(static_cast<__nv_bfloat16*>(a.out) + (head0 + g) * HD + d) = u;
  }
  if (tid == 0) *counter = 0;  // ready for the next layer or step
}

template <int HD>
void launch_hd(const DecodeAttnArgs& a, int G, cudaStream_t stream) {
  const dim3 grid(a.splits, a.KV, a.B), block(kThreads);
  switch (G) {
    case 1: return ops::launch("attention_decode", decode_kernel<HD, 1>, grid, block, 0, stream, a);
    case 2: return ops::launch("attention_decode", decode_kernel<HD, 2>, grid, block, 0, stream, a);
    case 4: return ops::launch("attention_decode", decode_kernel<HD, 4>, grid, block, 0, stream, a);
    case 8: return ops::launch("attention_decode", decode_kernel<HD, 8>, grid, block, 0, stream, a);
    default: fail("attention_decode: {} query heads per kv head (supported: 1, 2, 4, 8)", G);
  }
}

}  // namespace

size_t attention_decode_workspace_floats(int B, int H, int HD, int splits) {
  return static_cast<size_t>(B) * H * splits * (HD + 2);
}

void attention_decode(const DecodeAttnArgs& a, cudaStream_t stream) {
  LB_CHECK(a.qkv && a.rope && a.k_cache && a.v_cache && a.pos && a.out && a.partial_o && a.partial_ml &&
               a.counters,
           "attention_decode: null pointer");
  LB_CHECK(a.B > 0 && a.KV > 0 && a.H % a.KV == 0 && a.splits > 0 && a.splits <= kMaxSplits && a.cap > 0,
           "attention_decode: bad shape (B {}, H {}, KV {}, splits {})", a.B, a.H, a.KV, a.splits);
  const int G = a.H / a.KV;
  if (a.HD == 128)
    launch_hd<128>(a, G, stream);
  else if (a.HD == 64)
    launch_hd<64>(a, G, stream);
  else
    fail("attention_decode: head_dim {} (supported: 64, 128)", a.HD);
}

}  // namespace lowbit::cuda
