// A Linear layer's weight [out, in] in some layout (packing format). The model calls linear() and never
// asks which scheme it holds: a plain float weight is just another layout.
//
// A layout owns: packing from a float weight (its quantize function), dequantization, its byte count,
// serialization to named tensors + JSON parameters, and its product on the CPU, linear_rows(), which
// computes a range of output columns on one thread; linear()/linear_many() spread those ranges over
// threads. Layouts without a dedicated kernel inherit linear_rows() from dequantize_rows() + the float32
// GEMM.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "lowbit/core/safetensors.h"
#include "lowbit/core/tensor.h"

namespace lowbit::quant {

// A weight as stored in a quantized checkpoint: tensor names are relative to the layer.
struct SavedWeight {
  std::string layout;
  nlohmann::json params;
  NamedTensors tensors;
};

// How a scheme quantizes activations at run time (dynamic-activation schemes).
enum class ActQuant {
  None,           // weight-only: activations stay float
  Int8Token,      // int8 symmetric per token, range [-127, 127] (torchao int8dq)
  Int8TokenAsym,  // int8 asymmetric per token (torchao a8wx)
  Fp8Token,       // float8 e4m3 per token
  Fp8Tensor,      // float8 e4m3 per tensor
};
std::string_view act_quant_name(ActQuant a);
ActQuant act_quant_from_name(std::string_view s);

// The input of a product: x [M, in] and, when the weight asked for it, its prepared (quantized) form.
struct ActView {
  const float* x;
  int64_t M;
  const void* prepared;
};

class LinearWeight {
 public:
  virtual ~LinearWeight() = default;
  virtual int64_t out_features() const = 0;
  virtual int64_t in_features() const = 0;
  // Rows [n0, n1) of the weight this layout represents, as float32, into out[(n1 - n0) * in].
  virtual void dequantize_rows(int64_t n0, int64_t n1, float* out) const = 0;
  // Bytes of the stored form: codes plus every scale and zero point.
  virtual int64_t nbytes() const = 0;
  // The scheme's short name ("bf16", "int8wo", "int4wo-64", ...).
  virtual std::string scheme() const = 0;
  virtual SavedWeight save() const = 0;
  // The scheme's activation math (what the reference applies before the weight-only product).
  virtual ActQuant act_quant() const { return ActQuant::None; }

  // The prepared form of x this weight's linear_rows() wants; weights with equal keys share one ("" = none).
  virtual std::string activation_key() const;
  virtual std::shared_ptr<const void> prepare_activations(const float* x, int64_t M) const;
  // Output columns [n0, n1) of y = x · Wᵀ (y has leading dimension ldy), on the calling thread.
  // The default dequantizes the rows and runs the float32 GEMM on x (or on its fake-quantized values).
  virtual void linear_rows(const ActView& a, float* y, int64_t ldy, int64_t n0, int64_t n1) const;

  // y[m, :] = W · x[m, :] for m < M; x is [M, in] and y is [M, out], contiguous fp32 on the host.
  void linear(const float* x, int64_t M, float* y) const;
  // The scheme's math with no fast path: activations quantized as the scheme says (torchao's primitives),
  // then the dequantized weight in a float32 GEMM. Fast paths are tested against this.
  void linear_reference(const float* x, int64_t M, float* y) const;

  Tensor dequantize() const;  // float32 [out, in]
};

using LinearPtr = std::shared_ptr<LinearWeight>;

// Several products of the same x in one parallel pass (q/k/v, gate/up): ys[i] = x · ws[i]ᵀ.
void linear_many(std::span<const LinearWeight* const> ws, const float* x, int64_t M, std::span<float* const> ys);

// Rebuilds a weight saved by LinearWeight::save(); `get` returns the named tensor (relative name) and
// throws naming the file when it is missing. Unknown layouts are an error.
LinearPtr load_weight(const std::string& layout, const nlohmann::json& params,
                      const std::function<Tensor(const std::string&)>& get);

// An unquantized weight in float32, bfloat16 or float16 (a view of a checkpoint, or owned).
class DenseWeight final : public LinearWeight {
 public:
  explicit DenseWeight(Tensor w);
  int64_t out_features() const override { return w_.size(0); }
  int64_t in_features() const override { return w_.size(1); }
  void linear_rows(const ActView& a, float* y, int64_t ldy, int64_t n0, int64_t n1) const override;
  void dequantize_rows(int64_t n0, int64_t n1, float* out) const override;
  int64_t nbytes() const override { return static_cast<int64_t>(w_.nbytes()); }
  std::string scheme() const override;
  SavedWeight save() const override;
  const Tensor& weight() const { return w_; }

 private:
  Tensor w_;
};

}  // namespace lowbit::quant
