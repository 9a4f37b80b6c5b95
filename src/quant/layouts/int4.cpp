// uint4 weights, asymmetric per group with a float zero point: torchao's int4 weight-only (tinygemm) math.
#include "kernels/cpu/qgemm.h"
#include "layouts.h"
#include "lowbit/core/float_formats.h"
#include "lowbit/quant/primitives.h"
#include "registry.h"

namespace lowbit::quant {
namespace {

// Chunk order (the checkpoint's): byte j of each 64-weight chunk = weight j (low nibble) | weight j + 32
// (high nibble). In memory the codes are kept in the integer kernels' window order (qgemm.h).
void pack_row(const int32_t* q, int64_t K, uint8_t* out) {
  for (int64_t c = 0; c < K; c += 64)
    for (int64_t j = 0; j < 32; ++j)
      out[c / 2 + j] = static_cast<uint8_t>(q[c + j] | (q[c + j + 32] << 4));
}

void unpack_chunk_row(const uint8_t* row, int64_t K, uint8_t* q) {
  for (int64_t c = 0; c < K; c += 64)
    for (int64_t j = 0; j < 32; ++j) {
      q[c + j] = row[c / 2 + j] & 0xf;
      q[c + j + 32] = row[c / 2 + j] >> 4;
    }
}

}  // namespace

LinearPtr Int4Weight::quantize(const Tensor& w, int group) {
  const int64_t N = w.size(0), K = w.size(1);
  LB_CHECK(K % group == 0, "int4wo-{}: in_features {} is not a multiple of the group size", group, K);
  LB_CHECK(K % 64 == 0, "int4wo-{}: in_features {} must be a multiple of 64 for the packed int4 layout", group, K);
  // torchao Int4WeightOnlyConfig: ASYMMETRIC, uint4 [0, 15], eps 1e-6, bf16 scale and zero, float zero point.
  const auto qp = choose_qparams_affine_float_zero(w, {1, group}, 0, 15, 1e-6, DType::BF16, DType::BF16);
  const Tensor q = quantize_affine(w, {1, group}, qp.scale, qp.zero_point, ZeroPointDomain::Float, 0, 15, DType::I32);
  return from_codes(q, qp.scale.reshape({N, K / group}), qp.zero_point.reshape({N, K / group}), group);
}

LinearPtr Int4Weight::from_codes(const Tensor& q_in, const Tensor& scale, const Tensor& zero, int group) {
  const Tensor q = q_in.to(DType::I32).contiguous();
  LB_CHECK(q.dim() == 2 && q.size(1) % 64 == 0, "int4 layout: codes must be [N, K] with K a multiple of 64, got {}",
           q.describe());
  const int64_t N = q.size(0), K = q.size(1);
  const auto* qd = q.data<int32_t>();
  for (int64_t i = 0; i < N * K; ++i) LB_CHECK(qd[i] >= 0 && qd[i] <= 15, "int4 layout: code {} out of [0, 15]", qd[i]);
  Tensor packed = Tensor::empty({N, K / 2}, DType::U8);
  for (int64_t n = 0; n < N; ++n) pack_row(qd + n * K, K, packed.data<uint8_t>() + n * K / 2);
  return std::make_shared<Int4Weight>(packed, scale.to(DType::BF16), zero.to(DType::BF16), group);
}

Int4Weight::Int4Weight(Tensor packed, Tensor scale, Tensor zero, int group)
    : group_(group), scale_(scale.contiguous()), zero_(zero.contiguous()) {
  LB_CHECK(packed.dim() == 2 && packed.dtype() == DType::U8, "int4 layout: packed codes must be uint8 [N, K/2]");
  n_ = packed.size(0);
  k_ = packed.size(1) * 2;
  LB_CHECK(group > 0 && k_ % group == 0 && k_ % 64 == 0, "int4 layout: K {} and group {} do not fit", k_, group);
  const Shape qs{n_, k_ / group};
  LB_CHECK(scale_.shape() == qs && zero_.shape() == qs && scale_.dtype() == DType::BF16 && zero_.dtype() == DType::BF16,
           "int4 layout: scale and zero must be bfloat16 {}, got {} and {}", shape_str(qs), scale_.describe(),
           zero_.describe());
  LB_CHECK(group <= 256, "int4 layout: group size {} above 256", group);
  const Tensor chunks = packed.contiguous();
  const int64_t row_bytes = kernels::cpu::u4_window_padded(k_) / 2;
  packed_ = Tensor::empty({n_, row_bytes}, DType::U8);
  std::vector<uint8_t> q(static_cast<size_t>(k_));
  for (int64_t n = 0; n < n_; ++n) {
    unpack_chunk_row(chunks.data<uint8_t>() + n * k_ / 2, k_, q.data());
    kernels::cpu::pack_u4_windows(q.data(), k_, packed_.data<uint8_t>() + n * row_bytes);
  }
}

int64_t Int4Weight::nbytes() const {
  return static_cast<int64_t>(n_ * k_ / 2 + scale_.nbytes() + zero_.nbytes());  // padding not counted
}

void Int4Weight::dequantize_rows(int64_t n0, int64_t n1, float* out) const {
  const auto* p = packed_.data<uint8_t>();
  const auto* s = reinterpret_cast<const uint16_t*>(scale_.raw());
  const auto* z = reinterpret_cast<const uint16_t*>(zero_.raw());
  const int64_t groups = k_ / group_;
  for (int64_t n = n0; n < n1; ++n) {
    const uint8_t* row = p + n * packed_.size(1);
    float* o = out + (n - n0) * k_;
    for (int64_t k = 0; k < k_; ++k) o[k] = static_cast<float>(kernels::cpu::u4_window_code(row, k));
    // torchao: (q - 8) in float32, times scale, plus zero.
    for (int64_t k = 0; k < k_; ++k) {
      const int64_t g = n * groups + k / group_;
      o[k] = (o[k] - 8.0f) * bf16_to_f32(s[g]) + bf16_to_f32(z[g]);
    }
  }
}


std::string Int4Weight::activation_key() const {
  return kernels::cpu::integer_kernels_enabled() ? "q8:windows" : LinearWeight::activation_key();
}

std::shared_ptr<const void> Int4Weight::prepare_activations(const float* x, int64_t M) const {
  if (!kernels::cpu::integer_kernels_enabled()) return LinearWeight::prepare_activations(x, M);
  auto a = std::make_shared<kernels::cpu::Q8Acts>();
  kernels::cpu::quantize_q8_windows(x, M, k_, *a);
  return a;
}

void Int4Weight::linear_rows(const ActView& a, float* y, int64_t ldy, int64_t n0, int64_t n1) const {
  if (!kernels::cpu::integer_kernels_enabled()) return LinearWeight::linear_rows(a, y, ldy, n0, n1);
  kernels::cpu::qgemm_u4_blocks(*static_cast<const kernels::cpu::Q8Acts*>(a.prepared), packed_.data<uint8_t>(),
                                reinterpret_cast<const uint16_t*>(scale_.raw()),
                                reinterpret_cast<const uint16_t*>(zero_.raw()), group_, y, ldy, n0, n1);
}

SavedWeight Int4Weight::save() const {
  Tensor chunks = Tensor::empty({n_, k_ / 2}, DType::U8);
  std::vector<int32_t> q(static_cast<size_t>(k_));
  for (int64_t n = 0; n < n_; ++n) {
    const uint8_t* row = packed_.data<uint8_t>() + n * packed_.size(1);
    for (int64_t k = 0; k < k_; ++k) q[k] = kernels::cpu::u4_window_code(row, k);
    pack_row(q.data(), k_, chunks.data<uint8_t>() + n * k_ / 2);
  }
  return {"int4", {{"group_size", group_}}, {{"qdata", chunks}, {"scale", scale_}, {"zero", zero_}}};
}

LinearPtr load_int4(const nlohmann::json& p, const std::function<Tensor(const std::string&)>& get) {
  return std::make_shared<Int4Weight>(get("qdata"), get("scale"), get("zero"), p.at("group_size").get<int>());
}

}  // namespace lowbit::quant
