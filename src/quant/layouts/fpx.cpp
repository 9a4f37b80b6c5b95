// fp-x weights (torchao FPXWeightOnlyConfig): per-row scale, codes bit-packed along each row.
#include "layouts.h"
#include "lowbit/core/float_formats.h"
#include "lowbit/core/packing.h"
#include "lowbit/quant/primitives.h"
#include "registry.h"

namespace lowbit::quant {

LinearPtr FpxWeight::quantize(const Tensor& w, int ebits, int mbits) {
  const int64_t N = w.size(0), K = w.size(1);
  const int bits = 1 + ebits + mbits;
  const Tensor scale = choose_scale_fpx(w, ebits, mbits);
  const Tensor codes = quantize_fpx(w, scale, ebits, mbits);
  const int64_t row_bytes = packed_bytes(K, bits);
  Tensor packed = Tensor::empty({N, row_bytes}, DType::U8);
  for (int64_t n = 0; n < N; ++n)
    pack_bits(codes.data<uint8_t>() + n * K, K, bits, packed.data<uint8_t>() + n * row_bytes);
  return std::make_shared<FpxWeight>(packed, scale, K, ebits, mbits);
}

FpxWeight::FpxWeight(Tensor packed, Tensor scale, int64_t k, int ebits, int mbits)
    : packed_(packed.contiguous()), scale_(scale.contiguous()), k_(k), ebits_(ebits), mbits_(mbits) {
  fpx_format(ebits, mbits);  // validates
  const int bits = 1 + ebits + mbits;
  LB_CHECK(scale_.dim() == 1 && dtype_is_float(scale_.dtype()), "fpx layout: scale must be 1-D float, got {}",
           scale_.describe());
  LB_CHECK(packed_.dtype() == DType::U8 && packed_.shape() == (Shape{scale_.size(0), packed_bytes(k, bits)}),
           "fpx layout: codes must be uint8 [{}, {}], got {}", scale_.size(0), packed_bytes(k, bits),
           packed_.describe());
}

std::string FpxWeight::scheme() const {
  return config_name(FpxWeightOnly{ebits_, mbits_});
}

void FpxWeight::dequantize_rows(int64_t n0, int64_t n1, float* out) const {
  const MiniFloat fmt = fpx_format(ebits_, mbits_);
  const int bits = 1 + ebits_ + mbits_;
  const int64_t row_bytes = packed_.size(1);
  float table[256];
  for (int c = 0; c < (1 << bits); ++c) table[c] = minifloat_decode(static_cast<uint8_t>(c), fmt);
  std::vector<uint8_t> codes(static_cast<size_t>(k_));
  for (int64_t n = n0; n < n1; ++n) {
    unpack_bits(packed_.data<uint8_t>() + n * row_bytes, k_, bits, codes.data());
    const float s = scale_.get_f32(n);
    for (int64_t k = 0; k < k_; ++k) out[(n - n0) * k_ + k] = table[codes[k]] * s;
  }
}

SavedWeight FpxWeight::save() const {
  return {"fpx", {{"ebits", ebits_}, {"mbits", mbits_}, {"in_features", k_}}, {{"qdata", packed_}, {"scale", scale_}}};
}

LinearPtr load_fpx(const nlohmann::json& p, const std::function<Tensor(const std::string&)>& get) {
  return std::make_shared<FpxWeight>(get("qdata"), get("scale"), p.at("in_features").get<int64_t>(),
                                     p.at("ebits").get<int>(), p.at("mbits").get<int>());
}

}  // namespace lowbit::quant
