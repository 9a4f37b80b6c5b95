// Decode attention as split-K "flash-decoding": each (split, kv head, sequence) block walks a chunk
// of the cached positions with an online softmax for the G query heads that share the kv head (the
// keys and values are read once for all of them), and a second kernel merges the splits. The chunk
// size follows the current length read from device memory, so one captured graph serves every step
// and the work per block shrinks or grows with the context instead of idling.
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

// Lane l owns elements l·E .. l·E + E − 1 of a head; warp w takes positions p0 + w, p0 + w + 4, ...
template <int HD, int G>
__global__ void __launch_bounds__(kWarps * 32) partial_kernel(const DecodeAttnArgs a) {
  constexpr int E = HD / 32;
  const int split = blockIdx.x, kvh = blockIdx.y, b = blockIdx.z;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int L = min(a.pos[b] + 1, a.cap);
  const int chunk = (L + a.splits - 1) / a.splits;
  const int p0 = split * chunk, p1 = min(L, p0 + chunk);

  float q[G][E];
  const __nv_bfloat16* qb =
      static_cast<const __nv_bfloat16*>(a.q) + (static_cast<int64_t>(b) * a.H + kvh * G) * HD;
#pragma unroll
  for (int g = 0; g < G; ++g) load_bf16<E>(qb + g * HD + lane * E, q[g]);
  const int64_t base = (static_cast<int64_t>(b) * a.KV + kvh) * a.cap * HD + lane * E;
  const __nv_bfloat16* K = static_cast<const __nv_bfloat16*>(a.k_cache) + base;
  const __nv_bfloat16* V = static_cast<const __nv_bfloat16*>(a.v_cache) + base;

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
    const int64_t slot = (static_cast<int64_t>(b) * a.H + kvh * G + g) * a.splits + split;
    a.partial_o[slot * HD + d] = o;
    if (d == 0) {
      a.partial_ml[slot * 2] = M;
      a.partial_ml[slot * 2 + 1] = sum;
    }
  }
}

// One block per (head, sequence): out = Σ_s e^(m_s − M) o_s / Σ_s e^(m_s − M) l_s over non-empty splits.
__global__ void combine_kernel(const DecodeAttnArgs a) {
  ops::allow_dependents();
  const int h = blockIdx.x, b = blockIdx.y;
  const int64_t row = static_cast<int64_t>(b) * a.H + h;
  const float* ml = a.partial_ml + row * a.splits * 2;
  const float* o = a.partial_o + row * a.splits * a.HD;
  float M = -INFINITY;
  for (int s = 0; s < a.splits; ++s) M = fmaxf(M, ml[2 * s]);
  for (int d = threadIdx.x; d < a.HD; d += blockDim.x) {
    float num = 0.0f, den = 0.0f;
    for (int s = 0; s < a.splits; ++s) {
      const float ms = ml[2 * s];
      if (ms == -INFINITY) continue;
      const float f = expf(ms - M);
      num += f * o[s * a.HD + d];
      den += f * ml[2 * s + 1];
    }
    static_cast<__nv_bfloat16*>(a.out)[row * a.HD + d] = __float2bfloat16_rn(num / den);
  }
}

template <int HD>
void launch_partial(const DecodeAttnArgs& a, int G, cudaStream_t stream) {
  const dim3 grid(a.splits, a.KV, a.B);
  switch (G) {
    case 1: partial_kernel<HD, 1><<<grid, kWarps * 32, 0, stream>>>(a); break;
    case 2: partial_kernel<HD, 2><<<grid, kWarps * 32, 0, stream>>>(a); break;
    case 4: partial_kernel<HD, 4><<<grid, kWarps * 32, 0, stream>>>(a); break;
    case 8: partial_kernel<HD, 8><<<grid, kWarps * 32, 0, stream>>>(a); break;
    default: fail("attention_decode: {} query heads per kv head (supported: 1, 2, 4, 8)", G);
  }
}

}  // namespace

size_t attention_decode_workspace_floats(int B, int H, int HD, int splits) {
  return static_cast<size_t>(B) * H * splits * (HD + 2);
}

void attention_decode(const DecodeAttnArgs& a, cudaStream_t stream) {
  LB_CHECK(a.q && a.k_cache && a.v_cache && a.pos && a.out && a.partial_o && a.partial_ml,
           "attention_decode: null pointer");
  LB_CHECK(a.B > 0 && a.KV > 0 && a.H % a.KV == 0 && a.splits > 0 && a.cap > 0,
           "attention_decode: bad shape (B {}, H {}, KV {}, splits {})", a.B, a.H, a.KV, a.splits);
  const int G = a.H / a.KV;
  if (a.HD == 128)
    launch_partial<128>(a, G, stream);
  else if (a.HD == 64)
    launch_partial<64>(a, G, stream);
  else
    fail("attention_decode: head_dim {} (supported: 64, 128)", a.HD);
  ops::check_launch("attention_decode (partial)");
  combine_kernel<<<dim3(a.H, a.B), a.HD, 0, stream>>>(a);
  ops::check_launch("attention_decode (combine)");
}

}  // namespace lowbit::cuda
