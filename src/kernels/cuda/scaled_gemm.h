// Prefill products of the dynamic-activation schemes on quantized operands (cuBLASLt):
//   float8dq: e4m3 activations (per-row scale) × e4m3 weights (per-row scale) on the
//             FP8 tensor cores, both scale vectors applied in cuBLASLt's epilogue (outer-vector
//             scaling) straight to bf16; where that mode has no algorithm, a bf16 product with
//             unit scales and a light kernel that multiplies the scales in.
//   int8dq:   int8 × int8 on the integer tensor cores with int32 results, then a light kernel
//             y = bf16(acc · xscale[m] · wscale[n]): the decode GEMV's arithmetic, exactly. On
//             Hopper, lowbit's own product (int8_gemm_bf16) does the same in one kernel.
// Row-major in lowbit's terms: x [M, K], w [n, K], y [M, n] with row stride ldy. All pointers are
// device pointers; K a multiple of 16; calls are asynchronous on `stream`.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <tuple>

typedef struct CUstream_st* cudaStream_t;

namespace lowbit::cuda {

class ScaledGemm {
 public:
  // workspace: device memory cuBLASLt may use (shared with other work on the same stream).
  // fast_accum: FP8 products with cuBLASLt's fast accumulation (fewer float32 promotions).
  ScaledGemm(void* workspace, size_t workspace_bytes, bool fast_accum = true);
  ~ScaledGemm();
  ScaledGemm(const ScaledGemm&) = delete;
  ScaledGemm& operator=(const ScaledGemm&) = delete;

  // y = bf16((xq · wqᵀ) · xs[m] · ws[j]). False when cuBLASLt offers no FP8 algorithm at all (the
  // caller falls back); throws on a failed run.
  bool fp8(const uint8_t* xq, const float* xs, const uint8_t* wq, const float* ws, void* y, int M, int n,
           int K, int64_t ldy, cudaStream_t stream);
  // acc [M, n] int32 (row stride n) = xq · wqᵀ. False when cuBLASLt has no int8 algorithm.
  bool int8(const int8_t* xq, const int8_t* wq, int32_t* acc, int M, int n, int K, cudaStream_t stream);
  // Whether fp8() / int8() would find an algorithm for this shape (the plans are cached).
  bool has_fp8(const float* xs, const float* ws, int M, int n, int K, int64_t ldy);
  bool has_int8(int M, int n, int K);
  // Which FP8 epilogue the last fp8() call used: true = scales fused into cuBLASLt.
  bool fp8_fused() const { return fp8_fused_; }

  struct State;

 private:
  std::unique_ptr<State> s_;
  bool fp8_fused_ = false;
};

// int8dq's prefill product of lowbit's own on Hopper (int8_gemm_sm90.cu): y [M, n] (row stride ldy)
// = bf16((xq · wqᵀ) · xs[m] · ws[j]), bit for bit scale_int32_to_bf16 of int8()'s int32 product, with
// no int32 round trip through memory. int8_gemm_bf16_ok: whether it runs here (an sm_90 GPU and this
// build's sm_90a code; n % 256 == 0, K % 128 == 0, ldy % 8 == 0); xq, wq and y 16-byte aligned.
bool int8_gemm_bf16_ok(int M, int n, int K, int64_t ldy);
void int8_gemm_bf16(const int8_t* xq, const float* xs, const int8_t* wq, const float* ws, void* y, int M, int n, int K,
                    int64_t ldy, cudaStream_t stream);

// y[m, j] = bf16(acc[m, j] · xs[m] · ws[j]) for m < M, j < n; acc row stride n, y row stride ldy.
void scale_int32_to_bf16(const int32_t* acc, const float* xs, const float* ws, int M, int n, void* y,
                         int64_t ldy, cudaStream_t stream);
// y[m, j] = bf16(y[m, j] · xs[m] · ws[j]) in place.
void scale_bf16_rows_cols(void* y, int64_t ldy, const float* xs, const float* ws, int M, int n,
                          cudaStream_t stream);

}  // namespace lowbit::cuda
