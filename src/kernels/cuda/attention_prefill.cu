// Causal prefill attention over the KV cache: a block takes 8 query rows of one head (a warp each)
// and walks the visible keys in tiles of 32 staged in shared memory, with an online softmax, so
// memory stays O(T · HD) whatever the prompt length. Inside a tile a lane scores one key against
// the warp's query (no reductions), then the probabilities are broadcast lane by lane while each
// lane accumulates its slice of the head dimension. Simple CUDA cores, no tensor cores: prefill
// attention is a small share of the time next to the weight GEMMs at these lengths.
#include "kernels/cuda/ops_common.cuh"

namespace lowbit::cuda {
namespace {

constexpr int kRows = 8, kTile = 32;

template <int HD>
__global__ void __launch_bounds__(kRows * 32) prefill_kernel(const PrefillAttnArgs a) {
  constexpr int E = HD / 32, KS = HD / 2 + 1;  // K rows in bf16 pairs, padded: conflict-free
  __shared__ uint32_t ks[kTile][KS];
  __shared__ __align__(16) __nv_bfloat16 vs[kTile][HD];
  __shared__ float qs[kRows][HD];
  ops::wait_prior();
  ops::allow_dependents();
  const int h = blockIdx.y, b = blockIdx.z, kvh = h / (a.H / a.KV);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int t = blockIdx.x * kRows + warp;
  const bool active = t < a.T;
  const int qpos = a.p0 + t;
  const int64_t qrow = (static_cast<int64_t>(b) * a.T + t) * a.H * HD + h * HD;
  if (active)
    for (int d = lane; d < HD; d += 32)
      qs[warp][d] = ops::bf(static_cast<const __nv_bfloat16*>(a.q)[qrow + d]);
  const int kend = a.p0 + min(a.T, (blockIdx.x + 1) * kRows);  // keys [0, kend) for this block
  const int64_t base = (static_cast<int64_t>(b) * a.KV + kvh) * a.cap * HD;
  const uint32_t* K = reinterpret_cast<const uint32_t*>(static_cast<const __nv_bfloat16*>(a.k_cache) + base);
  const uint32_t* V = reinterpret_cast<const uint32_t*>(static_cast<const __nv_bfloat16*>(a.v_cache) + base);

  float m = -INFINITY, l = 0.0f, acc[E];
#pragma unroll
  for (int e = 0; e < E; ++e) acc[e] = 0.0f;
  for (int k0 = 0; k0 < kend; k0 += kTile) {
    __syncthreads();  // the previous tile is consumed (and, first time, qs is written)
    for (int idx = threadIdx.x; idx < kTile * HD / 2; idx += blockDim.x) {
      const int j = idx / (HD / 2), w = idx % (HD / 2), kp = k0 + j;
      const bool in = kp < kend;
      ks[j][w] = in ? K[static_cast<int64_t>(kp) * (HD / 2) + w] : 0u;
      reinterpret_cast<uint32_t*>(vs[j])[w] = in ? V[static_cast<int64_t>(kp) * (HD / 2) + w] : 0u;
    }
    __syncthreads();
    if (!active) continue;
    float s = 0.0f;
#pragma unroll 8
    for (int w = 0; w < HD / 2; ++w) {
      const uint32_t kk = ks[lane][w];
      s += qs[warp][2 * w] * ops::bf_bits(kk & 0xffffu) + qs[warp][2 * w + 1] * ops::bf_bits(kk >> 16);
    }
    const bool visible = k0 + lane <= qpos;
    s = visible ? s * a.scale : -INFINITY;
    const float tmax = ops::warp_max(s);
    if (tmax == -INFINITY) continue;  // the whole tile is in this row's future
    const float mn = fmaxf(m, tmax);
    const float corr = expf(m - mn);
    const float pe = visible ? expf(s - mn) : 0.0f;
    l = l * corr + ops::warp_sum(pe);
#pragma unroll
    for (int e = 0; e < E; ++e) acc[e] *= corr;
#pragma unroll 4
    for (int j = 0; j < kTile; ++j) {
      const float pj = __shfl_sync(0xffffffffu, pe, j);
      float v[E];
      if constexpr (E == 4) {
        const uint2 u = *reinterpret_cast<const uint2*>(&vs[j][lane * 4]);
        v[0] = ops::bf_bits(u.x & 0xffffu), v[1] = ops::bf_bits(u.x >> 16);
        v[2] = ops::bf_bits(u.y & 0xffffu), v[3] = ops::bf_bits(u.y >> 16);
      } else {
        const uint32_t u = *reinterpret_cast<const uint32_t*>(&vs[j][lane * 2]);
        v[0] = ops::bf_bits(u & 0xffffu), v[1] = ops::bf_bits(u >> 16);
      }
#pragma unroll
      for (int e = 0; e < E; ++e) acc[e] += pj * v[e];
    }
    m = mn;
  }
  if (!active) return;
  __nv_bfloat16* out = static_cast<__nv_bfloat16*>(a.out) + qrow + lane * E;
  const float inv = 1.0f / l;
#pragma unroll
  for (int e = 0; e < E; ++e) out[e] = __float2bfloat16_rn(acc[e] * inv);
}

}  // namespace

void attention_prefill(const PrefillAttnArgs& a, cudaStream_t stream) {
  LB_CHECK(a.q && a.k_cache && a.v_cache && a.out, "attention_prefill: null pointer");
  LB_CHECK(a.B > 0 && a.T > 0 && a.p0 >= 0 && a.KV > 0 && a.H % a.KV == 0 && a.p0 + a.T <= a.cap,
           "attention_prefill: bad shape (B {}, T {}, p0 {}, H {}, KV {}, cap {})", a.B, a.T, a.p0,
           a.H, a.KV, a.cap);
  const dim3 grid((a.T + kRows - 1) / kRows, a.H, a.B);
  if (a.HD == 128)
    ops::launch("attention_prefill", prefill_kernel<128>, grid, kRows * 32, 0, stream, a);
  else if (a.HD == 64)
    ops::launch("attention_prefill", prefill_kernel<64>, grid, kRows * 32, 0, stream, a);
  else
    fail("attention_prefill: head_dim {} (supported: 64, 128)", a.HD);
}

}  // namespace lowbit::cuda
