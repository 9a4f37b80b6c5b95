// cuBLASLt FP8 and int8 products for the dynamic-activation schemes' prefill (scaled_gemm.h). In
// cuBLASLt's column-major terms: Yᵀ (n × M, leading dimension ldy) = op_T(W stored K × n) · Xᵀ
// (K × M), the "TN" form its FP8 and int8 tensor-core kernels require. A plan (descriptors and
// the heuristic's candidate algorithms) is cached per shape; the first run of a plan outside a graph
// capture times each candidate on the real operands and keeps the fastest (LOWBIT_GEMM_TUNE=0: the
// heuristic's first choice, as cuBLASLt ranks them).
#include <cublasLt.h>

#include <cstdio>
#include <cstdlib>
#include <vector>

#include "kernels/cuda/ops_common.cuh"
#include "kernels/cuda/scaled_gemm.h"

namespace lowbit::cuda {
namespace {

enum Kind { kFp8Fused = 0, kFp8Plain = 1, kInt8 = 2 };

void check(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS) fail("cuBLASLt {} failed with status {}", what, static_cast<int>(s));
}

template <bool kVec>
__global__ void scale_int32_kernel(const int32_t* acc, const float* xs, const float* ws, int n, __nv_bfloat16* y,
                                   int64_t ldy) {
  const int m = blockIdx.y;
  const int j = (blockIdx.x * blockDim.x + threadIdx.x) * 4;
  if (j >= n) return;
  const float sx = xs[m];
  const int32_t* a = acc + static_cast<int64_t>(m) * n + j;
  __nv_bfloat16* out = y + m * ldy + j;
  if (kVec) {
    const int4 v = *reinterpret_cast<const int4*>(a);
    const float4 s = *reinterpret_cast<const float4*>(ws + j);
    __nv_bfloat162 lo = __floats2bfloat162_rn(static_cast<float>(v.x) * sx * s.x, static_cast<float>(v.y) * sx * s.y);
    __nv_bfloat162 hi = __floats2bfloat162_rn(static_cast<float>(v.z) * sx * s.z, static_cast<float>(v.w) * sx * s.w);
    uint2 u;
    u.x = *reinterpret_cast<uint32_t*>(&lo);
    u.y = *reinterpret_cast<uint32_t*>(&hi);
    *reinterpret_cast<uint2*>(out) = u;
  } else {
    for (int i = 0; i < 4 && j + i < n; ++i) out[i] = __float2bfloat16_rn(static_cast<float>(a[i]) * sx * ws[j + i]);
  }
}

__global__ void scale_bf16_kernel(__nv_bfloat16* y, int64_t ldy, const float* xs, const float* ws, int n) {
  const int m = blockIdx.y;
  const float sx = xs[m];
  for (int j = blockIdx.x * blockDim.x + threadIdx.x; j < n; j += gridDim.x * blockDim.x) {
    __nv_bfloat16* p = y + m * ldy + j;
    *p = __float2bfloat16_rn(__bfloat162float(*p) * sx * ws[j]);
  }
}

}  // namespace

struct ScaledGemm::State {
  struct Plan {
    bool ok = false;
    bool tuned = false;
    cublasLtMatmulDesc_t op = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
    cublasLtMatmulAlgo_t algo{};
    std::vector<cublasLtMatmulAlgo_t> candidates;  // the heuristic's, best ranked first
  };
  cublasLtHandle_t lt = nullptr;
  void* ws = nullptr;
  size_t ws_bytes = 0;
  bool fast_accum = false;
  std::map<std::tuple<int, int, int, int, int64_t>, Plan> plans;

