// Row-wise kernels of the forward pass: embedding gather, residual add + RMSNorm, SwiGLU, greedy
// argmax with the decode state's advance. All are tiny next to the weight
// products; what matters is one launch each and no extra pass over memory.
#include <atomic>

#include "kernels/cuda/ops_common.cuh"

namespace lowbit::cuda {

namespace {
std::atomic<bool> g_programmatic{false};
}  // namespace
void set_programmatic_launch(bool on) { g_programmatic.store(on); }
bool programmatic_launch() { return g_programmatic.load(); }

namespace {

using ops::bf;

__global__ void embed_kernel(const __nv_bfloat16* table, int64_t vocab, const int32_t* tokens,
                             int D, float* x) {
  ops::wait_prior();
  ops::allow_dependents();
  const int r = blockIdx.x;
  const int32_t tok = tokens[r];
  const bool ok = tok >= 0 && tok < vocab;
  const __nv_bfloat16* src = table + (ok ? static_cast<int64_t>(tok) * D : 0);
  for (int i = threadIdx.x; i < D; i += blockDim.x)
    x[static_cast<int64_t>(r) * D + i] = ok ? bf(src[i]) : 0.0f;
}

// One block per output row; two passes over the (cached) float row. The general case (D not a
// multiple of 8); the model's widths take the vector kernel below.
__global__ void add_rmsnorm_kernel(float* x, const __nv_bfloat16* delta, const float* w,
                                   __nv_bfloat16* out, int D, float eps, int row_step,
                                   int row_off) {
  ops::wait_prior();
  ops::allow_dependents();
  const int r = blockIdx.x;
  const int64_t i0 = (static_cast<int64_t>(r) * row_step + row_off) * D;
  float* xr = x + i0;
  float ss = 0.0f;
  for (int i = threadIdx.x; i < D; i += blockDim.x) {
    float v = xr[i];
    if (delta) {
      v += bf(delta[i0 + i]);
      xr[i] = v;
    }
    ss += v * v;
  }
  ss = ops::block_sum(ss);
  const float inv = 1.0f / sqrtf(ss / static_cast<float>(D) + eps);
  for (int i = threadIdx.x; i < D; i += blockDim.x)
    out[static_cast<int64_t>(r) * D + i] = __float2bfloat16_rn(w[i] * (xr[i] * inv));
}

__device__ __forceinline__ void unpack8(const uint4& u, float (&f)[8]) {
  const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    f[2 * i] = ops::bf_bits(w[i] & 0xffffu);
    f[2 * i + 1] = ops::bf_bits(w[i] >> 16);
  }
}
__device__ __forceinline__ uint32_t pack2(float a, float b) {
  const __nv_bfloat162 h = __floats2bfloat162_rn(a, b);
  return *reinterpret_cast<const uint32_t*>(&h);
}

// Single pass, D a multiple of 8: each thread holds NCH runs of 8 values in registers (16-byte
// loads of x, delta and w, all in flight at once), one block reduction, the stores. The norm weights
// do not depend on the previous kernel and are fetched before waiting for it.
template <int NCH>
__global__ void add_rmsnorm_vec_kernel(float* x, const __nv_bfloat16* delta, const float* w,
                                       __nv_bfloat16* out, int D, float eps, int row_step,
                                       int row_off) {
  const int nv = D / 8;
  float wv[NCH][8];
#pragma unroll
  for (int c = 0; c < NCH; ++c) {
    const int j = threadIdx.x + c * blockDim.x;
    if (j < nv) {
      const float4 a = reinterpret_cast<const float4*>(w)[2 * j];
      const float4 b = reinterpret_cast<const float4*>(w)[2 * j + 1];
      wv[c][0] = a.x, wv[c][1] = a.y, wv[c][2] = a.z, wv[c][3] = a.w;
      wv[c][4] = b.x, wv[c][5] = b.y, wv[c][6] = b.z, wv[c][7] = b.w;
    }
  }
  ops::wait_prior();
  ops::allow_dependents();
  const int r = blockIdx.x;
  const int64_t i0 = (static_cast<int64_t>(r) * row_step + row_off) * D;
  float4* xr = reinterpret_cast<float4*>(x + i0);
  float v[NCH][8];
  float ss = 0.0f;
#pragma unroll
  for (int c = 0; c < NCH; ++c) {
    const int j = threadIdx.x + c * blockDim.x;
    if (j < nv) {
      const float4 a = xr[2 * j], b = xr[2 * j + 1];
      v[c][0] = a.x, v[c][1] = a.y, v[c][2] = a.z, v[c][3] = a.w;
      v[c][4] = b.x, v[c][5] = b.y, v[c][6] = b.z, v[c][7] = b.w;
      if (delta) {
        float d[8];
        unpack8(reinterpret_cast<const uint4*>(delta + i0)[j], d);
#pragma unroll
        for (int e = 0; e < 8; ++e) v[c][e] += d[e];
        xr[2 * j] = make_float4(v[c][0], v[c][1], v[c][2], v[c][3]);
        xr[2 * j + 1] = make_float4(v[c][4], v[c][5], v[c][6], v[c][7]);
      }
#pragma unroll
      for (int e = 0; e < 8; ++e) ss += v[c][e] * v[c][e];
    }
  }
  ss = ops::block_sum(ss);
  const float inv = 1.0f / sqrtf(ss / static_cast<float>(D) + eps);
  uint4* o = reinterpret_cast<uint4*>(out + static_cast<int64_t>(r) * D);
#pragma unroll
  for (int c = 0; c < NCH; ++c) {
    const int j = threadIdx.x + c * blockDim.x;
    if (j < nv) {
      float y[8];
#pragma unroll
      for (int e = 0; e < 8; ++e) y[e] = wv[c][e] * (v[c][e] * inv);
      o[j] = make_uint4(pack2(y[0], y[1]), pack2(y[2], y[3]), pack2(y[4], y[5]), pack2(y[6], y[7]));
    }
  }
}

__global__ void swiglu_kernel(const __nv_bfloat16* gu, __nv_bfloat16* h, int F, int64_t total) {
  ops::wait_prior();
  ops::allow_dependents();
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t m = e / F, j = e % F;
    const float g = bf(gu[m * 2 * F + j]), u = bf(gu[m * 2 * F + F + j]);
    h[e] = __float2bfloat16_rn(g / (1.0f + expf(-g)) * u);
  }
}

