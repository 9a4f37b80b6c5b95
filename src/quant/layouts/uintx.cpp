// uintB weights per group with an integer zero point (torchao UIntXWeightOnlyConfig), bit-packed; or with a
// float zero point in the code domain (HQQ's result: w = (q - zero) * scale, zero not an integer).
#include "layouts.h"
#include "lowbit/core/packing.h"
#include "lowbit/quant/primitives.h"
#include "registry.h"

namespace lowbit::quant {

LinearPtr UIntXWeight::quantize(const Tensor& w, int bits, int group) {
  const int64_t N = w.size(0), K = w.size(1);
  LB_CHECK(K % group == 0, "uintx-{}-{}: in_features {} is not a multiple of the group size", bits, group, K);
  const QRange r = int_range(bits, false);
  // torchao: ASYMMETRIC, (1, G), eps = finfo(float32).eps, int32 zero point, scale in the weight's dtype.
  ChooseQParamsOptions o{.mapping = MappingType::Asymmetric, .block_size = {1, group}, .qmin = r.qmin,
                         .qmax = r.qmax, .eps = 0x1p-23, .zero_point_dtype = DType::I32};
  const auto qp = choose_qparams_affine(w, o);
  const Tensor q = quantize_affine(w, {1, group}, qp.scale, qp.zero_point, ZeroPointDomain::Int, r.qmin, r.qmax,
                                   DType::U8);
  return from_codes(q, qp.scale.reshape({N, K / group}), qp.zero_point.reshape({N, K / group}), bits, group);
}

LinearPtr UIntXWeight::from_codes(const Tensor& q_in, const Tensor& scale, const Tensor& zero_in, int bits, int group) {
  LB_CHECK(q_in.dim() == 2 && group > 0 && q_in.size(1) % group == 0,
           "uintx layout: codes must be [N, K] with K a multiple of the group {}, got {}", group, q_in.describe());
  const int64_t N = q_in.size(0), K = q_in.size(1), G = K / group;
  LB_CHECK(zero_in.numel() == N * G, "uintx layout: {} zero points for [{}, {}] groups", zero_in.numel(), N, G);
  // The range is checked as the values are packed (pack_bits refuses values of more than `bits` bits).
  auto to_u8 = [](const Tensor& t) {
    const Tensor i = t.to(DType::I32).contiguous();
    Tensor u = Tensor::empty(i.shape(), DType::U8);
    for (int64_t k = 0; k < i.numel(); ++k) {
      LB_CHECK(i.data<int32_t>()[k] >= 0 && i.data<int32_t>()[k] < 256, "uintx layout: value {} is not a code",
               i.data<int32_t>()[k]);
      u.data<uint8_t>()[k] = static_cast<uint8_t>(i.data<int32_t>()[k]);
    }
    return u;
  };
  const Tensor q = to_u8(q_in), zp = to_u8(zero_in);
  Tensor packed = Tensor::empty({N, packed_bytes(K, bits)}, DType::U8);
  Tensor zpacked = Tensor::empty({N, packed_bytes(G, bits)}, DType::U8);
  for (int64_t n = 0; n < N; ++n) {
    pack_bits(q.data<uint8_t>() + n * K, K, bits, packed.data<uint8_t>() + n * packed.size(1));
    pack_bits(zp.data<uint8_t>() + n * G, G, bits, zpacked.data<uint8_t>() + n * zpacked.size(1));
  }
  return std::make_shared<UIntXWeight>(packed, scale.reshape({N, G}), zpacked, K, bits, group);
}

LinearPtr UIntXWeight::from_codes_float_zero(const Tensor& q_in, const Tensor& scale, const Tensor& zero, int bits,
                                             int group) {
  LB_CHECK(q_in.dim() == 2 && group > 0 && q_in.size(1) % group == 0,
           "uintx layout: codes must be [N, K] with K a multiple of the group {}, got {}", group, q_in.describe());
  const int64_t N = q_in.size(0), K = q_in.size(1), G = K / group;
  LB_CHECK(dtype_is_float(zero.dtype()) && zero.numel() == N * G, "uintx layout: float zero points must be [{}, {}]",
           N, G);
  const Tensor i = q_in.to(DType::I32).contiguous();
  std::vector<uint8_t> q(static_cast<size_t>(K));
  Tensor packed = Tensor::empty({N, packed_bytes(K, bits)}, DType::U8);
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t k = 0; k < K; ++k) {
      const int32_t v = i.data<int32_t>()[n * K + k];
      LB_CHECK(v >= 0 && v < (1 << bits), "uintx layout: value {} is not a {}-bit code", v, bits);
      q[k] = static_cast<uint8_t>(v);
    }
    pack_bits(q.data(), K, bits, packed.data<uint8_t>() + n * packed.size(1));
  }
  return std::make_shared<UIntXWeight>(packed, scale.reshape({N, G}), zero.reshape({N, G}), K, bits, group);
}

