// Prefill products of int4wo on Llama-3.1-8B's shapes (M tokens, default 2048): lowbit's Hopper
// product with the weights dequantized inside it (int4_gemm_bf16) against the staged path it
// replaces (dequant_rows_int4 to bf16 rows, then cuBLAS) and against cuBLAS on bf16 weights alone.
// Prints µs and TFLOP/s per shape, the 32-layer totals and the NMSE of lowbit's product against the
// staged path's. Usage: lowbit_prefill_gemm_bench [M] [group]
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "kernels/cuda/int4_gemm.h"
#include "kernels/cuda/llama_ops.h"
#include "kernels/cuda/weight_gemv.h"

#define CK(x)                                                                                    \
  do {                                                                                           \
    const cudaError_t e_ = (x);                                                                  \
    if (e_ != cudaSuccess) {                                                                     \
      std::fprintf(stderr, "%s failed at line %d: %s\n", #x, __LINE__, cudaGetErrorString(e_)); \
      std::exit(1);                                                                              \
    }                                                                                            \
  } while (0)

namespace {
__global__ void fill_x(__nv_bfloat16* x, size_t n) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    unsigned h = unsigned(i) * 2654435761u;
    h ^= h >> 13;
    h *= 0x5bd1e995u;
    h ^= h >> 15;
    x[i] = __float2bfloat16_rn((int(h % 2001) - 1000) * 1e-3f);
  }
}
float bf(uint16_t v) {
  const uint32_t u = uint32_t(v) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
// Mean µs of 20 runs after a warm-up.
template <class F>
float time_us(F&& f) {
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));
  f();
  CK(cudaEventRecord(e0));
  for (int i = 0; i < 20; ++i) f();
  CK(cudaEventRecord(e1));
  CK(cudaEventSynchronize(e1));
  float ms = 0;
  CK(cudaEventElapsedTime(&ms, e0, e1));
  CK(cudaEventDestroy(e0));
  CK(cudaEventDestroy(e1));
  return ms * 1000.0f / 20;
}
}  // namespace

int main(int argc, char** argv) {
  const int M = argc > 1 ? std::atoi(argv[1]) : 2048, group = argc > 2 ? std::atoi(argv[2]) : 64;
  cudaDeviceProp prop{};
  CK(cudaGetDeviceProperties(&prop, 0));
  std::printf("%s, M %d, int4wo group %d\n", prop.name, M, group);
  struct Shape { const char* name; int N, K; };
  const Shape shapes[] = {{"qkv", 6144, 4096}, {"o", 4096, 4096}, {"gate_up", 28672, 4096}, {"down", 4096, 14336}};
  if (!lowbit::cuda::int4_gemm_bf16_ok(4096, 4096, group)) {
    std::printf("int4_gemm_bf16 does not run here (needs an sm_90 GPU and sm_90a code)\n");
    return 1;
  }
  cublasHandle_t h;
  if (cublasCreate(&h) != CUBLAS_STATUS_SUCCESS) return 1;
  double tot[3] = {0, 0, 0};
  for (const Shape& s : shapes) {
    const int N = s.N, K = s.K;
    void *packed, *qp;
    __nv_bfloat16 *x, *wb, *y, *yr;
    CK(cudaMalloc(&packed, lowbit::cuda::int4_packed_bytes(N, K)));
    CK(cudaMalloc(&qp, lowbit::cuda::int4_qparam_bytes(N, K, group)));
    CK(cudaMalloc(&x, size_t(M) * K * 2));
    CK(cudaMalloc(&wb, size_t(N) * K * 2));
    CK(cudaMalloc(&y, size_t(M) * N * 2));
    CK(cudaMalloc(&yr, size_t(M) * N * 2));
    lowbit::cuda::random_int4(packed, qp, N, K, group, 7, 0.02f, nullptr);
    fill_x<<<1024, 256>>>(x, size_t(M) * K);
    CK(cudaMemset(y, 0xff, size_t(M) * N * 2));
    CK(cudaMemset(yr, 0xff, size_t(M) * N * 2));
    const float one = 1.0f, zero = 0.0f;
    auto ours = [&] { lowbit::cuda::int4_gemm_bf16(x, packed, qp, y, M, N, K, group, N, nullptr); };
    auto gemm = [&] {
      cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &one, wb, CUDA_R_16BF, K, x, CUDA_R_16BF, K, &zero, yr,
                   CUDA_R_16BF, N, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    };
    auto deq = [&] { lowbit::cuda::dequant_rows_int4(packed, qp, 0, N, K, group, wb, nullptr); };
    ours();
    deq();
    gemm();
    CK(cudaDeviceSynchronize());
    std::vector<uint16_t> a(size_t(M) * N), b(a.size());
    CK(cudaMemcpy(a.data(), y, a.size() * 2, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(b.data(), yr, b.size() * 2, cudaMemcpyDeviceToHost));
    double e2 = 0, r2 = 0;
    size_t same = 0, bad = 0;
    for (size_t i = 0; i < a.size(); ++i) {
      if (!std::isfinite(bf(a[i])) || !std::isfinite(bf(b[i]))) {
        ++bad;
        continue;
      }
      const double d = double(bf(a[i])) - bf(b[i]);
      e2 += d * d;
      r2 += double(bf(b[i])) * bf(b[i]);
      same += a[i] == b[i];
    }
    const float t_ours = time_us(ours), t_gemm = time_us(gemm), t_deq = time_us(deq);
    const double flop = 2.0 * M * N * K;
    std::printf("%-8s N %5d K %5d | int4_gemm_bf16 %7.1f us %4.0f TFLOP/s | dequant + cuBLAS %7.1f us | cuBLAS bf16 "
                "%7.1f us %4.0f TFLOP/s | ratio to cuBLAS %.3f | NMSE vs staged %.2e (%.2f%% equal, %zu not finite) | y[0] %g %g\n",
                s.name, N, K, t_ours, flop / t_ours / 1e6, t_deq + t_gemm, t_gemm, flop / t_gemm / 1e6,
                t_gemm / t_ours, e2 / (r2 > 0 ? r2 : 1), 100.0 * same / a.size(), bad, bf(a[0]), bf(b[0]));
    tot[0] += t_ours;
    tot[1] += t_deq + t_gemm;
    tot[2] += t_gemm;
    CK(cudaFree(packed));
    CK(cudaFree(qp));
    CK(cudaFree(x));
    CK(cudaFree(wb));
    CK(cudaFree(y));
    CK(cudaFree(yr));
  }
  std::printf("32 layers: int4_gemm_bf16 %.2f ms | dequant + cuBLAS %.2f ms | cuBLAS bf16 %.2f ms\n",
              tot[0] * 32 / 1000, tot[1] * 32 / 1000, tot[2] * 32 / 1000);
  cublasDestroy(h);
  return 0;
}