// F a multiple of 8: 16-byte loads of 8 gate and 8 up values, one 16-byte store.
__global__ void swiglu_vec_kernel(const __nv_bfloat16* gu, __nv_bfloat16* h, int F, int64_t total8) {
  ops::wait_prior();
  ops::allow_dependents();
  const int F8 = F / 8;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < total8;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t m = e / F8, j = e % F8;
    const uint4* row = reinterpret_cast<const uint4*>(gu + m * 2 * F);
    float g[8], u[8], y[8];
    unpack8(row[j], g);
    unpack8(row[F8 + j], u);
#pragma unroll
    for (int i = 0; i < 8; ++i) y[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
    reinterpret_cast<uint4*>(h)[e] =
        make_uint4(pack2(y[0], y[1]), pack2(y[2], y[3]), pack2(y[4], y[5]), pack2(y[6], y[7]));
  }
}

// Interleaved gate/up rows (blocks of 8 gate then 8 up values): one 32-byte run per 8 outputs.
__global__ void swiglu_interleaved_kernel(const __nv_bfloat16* gu, __nv_bfloat16* h, int F,
                                          int64_t total8) {
  ops::wait_prior();
  ops::allow_dependents();
  const int F8 = F / 8;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < total8;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t m = e / F8, j = e % F8;
    const uint4* run = reinterpret_cast<const uint4*>(gu + m * 2 * F) + 2 * j;
    float g[8], u[8], y[8];
    unpack8(run[0], g);
    unpack8(run[1], u);
#pragma unroll
    for (int i = 0; i < 8; ++i) y[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
    reinterpret_cast<uint4*>(h)[e] =
        make_uint4(pack2(y[0], y[1]), pack2(y[2], y[3]), pack2(y[4], y[5]), pack2(y[6], y[7]));
  }
}

template <typename T>
__device__ __forceinline__ float load_logit(const T* p, int64_t i);
template <>
__device__ __forceinline__ float load_logit<float>(const float* p, int64_t i) {
  return p[i];
}
template <>
__device__ __forceinline__ float load_logit<__nv_bfloat16>(const __nv_bfloat16* p, int64_t i) {
  return bf(p[i]);
}

// (value, index) maximum with the lowest index winning ties.
__device__ __forceinline__ void better(float& bv, int& bi, float v, int i) {
  if (v > bv || (v == bv && i < bi)) {
    bv = v;
    bi = i;
  }
}

template <typename T>
__global__ void argmax_advance_kernel(const T* logits, int64_t row_stride, int V, int32_t* token,
                                      int32_t* pos, int32_t* hist, int32_t* n, int hist_cap) {
  ops::wait_prior();
  ops::allow_dependents();
  const int b = blockIdx.x;
  const T* row = logits + b * row_stride;
  float bv = -INFINITY;
  int bi = 0x7fffffff;
  for (int i = threadIdx.x; i < V; i += blockDim.x) better(bv, bi, load_logit(row, i), i);
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
    const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
    better(bv, bi, ov, oi);
  }
  __shared__ float sv[32];
  __shared__ int si[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) {
    sv[warp] = bv;
    si[warp] = bi;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int k = 1; k < (int)(blockDim.x >> 5); ++k) better(bv, bi, sv[k], si[k]);
    if (bi >= V) bi = 0;  // every logit NaN: a defined (if useless) token rather than garbage
    token[b] = bi;
    if (hist) {
      const int k = n[b];
      if (k < hist_cap) hist[static_cast<int64_t>(b) * hist_cap + k] = bi;
      n[b] = k + 1;
    }
    pos[b] += 1;
  }
}

