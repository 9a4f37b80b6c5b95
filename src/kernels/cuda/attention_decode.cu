// Decode attention as split-K "flash-decoding", in one kernel with RoPE and the cache append: each
// (split, kv head, sequence) block walks a chunk of the cached positions with an online softmax for
// the G query heads that share the kv head (keys and values are read once for all of them); the
// last block to finish for a (sequence, kv head) merges the splits. The chunk size follows the
// current length read from device memory, so one captured graph serves every step and the work per
// block grows with the context instead of idling. Folding RoPE, the append and the merge in saves
// two launches and two dependent round trips per layer, which is most of a decode step's cost
// outside the weight products.
#include "kernels/cuda/ops_common.cuh"

namespace lowbit::cuda {
namespace {

constexpr int kWarps = 4;

template <int E>
__device__ __forceinline__ void load_bf16(const __nv_bfloat16* p, float (&v)[E]) {
  if constexpr (E == 4) {
    const uint2 u = *reinterpret_cast<const uint2*>(p);
    v[0] = ops::bf_bits(u.x & 0xffffu), v[1] = ops::bf_bits(u.x >> 16);
    v[2] = ops::bf_bits(u.y & 0xffffu), v[3] = ops::bf_bits(u.y >> 16);
  } else {
    static_assert(E == 2, "head_dim 64 or 128");
    const uint32_t u = *reinterpret_cast<const uint32_t*>(p);
    v[0] = ops::bf_bits(u & 0xffffu), v[1] = ops::bf_bits(u >> 16);
  }
}

template <int E>
__device__ __forceinline__ void store_bf16(__nv_bfloat16* p, const float (&v)[E]) {
#pragma unroll
  for (int e = 0; e < E; ++e) p[e] = __float2bfloat16_rn(v[e]);
}

// Rotate-half on a head held E elements per lane (lane l: elements l·E .. l·E + E − 1): the
// partner of element d is d ± HD/2, held by lane l ^ 16.
template <int E>
__device__ __forceinline__ void rotate(float (&v)[E], const float2* cs, int lane) {
  constexpr int half = 16 * E;
#pragma unroll
  for (int e = 0; e < E; ++e) {
    const float partner = __shfl_xor_sync(0xffffffffu, v[e], 16);
    const int d = lane * E + e;
    const float2 c = cs[d % half];
    v[e] = d < half ? v[e] * c.x - partner * c.y : v[e] * c.x + partner * c.y;
  }
}

template <int HD, int G>
__global__ void __launch_bounds__(kWarps * 32) decode_kernel(const DecodeAttnArgs a) {
  constexpr int E = HD / 32;
  ops::wait_prior();
  ops::allow_dependents();
  const int split = blockIdx.x, kvh = blockIdx.y, b = blockIdx.z;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int pos = a.pos[b];
  const int L = min(pos + 1, a.cap);
  const int chunk = (L + a.splits - 1) / a.splits;
  const int p0 = split * chunk, p1 = min(L, p0 + chunk);
  const float2* cs = reinterpret_cast<const float2*>(a.rope) + static_cast<int64_t>(min(pos, a.cap - 1)) * (HD / 2);
  const __nv_bfloat16* row =
      static_cast<const __nv_bfloat16*>(a.qkv) + static_cast<int64_t>(b) * (a.H + 2 * a.KV) * HD;
  const int64_t base = (static_cast<int64_t>(b) * a.KV + kvh) * a.cap * HD + lane * E;
  __nv_bfloat16* K = static_cast<__nv_bfloat16*>(a.k_cache) + base;
  __nv_bfloat16* V = static_cast<__nv_bfloat16*>(a.v_cache) + base;

  // The block holding the new position stores its rotated key and its value before reading any.
  if (p0 <= pos && pos < p1) {
    if (warp == 0) {
      float k[E], v[E];
      load_bf16<E>(row + (a.H + kvh) * HD + lane * E, k);
      load_bf16<E>(row + (a.H + a.KV + kvh) * HD + lane * E, v);
      rotate<E>(k, cs, lane);
      store_bf16<E>(K + static_cast<int64_t>(pos) * HD, k);
      store_bf16<E>(V + static_cast<int64_t>(pos) * HD, v);
    }
    __syncthreads();
  }

  float q[G][E];
#pragma unroll
  for (int g = 0; g < G; ++g) {
    load_bf16<E>(row + (kvh * G + g) * HD + lane * E, q[g]);
    rotate<E>(q[g], cs, lane);
  }
  float m[G], l[G], acc[G][E];
#pragma unroll
  for (int g = 0; g < G; ++g) {
    m[g] = -INFINITY;
    l[g] = 0.0f;
#pragma unroll
    for (int e = 0; e < E; ++e) acc[g][e] = 0.0f;
  }
  for (int p = p0 + warp; p < p1; p += kWarps) {
    float k[E], v[E];
    load_bf16<E>(K + static_cast<int64_t>(p) * HD, k);
    load_bf16<E>(V + static_cast<int64_t>(p) * HD, v);
#pragma unroll
    for (int g = 0; g < G; ++g) {
      float d = 0.0f;
#pragma unroll
      for (int e = 0; e < E; ++e) d += q[g][e] * k[e];
      const float s = ops::warp_sum(d) * a.scale;
      const float mn = fmaxf(m[g], s);
      const float corr = expf(m[g] - mn), pe = expf(s - mn);
      l[g] = l[g] * corr + pe;
#pragma unroll
      for (int e = 0; e < E; ++e) acc[g][e] = acc[g][e] * corr + pe * v[e];
      m[g] = mn;
    }
  }

  // The warps' running sums meet in shared memory; one (max, sum, vector) per head and split out.
  __shared__ float sm[kWarps][G][2];
  __shared__ float sacc[kWarps][G][HD];
  __shared__ bool last;
#pragma unroll
  for (int g = 0; g < G; ++g) {
    if (lane == 0) {
      sm[warp][g][0] = m[g];
      sm[warp][g][1] = l[g];
    }
#pragma unroll
    for (int e = 0; e < E; ++e) sacc[warp][g][lane * E + e] = acc[g][e];
  }
  __syncthreads();
  const int64_t head0 = static_cast<int64_t>(b) * a.H + kvh * G;
  for (int idx = threadIdx.x; idx < G * HD; idx += blockDim.x) {
    const int g = idx / HD, d = idx % HD;
    float M = -INFINITY;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) M = fmaxf(M, sm[w][g][0]);
    float o = 0.0f, sum = 0.0f;
    if (M != -INFINITY) {
#pragma unroll
      for (int w = 0; w < kWarps; ++w) {
        const float f = expf(sm[w][g][0] - M);
        o += f * sacc[w][g][d];
        sum += f * sm[w][g][1];
      }
    }
    const int64_t slot = (head0 + g) * a.splits + split;
    a.partial_o[slot * HD + d] = o;
    if (d == 0) {
      a.partial_ml[slot * 2] = M;
      a.partial_ml[slot * 2 + 1] = sum;
    }
  }

