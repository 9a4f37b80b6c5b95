// Dense matrix products on the CPU: y[m, n] = Σ_k x[m, k] · w[n, k] (x fp32; w fp32, bf16 or fp16,
// stored [N, K] row-major as Linear weights are). Leading dimensions let callers pass strided views.
#pragma once

#include <cstdint>
#include <string_view>

namespace lowbit::kernels::cpu {

enum class WType { F32, BF16, F16 };

struct GemmArgs {
  const float* x;
  int64_t ldx;
  const void* w;
  WType wt;
  int64_t ldw;  // in elements of w
  float* y;
  int64_t ldy;
  int64_t M, N, K;
};

// Multithreaded (OpenMP) fast path, chosen by the CPU's instruction set at run time: output columns are
// split into chunks handed out dynamically.
void gemm(const GemmArgs& a);
// The same on the calling thread only (for callers that parallelize over something else).
void gemm_serial(const GemmArgs& a);
// Output columns per work item when `rows` outputs of products with M input rows are spread over threads.
int64_t row_chunk(int64_t rows, int64_t M);
// Scalar reference: one double-free, fp32 accumulation per output, k in order.
void gemm_reference(const GemmArgs& a);

enum class Isa { Scalar, Avx2, Avx512 };
Isa detected_isa();  // the best the CPU supports
Isa active_isa();    // what gemm() uses now (detected, unless forced)
void force_isa(Isa isa);  // for tests and benchmarks; never above detected_isa()
std::string_view isa_name(Isa isa);
bool cpu_has_vnni();  // AVX-512 VNNI (int8 dot products) present

// Entry points of the ISA-specific translation units (single-threaded).
void gemm_serial_avx512(const GemmArgs& a);
void gemm_serial_avx2(const GemmArgs& a);

}  // namespace lowbit::kernels::cpu