int threads_for(int D) {
  return D >= 2048 ? 512 : D >= 512 ? 256 : 128;
}

}  // namespace

void embed_rows(const void* table, int64_t vocab, const int32_t* tokens, int M, int D, float* x,
                cudaStream_t stream) {
  LB_CHECK(table && tokens && x && M > 0 && D > 0, "embed_rows: bad arguments");
  ops::launch("embed_rows", embed_kernel, M, threads_for(D), 0, stream,
              static_cast<const __nv_bfloat16*>(table), vocab, tokens, D, x);
}

void add_rmsnorm(float* x, const void* delta, const float* w, void* out, int M, int D, float eps,
                 int row_step, int row_off, cudaStream_t stream) {
  LB_CHECK(x && w && out && M > 0 && D > 0 && row_step >= 0 && row_off >= 0,
           "add_rmsnorm: bad arguments");
  const auto* d = static_cast<const __nv_bfloat16*>(delta);
  auto* o = static_cast<__nv_bfloat16*>(out);
  const int nv = D / 8;
  if (D % 8 == 0 && nv <= 4 * 1024) {
    const int threads = std::min(1024, (nv + 31) / 32 * 32);
    const int nch = (nv + threads - 1) / threads;
    if (nch == 1)
      return ops::launch("add_rmsnorm", add_rmsnorm_vec_kernel<1>, M, threads, 0, stream, x, d, w,
                         o, D, eps, row_step, row_off);
    if (nch == 2)
      return ops::launch("add_rmsnorm", add_rmsnorm_vec_kernel<2>, M, threads, 0, stream, x, d, w,
                         o, D, eps, row_step, row_off);
    return ops::launch("add_rmsnorm", add_rmsnorm_vec_kernel<4>, M, threads, 0, stream, x, d, w, o,
                       D, eps, row_step, row_off);
  }
  ops::launch("add_rmsnorm", add_rmsnorm_kernel, M, threads_for(D), 0, stream, x, d, w, o, D, eps,
              row_step, row_off);
}

namespace {
__global__ void sleep_kernel(int64_t ns) {
  const int64_t t0 = clock64();
  const int64_t cycles = ns * 2;  // ≥ 1 cycle per ns at the clocks of these GPUs (1–2 GHz)
  while (clock64() - t0 < cycles) __nanosleep(1000);
}
}  // namespace

void gpu_sleep(int64_t microseconds, cudaStream_t stream) {
  sleep_kernel<<<1, 1, 0, stream>>>(microseconds * 1000);
  ops::check_launch("gpu_sleep");
}

void swiglu(const void* gu, void* h, int M, int F, cudaStream_t stream) {
  LB_CHECK(gu && h && M > 0 && F > 0, "swiglu: bad arguments");
  const int64_t total = static_cast<int64_t>(M) * F;
  if (F % 8 == 0) {
    const int64_t total8 = total / 8;
    const int blocks8 = static_cast<int>(std::min<int64_t>((total8 + 127) / 128, 4096));
    return ops::launch("swiglu", swiglu_vec_kernel, blocks8, 128, 0, stream,
                       static_cast<const __nv_bfloat16*>(gu), static_cast<__nv_bfloat16*>(h), F,
                       total8);
  }
  const int blocks = static_cast<int>(std::min<int64_t>((total + 255) / 256, 4096));
  ops::launch("swiglu", swiglu_kernel, blocks, 256, 0, stream,
              static_cast<const __nv_bfloat16*>(gu), static_cast<__nv_bfloat16*>(h), F, total);
}

void swiglu_interleaved(const void* gu, void* h, int M, int F, cudaStream_t stream) {
  LB_CHECK(gu && h && M > 0 && F > 0 && F % 8 == 0, "swiglu_interleaved: bad arguments (F = {})", F);
  const int64_t total8 = static_cast<int64_t>(M) * F / 8;
  const int blocks = static_cast<int>(std::min<int64_t>((total8 + 127) / 128, 4096));
  ops::launch("swiglu_interleaved", swiglu_interleaved_kernel, blocks, 128, 0, stream,
              static_cast<const __nv_bfloat16*>(gu), static_cast<__nv_bfloat16*>(h), F, total8);
}

void argmax_advance(const void* logits, bool logits_f32, int64_t row_stride, int B, int V,
                    int32_t* token, int32_t* pos, int32_t* hist, int32_t* n, int hist_cap,
                    cudaStream_t stream) {
  LB_CHECK(logits && token && pos && B > 0 && V > 0 && (!hist || n),
           "argmax_advance: bad arguments");
  if (logits_f32)
    ops::launch("argmax_advance", argmax_advance_kernel<float>, B, 1024, 0, stream,
                static_cast<const float*>(logits), row_stride, V, token, pos, hist, n, hist_cap);
  else
    ops::launch("argmax_advance", argmax_advance_kernel<__nv_bfloat16>, B, 1024, 0, stream,
                static_cast<const __nv_bfloat16*>(logits), row_stride, V, token, pos, hist, n,
                hist_cap);
}

}  // namespace lowbit::cuda
