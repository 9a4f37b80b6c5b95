// float8 e4m3 weights per row or per tensor; float8wo, and float8dq with float8 activations.
#include "layouts.h"
#include "lowbit/core/float_formats.h"
#include "lowbit/quant/primitives.h"
#include "registry.h"

namespace lowbit::quant {

LinearPtr Float8Weight::quantize(const Tensor& w, bool per_row, ActQuant act) {
  const std::vector<int64_t> block = per_row ? std::vector<int64_t>{1, w.size(1)} : w.shape();
  const Tensor s = choose_scale_float8(w, block, DType::F8E4M3);
  return std::make_shared<Float8Weight>(quantize_float8(w, block, s, DType::F8E4M3), s, act);
}

Float8Weight::Float8Weight(Tensor qdata, Tensor scale, ActQuant act)
    : q_(qdata.contiguous()), scale_(scale.contiguous()), act_(act) {
  LB_CHECK(q_.dim() == 2 && q_.dtype() == DType::F8E4M3, "float8 layout: qdata must be float8_e4m3fn [N, K], got {}",
           q_.describe());
  LB_CHECK(scale_.dtype() == DType::F32 && (scale_.numel() == q_.size(0) || scale_.numel() == 1),
           "float8 layout: scale must be float32 per row or per tensor, got {}", scale_.describe());
  LB_CHECK(act == ActQuant::None || act == ActQuant::Fp8Token || act == ActQuant::Fp8Tensor,
           "float8 layout: unsupported activation mode {}", act_quant_name(act));
}

std::string Float8Weight::scheme() const {
  switch (act_) {
    case ActQuant::Fp8Token: return "float8dq-row";
    case ActQuant::Fp8Tensor: return "float8dq-tensor";
    default: return "float8wo";
  }
}

void Float8Weight::dequantize_rows(int64_t n0, int64_t n1, float* out) const {
  const int64_t K = in_features();
  const auto* q = static_cast<const uint8_t*>(q_.raw());
  const float* s = scale_.data<float>();
  const bool per_row = scale_.numel() != 1 || q_.size(0) == 1;
  for (int64_t n = n0; n < n1; ++n) {
    const float sc = per_row ? s[n] : s[0];
    for (int64_t k = 0; k < K; ++k) out[(n - n0) * K + k] = e4m3_to_f32(q[n * K + k]) * sc;
  }
}

SavedWeight Float8Weight::save() const {
  return {"float8", {{"act", act_quant_name(act_)}}, {{"qdata", q_}, {"scale", scale_}}};
}

LinearPtr load_float8(const nlohmann::json& p, const std::function<Tensor(const std::string&)>& get) {
  return std::make_shared<Float8Weight>(get("qdata"), get("scale"), act_quant_from_name(p.at("act").get<std::string>()));
}

}  // namespace lowbit::quant