UIntXWeight::UIntXWeight(Tensor packed, Tensor scale, Tensor zero, int64_t k, int bits, int group)
    : packed_(packed.contiguous()), scale_(scale.contiguous()), zero_(zero.contiguous()), k_(k), bits_(bits),
      group_(group) {
  LB_CHECK(bits >= 1 && bits <= 8 && group > 0 && k % group == 0, "uintx layout: bits {} group {} K {} do not fit",
           bits, group, k);
  const int64_t N = scale_.size(0), G = k / group;
  LB_CHECK(scale_.shape() == (Shape{N, G}) && dtype_is_float(scale_.dtype()), "uintx layout: scale must be [N, {}]", G);
  LB_CHECK(packed_.shape() == (Shape{N, packed_bytes(k, bits)}) && packed_.dtype() == DType::U8,
           "uintx layout: codes must be uint8 [{}, {}], got {}", N, packed_bytes(k, bits), packed_.describe());
  if (dtype_is_float(zero_.dtype()))
    LB_CHECK(zero_.shape() == (Shape{N, G}), "uintx layout: float zero points must be [{}, {}], got {}", N, G,
             zero_.describe());
  else
    LB_CHECK(zero_.shape() == (Shape{N, packed_bytes(G, bits)}) && zero_.dtype() == DType::U8,
             "uintx layout: zero points must be uint8 [{}, {}] or float [{}, {}], got {}", N, packed_bytes(G, bits),
             N, G, zero_.describe());
}

int64_t UIntXWeight::nbytes() const {
  return static_cast<int64_t>(packed_.nbytes() + scale_.nbytes() + zero_.nbytes());
}

std::string UIntXWeight::scheme() const { return config_name(UIntXWeightOnly{bits_, group_}); }

void UIntXWeight::dequantize_rows(int64_t n0, int64_t n1, float* out) const {
  const int64_t G = k_ / group_;
  std::vector<uint8_t> q(static_cast<size_t>(k_)), zi(static_cast<size_t>(G));
  std::vector<float> s(static_cast<size_t>(G)), z(static_cast<size_t>(G));
  const size_t es = dtype_size(scale_.dtype());
  const bool float_zero = dtype_is_float(zero_.dtype());
  for (int64_t n = n0; n < n1; ++n) {
    unpack_bits(packed_.data<uint8_t>() + n * packed_.size(1), k_, bits_, q.data());
    if (float_zero) {
      convert_elements(static_cast<const char*>(zero_.raw()) + n * G * dtype_size(zero_.dtype()), zero_.dtype(),
                       z.data(), DType::F32, G);
    } else {
      unpack_bits(zero_.data<uint8_t>() + n * zero_.size(1), G, bits_, zi.data());
      for (int64_t g = 0; g < G; ++g) z[g] = static_cast<float>(zi[g]);
    }
    convert_elements(static_cast<const char*>(scale_.raw()) + n * G * es, scale_.dtype(), s.data(), DType::F32, G);
    for (int64_t k = 0; k < k_; ++k) {
      const int64_t g = k / group_;
      // torchao: (q - zero_point) in float32, times the scale.
      out[(n - n0) * k_ + k] = (static_cast<float>(q[k]) - z[g]) * s[g];
    }
  }
}

SavedWeight UIntXWeight::save() const {
  return {"uintx",
          {{"bits", bits_}, {"group_size", group_}, {"in_features", k_}},
          {{"qdata", packed_}, {"scale", scale_}, {"zero_point", zero_}}};
}

LinearPtr load_uintx(const nlohmann::json& p, const std::function<Tensor(const std::string&)>& get) {
  return std::make_shared<UIntXWeight>(get("qdata"), get("scale"), get("zero_point"), p.at("in_features").get<int64_t>(),
                                       p.at("bits").get<int>(), p.at("group_size").get<int>());
}

}  // namespace lowbit::quant
