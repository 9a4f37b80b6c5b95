// The quantized weight layouts, one class per file in this directory.
#pragma once

#include <vector>

#include "lowbit/quant/config.h"
#include "lowbit/quant/linear.h"

namespace lowbit::quant {

// int8 per output channel, symmetric (int8wo; int8dq with int8 per-token activations).
class Int8Weight final : public LinearWeight {
 public:
  static LinearPtr quantize(const Tensor& w, ActQuant act);
  Int8Weight(Tensor qdata, Tensor scale, ActQuant act);
  int64_t out_features() const override { return n_; }
  int64_t in_features() const override { return k_; }
  void dequantize_rows(int64_t n0, int64_t n1, float* out) const override;
  int64_t nbytes() const override;
  std::string scheme() const override { return act_ == ActQuant::None ? "int8wo" : "int8dq"; }
  ActQuant act_quant() const override { return act_; }
  SavedWeight save() const override;
  // Integer fast path: int8 activations (per 32-block for int8wo, torchao's per token for int8dq).
  std::string activation_key() const override;
  std::shared_ptr<const void> prepare_activations(const float* x, int64_t M) const override;
  void linear_rows(const ActView& a, float* y, int64_t ldy, int64_t n0, int64_t n1) const override;

 private:
  int64_t n_, k_;
  Tensor q_;      // uint8 [N, K]: the int8 value + 128, the form the VNNI kernel multiplies
  Tensor scale_;  // [N] in the weight's dtype (torchao keeps it so)
  std::vector<float> scale_f32_;
  ActQuant act_;
};

// uint4 asymmetric per group with a float zero point (torchao int4wo / tinygemm math):
// w = (q - 8) * scale + zero. Saved as codes packed two per byte in 64-weight chunks (byte j of a chunk
// holds weight j in its low nibble and weight j + 32 in its high nibble); kept in memory in the integer
// kernels' window order (kernels/cpu/qgemm.h).
class Int4Weight final : public LinearWeight {
 public:
  static LinearPtr quantize(const Tensor& w, int group_size);
  // From codes q in [0, 15] (any integer dtype, [N, K]) and scale/zero [N, K/G] (converted to bf16).
  static LinearPtr from_codes(const Tensor& q, const Tensor& scale, const Tensor& zero, int group_size);
  Int4Weight(Tensor packed, Tensor scale, Tensor zero, int group_size);
  int64_t out_features() const override { return n_; }
  int64_t in_features() const override { return k_; }
  void dequantize_rows(int64_t n0, int64_t n1, float* out) const override;
  int64_t nbytes() const override;
  std::string scheme() const override { return "int4wo-" + std::to_string(group_); }
  SavedWeight save() const override;
  // Integer fast path: int8 activations per 32-block.
  std::string activation_key() const override;
  std::shared_ptr<const void> prepare_activations(const float* x, int64_t M) const override;
  void linear_rows(const ActView& a, float* y, int64_t ldy, int64_t n0, int64_t n1) const override;

 private:
  int64_t n_, k_;
  int group_;
  Tensor packed_;       // uint8 [N, u4_window_padded(K) / 2], window order
  Tensor scale_, zero_; // bf16 [N, K/G]
};

// float8 e4m3 per row or per tensor, with optional float8 activations (float8wo, float8dq-row/-tensor).
class Float8Weight final : public LinearWeight {
 public:
  static LinearPtr quantize(const Tensor& w, bool per_row, ActQuant act);
  Float8Weight(Tensor qdata, Tensor scale, ActQuant act);
  int64_t out_features() const override { return q_.size(0); }
  int64_t in_features() const override { return q_.size(1); }
  void dequantize_rows(int64_t n0, int64_t n1, float* out) const override;
  int64_t nbytes() const override { return static_cast<int64_t>(q_.nbytes() + scale_.nbytes()); }
  std::string scheme() const override;
  ActQuant act_quant() const override { return act_; }
  SavedWeight save() const override;

 private:
  Tensor q_;      // float8_e4m3fn [N, K]
  Tensor scale_;  // float32 [N, 1] or [1, 1]
  ActQuant act_;
};

// fp-x codes (torchao floatx, e.g. fp6 e3m2) bit-packed per row, one scale per row.
class FpxWeight final : public LinearWeight {
 public:
  static LinearPtr quantize(const Tensor& w, int ebits, int mbits);
  FpxWeight(Tensor packed, Tensor scale, int64_t k, int ebits, int mbits);
  int64_t out_features() const override { return scale_.size(0); }
  int64_t in_features() const override { return k_; }
  void dequantize_rows(int64_t n0, int64_t n1, float* out) const override;
  int64_t nbytes() const override { return static_cast<int64_t>(packed_.nbytes() + scale_.nbytes()); }
  std::string scheme() const override;
  SavedWeight save() const override;

