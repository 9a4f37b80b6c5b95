// Signed intB weights per group with int8 per-token activations: a8wx (torchao
// Int8DynamicActivationIntxWeightConfig) and w4a8 (Int8DynamicActivationInt4WeightConfig, QQQ layout).
#include <cmath>

#include "kernels/cpu/qgemm.h"
#include "layouts.h"
#include "lowbit/core/packing.h"
#include "lowbit/quant/primitives.h"
#include "registry.h"

namespace lowbit::quant {
namespace {

Tensor pack_rows(const std::vector<uint8_t>& u, int64_t N, int64_t K, int bits) {
  Tensor packed = Tensor::empty({N, packed_bytes(K, bits)}, DType::U8);
  for (int64_t n = 0; n < N; ++n) pack_bits(u.data() + n * K, K, bits, packed.data<uint8_t>() + n * packed.size(1));
  return packed;
}

}  // namespace

LinearPtr IntxGroupWeight::quantize_a8wx(const Tensor& w, int bits, int group) {
  const int64_t N = w.size(0), K = w.size(1);
  LB_CHECK(K % group == 0, "a8wx-{}-{}: in_features {} is not a multiple of the group size", bits, group, K);
  const QRange r = int_range(bits, true);
  ChooseQParamsOptions o{.mapping = MappingType::Symmetric, .block_size = {1, group}, .qmin = r.qmin, .qmax = r.qmax};
  const auto qp = choose_qparams_affine(w, o);
  const Tensor q = quantize_affine(w, {1, group}, qp.scale, qp.zero_point, ZeroPointDomain::Int, r.qmin, r.qmax,
                                   DType::I32);
  std::vector<uint8_t> u(static_cast<size_t>(N * K));
  for (int64_t i = 0; i < N * K; ++i) u[i] = static_cast<uint8_t>(q.data<int32_t>()[i] - r.qmin);
  return std::make_shared<IntxGroupWeight>(pack_rows(u, N, K, bits), qp.scale.reshape({N, K / group}), Tensor(), K,
                                           bits, group, ActQuant::Int8TokenAsym);
}

LinearPtr IntxGroupWeight::quantize_w4a8(const Tensor& w_in, int group) {
  const int64_t N = w_in.size(0), K = w_in.size(1), G = K / group;
  LB_CHECK(K % group == 0, "w4a8: in_features {} is not a multiple of the group size {}", K, group);
  const std::vector<float> w = w_in.to_f32_vector();
  std::vector<uint8_t> u(static_cast<size_t>(N * K));
  std::vector<float> s_group(static_cast<size_t>(N * G)), s_channel(static_cast<size_t>(N));
  for (int64_t n = 0; n < N; ++n) {
    float ref_max = 0.0f;
    for (int64_t g = 0; g < G; ++g) {
      // QQQ: a symmetric 4-bit group scale amax * 2/15, codes offset by 8.
      float amax = 0.0f;
      for (int64_t k = g * group; k < (g + 1) * group; ++k) amax = std::max(amax, std::fabs(w[n * K + k]));
      const float s = amax * (2.0f / 15.0f);
      s_group[n * G + g] = s;
      for (int64_t k = g * group; k < (g + 1) * group; ++k) {
        const float q = s > 0 ? std::nearbyint(w[n * K + k] / s) + 8.0f : 8.0f;
        u[n * K + k] = static_cast<uint8_t>(std::clamp(q, 0.0f, 15.0f));
        ref_max = std::max(ref_max, std::fabs((static_cast<float>(u[n * K + k]) - 8.0f) * s));
      }
    }
    // Second level: an int8 channel scale, the group scales stored relative to it in float16.
    s_channel[n] = ref_max > 0 ? ref_max / 127.0f : 1.0f;
    for (int64_t g = 0; g < G; ++g) s_group[n * G + g] /= s_channel[n];
  }
  return std::make_shared<IntxGroupWeight>(pack_rows(u, N, K, 4), Tensor::from_floats(s_group, {N, G}, DType::F16),
                                           Tensor::from_floats(s_channel, {N}, DType::F32), K, 4, group,
                                           ActQuant::Int8Token);
}

IntxGroupWeight::IntxGroupWeight(Tensor codes, Tensor group_scale, Tensor channel_scale, int64_t k, int bits,
                                 int group, ActQuant act)
    : codes_(codes.contiguous()), group_scale_(group_scale.contiguous()), channel_scale_(channel_scale), k_(k),
      bits_(bits), group_(group), act_(act) {
  LB_CHECK(bits >= 1 && bits <= 8 && group > 0 && k % group == 0, "intx_group layout: bits {} group {} K {} do not fit",
           bits, group, k);
  const int64_t N = group_scale_.size(0);
  LB_CHECK(group_scale_.shape() == (Shape{N, k / group}) && dtype_is_float(group_scale_.dtype()),
           "intx_group layout: group scales must be float [N, {}], got {}", k / group, group_scale_.describe());
  LB_CHECK(codes_.shape() == (Shape{N, packed_bytes(k, bits)}) && codes_.dtype() == DType::U8,
           "intx_group layout: codes must be uint8 [{}, {}], got {}", N, packed_bytes(k, bits), codes_.describe());
  LB_CHECK(!channel_scale_.defined() || (channel_scale_.numel() == N && channel_scale_.dtype() == DType::F32),
           "intx_group layout: channel scales must be float32 [{}]", N);
  LB_CHECK(act == ActQuant::Int8Token || act == ActQuant::Int8TokenAsym,
           "intx_group layout: unsupported activation mode {}", act_quant_name(act));
  if (!fast()) return;
  // The kernel's view: float group scales, codes as bytes or 64-weight int4 chunks, and per row
  // Σ_g scale_g · Σ_{k in g} (u − offset), which asymmetric activations need.
  const int64_t G = k / group, off = int64_t{1} << (bits - 1);
  gscale_f32_ = group_scale_.to_f32_vector();
  wsum_.assign(static_cast<size_t>(N), 0.0f);
  std::vector<uint8_t> u(static_cast<size_t>(k));
  kernel_codes_ = bits == 8 ? codes_ : Tensor::empty({N, k / 2}, DType::U8);
  for (int64_t n = 0; n < N; ++n) {
    unpack_bits(codes_.data<uint8_t>() + n * codes_.size(1), k, bits, u.data());
    for (int64_t g = 0; g < G; ++g) {
      int64_t s = 0;
      for (int64_t i = g * group; i < (g + 1) * group; ++i) s += u[i] - off;
      wsum_[n] += gscale_f32_[n * G + g] * static_cast<float>(s);
    }
    if (bits == 4) {
      uint8_t* row = kernel_codes_.data<uint8_t>() + n * k / 2;
      for (int64_t c = 0; c < k; c += 64)
        for (int64_t j = 0; j < 32; ++j) row[c / 2 + j] = static_cast<uint8_t>(u[c + j] | (u[c + j + 32] << 4));
    }
  }
}

bool IntxGroupWeight::fast() const {
  return kernels::cpu::integer_kernels_enabled() && (bits_ == 4 || bits_ == 8) && k_ % 64 == 0 &&
         (group_ == 32 || group_ % 64 == 0);
}

std::string IntxGroupWeight::activation_key() const {
  if (!fast()) return LinearWeight::activation_key();
  return fmt::format("q8:tokens:{}:{}", act_ == ActQuant::Int8TokenAsym ? "asym" : "sym", group_);
}

std::shared_ptr<const void> IntxGroupWeight::prepare_activations(const float* x, int64_t M) const {
  if (!fast()) return LinearWeight::prepare_activations(x, M);
  auto a = std::make_shared<kernels::cpu::Q8Acts>();
  kernels::cpu::quantize_q8_tokens(x, M, k_, act_ == ActQuant::Int8TokenAsym, group_, *a);
  return a;
}

void IntxGroupWeight::linear_rows(const ActView& a, float* y, int64_t ldy, int64_t n0, int64_t n1) const {
  if (!fast()) return LinearWeight::linear_rows(a, y, ldy, n0, n1);
  const kernels::cpu::GroupWeights gw{kernel_codes_.data<uint8_t>(), bits_, gscale_f32_.data(),
                                      channel_scale_.defined() ? channel_scale_.data<float>() : nullptr, wsum_.data(),
                                      group_};
  kernels::cpu::qgemm_group_tokens(*static_cast<const kernels::cpu::Q8Acts*>(a.prepared), gw, y, ldy, n0, n1);
}

int64_t IntxGroupWeight::nbytes() const {
  return static_cast<int64_t>(codes_.nbytes() + group_scale_.nbytes() +
                              (channel_scale_.defined() ? channel_scale_.nbytes() : 0));
}

std::string IntxGroupWeight::scheme() const {
  if (channel_scale_.defined()) return config_name(Int8DynActInt4Weight{group_});
  return config_name(Int8DynActIntxWeight{bits_, group_});
}

void IntxGroupWeight::dequantize_rows(int64_t n0, int64_t n1, float* out) const {
  const int64_t G = k_ / group_;
  const float offset = static_cast<float>(1 << (bits_ - 1));
  std::vector<uint8_t> u(static_cast<size_t>(k_));
  std::vector<float> s(static_cast<size_t>(G));
  const size_t es = dtype_size(group_scale_.dtype());
  for (int64_t n = n0; n < n1; ++n) {
    unpack_bits(codes_.data<uint8_t>() + n * codes_.size(1), k_, bits_, u.data());
    convert_elements(static_cast<const char*>(group_scale_.raw()) + n * G * es, group_scale_.dtype(), s.data(),
                     DType::F32, G);
    const float cs = channel_scale_.defined() ? channel_scale_.data<float>()[n] : 1.0f;
    for (int64_t k = 0; k < k_; ++k) out[(n - n0) * k_ + k] = (static_cast<float>(u[k]) - offset) * (s[k / group_] * cs);
  }
}

SavedWeight IntxGroupWeight::save() const {
  SavedWeight s{"intx_group",
                {{"bits", bits_}, {"group_size", group_}, {"in_features", k_}, {"act", act_quant_name(act_)}},
                {{"qdata", codes_}, {"group_scale", group_scale_}}};
  if (channel_scale_.defined()) s.tensors.emplace_back("channel_scale", channel_scale_);
  s.params["has_channel_scale"] = channel_scale_.defined();
  return s;
}

LinearPtr load_intx_group(const nlohmann::json& p, const std::function<Tensor(const std::string&)>& get) {
  return std::make_shared<IntxGroupWeight>(get("qdata"), get("group_scale"),
                                           p.at("has_channel_scale").get<bool>() ? get("channel_scale") : Tensor(),
                                           p.at("in_features").get<int64_t>(), p.at("bits").get<int>(),
                                           p.at("group_size").get<int>(), act_quant_from_name(p.at("act").get<std::string>()));
}

}  // namespace lowbit::quant
