// A Linear layer's weight [out, in] in some layout. The model calls linear() and never asks which
// scheme it holds: a plain float weight is just another layout.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "lowbit/core/tensor.h"

namespace lowbit::quant {

class LinearWeight {
 public:
  virtual ~LinearWeight() = default;
  virtual int64_t out_features() const = 0;
  virtual int64_t in_features() const = 0;
  // y[m, :] = W · x[m, :] for m < M; x is [M, in] and y is [M, out], both contiguous fp32 on the host.
  virtual void linear(const float* x, int64_t M, float* y) const = 0;
  // The weight this layout represents, as float32 [out, in].
  virtual Tensor dequantize() const = 0;
  // Bytes of the stored form: codes plus every scale and zero point.
  virtual int64_t nbytes() const = 0;
  // The scheme's short name ("bf16", "int8wo", "int4wo-64", ...).
  virtual std::string scheme() const = 0;
};

using LinearPtr = std::shared_ptr<LinearWeight>;

// An unquantized weight in float32, bfloat16 or float16 (a view of a checkpoint, or owned).
class DenseWeight final : public LinearWeight {
 public:
  explicit DenseWeight(Tensor w);
  int64_t out_features() const override { return w_.size(0); }
  int64_t in_features() const override { return w_.size(1); }
  void linear(const float* x, int64_t M, float* y) const override;
  Tensor dequantize() const override { return w_.to(DType::F32); }
  int64_t nbytes() const override { return static_cast<int64_t>(w_.nbytes()); }
  std::string scheme() const override;
  const Tensor& weight() const { return w_; }

 private:
  Tensor w_;
};

}  // namespace lowbit::quant