  // Descriptors and the first heuristic algorithm for one kind and shape (ok = false: none).
  Plan& plan(Kind kind, int M, int n, int K, int64_t ldy, const void* a_scale, const void* b_scale) {
    const auto key = std::make_tuple(static_cast<int>(kind), M, n, K, ldy);
    if (auto it = plans.find(key); it != plans.end()) return it->second;
    Plan p;
    const bool i8 = kind == kInt8;
    check(cublasLtMatmulDescCreate(&p.op, i8 ? CUBLAS_COMPUTE_32I : CUBLAS_COMPUTE_32F, i8 ? CUDA_R_32I : CUDA_R_32F),
          "desc");
    const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    check(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta), "transa");
    check(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb), "transb");
    if (!i8) {
      const int8_t fast = fast_accum ? 1 : 0;
      check(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_FAST_ACCUM, &fast, sizeof fast), "fast accum");
    }
    if (kind == kFp8Fused) {
      const int32_t mode = CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F;
      check(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_A_SCALE_MODE, &mode, sizeof mode), "A scale mode");
      check(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_B_SCALE_MODE, &mode, sizeof mode), "B scale mode");
      check(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &a_scale, sizeof a_scale),
            "A scale");
      check(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &b_scale, sizeof b_scale),
            "B scale");
    }
    const cudaDataType_t in = i8 ? CUDA_R_8I : CUDA_R_8F_E4M3, out = i8 ? CUDA_R_32I : CUDA_R_16BF;
    check(cublasLtMatrixLayoutCreate(&p.a, in, K, n, K), "layout A");
    check(cublasLtMatrixLayoutCreate(&p.b, in, K, M, K), "layout B");
    check(cublasLtMatrixLayoutCreate(&p.c, out, n, M, i8 ? n : ldy), "layout C");
    cublasLtMatmulPreference_t pref;
    check(cublasLtMatmulPreferenceCreate(&pref), "preference");
    check(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws_bytes,
                                               sizeof ws_bytes),
          "preference");
    constexpr int kCandidates = 8;
    cublasLtMatmulHeuristicResult_t res[kCandidates] = {};
    int found = 0;
    const cublasStatus_t st =
        cublasLtMatmulAlgoGetHeuristic(lt, p.op, p.a, p.b, p.c, p.c, pref, kCandidates, res, &found);
    cublasLtMatmulPreferenceDestroy(pref);
    p.ok = st == CUBLAS_STATUS_SUCCESS && found > 0;
    if (p.ok) {
      p.algo = res[0].algo;
      for (int i = 0; i < found; ++i)
        if (res[i].state == CUBLAS_STATUS_SUCCESS) p.candidates.push_back(res[i].algo);
    }
    p.tuned = !tune_enabled() || p.candidates.size() < 2;
    return plans.emplace(key, p).first->second;
  }

  static bool tune_enabled() {
    static const bool on = [] {
      const char* e = std::getenv("LOWBIT_GEMM_TUNE");
      return !(e && *e && std::atoi(e) == 0);
    }();
    return on;
  }

  // Times each candidate (one warm-up, then three runs each) with `run` and keeps the fastest; a
  // candidate that fails to run is dropped. Not inside a graph capture (no synchronization there).
  template <typename Run>
  void tune(Plan& p, cudaStream_t stream, Run&& run) {
    if (p.tuned) return;
    cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
    if (cudaStreamIsCapturing(stream, &cs) != cudaSuccess || cs != cudaStreamCaptureStatusNone) return;
    p.tuned = true;
    cudaEvent_t e0 = nullptr, e1 = nullptr;
    if (cudaEventCreate(&e0) != cudaSuccess || cudaEventCreate(&e1) != cudaSuccess) {
      if (e0) cudaEventDestroy(e0);
      return;
    }
    float best = 0.0f;
    for (const cublasLtMatmulAlgo_t& algo : p.candidates) {
      if (run(algo) != CUBLAS_STATUS_SUCCESS) continue;
      cudaEventRecord(e0, stream);
      bool ok = true;
      for (int i = 0; i < 3 && ok; ++i) ok = run(algo) == CUBLAS_STATUS_SUCCESS;
      cudaEventRecord(e1, stream);
      float ms = 0.0f;
      if (!ok || cudaEventSynchronize(e1) != cudaSuccess || cudaEventElapsedTime(&ms, e0, e1) != cudaSuccess) continue;
      if (best == 0.0f || ms < best) {
        best = ms;
        p.algo = algo;
      }
    }
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
  }

  ~State() {
    for (auto& [k, p] : plans) {
      if (p.a) cublasLtMatrixLayoutDestroy(p.a);
      if (p.b) cublasLtMatrixLayoutDestroy(p.b);
      if (p.c) cublasLtMatrixLayoutDestroy(p.c);
      if (p.op) cublasLtMatmulDescDestroy(p.op);
    }
    if (lt) cublasLtDestroy(lt);
  }
};

ScaledGemm::ScaledGemm(void* workspace, size_t workspace_bytes, bool fast_accum) : s_(std::make_unique<State>()) {
  s_->fast_accum = fast_accum;
  check(cublasLtCreate(&s_->lt), "create");
  s_->ws = workspace;
  s_->ws_bytes = workspace_bytes;
}

ScaledGemm::~ScaledGemm() = default;

