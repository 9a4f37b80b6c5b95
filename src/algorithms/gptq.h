// GPTQ (Frantar et al. 2022): quantize a weight column by column, feeding each column's rounding
// error back into the columns not yet quantized through the inverse Hessian of the layer's inputs,
// so the layer's output error tr((W - Q) H (W - Q)ᵀ) is what gets minimized (SPEC.md §4).
//
// The codes and qparams come out in the convention of an existing layout (what its RTN would
// produce for the error-updated weights), so they pack into it unchanged:
//   Int4FloatZero  int4wo-G (tinygemm): q in [0, 15], w = (q - 8) * scale + zero, bf16 scale and
//   zero UIntIntZero    uintx-B-G: q in [0, 2^B - 1], w = (q - zero) * scale, integer zero point
//   Int8PerRow     int8wo: q in [-128, 127], w = q * scale, one scale per row
#pragma once

#include <cstdint>
#include <vector>

#include "lowbit/core/tensor.h"

namespace lowbit::algorithms {

enum class GptqScheme { Int4FloatZero, UIntIntZero, Int8PerRow };

struct GptqOptions {
  GptqScheme scheme = GptqScheme::Int4FloatZero;
  int bits = 4;          // UIntIntZero only (Int4FloatZero is 4-bit, Int8PerRow 8-bit)
  int group_size = 64;   // ignored by Int8PerRow
  int block_size = 128;  // columns per lazy batch update (a speed knob; see gptq.cpp)
  double percdamp = 0.01;
  // Process columns by decreasing diag(H), with "static groups": every group's qparams are computed
  // up front from the original weights, so groups stay contiguous in the original column order.
  bool act_order = false;
  // Group qparams (int4wo, uintx) from a clipped range: [p·min, p·max] for the p in 1, 1 − 1/grid, ...,
  // 1 − max_shrink that minimizes Σ |w − dequantize(quantize(w))|^2.4 over the group (the GPTQ paper's
  // code's `mse` search). 0 takes the layout's RTN qparams of the full range.
  int clip_grid = 0;
  float clip_max_shrink = 0.2f;
};

// H = (2 / n) Σ x xᵀ over the n activation rows seen so far, kept as a running average so its scale
// does not grow with the calibration set (GPTQ's add_batch). Stored in double, K x K, row-major.
class HessianAccumulator {
 public:
  explicit HessianAccumulator(int64_t K);
  // x: [rows, K] float32 activations, row-major. Non-finite values → lowbit::Error.
  void add(const float* x, int64_t rows);
  const std::vector<double>& h() const { return h_; }
  int64_t samples() const { return n_; }
  int64_t dim() const { return k_; }

 private:
  int64_t k_;
  int64_t n_ = 0;
  std::vector<double> h_;
};

struct GptqResult {
  Tensor q;      // int32 [N, K], original column order
  Tensor scale;  // Int4FloatZero: bf16 [N, K/G]; UIntIntZero: float32 [N, K/G]; Int8PerRow: float32
                 // [N]
  Tensor zero;   // Int4FloatZero: bf16 [N, K/G]; UIntIntZero: int32 [N, K/G]; Int8PerRow: undefined
  double rel_output_error = 0;  // tr((W - Q) H (W - Q)ᵀ) / tr(W H Wᵀ), with the undamped H
};

// w: [N, K] float32 / bfloat16 / float16. Errors (lowbit::Error) on bad shapes, options, non-finite
// weights, a Hessian without samples, or one that stays indefinite after raising the damping.
GptqResult gptq_quantize(const Tensor& w, const HessianAccumulator& H, const GptqOptions& opts);

// The float32 weights a result stands for, [N, K], computed as the layout's kernels dequantize.
Tensor gptq_dequantize(const GptqResult& r, const GptqOptions& opts);

namespace detail {
// U, upper triangular with U ᵀU = A⁻¹, for a symmetric positive definite K x K matrix A
// (row-major); false when A is not numerically positive definite.
bool upper_cholesky_of_inverse(const std::vector<double>& a, int64_t K, std::vector<double>& u);
}  // namespace detail

}  // namespace lowbit::algorithms
