// cuBLAS bf16 product y[M, N] = x[M, K] · W[N, K]ᵀ, the reference the bf16 kernel is measured
// against. In cuBLAS's column-major terms: Yᵀ (N × M) = op_T(W stored K × N) · Xᵀ (K × M).
#include <cublasLt.h>
#include <cublas_v2.h>

#include <map>
#include <mutex>
#include <tuple>

#include "kernels/cuda/weight_gemv.h"
#include "lowbit/core/error.h"

namespace lowbit::cuda {
namespace {

void check(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS)
    fail("cuBLAS {} failed with status {}", what, static_cast<int>(s));
}

struct CublasState {
  std::mutex mu;
  cublasHandle_t handle = nullptr;
  cublasLtHandle_t lt = nullptr;
  void* workspace = nullptr;
  static constexpr size_t kWorkspace = 32u << 20;
  std::map<std::tuple<int, int, int>, cublasLtMatmulAlgo_t> algos;
};

// Never destroyed: handles outlive every caller, including static destructors at exit.
CublasState& state() {
  static auto* s = new CublasState;
  return *s;
}

void ensure_workspace(CublasState& s) {
  if (!s.workspace && cudaMalloc(&s.workspace, CublasState::kWorkspace) != cudaSuccess)
    fail("cuBLAS: cannot allocate the {} byte workspace", CublasState::kWorkspace);
}

}  // namespace

void gemm_bf16_cublas(const void* x, const void* w, void* y, int M, int N, int K, CublasPath path,
                      cudaStream_t stream) {
  LB_CHECK(x && w && y && M > 0 && N > 0 && K > 0, "gemm_bf16_cublas: bad arguments");
  auto& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  ensure_workspace(s);
  const float alpha = 1.0f, beta = 0.0f;
  if (path == CublasPath::GemmEx) {
    if (!s.handle) {
      check(cublasCreate(&s.handle), "create");
      check(cublasSetWorkspace(s.handle, s.workspace, CublasState::kWorkspace), "set workspace");
    }
    check(cublasSetStream(s.handle, stream), "set stream");
    check(cublasGemmEx(s.handle, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &alpha, w, CUDA_R_16BF, K, x,
                       CUDA_R_16BF, K, &beta, y, CUDA_R_16BF, N, CUBLAS_COMPUTE_32F,
                       CUBLAS_GEMM_DEFAULT),
          "GemmEx");
    return;
  }
  if (!s.lt) check(cublasLtCreate(&s.lt), "Lt create");
  cublasLtMatmulDesc_t op;
  cublasLtMatrixLayout_t a, b, c;
  check(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F), "Lt desc");
  const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
  check(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta),
        "Lt transa");
  check(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb),
        "Lt transb");
  check(cublasLtMatrixLayoutCreate(&a, CUDA_R_16BF, K, N, K), "Lt layout");
  check(cublasLtMatrixLayoutCreate(&b, CUDA_R_16BF, K, M, K), "Lt layout");
  check(cublasLtMatrixLayoutCreate(&c, CUDA_R_16BF, N, M, N), "Lt layout");
  const auto key = std::make_tuple(M, N, K);
  auto it = s.algos.find(key);
  if (it == s.algos.end()) {
    cublasLtMatmulPreference_t pref;
    check(cublasLtMatmulPreferenceCreate(&pref), "Lt preference");
    const size_t ws = CublasState::kWorkspace;
    check(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                               sizeof ws),
          "Lt preference");
    cublasLtMatmulHeuristicResult_t res;
    int found = 0;
    check(cublasLtMatmulAlgoGetHeuristic(s.lt, op, a, b, c, c, pref, 1, &res, &found),
          "Lt heuristic");
    cublasLtMatmulPreferenceDestroy(pref);
    LB_CHECK(found > 0, "cuBLASLt found no algorithm for M={} N={} K={}", M, N, K);
    it = s.algos.emplace(key, res.algo).first;
  }
  check(cublasLtMatmul(s.lt, op, &alpha, w, a, x, b, &beta, y, c, y, c, &it->second, s.workspace,
                       CublasState::kWorkspace, stream),
        "Lt matmul");
  cublasLtMatrixLayoutDestroy(a);
  cublasLtMatrixLayoutDestroy(b);
  cublasLtMatrixLayoutDestroy(c);
  cublasLtMatmulDescDestroy(op);
}

}  // namespace lowbit::cuda
