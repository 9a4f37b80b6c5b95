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
__device__ __forceinline__ uint32_t pack2(float a, float b) { return ops::bf16x2_pack(a, b); }

// A row's values held as NCH runs of 8 per thread (run j = threadIdx.x + c · blockDim.x < nv) and
// the row's amax → its codes and scale (ops::row_quant_code).
template <int NCH, bool kFloat8>
__device__ __forceinline__ void store_row_codes(const float (&v)[NCH][8], float amax, int nv, uint8_t* codes,
                                                float* scale) {
  const float s = ops::row_quant_scale<kFloat8>(amax), recip = 1.0f / s;
#pragma unroll
  for (int c = 0; c < NCH; ++c) {
    const int j = threadIdx.x + c * blockDim.x;
    if (j < nv) ops::store_codes8<kFloat8>(v[c], s, recip, codes + 8 * j);
  }
  if (threadIdx.x == 0) *scale = s;
}

// Single pass, D a multiple of 8: each thread holds NCH runs of 8 values in registers (16-byte
// loads of x, delta and w, all in flight at once), one block reduction, the stores. The norm weights
// do not depend on the previous kernel and are fetched before waiting for it.
// kQ: 0 writes bf16 rows to out; 1 / 2 writes int8 / e4m3 codes and a scale per row (RowCodes).
// kD32: the delta is int32 products (Int32Rows) instead of bf16.
template <int NCH, int kQ, bool kD32>
__global__ void __launch_bounds__(1024) add_rmsnorm_vec_kernel(float* x, const __nv_bfloat16* delta, const float* w,
                                       __nv_bfloat16* out, int D, float eps, int row_step,
                                       int row_off, uint8_t* codes, float* scales, Int32Rows d32) {
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
      if (kD32 || delta) {
        float d[8];
        if constexpr (kD32)
          ops::int32_rows8(d32, i0 / D, D, 8 * j, d);
        else
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
  if constexpr (kQ == 0) {
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
  } else {
    // The bf16 outputs, kept in v, then quantized with the row's amax.
    float amax = 0.0f;
#pragma unroll
    for (int c = 0; c < NCH; ++c) {
      const int j = threadIdx.x + c * blockDim.x;
      if (j < nv) {
#pragma unroll
        for (int e = 0; e < 8; ++e) {
          v[c][e] = ops::round_bf16(wv[c][e] * (v[c][e] * inv));
          amax = fmaxf(amax, fabsf(v[c][e]));
        }
      }
    }
    store_row_codes<NCH, kQ == 2>(v, ops::block_max(amax), nv, codes + static_cast<int64_t>(r) * D, scales + r);
  }
}

using ops::silu_mul;

__global__ void swiglu_kernel(const __nv_bfloat16* gu, __nv_bfloat16* h, int F, int64_t total) {
  ops::wait_prior();
  ops::allow_dependents();
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t m = e / F, j = e % F;
    const float g = bf(gu[m * 2 * F + j]), u = bf(gu[m * 2 * F + F + j]);
    h[e] = __float2bfloat16_rn(silu_mul(g, u));
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
    for (int i = 0; i < 8; ++i) y[i] = silu_mul(g[i], u[i]);
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
    for (int i = 0; i < 8; ++i) y[i] = silu_mul(g[i], u[i]);
    reinterpret_cast<uint4*>(h)[e] =
        make_uint4(pack2(y[0], y[1]), pack2(y[2], y[3]), pack2(y[4], y[5]), pack2(y[6], y[7]));
  }
}

