// A Linear layer's weight on the GPU in one of the formats the decode kernels read
// (kernels/cuda/weight_gemv.h), how a CPU layout maps onto them, and the product y = x · Wᵀ:
// the GEMV kernels for up to 16 rows (decode); otherwise (prefill) cuBLASLt's FP8 / int8 GEMMs for
// the dynamic-activation formats and cuBLAS over bf16 rows for the rest, quantized weights
// dequantized a layer ahead (stage) or chunk by chunk into a scratch buffer.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "kernels/cuda/llama_ops.h"
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
// activations with both scale vectors in its epilogue; int8dq on Hopper through lowbit's own int8
// product with the scales in its epilogue (int8_gemm_bf16), elsewhere through cuBLASLt's int8 GEMM (int32
// results, scaled to bf16 by a light kernel, or left int32 for a consumer that scales them: run_int32); the
// weight-only formats from their staged bf16 rows (stage), else dequantized into the bf16 scratch
// in row chunks, each multiplied by cuBLAS. Inputs may arrive already quantized (input_codes).
class LinearExec {
 public:
  // max_rows: most rows of x; max_k / max_n: largest in/out features; wscratch_bytes: bf16 weight
  // rows dequantized per cuBLAS call (0 when every weight is bf16).
  // stage_bytes: capacity of each of the two staging banks (0: no staging).
  LinearExec(DeviceArena& arena, cudaStream_t stream, int max_rows, int64_t max_k, int64_t max_n,
             size_t wscratch_bytes, bool pdl, int64_t dequant_chunk_bytes = 0, bool fp8_fast_accum = true,
             size_t stage_bytes = 0);
  ~LinearExec();
  LinearExec(const LinearExec&) = delete;
  LinearExec& operator=(const LinearExec&) = delete;

  // y[m, 0:N] = x[m] · Wᵀ for m < M; x bf16 [M, K]; y bf16 or float32 with row stride ldy.
  // pdl = false: the GEMV waits for the previous kernel in full (no programmatic launch).
  // xq: x already quantized as input_codes asked (x is then not read).
  void run(const GpuLinear& L, const void* x, int M, void* y, int64_t ldy, bool y_f32 = false,
           bool pdl = true, const cuda::RowCodes& xq = {});
  // h[m, 0:N/2] = silu(gate) · up from a gate/up weight in upload_gate_up's row order, in one GEMV
  // launch; false (nothing run) where the GEMV kernels do not apply (M > 16, K not a multiple of 64).
  bool run_swiglu(const GpuLinear& L, const void* x, int M, void* h, const cuda::RowCodes& xq = {});
  // The input of M rows the products `parts` (writing y of row stride ldy) take already quantized:
  // the dynamic-activation formats per row (int8dq, float8dq-row) where every part has the same one
  // and its quantized kernels run (GEMV, or cuBLASLt has an algorithm), so the kernel producing the
  // rows writes codes (cuda::RowCodes) and the products skip their quantization pass. Kind None:
  // pass bf16 rows. The codes live in this executor's scratch: valid until the next run without xq.
  cuda::RowCodes input_codes(const std::vector<GpuLinear>& parts, int M, int64_t ldy);

  // int8dq's prefill products left unscaled for a consumer that scales them itself (the kernels
  // taking cuda::Int32Rows): acc [M, N] int32 = codes · Wᵀ in this executor's scratch, valid until
  // the next run; run() would give bf16(acc · xscale[m] · wscale[n]). The codes are xq when given
  // (kind Int8), else x quantized here. nullopt (nothing run) where the one-GEMM int8 path does not
  // apply (other formats, M ≤ 16, no algorithm, a scratch too small for [M, N]) or where
  // int8_gemm_bf16 runs (run() then writes bf16 in one kernel).
  std::optional<cuda::Int32Rows> run_int32(const GpuLinear& L, const void* x, int M, const cuda::RowCodes& xq = {});

  // Prefill of the weight-only formats (int8wo, float8wo, int4wo): dequantizes `ws` into the next of
  // two banks on a low-priority side stream, once the work queued so far on the main stream (which
  // may still read that bank) is done; run() of more than 16 rows then multiplies a staged weight's
  // bf16 rows after waiting for them, so the dequantization overlaps the products queued before it.
  // Other formats and what does not fit are left to run(). Not for captured streams.
  void stage(const std::vector<const GpuLinear*>& ws);
  // Bank bytes a weight takes when staged (its bf16 rows, 256-byte aligned); 0 for the formats
  // stage() leaves to run(), and for int4wo weights that int4_gemm_bf16 takes on this GPU.
  static size_t staged_bytes(const GpuLinear& L);

 private:
  void gemv(const GpuLinear& L, const void* x, int M, void* out, bool swiglu, bool pdl, const cuda::RowCodes& xq);
  int64_t int8_chunk(int M, int64_t N) const;  // rows of int8dq's int32 products per GEMM
  void dequant(const GpuLinear& L, int64_t n0, int64_t n1, void* out, cudaStream_t s) const;
  const void* staged(const GpuLinear& L);  // L's staged bf16 rows (stream_ waits for them), or null
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
  struct Bank {
    char* base = nullptr;
    std::vector<std::pair<const void*, void*>> entries;  // weight codes → their bf16 rows
    cudaEvent_t ready = nullptr;                          // on side_, after the dequantization
  };
  size_t stage_bytes_ = 0;
  Bank banks_[2];
  int next_bank_ = 0;
  cudaStream_t side_ = nullptr;
  cudaEvent_t queued_ = nullptr;  // on stream_: the work queued before a stage() call
};

}  // namespace lowbit::gpu
