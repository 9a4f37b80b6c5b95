// Prefill's RoPE of q and k and the KV-cache append, in one kernel per layer: the fused q/k/v output
// is read once, rotated queries go to the attention's input and rotated keys and values straight
// into the cache at each row's position (read from device memory). Decode does the same inside its
// attention kernel (attention_decode.cu), with the same table, so both rotate identically.
#include "kernels/cuda/ops_common.cuh"

namespace lowbit::cuda {
namespace {

// One block per row.
__global__ void rope_kv_kernel(const RopeKvArgs a) {
  ops::wait_prior();
  ops::allow_dependents();
  const int r = blockIdx.x, half = a.HD / 2;
  const int pos = a.pos[r], seq = r / a.rows_per_seq;
  if (pos < 0 || pos >= a.cap) return;  // the host checks capacity; never write outside the cache
  const float2* cs = reinterpret_cast<const float2*>(a.rope) + static_cast<int64_t>(pos) * half;
  const int row = (a.H + 2 * a.KV) * a.HD;
  const __nv_bfloat16* src = static_cast<const __nv_bfloat16*>(a.qkv) + static_cast<int64_t>(r) * row;
  __nv_bfloat16* q_out = static_cast<__nv_bfloat16*>(a.q_out) + static_cast<int64_t>(r) * a.H * a.HD;
  auto cache_row = [&](void* cache, int h) {
    return static_cast<__nv_bfloat16*>(cache) +
           ((static_cast<int64_t>(seq) * a.KV + h) * a.cap + pos) * a.HD;
  };
  // Rotations: (head, i) pairs over the H query heads, then the KV key heads.
  const int rot = (a.H + a.KV) * half;
  for (int e = threadIdx.x; e < rot; e += blockDim.x) {
    const int h = e / half, i = e % half;
    float x0, x1;
    if (a.qkv32.acc) {
      x0 = ops::int32_rows1(a.qkv32, r, row, h * a.HD + i);
      x1 = ops::int32_rows1(a.qkv32, r, row, h * a.HD + i + half);
    } else {
      const __nv_bfloat16* p = src + h * a.HD;
      x0 = ops::bf(p[i]), x1 = ops::bf(p[i + half]);
    }
    const float2 c = cs[i];
    const __nv_bfloat16 y0 = __float2bfloat16_rn(x0 * c.x - x1 * c.y);
    const __nv_bfloat16 y1 = __float2bfloat16_rn(x1 * c.x + x0 * c.y);
    __nv_bfloat16* dst = h < a.H ? q_out + h * a.HD : cache_row(a.k_cache, h - a.H);
    dst[i] = y0;
    dst[i + half] = y1;
  }
  // Values: copied as they are.
  const __nv_bfloat16* v = src + (a.H + a.KV) * a.HD;
  const int v0 = (a.H + a.KV) * a.HD;
  for (int e = threadIdx.x; e < a.KV * a.HD; e += blockDim.x)
    cache_row(a.v_cache, e / a.HD)[e % a.HD] =
        a.qkv32.acc ? __float2bfloat16_rn(ops::int32_rows1(a.qkv32, r, row, v0 + e)) : v[e];
}

// The same with 8 frequencies per thread (HD a multiple of 16): 16-byte loads and stores of q, k
// and v, 8 cached values per store. Each thread takes one run of 8 at a time across the row's
// (H + KV) · HD / 16 rotation runs, then the values.
__global__ void rope_kv_vec_kernel(const RopeKvArgs a) {
  ops::wait_prior();
  ops::allow_dependents();
  const int r = blockIdx.x, half = a.HD / 2, runs = half / 8;
  const int pos = a.pos[r], seq = r / a.rows_per_seq;
  if (pos < 0 || pos >= a.cap) return;
  const float4* cs = reinterpret_cast<const float4*>(a.rope + static_cast<int64_t>(pos) * a.HD);  // (c, s) pairs
  const int row = (a.H + 2 * a.KV) * a.HD;
  const __nv_bfloat16* src = static_cast<const __nv_bfloat16*>(a.qkv) + static_cast<int64_t>(r) * row;
  auto load8 = [&](int col, float (&v)[8]) {
    if (a.qkv32.acc) {
      ops::int32_rows8(a.qkv32, r, row, col, v);
    } else {
      const uint4 u = *reinterpret_cast<const uint4*>(src + col);
      const __nv_bfloat16* b = reinterpret_cast<const __nv_bfloat16*>(&u);
#pragma unroll
      for (int e = 0; e < 8; ++e) v[e] = ops::bf(b[e]);
    }
  };
  auto store8 = [](__nv_bfloat16* dst, const float (&v)[8]) {
    __align__(16) __nv_bfloat16 o[8];
#pragma unroll
    for (int e = 0; e < 8; ++e) o[e] = __float2bfloat16_rn(v[e]);
    *reinterpret_cast<uint4*>(dst) = *reinterpret_cast<const uint4*>(o);
  };
  auto cache_row = [&](void* cache, int h) {
    return static_cast<__nv_bfloat16*>(cache) + ((static_cast<int64_t>(seq) * a.KV + h) * a.cap + pos) * a.HD;
  };
  __nv_bfloat16* q_out = static_cast<__nv_bfloat16*>(a.q_out) + static_cast<int64_t>(r) * a.H * a.HD;
  for (int e = threadIdx.x; e < (a.H + a.KV) * runs; e += blockDim.x) {
    const int h = e / runs, i = (e % runs) * 8;
    float x0[8], x1[8], y0[8], y1[8];
    load8(h * a.HD + i, x0);
    load8(h * a.HD + i + half, x1);
#pragma unroll
    for (int j = 0; j < 8; j += 2) {
      const float4 c = cs[(i + j) / 2];  // (cos, sin) of frequencies i + j and i + j + 1
      y0[j] = x0[j] * c.x - x1[j] * c.y;
      y1[j] = x1[j] * c.x + x0[j] * c.y;
      y0[j + 1] = x0[j + 1] * c.z - x1[j + 1] * c.w;
      y1[j + 1] = x1[j + 1] * c.z + x0[j + 1] * c.w;
    }
    __nv_bfloat16* dst = h < a.H ? q_out + h * a.HD : cache_row(a.k_cache, h - a.H);
    store8(dst + i, y0);
    store8(dst + i + half, y1);
  }
  const int v0 = (a.H + a.KV) * a.HD, vruns = a.KV * a.HD / 8;
  for (int e = threadIdx.x; e < vruns; e += blockDim.x) {
    float v[8];
    load8(v0 + 8 * e, v);
    store8(cache_row(a.v_cache, 8 * e / a.HD) + (8 * e) % a.HD, v);
  }
}

}  // namespace

void rope_kv_append(const RopeKvArgs& a, cudaStream_t stream) {
  LB_CHECK((a.qkv || (a.qkv32.acc && a.qkv32.xscale && a.qkv32.wscale)) && a.q_out && a.k_cache && a.v_cache && a.pos && a.rope,
           "rope_kv_append: null pointer");
  LB_CHECK(a.M > 0 && a.H > 0 && a.KV > 0 && a.HD > 0 && a.HD % 2 == 0 && a.cap > 0 &&
               a.rows_per_seq > 0,
           "rope_kv_append: bad shape (M {}, H {}, KV {}, HD {})", a.M, a.H, a.KV, a.HD);
  const bool overlap = !a.qkv32.acc;  // not behind cuBLASLt's int8 GEMM (ops::launch_overlap)
  if (a.HD % 16 == 0) return ops::launch_overlap(overlap, "rope_kv_append", rope_kv_vec_kernel, a.M, 128, 0, stream, a);
  ops::launch_overlap(overlap, "rope_kv_append", rope_kv_kernel, a.M, 128, 0, stream, a);
}

}  // namespace lowbit::cuda