// The same written as codes (RowCodes), one block of kCodeThreads per row: the row's bf16 outputs
// are kept (a thread's first run in registers, the rest in shared memory) while the amax is taken,
// then quantized from there. Four blocks fit on an SM (64 registers a thread), so 2048 rows run in
// four even waves (with seven blocks a third wave ran a fifth full; one row per block of 128
// threads, eight per SM, left too few loads in flight for the int32 products).
// kAcc: gate and up are int8dq's int32 products, scaled to bf16 first exactly as
// scale_int32_to_bf16 does (acc · xs[m] · ws[col]).
constexpr int kCodeThreads = 256;
template <bool kFloat8, bool kAcc>
__global__ void __launch_bounds__(kCodeThreads, 4) swiglu_codes_kernel(const __nv_bfloat16* gu, Int32Rows acc,
                                                                       int F, uint8_t* codes, float* scales) {
  extern __shared__ uint4 hs[];  // runs kCodeThreads .. nv − 1 of the row's bf16 outputs, 8 per entry
  ops::wait_prior();
  ops::allow_dependents();
  const int m = blockIdx.x, nv = F / 8;
  float amax = 0.0f;
  uint4 first = make_uint4(0, 0, 0, 0);  // run threadIdx.x
#pragma unroll 4
  for (int j = threadIdx.x; j < nv; j += kCodeThreads) {
    float g[8], u[8], y[8];
    if constexpr (kAcc) {
      ops::int32_rows8(acc, m, 2 * F, 16 * j, g);
      ops::int32_rows8(acc, m, 2 * F, 16 * j + 8, u);
    } else {
      const uint4* run = reinterpret_cast<const uint4*>(gu + static_cast<int64_t>(m) * 2 * F) + 2 * j;
      unpack8(run[0], g);
      unpack8(run[1], u);
    }
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      y[i] = ops::round_bf16(silu_mul(g[i], u[i]));
      amax = fmaxf(amax, fabsf(y[i]));
    }
    const uint4 p = make_uint4(pack2(y[0], y[1]), pack2(y[2], y[3]), pack2(y[4], y[5]), pack2(y[6], y[7]));
    if (j < kCodeThreads)
      first = p;
    else
      hs[j - kCodeThreads] = p;
  }
  amax = ops::block_max(amax);  // its barrier also orders the shared-memory writes before the reads
  const float scale = ops::row_quant_scale<kFloat8>(amax), recip = 1.0f / scale;
#pragma unroll 4
  for (int j = threadIdx.x; j < nv; j += kCodeThreads) {
    float y[8];
    unpack8(j < kCodeThreads ? first : hs[j - kCodeThreads], y);
    ops::store_codes8<kFloat8>(y, scale, recip, codes + static_cast<int64_t>(m) * F + 8 * j);
  }
  if (threadIdx.x == 0) scales[m] = scale;
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

bool row_codes_ok(int64_t D) { return D > 0 && D % 8 == 0 && D / 8 <= 4 * 1024; }

namespace {

// The vector kernel for rows of nv runs of 8: threads per block and runs per thread (1, 2 or 4).
std::pair<int, int> vec_shape(int nv) {
  const int threads = std::min(1024, (nv + 31) / 32 * 32);
  const int nch = (nv + threads - 1) / threads;
  return {threads, nch <= 1 ? 1 : nch == 2 ? 2 : 4};
}

template <int NCH, int kQ, bool kD32>
void launch_add_rmsnorm(int M, int threads, cudaStream_t stream, float* x, const __nv_bfloat16* d, const float* w,
                        __nv_bfloat16* o, int D, float eps, int row_step, int row_off, const RowCodes& q,
                        const Int32Rows& d32) {
  ops::launch_overlap(!kD32, "add_rmsnorm", add_rmsnorm_vec_kernel<NCH, kQ, kD32>, M, threads, 0, stream, x, d, w,
                      o, D, eps, row_step, row_off, static_cast<uint8_t*>(q.codes), q.scales, d32);
}

template <int kQ, bool kD32>
void add_rmsnorm_vec(int M, cudaStream_t stream, float* x, const __nv_bfloat16* d, const float* w,
                     __nv_bfloat16* o, int D, float eps, int row_step, int row_off, const RowCodes& q,
                     const Int32Rows& d32) {
  const auto [threads, nch] = vec_shape(D / 8);
  if (nch == 1)
    return launch_add_rmsnorm<1, kQ, kD32>(M, threads, stream, x, d, w, o, D, eps, row_step, row_off, q, d32);
  if (nch == 2)
    return launch_add_rmsnorm<2, kQ, kD32>(M, threads, stream, x, d, w, o, D, eps, row_step, row_off, q, d32);
  launch_add_rmsnorm<4, kQ, kD32>(M, threads, stream, x, d, w, o, D, eps, row_step, row_off, q, d32);
}

template <int kQ>
void add_rmsnorm_vec(int M, cudaStream_t stream, float* x, const __nv_bfloat16* d, const float* w,
                     __nv_bfloat16* o, int D, float eps, int row_step, int row_off, const RowCodes& q,
                     const Int32Rows& d32) {
  if (d32) return add_rmsnorm_vec<kQ, true>(M, stream, x, d, w, o, D, eps, row_step, row_off, q, d32);
  add_rmsnorm_vec<kQ, false>(M, stream, x, d, w, o, D, eps, row_step, row_off, q, d32);
}

void check_int32_rows(const char* what, const Int32Rows& p) {
  LB_CHECK(!p.acc || (p.xscale && p.wscale && reinterpret_cast<uintptr_t>(p.acc) % 16 == 0 &&
                      reinterpret_cast<uintptr_t>(p.wscale) % 16 == 0),
           "{}: int32 products need both scales and 16-byte alignment", what);
}

template <bool kFloat8, bool kAcc>
void launch_swiglu_codes(const void* gu, const Int32Rows& acc, int M, int F, const RowCodes& q, cudaStream_t stream) {
  const size_t smem = static_cast<size_t>(std::max(F / 8 - kCodeThreads, 0)) * 16;
  static const bool attr = [] {  // rows up to 32768 values: 60 KB of shared memory
    return cudaFuncSetAttribute(swiglu_codes_kernel<kFloat8, kAcc>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                64 << 10) == cudaSuccess;
  }();
  LB_CHECK(attr || smem <= (48 << 10), "swiglu_interleaved: rows of {} values need more shared memory", F);
  ops::launch_overlap(!kAcc, "swiglu_interleaved", swiglu_codes_kernel<kFloat8, kAcc>, M, kCodeThreads, smem, stream,
                      static_cast<const __nv_bfloat16*>(gu), acc, F, static_cast<uint8_t*>(q.codes), q.scales);
}

template <bool kAcc>
void swiglu_codes(const void* gu, const Int32Rows& acc, int M, int F, const RowCodes& q, cudaStream_t stream) {
  if (q.kind == RowQuant::Float8) return launch_swiglu_codes<true, kAcc>(gu, acc, M, F, q, stream);
  launch_swiglu_codes<false, kAcc>(gu, acc, M, F, q, stream);
}

void check_codes(const char* what, const RowCodes& q, int64_t D) {
  LB_CHECK(q.kind == RowQuant::None || (q.codes && q.scales && row_codes_ok(D)),
           "{}: row codes need buffers and rows of a multiple of 8 up to 32768 values (got {})", what, D);
}

}  // namespace

