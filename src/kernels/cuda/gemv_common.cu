// Argument checks, the configuration heuristic, dynamic activation quantization and the two-step
// dq entry points of weight_gemv.h.
#include <algorithm>
#include <cstdlib>

#include "kernels/cuda/gemv_kernel.cuh"
#include "kernels/cuda/ops_common.cuh"

namespace lowbit::cuda {
namespace detail {

void check_gemv_args(const char* what, const void* x, const void* w, const void* y, int M, int N,
                     int K) {
  LB_CHECK(x && w && y, "{}: null pointer", what);
  LB_CHECK(M >= 1 && M <= kGemvMaxM, "{}: M = {} must be in [1, {}]", what, M, kGemvMaxM);
  LB_CHECK(N >= 1, "{}: N = {} must be positive", what, N);
  LB_CHECK(K >= 64 && K % 64 == 0, "{}: K = {} must be a positive multiple of 64", what, K);
  LB_CHECK(reinterpret_cast<uintptr_t>(x) % 16 == 0 && reinterpret_cast<uintptr_t>(w) % 16 == 0,
           "{}: x and the weights must be 16-byte aligned", what);
}

namespace {

// One CTA per row: amax, scale, then the quantized bytes, 8 values per 16-byte load.
template <bool kFloat8>
__global__ void quantize_rows_kernel(const __nv_bfloat16* x, int K, uint8_t* xq, float* xscale) {
  const int m = blockIdx.x, nv = K / 8;
  const uint4* row = reinterpret_cast<const uint4*>(x + (size_t)m * K);
  pdl_wait();
  float amax = 0.0f;
  for (int i = threadIdx.x; i < nv; i += blockDim.x) {
    const uint4 v = row[i];
    const __nv_bfloat16* h = reinterpret_cast<const __nv_bfloat16*>(&v);
#pragma unroll
    for (int e = 0; e < 8; ++e) amax = fmaxf(amax, fabsf(__bfloat162float(h[e])));
  }
  amax = ops::block_max(amax);
  const float scale = ops::row_quant_scale<kFloat8>(amax);
  const float recip = 1.0f / scale;
  for (int i = threadIdx.x; i < nv; i += blockDim.x) {
    const uint4 v = row[i];
    const __nv_bfloat16* h = reinterpret_cast<const __nv_bfloat16*>(&v);
    float f[8];
#pragma unroll
    for (int e = 0; e < 8; ++e) f[e] = __bfloat162float(h[e]);
    ops::store_codes8<kFloat8>(f, scale, recip, xq + (size_t)m * K + 8 * (size_t)i);
  }
  if (threadIdx.x == 0) xscale[m] = scale;
}

template <bool kFloat8>
void quantize_rows(const void* x, int M, int K, void* xq, float* xscale, cudaStream_t stream) {
  LB_CHECK(x && xq && xscale, "quantize_rows: null pointer");
  LB_CHECK(M >= 1 && K >= 8 && K % 8 == 0, "quantize_rows: bad shape [{}, {}]", M, K);
  quantize_rows_kernel<kFloat8><<<M, 256, 0, stream>>>(static_cast<const __nv_bfloat16*>(x), K,
                                                       static_cast<uint8_t*>(xq), xscale);
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) fail("quantize_rows launch failed: {}", cudaGetErrorString(e));
}

size_t align256(size_t n) {
  return (n + 255) / 256 * 256;
}

}  // namespace
}  // namespace detail

// Measured on the H100 (bench/cuda/weight_gemv_bench.cu sweeps every configuration; configs
// 0..4 = rt1.wk8, rt2.wk8, rt1.wk4, rt2.wk4, rt4.wk4). Four-warp CTAs win almost everywhere: more
// CTAs per SM spread small grids evenly. More row tiles per warp cut the activation traffic per
// weight byte (M > 8, huge N) and amortize int4's per-chunk work (int4 on N ≥ 16K: two tiles beat
// one by 8-10% at M = 1 and 26% at M = 16, so those grids take four at M = 1; at M > 8 the
// gate/up-sized grids take two: H200 batch-16 int4wo-64 decode 293.5 → 336.1 tok/s per sequence);
// large grids (N ≥ 16K) run many waves, where eight warps suit bf16.
int gemv_default_config(GemvFormat f, int M, int N, int) {
  static const int sms = [] {
    int d = 0, n = 132;
    cudaGetDevice(&d);
    cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, d);
    return n;
  }();
  constexpr int kRt1Wk8 = 0, kRt2Wk8 = 1, kRt1Wk4 = 2, kRt2Wk4 = 3, kRt4Wk4 = 4;
  const int tiles = (N + 15) / 16;
  const bool large = tiles >= 1024, huge = tiles >= 4096;
  switch (f) {
    case GemvFormat::Bf16:
      if (M <= 8) return large ? kRt1Wk8 : kRt1Wk4;
      return large ? kRt2Wk4 : kRt1Wk4;  // M 9..16: two tiles halve the activation reads
    case GemvFormat::Int8wo:
    case GemvFormat::Float8wo:
      return M > 8 && huge ? kRt2Wk4 : kRt1Wk4;
    case GemvFormat::Int4wo:
      if (large && M > 8 && !huge) return kRt2Wk4;  // H200, M = 16 gate/up: 33.5 µs vs 35.4 for rt4.wk4
      if (large) return kRt4Wk4;
      if (M > 8 || (tiles + 1) / 2 <= sms) return kRt2Wk8;  // one 8-warp CTA per SM
      return kRt1Wk4;
    default:
      return kRt1Wk4;  // int8dq, float8dq
  }
}

