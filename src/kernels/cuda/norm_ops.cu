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

// One block per output row; two passes over the (cached) float row.
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
  ops::launch("add_rmsnorm", add_rmsnorm_kernel, M, threads_for(D), 0, stream, x,
              static_cast<const __nv_bfloat16*>(delta), w, static_cast<__nv_bfloat16*>(out), D, eps,
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
  const int blocks = static_cast<int>(std::min<int64_t>((total + 255) / 256, 4096));
  ops::launch("swiglu", swiglu_kernel, blocks, 256, 0, stream,
              static_cast<const __nv_bfloat16*>(gu), static_cast<__nv_bfloat16*>(h), F, total);
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
