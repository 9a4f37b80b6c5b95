// Unquantized float weights (fp32 / bf16 / fp16).
#include "kernels/cpu/gemm.h"
#include "registry.h"

namespace lowbit::quant {

DenseWeight::DenseWeight(Tensor w) : w_(std::move(w)) {
  LB_CHECK(w_.dim() == 2, "a Linear weight must be 2-D, got {}", w_.describe());
  LB_CHECK(w_.dtype() == DType::F32 || w_.dtype() == DType::BF16 || w_.dtype() == DType::F16,
           "unquantized Linear weights must be float32, bfloat16 or float16, got {}", dtype_name(w_.dtype()));
  LB_CHECK(w_.device() == Device::CPU, "DenseWeight holds host tensors");
  if (!w_.is_contiguous()) w_ = w_.contiguous();
}

std::string DenseWeight::scheme() const {
  switch (w_.dtype()) {
    case DType::BF16: return "bf16";
    case DType::F16: return "fp16";
    default: return "fp32";
  }
}

void DenseWeight::linear_rows(const ActView& a, float* y, int64_t ldy, int64_t n0, int64_t n1) const {
  using kernels::cpu::WType;
  const WType wt = w_.dtype() == DType::F32 ? WType::F32 : w_.dtype() == DType::BF16 ? WType::BF16 : WType::F16;
  const int64_t K = in_features();
  const char* w = static_cast<const char*>(w_.raw()) + n0 * K * dtype_size(w_.dtype());
  kernels::cpu::gemm_serial({a.x, K, w, wt, K, y + n0, ldy, a.M, n1 - n0, K});
}

void DenseWeight::dequantize_rows(int64_t n0, int64_t n1, float* out) const {
  const int64_t K = in_features();
  convert_elements(static_cast<const char*>(w_.raw()) + n0 * K * dtype_size(w_.dtype()), w_.dtype(), out,
                   DType::F32, (n1 - n0) * K);
}

SavedWeight DenseWeight::save() const { return {"dense", nlohmann::json::object(), {{"weight", w_}}}; }

LinearPtr load_dense(const nlohmann::json&, const std::function<Tensor(const std::string&)>& get) {
  return std::make_shared<DenseWeight>(get("weight"));
}

}  // namespace lowbit::quant