// Split-K where a configuration leaves SMs short of CTAs: the factor (1, 2 or 4) doubles while the
// grid still fits one wave (2 eight-warp or 4 four-warp CTAs per SM) and every warp keeps at least
// 4 chunks; on Llama-3.1-8B shapes that is o_proj and down_proj (int4: 128 CTAs of rt2.wk8 → 256).
// Measured on the H100: in isolation (a graph of back-to-back calls, no PDL) clusters cost more
// than they give (int4 M = 1: o 9.12 vs 7.70 µs, down 19.26 vs 16.37; M = 16 worse still: o 13.39
// vs 7.43), but in the decode step, where each GEMV is launched early behind the previous kernel
// (PDL) and a grid of one CTA per SM lands unevenly, the int4wo-64 model ran 405.6 tok/s with the
// split against 366.6 with it forced off (LOWBIT_GEMV_SPLIT=1, same run). int8wo, float8 and bf16
// (grids of four-warp CTAs) showed no such gain, so only int4 at M ≤ 8 splits by default.
int gemv_default_split(GemvFormat f, int M, int N, int K, int config) {
  static const int2 dev = [] {
    int d = 0, n = 132, major = 0;
    cudaGetDevice(&d);
    cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, d);
    cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, d);
    return make_int2(n, major);
  }();
  if (dev.y < 9) return 1;  // no thread-block clusters
  static const int forced = [] {  // LOWBIT_GEMV_SPLIT=1..8 overrides the choice, for measurements
    const char* e = std::getenv("LOWBIT_GEMV_SPLIT");
    return e && *e ? std::clamp(std::atoi(e), 1, kGemvMaxSplit) : 0;
  }();
  if (forced) return forced;
  if (f != GemvFormat::Int4wo || M > 8) return 1;
  static constexpr int kRt[kGemvConfigs] = {1, 2, 1, 2, 4}, kWk[kGemvConfigs] = {8, 8, 4, 4, 4};
  const int rt = kRt[config], wk = kWk[config];
  const int ctas = ((N + 15) / 16 + rt - 1) / rt, slots = dev.x * (wk == 8 ? 2 : 4);
  const int chunks = K / 64;
  int sk = 1;
  while (sk < 4 && ctas * sk * 2 <= slots && chunks / (sk * 2 * wk) >= 4) sk *= 2;
  return sk;
}

const char* gemv_config_name(int config) {
  static const char* names[kGemvConfigs] = {"rt1.wk8", "rt2.wk8", "rt1.wk4", "rt2.wk4",
                                            "rt4.wk4"};
  return config >= 0 && config < kGemvConfigs ? names[config] : "auto";
}

void quantize_rows_int8(const void* x, int M, int K, int8_t* xq, float* xscale,
                        cudaStream_t stream) {
  detail::quantize_rows<false>(x, M, K, xq, xscale, stream);
}

void quantize_rows_float8(const void* x, int M, int K, uint8_t* xq, float* xscale,
                          cudaStream_t stream) {
  detail::quantize_rows<true>(x, M, K, xq, xscale, stream);
}

size_t dq_workspace_bytes(int M, int K) {
  return detail::align256((size_t)M * K) + detail::align256(4 * (size_t)M);
}

void gemv_int8dq(const void* x, const int8_t* w, const float* wscale, void* y, int M, int N, int K,
                 void* workspace, const GemvOptions& o) {
  LB_CHECK(workspace, "gemv_int8dq: null workspace");
  auto* xq = static_cast<int8_t*>(workspace);
  auto* xs =
      reinterpret_cast<float*>(static_cast<char*>(workspace) + detail::align256((size_t)M * K));
  quantize_rows_int8(x, M, K, xq, xs, o.stream);
  gemv_int8dq(xq, xs, w, wscale, y, M, N, K, o);
}

void gemv_float8dq(const void* x, const uint8_t* w, const float* wscale, void* y, int M, int N,
                   int K, void* workspace, const GemvOptions& o) {
  LB_CHECK(workspace, "gemv_float8dq: null workspace");
  auto* xq = static_cast<uint8_t*>(workspace);
  auto* xs =
      reinterpret_cast<float*>(static_cast<char*>(workspace) + detail::align256((size_t)M * K));
  quantize_rows_float8(x, M, K, xq, xs, o.stream);
  gemv_float8dq(xq, xs, w, wscale, y, M, N, K, o);
}

}  // namespace lowbit::cuda
