// A Linear layer's weight on the GPU in one of the formats the decode kernels read
// (kernels/cuda/weight_gemv.h), how a CPU layout maps onto them, and the product y = x · Wᵀ:
// the GEMV kernels for up to 16 rows (decode), cuBLAS over bf16 rows otherwise (prefill), with
// quantized weights dequantized chunk by chunk into a scratch buffer.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "lowbit/quant/linear.h"
#include "runtime/cuda/device.h"

namespace lowbit::cuda {
class ScaledGemm;
}

namespace lowbit::gpu {

// Float8dq quantizes activations per row (token), Float8dqTensor with one scale per call (the CPU
// reference's per-tensor math); both read the same weights.
enum class WFormat { Bf16, Int8wo, Int8dq, Float8wo, Float8dq, Float8dqTensor, Int4wo };

struct FormatChoice {
  WFormat fmt = WFormat::Bf16;
  int group = 0;  // int4 only
  bool operator==(const FormatChoice&) const = default;
};
std::string format_name(const FormatChoice& f);  // "bf16", "int4wo-64", ...

// What a CPU layout becomes: dense → bf16; int8 (act none / int8 per token) → int8wo / int8dq;
// float8 (act none / e4m3 per token / per tensor) → float8wo / float8dq / float8dq-tensor (a
// per-tensor weight scale is broadcast to every row);
// int4 with a power-of-two group ≥ 16 → int4wo; everything else, and any K not a multiple of 64,
// → bf16 from the layout's own dequantization (correct, not compressed).
FormatChoice choose_format(const quant::LinearWeight& w);
// The short scheme name a user types ("int4wo-64", "float8dq-row") → a format for random weights.
FormatChoice format_from_scheme(const std::string& scheme);

struct GpuLinear {
  FormatChoice f;
  int64_t N = 0, K = 0;
  void* w = nullptr;    // bf16 [N, K] | int8 / e4m3 bytes [N, K] | int4 packed (GPU layout)
  void* aux = nullptr;  // float scale [N] | int4 (scale, zero) words
  int64_t bytes() const;  // what one decode step reads: codes plus qparams
};

GpuLinear allocate_linear(DeviceArena& arena, const FormatChoice& f, int64_t N, int64_t K);
// Writes CPU weight `src` (any layout) into rows [n0, n0 + src.out_features()) of dst, converted to
// dst's format (which must be choose_format(src), or bf16). int4 rows start on a 16-row tile.
void upload_rows(GpuLinear& dst, int64_t n0, const quant::LinearWeight& src, cudaStream_t stream);
// The fused gate/up weight of an MLP in the row order of the GEMV's SwiGLU epilogue
// (cuda::GemvOptions::swiglu): gate and up rows alternate in blocks of 8. gate and up have the same
// out_features (a multiple of 8) and dst has twice as many rows, in choose_format(gate) (= that of
// up) or bf16.
void upload_gate_up(GpuLinear& dst, const quant::LinearWeight& gate, const quant::LinearWeight& up,
                    cudaStream_t stream);
// Fills dst with random N(0, std) bf16 weights quantized to its format on the device.
void randomize(GpuLinear& dst, uint64_t seed, float std, cudaStream_t stream);

// Runs products on one stream; owns the cuBLAS handles and the scratch buffers. Prefill (more than
// 16 rows): bf16 weights through cuBLAS; float8dq-row through cuBLASLt's FP8 GEMM on e4m3
// activations with both scale vectors in its epilogue; int8dq through cuBLASLt's int8 GEMM (int32 results,
// scaled to bf16 by a light kernel); the weight-only formats dequantized into the bf16 scratch in
// row chunks, each multiplied by cuBLAS.
class LinearExec {
 public:
  // max_rows: most rows of x; max_k / max_n: largest in/out features; wscratch_bytes: bf16 weight
  // rows dequantized per cuBLAS call (0 when every weight is bf16).
  LinearExec(DeviceArena& arena, cudaStream_t stream, int max_rows, int64_t max_k, int64_t max_n,
             size_t wscratch_bytes, bool pdl, int64_t dequant_chunk_bytes = 0, bool fp8_fast_accum = true);
  ~LinearExec();
  LinearExec(const LinearExec&) = delete;
  LinearExec& operator=(const LinearExec&) = delete;

  // y[m, 0:N] = x[m] · Wᵀ for m < M; x bf16 [M, K]; y bf16 or float32 with row stride ldy.
  // pdl = false: the GEMV waits for the previous kernel in full (no programmatic launch).
  void run(const GpuLinear& L, const void* x, int M, void* y, int64_t ldy, bool y_f32 = false,
           bool pdl = true);
  // h[m, 0:N/2] = silu(gate) · up from a gate/up weight in upload_gate_up's row order, in one GEMV
  // launch; false (nothing run) where the GEMV kernels do not apply (M > 16, K not a multiple of 64).
  bool run_swiglu(const GpuLinear& L, const void* x, int M, void* h);

 private:
  void gemv(const GpuLinear& L, const void* x, int M, void* out, bool swiglu, bool pdl = true);
  void gemm(const void* x, const void* w, int M, int64_t n, int64_t K, void* y, int64_t ldy,
            bool y_f32);

  cudaStream_t stream_;
  cublasHandle_t handle_ = nullptr;
  bool pdl_;
  int max_rows_;
  int64_t max_k_;
  void* dq_ws_ = nullptr;      // int8dq / float8dq activation codes (decode)
  unsigned* amax_ = nullptr;   // float8dq-tensor's activation amax
  void* yscratch_ = nullptr;   // GEMV output when y has a row stride ≠ N
  void* xscratch_ = nullptr;   // fake-quantized activations (prefill of the dq schemes)
  void* wscratch_ = nullptr;   // dequantized bf16 weight rows, or int8dq's int32 products
  size_t wscratch_bytes_;
  float* xs_ = nullptr;        // per-row activation scales (prefill of the dq schemes)
  std::unique_ptr<cuda::ScaledGemm> scaled_;
  bool fp8_ok_ = true, int8_ok_ = true;
  int64_t dequant_chunk_bytes_ = 0;  // cleared when cuBLASLt offers no algorithm
};

}  // namespace lowbit::gpu