 private:
  Tensor packed_;  // uint8 [N, ceil(K * bits / 8)]
  Tensor scale_;   // [N] in the weight's dtype
  int64_t k_;
  int ebits_, mbits_;
};

// uintB asymmetric per group with an integer zero point (torchao UIntXWeightOnlyConfig); codes and zero
// points bit-packed.
class UIntXWeight final : public LinearWeight {
 public:
  static LinearPtr quantize(const Tensor& w, int bits, int group_size);
  // From codes q and integer zero points in [0, 2^bits) (any integer dtype) and scales [N, K/G].
  static LinearPtr from_codes(const Tensor& q, const Tensor& scale, const Tensor& zero, int bits, int group_size);
  // With float zero points [N, K/G] (kept in their dtype): w = (q - zero) * scale (HQQ).
  static LinearPtr from_codes_float_zero(const Tensor& q, const Tensor& scale, const Tensor& zero, int bits,
                                         int group_size);
  UIntXWeight(Tensor packed, Tensor scale, Tensor zero_packed, int64_t k, int bits, int group_size);
  int64_t out_features() const override { return scale_.size(0); }
  int64_t in_features() const override { return k_; }
  void dequantize_rows(int64_t n0, int64_t n1, float* out) const override;
  int64_t nbytes() const override;
  std::string scheme() const override;
  SavedWeight save() const override;

 private:
  // codes [N, ceil(K*B/8)], scale [N, K/G], zero points packed [N, ceil(K/G*B/8)] or float [N, K/G]
  Tensor packed_, scale_, zero_;
  int64_t k_;
  int bits_, group_;
};

// Signed intB weights per group (stored offset by 2^(B-1) so they are unsigned), a float scale per group
// and optionally per channel, with int8 per-token activations: a8wx (asymmetric activations) and w4a8
// (QQQ: int4 with a two-level scale, symmetric activations).
class IntxGroupWeight final : public LinearWeight {
 public:
  static LinearPtr quantize_a8wx(const Tensor& w, int bits, int group_size);
  static LinearPtr quantize_w4a8(const Tensor& w, int group_size);
  IntxGroupWeight(Tensor codes, Tensor group_scale, Tensor channel_scale, int64_t k, int bits, int group_size,
                  ActQuant act);
  int64_t out_features() const override { return group_scale_.size(0); }
  int64_t in_features() const override { return k_; }
  void dequantize_rows(int64_t n0, int64_t n1, float* out) const override;
  int64_t nbytes() const override;
  std::string scheme() const override;
  SavedWeight save() const override;
  ActQuant act_quant() const override { return act_; }
  // Integer fast path (4- and 8-bit codes): int8 per-token activations.
  std::string activation_key() const override;
  std::shared_ptr<const void> prepare_activations(const float* x, int64_t M) const override;
  void linear_rows(const ActView& a, float* y, int64_t ldy, int64_t n0, int64_t n1) const override;

 private:
  bool fast() const;
  Tensor codes_;          // uint8 [N, ceil(K*B/8)]: (q + 2^(B-1)) bit-packed
  Tensor kernel_codes_;   // the fast path's copy: bytes for B = 8 (codes_ itself), 64-weight chunks for B = 4
  Tensor group_scale_;    // [N, K/G]
  Tensor channel_scale_;  // float32 [N] or undefined
  int64_t k_;
  int bits_, group_;
  ActQuant act_;
  std::vector<float> gscale_f32_, wsum_;  // the kernel's view: float group scales, Σ_g s_g·Σ(u − offset)
};

// A 2^B-entry codebook per tensor (1-D k-means over block-normalized weights), B-bit codes, and one scale
// per block of weights along K: w = codebook[code] * scale.
class CodebookWeight final : public LinearWeight {
 public:
  static LinearPtr quantize(const Tensor& w, int bits, int block_size);
  CodebookWeight(Tensor codes, Tensor codebook, Tensor scale, int64_t k, int bits, int block_size);
  int64_t out_features() const override { return scale_.size(0); }
  int64_t in_features() const override { return k_; }
  void dequantize_rows(int64_t n0, int64_t n1, float* out) const override;
  int64_t nbytes() const override;
  std::string scheme() const override;
  SavedWeight save() const override;

 private:
  Tensor codes_, codebook_, scale_;  // codes [N, ceil(K*B/8)], codebook float32 [2^B], scale bf16 [N, K/block]
  int64_t k_;
  int bits_, block_;
};

// Activation quantization shared by the dynamic schemes' reference paths: returns the float values the
// quantized activations stand for (q * scale), computed with torchao's math on fp32 input.
std::vector<float> fake_quantize_activations(const float* x, int64_t M, int64_t K, ActQuant act);

}  // namespace lowbit::quant