bool ScaledGemm::fp8(const uint8_t* xq, const float* xs, const uint8_t* wq, const float* ws, void* y, int M, int n,
                     int K, int64_t ldy, cudaStream_t stream) {
  LB_CHECK(xq && xs && wq && ws && y && M > 0 && n > 0 && K % 16 == 0 && ldy >= n,
           "ScaledGemm::fp8: bad arguments (M {}, n {}, K {}, ldy {})", M, n, K, ldy);
  const float alpha = 1.0f, beta = 0.0f;
  State::Plan* p = &s_->plan(kFp8Fused, M, n, K, ldy, ws, xs);
  fp8_fused_ = p->ok;
  if (p->ok) {
    check(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &ws, sizeof ws), "A scale");
    check(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &xs, sizeof xs), "B scale");
  } else {
    p = &s_->plan(kFp8Plain, M, n, K, ldy, nullptr, nullptr);
    if (!p->ok) return false;
    static bool told = false;
    if (!told) {
      told = true;
      std::fprintf(stderr, "note: cuBLASLt offers no FP8 algorithm with outer-vector scales here; scaling after\n");
    }
  }
  auto run = [&](const cublasLtMatmulAlgo_t& algo) {
    return cublasLtMatmul(s_->lt, p->op, &alpha, wq, p->a, xq, p->b, &beta, y, p->c, y, p->c, &algo, s_->ws,
                          s_->ws_bytes, stream);
  };
  s_->tune(*p, stream, run);
  check(run(p->algo), "FP8 matmul");
  if (!fp8_fused_) scale_bf16_rows_cols(y, ldy, xs, ws, M, n, stream);
  return true;
}

bool ScaledGemm::has_fp8(const float* xs, const float* ws, int M, int n, int K, int64_t ldy) {
  return s_->plan(kFp8Fused, M, n, K, ldy, ws, xs).ok || s_->plan(kFp8Plain, M, n, K, ldy, nullptr, nullptr).ok;
}

bool ScaledGemm::has_int8(int M, int n, int K) { return s_->plan(kInt8, M, n, K, n, nullptr, nullptr).ok; }

bool ScaledGemm::int8(const int8_t* xq, const int8_t* wq, int32_t* acc, int M, int n, int K, cudaStream_t stream) {
  LB_CHECK(xq && wq && acc && M > 0 && n > 0 && K % 16 == 0, "ScaledGemm::int8: bad arguments (M {}, n {}, K {})",
           M, n, K);
  State::Plan& p = s_->plan(kInt8, M, n, K, n, nullptr, nullptr);
  if (!p.ok) return false;
  const int32_t alpha = 1, beta = 0;
  auto run = [&](const cublasLtMatmulAlgo_t& algo) {
    return cublasLtMatmul(s_->lt, p.op, &alpha, wq, p.a, xq, p.b, &beta, acc, p.c, acc, p.c, &algo, s_->ws,
                          s_->ws_bytes, stream);
  };
  s_->tune(p, stream, run);
  check(run(p.algo), "int8 matmul");
  return true;
}

void scale_int32_to_bf16(const int32_t* acc, const float* xs, const float* ws, int M, int n, void* y, int64_t ldy,
                         cudaStream_t stream) {
  LB_CHECK(acc && xs && ws && y && M > 0 && n > 0 && M <= 65535, "scale_int32_to_bf16: bad arguments");
  const dim3 grid((n / 4 + 1 + 255) / 256, M);
  const bool vec = n % 4 == 0 && ldy % 4 == 0 && reinterpret_cast<uintptr_t>(ws) % 16 == 0 &&
                   reinterpret_cast<uintptr_t>(y) % 8 == 0 && reinterpret_cast<uintptr_t>(acc) % 16 == 0;
  if (vec)
    scale_int32_kernel<true><<<grid, 256, 0, stream>>>(acc, xs, ws, n, static_cast<__nv_bfloat16*>(y), ldy);
  else
    scale_int32_kernel<false><<<grid, 256, 0, stream>>>(acc, xs, ws, n, static_cast<__nv_bfloat16*>(y), ldy);
  ops::check_launch("scale_int32_to_bf16");
}

void scale_bf16_rows_cols(void* y, int64_t ldy, const float* xs, const float* ws, int M, int n, cudaStream_t stream) {
  LB_CHECK(y && xs && ws && M > 0 && n > 0 && M <= 65535, "scale_bf16_rows_cols: bad arguments");
  const dim3 grid(std::min((n + 255) / 256, 64), M);
  scale_bf16_kernel<<<grid, 256, 0, stream>>>(static_cast<__nv_bfloat16*>(y), ldy, xs, ws, n);
  ops::check_launch("scale_bf16_rows_cols");
}

}  // namespace lowbit::cuda
