// HQQ (half-quadratic quantization): calibration-free per-group weight quantization that refines
// the zero point with a proximal lp-norm solver, following torchao's
// _choose_qparams_and_quantize_affine_hqq and optimize_weights_proximal_legacy (SPEC.md §4).
//
// The math, per group of G consecutive weights along K (HQQ works with an inverse scale s):
//   s = min(qmax / (max - min), 2e4)     z = -min * s   (z rounded half-to-even when bits == 4)
//   repeat (beta *= kappa each time, stop early once the mean |W - W_r| over the whole tensor stops
//   falling):
//     W_q = clamp(round(W * s + z), 0, qmax)      W_r = (W_q - z) / s
//     W_e = shrink_p(W - W_r, beta)  where shrink_p(x) = sign(x) * relu(|x| - |x|^(p-1) / beta)
//     z   = mean over the group of (W_q - (W - W_e) * s)
//   q = clamp(round(W * s + z), 0, qmax), scale = 1 / s:   W ≈ (q - zero) * scale.
#pragma once

#include "lowbit/core/tensor.h"

namespace lowbit::algorithms {

struct HqqOptions {
  int bits = 4;
  int group_size = 64;
  int iters = 20;
  float lp_norm = 0.7f;
  float beta = 10.f;
  float kappa = 1.01f;
  bool early_stop = true;
  bool optimize = true;
  // Arithmetic of the proximal iterations: F16 reproduces torchao on CUDA (its optimizer runs in
  // fp16 whatever the compute dtype), F32 torchao on CPU. Groups whose values would overflow fp16
  // (where torchao's arithmetic produces NaN) are iterated in F32.
  DType opt_dtype = DType::F16;
  // On early stop, return the zero point of the best iteration. torchao (false) returns the zero
  // point updated once more, after the first iteration that did not improve.
  bool keep_best = false;
};

// HQQ's own convention: w ≈ (q - zero) * scale, q in [0, 2^bits - 1], zero a float.
struct GroupCodes {
  Tensor q;      // int32 [N, K]
  Tensor scale;  // float32 [N, K/G]
  Tensor zero;   // float32 [N, K/G]
  int bits = 4;
  int group_size = 64;
  // The dtype scale and zero are exact in (torchao holds them in it before its final cast): the
  // optimizer's dtype, or the weight's dtype when optimize is off.
  DType dtype = DType::F32;
};

// tinygemm's int4 float-zero form: w = (q - 8) * scale + zero, bf16 scale and zero [N, K/G], q
// int32.
struct TinygemmCodes {
  Tensor q;
  Tensor scale;
  Tensor zero;
};

// w: [N, K] float32, bfloat16 or float16, K a multiple of group_size. NaN/Inf → lowbit::Error.
GroupCodes hqq_quantize(const Tensor& w, const HqqOptions& opts = {});

// (q - zero) * scale in float32, [N, K].
Tensor hqq_dequantize(const GroupCodes& c);

// torchao's _convert_to_affinequantized_format plus the cast to the bf16 compute dtype, as
// Int4WeightOnlyConfig(use_hqq=True) does: zero_t = ((8 - zero) * scale in float32) rounded to the
// codes' dtype, then scale and zero_t rounded to bf16; codes unchanged. Requires bits == 4.
TinygemmCodes to_tinygemm(const GroupCodes& c);

}  // namespace lowbit::algorithms