void add_rmsnorm(float* x, const void* delta, const float* w, void* out, int M, int D, float eps,
                 int row_step, int row_off, cudaStream_t stream, const RowCodes& q, const Int32Rows& delta32) {
  LB_CHECK(x && w && (out || q.kind != RowQuant::None) && M > 0 && D > 0 && row_step >= 0 && row_off >= 0 &&
               !(delta && delta32),
           "add_rmsnorm: bad arguments");
  check_codes("add_rmsnorm", q, D);
  check_int32_rows("add_rmsnorm", delta32);
  LB_CHECK(!delta32 || row_codes_ok(D), "add_rmsnorm: int32 products need rows of a multiple of 8 (got {})", D);
  const auto* d = static_cast<const __nv_bfloat16*>(delta);
  auto* o = static_cast<__nv_bfloat16*>(out);
  if (q.kind == RowQuant::Int8)
    return add_rmsnorm_vec<1>(M, stream, x, d, w, o, D, eps, row_step, row_off, q, delta32);
  if (q.kind == RowQuant::Float8)
    return add_rmsnorm_vec<2>(M, stream, x, d, w, o, D, eps, row_step, row_off, q, delta32);
  if (row_codes_ok(D)) return add_rmsnorm_vec<0>(M, stream, x, d, w, o, D, eps, row_step, row_off, q, delta32);
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

void swiglu_interleaved(const void* gu, void* h, int M, int F, cudaStream_t stream, const RowCodes& q) {
  LB_CHECK(gu && (h || q.kind != RowQuant::None) && M > 0 && F > 0 && F % 8 == 0,
           "swiglu_interleaved: bad arguments (F = {})", F);
  check_codes("swiglu_interleaved", q, F);
  if (q.kind != RowQuant::None) return swiglu_codes<false>(gu, {}, M, F, q, stream);
  const int64_t total8 = static_cast<int64_t>(M) * F / 8;
  const int blocks = static_cast<int>(std::min<int64_t>((total8 + 127) / 128, 4096));
  ops::launch("swiglu_interleaved", swiglu_interleaved_kernel, blocks, 128, 0, stream,
              static_cast<const __nv_bfloat16*>(gu), static_cast<__nv_bfloat16*>(h), F, total8);
}

void swiglu_interleaved_int32(const Int32Rows& gu, int M, int F, cudaStream_t stream, const RowCodes& q) {
  LB_CHECK(gu.acc && gu.xscale && gu.wscale && M > 0 && F > 0 && F % 8 == 0 && q.kind != RowQuant::None,
           "swiglu_interleaved_int32: bad arguments (F = {})", F);
  check_codes("swiglu_interleaved_int32", q, F);
  check_int32_rows("swiglu_interleaved_int32", gu);
  swiglu_codes<true>(nullptr, gu, M, F, q, stream);
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
