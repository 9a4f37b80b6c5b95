// A Linear layer's weight [out, in] in some layout (packing format). The model calls linear() and never
// asks which scheme it holds: a plain float weight is just another layout.
//
// A layout owns: packing from a float weight (its quantize function), dequantization, its byte count,
// serialization to named tensors + JSON parameters, and linear() on the CPU. Layouts without a dedicated
// kernel inherit linear() from dequantize_rows() + the float32 GEMM.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

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

class LinearWeight {
 public:
  virtual ~LinearWeight() = default;
  virtual int64_t out_features() const = 0;
  virtual int64_t in_features() const = 0;
  // y[m, :] = W · x[m, :] for m < M; x is [M, in] and y is [M, out], contiguous fp32 on the host.
  virtual void linear(const float* x, int64_t M, float* y) const;
  // Rows [n0, n1) of the weight this layout represents, as float32, into out[(n1 - n0) * in].
  virtual void dequantize_rows(int64_t n0, int64_t n1, float* out) const = 0;
  // Bytes of the stored form: codes plus every scale and zero point.
  virtual int64_t nbytes() const = 0;
  // The scheme's short name ("bf16", "int8wo", "int4wo-64", ...).
  virtual std::string scheme() const = 0;
  virtual SavedWeight save() const = 0;

  Tensor dequantize() const;  // float32 [out, in]

  // Reference linear: dequantize_rows + the float32 GEMM, whatever the layout's own linear() does.
  void linear_reference(const float* x, int64_t M, float* y) const;
};

using LinearPtr = std::shared_ptr<LinearWeight>;

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
  void linear(const float* x, int64_t M, float* y) const override;
  void dequantize_rows(int64_t n0, int64_t n1, float* out) const override;
  int64_t nbytes() const override { return static_cast<int64_t>(w_.nbytes()); }
  std::string scheme() const override;
  SavedWeight save() const override;
  const Tensor& weight() const { return w_; }

 private:
  Tensor w_;
};

}  // namespace lowbit::quant
