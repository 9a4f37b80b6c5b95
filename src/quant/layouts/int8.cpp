// int8 weights, symmetric per output channel: int8wo, and int8dq with int8 per-token activations.
#include "kernels/cpu/qgemm.h"
#include "layouts.h"
#include "lowbit/quant/primitives.h"
#include "registry.h"

namespace lowbit::quant {

LinearPtr Int8Weight::quantize(const Tensor& w, ActQuant act) {
  const int64_t K = w.size(1);
  // torchao: SYMMETRIC, (1, K), eps = finfo(float32).eps, scale in the weight's dtype.
  ChooseQParamsOptions o{.mapping = MappingType::Symmetric, .block_size = {1, K}, .qmin = -128, .qmax = 127,
                         .eps = 0x1p-23, .zero_point_dtype = DType::I64};
  const auto qp = choose_qparams_affine(w, o);
  const Tensor q = quantize_affine(w, {1, K}, qp.scale, qp.zero_point, ZeroPointDomain::Int, -128, 127, DType::I8);
  return std::make_shared<Int8Weight>(q, qp.scale, act);
}

Int8Weight::Int8Weight(Tensor qdata, Tensor scale, ActQuant act) : act_(act) {
  LB_CHECK(qdata.dim() == 2 && qdata.dtype() == DType::I8, "int8 layout: qdata must be int8 [N, K], got {}",
           qdata.describe());
  n_ = qdata.size(0);
  k_ = qdata.size(1);
  LB_CHECK(scale.numel() == n_ && dtype_is_float(scale.dtype()), "int8 layout: scale must hold {} floats, got {}",
           n_, scale.describe());
  LB_CHECK(act == ActQuant::None || act == ActQuant::Int8Token, "int8 layout: unsupported activation mode {}",
           act_quant_name(act));
  scale_ = scale.reshape({n_});
  scale_f32_ = scale_.to_f32_vector();
  q_ = Tensor::empty({n_, k_}, DType::U8);
  const Tensor src = qdata.contiguous();
  const auto* s = src.data<int8_t>();
  auto* d = q_.data<uint8_t>();
  for (int64_t i = 0; i < n_ * k_; ++i) d[i] = static_cast<uint8_t>(static_cast<int>(s[i]) + 128);
}

int64_t Int8Weight::nbytes() const { return n_ * k_ + static_cast<int64_t>(scale_.nbytes()); }

void Int8Weight::dequantize_rows(int64_t n0, int64_t n1, float* out) const {
  const auto* q = q_.data<uint8_t>();
  for (int64_t n = n0; n < n1; ++n)
    for (int64_t k = 0; k < k_; ++k)
      out[(n - n0) * k_ + k] = static_cast<float>(static_cast<int>(q[n * k_ + k]) - 128) * scale_f32_[n];
}

std::string Int8Weight::activation_key() const {
  if (!kernels::cpu::integer_kernels_enabled() || k_ % 64 != 0) return LinearWeight::activation_key();
  return act_ == ActQuant::None ? "q8:blocks" : "q8:tokens:sym:" + std::to_string(k_);
}

std::shared_ptr<const void> Int8Weight::prepare_activations(const float* x, int64_t M) const {
  if (!kernels::cpu::integer_kernels_enabled() || k_ % 64 != 0) return LinearWeight::prepare_activations(x, M);
  auto a = std::make_shared<kernels::cpu::Q8Acts>();
  if (act_ == ActQuant::None)  // blocks of 256 where K allows: the decode loop then converts once per 4 chunks
    kernels::cpu::quantize_q8_blocks(x, M, k_, *a, k_ % 256 == 0 ? 256 : 32);
  else
    kernels::cpu::quantize_q8_tokens(x, M, k_, false, k_, *a);
  return a;
}

void Int8Weight::linear_rows(const ActView& a, float* y, int64_t ldy, int64_t n0, int64_t n1) const {
  if (!kernels::cpu::integer_kernels_enabled() || k_ % 64 != 0) return LinearWeight::linear_rows(a, y, ldy, n0, n1);
  const auto& q = *static_cast<const kernels::cpu::Q8Acts*>(a.prepared);
  if (act_ == ActQuant::None)
    kernels::cpu::qgemm_u8_blocks(q, q_.data<uint8_t>(), scale_f32_.data(), y, ldy, n0, n1);
  else
    kernels::cpu::qgemm_u8_tokens(q, q_.data<uint8_t>(), scale_f32_.data(), y, ldy, n0, n1);
}

SavedWeight Int8Weight::save() const {
  Tensor q = Tensor::empty({n_, k_}, DType::I8);
  const auto* s = q_.data<uint8_t>();
  auto* d = q.data<int8_t>();
  for (int64_t i = 0; i < n_ * k_; ++i) d[i] = static_cast<int8_t>(static_cast<int>(s[i]) - 128);
  return {"int8", {{"act", act_quant_name(act_)}}, {{"qdata", q}, {"scale", scale_}}};
}

LinearPtr load_int8(const nlohmann::json& p, const std::function<Tensor(const std::string&)>& get) {
  const Tensor q = get("qdata");
  LB_CHECK(q.dim() == 2, "int8 layout: qdata must be 2-D, got {}", q.describe());
  const Tensor s = get("scale");
  return std::make_shared<Int8Weight>(q, s, act_quant_from_name(p.at("act").get<std::string>()));
}

}  // namespace lowbit::quant