  // Last block of this (sequence, kv head) in: merge every split (threadFenceReduction pattern).
  __threadfence();
  __syncthreads();
  unsigned* counter = a.counters + static_cast<int64_t>(b) * a.KV + kvh;
  if (threadIdx.x == 0) last = atomicAdd(counter, 1u) == static_cast<unsigned>(a.splits - 1);
  __syncthreads();
  if (!last) return;
  __threadfence();
  for (int idx = threadIdx.x; idx < G * HD; idx += blockDim.x) {
    const int g = idx / HD, d = idx % HD;
    const float* ml = a.partial_ml + (head0 + g) * a.splits * 2;
    const float* o = a.partial_o + (head0 + g) * a.splits * HD;
    float M = -INFINITY;
    for (int s = 0; s < a.splits; ++s) M = fmaxf(M, __ldcg(ml + 2 * s));
    float num = 0.0f, den = 0.0f;
    for (int s = 0; s < a.splits; ++s) {
      const float ms = __ldcg(ml + 2 * s);
      if (ms == -INFINITY) continue;
      const float f = expf(ms - M);
      num += f * __ldcg(o + s * HD + d);
      den += f * __ldcg(ml + 2 * s + 1);
    }
    static_cast<__nv_bfloat16*>(a.out)[(head0 + g) * HD + d] = __float2bfloat16_rn(num / den);
  }
  if (threadIdx.x == 0) *counter = 0;  // ready for the next layer or step
}

template <int HD>
void launch_hd(const DecodeAttnArgs& a, int G, cudaStream_t stream) {
  const dim3 grid(a.splits, a.KV, a.B), block(kWarps * 32);
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
  LB_CHECK(a.B > 0 && a.KV > 0 && a.H % a.KV == 0 && a.splits > 0 && a.cap > 0,
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
