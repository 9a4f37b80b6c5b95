// HQQ: torchao's _choose_qparams_and_quantize_affine_hqq + optimize_weights_proximal_legacy, op by
// op.
//
// PyTorch semantics reproduced: every elementwise op on an fp16 tensor rounds its result to fp16;
// `c / t` is reciprocal(t) * c; torch.round is half-to-even; the early stop compares the mean |W -
// W_r| of the whole tensor (one decision for all groups), starting from best = 1e4.
#include "algorithms/hqq.h"

#include <algorithm>
#include <bit>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

#include "lowbit/core/float_formats.h"
#include "lowbit/quant/primitives.h"

namespace lowbit::algorithms {
namespace {

// Round to the nearest fp16 value (ties to even), kept as a float; overflow → ±inf, NaN kept.
inline float round_f16(float v) {
  uint32_t x = std::bit_cast<uint32_t>(v);
  const uint32_t sign = x & 0x80000000u;
  x &= 0x7fffffffu;
  if (x >= 0x477ff000u) return x > 0x7f800000u ? v : std::bit_cast<float>(sign | 0x7f800000u);
  if (x < 0x38800000u) {  // below 2^-14: subnormal fp16, a multiple of 2^-24 (the ulp of 0.5f)
    const float a = (std::bit_cast<float>(x) + 0.5f) - 0.5f;
    return std::bit_cast<float>(sign | std::bit_cast<uint32_t>(a));
  }
  x += 0xfffu + ((x >> 13) & 1u);
  return std::bit_cast<float>(sign | (x & ~0x1fffu));
}

struct RoundF32 {
  float operator()(float v) const { return v; }
};
struct RoundF16 {
  float operator()(float v) const { return round_f16(v); }
};
struct RoundBF16 {
  float operator()(float v) const { return bf16_to_f32(f32_to_bf16(v)); }
};

// The double a user means by a float option (1.01f → 1.01): torchao's beta and kappa are Python
// floats.
double as_typed(float v) {
  char buf[32];
  const auto r = std::to_chars(buf, buf + sizeof(buf) - 1, v);
  *r.ptr = '\0';
  return std::strtod(buf, nullptr);
}

struct Shrink {
  float inv_beta;  // (1 / beta) as the kernels' float scalar
  float exponent;  // lp_norm - 1
  bool l1;
};

// One proximal iteration on one group: returns the new zero (group mean of W_q - (W_f - W_e) * s,
// in the dtype of R) and adds Σ|W_f - W_r| (for the stopping test) to abs_err.
template <class R>
float prox_step(const float* w, int64_t g, float s, float z, float qmax, const Shrink& sh,
                double& abs_err, R r) {
  double zsum = 0;
  for (int64_t j = 0; j < g; ++j) {
    const float wf = r(w[j]);
    const float q = std::clamp(std::nearbyint(r(r(wf * s) + z)), 0.0f, qmax);
    const float e = r(wf - r(r(q - z) / s));  // W_f - W_r
    const float a = std::fabs(e);
    const float t = sh.l1 ? sh.inv_beta : r(sh.inv_beta * r(std::pow(a, sh.exponent)));
    const float mag = std::max(r(a - t), 0.0f);  // relu; |e| = 0 gives pow = inf and 0 here
    const float we = e > 0 ? mag : (e < 0 ? -mag : 0.0f);
    zsum += r(q - r(r(wf - we) * s));
    abs_err += a;
  }
  return r(static_cast<float>(zsum / static_cast<double>(g)));
}

float round_in(DType t, float v) {
  switch (t) {
    case DType::F16:
      return round_f16(v);
    case DType::BF16:
      return RoundBF16{}(v);
    default:
      return v;
  }
}

void check_codes(const GroupCodes& c, const char* fn) {
  LB_CHECK(c.q.defined() && c.q.dim() == 2 && c.q.dtype() == DType::I32,
           "{}: codes must be int32 [N, K]", fn);
  const int64_t N = c.q.size(0), K = c.q.size(1);
  LB_CHECK(c.group_size > 0 && K % c.group_size == 0, "{}: K {} is not a multiple of group {}", fn,
           K, c.group_size);
  const Shape qs{N, K / c.group_size};
  LB_CHECK(c.scale.defined() && c.zero.defined() && c.scale.shape() == qs && c.zero.shape() == qs,
           "{}: scale and zero must be {}", fn, shape_str(qs));
}

}  // namespace

GroupCodes hqq_quantize(const Tensor& w_in, const HqqOptions& o) {
  LB_CHECK(w_in.defined() && w_in.dim() == 2, "hqq: weight must be 2-D [N, K], got {}",
           w_in.defined() ? w_in.describe() : "undefined");
  const DType ct = w_in.dtype();
  LB_CHECK(ct == DType::F32 || ct == DType::BF16 || ct == DType::F16,
           "hqq: weight dtype {} is not float32, bfloat16 or float16", dtype_name(ct));
  const int64_t N = w_in.size(0), K = w_in.size(1), G = o.group_size;
  LB_CHECK(o.bits >= 1 && o.bits <= 8, "hqq: bits {} not in [1, 8]", o.bits);
  LB_CHECK(G > 0 && K % G == 0, "hqq: in_features {} is not a multiple of the group size {}", K, G);
  LB_CHECK(o.iters >= 0 && o.lp_norm > 0 && o.beta > 0 && o.kappa > 0 && std::isfinite(o.beta) &&
               std::isfinite(o.kappa),
           "hqq: bad optimizer options (iters {}, lp_norm {}, beta {}, kappa {})", o.iters,
           o.lp_norm, o.beta, o.kappa);
  const DType od = o.opt_dtype;
  LB_CHECK(od == DType::F32 || od == DType::F16 || od == DType::BF16,
           "hqq: optimizer dtype {} is not float32, float16 or bfloat16", dtype_name(od));
  quant::check_finite(w_in, "hqq: weight");

  const Tensor wt = w_in.to(DType::F32).contiguous();
  const float* W = wt.data<float>();
  const int64_t NG = N * K / G, ng = K / G;
  const float qmax = static_cast<float>((1 << o.bits) - 1);
  const bool parallel = N * K >= (int64_t{1} << 18);  // threads only pay off on real layers

  // Initial qparams in float32: s = reciprocal(max - min) * qmax clamped at 2e4, z = -min * s.
  std::vector<float> s(NG), z(NG);
  std::vector<char> wide(NG, 0);  // groups iterated in float32 because fp16 would overflow
  for (int64_t b = 0; b < NG; ++b) {
    const float* p = W + b * G;
    const auto [mn, mx] = std::minmax_element(p, p + G);
    const float range = *mx - *mn;
    LB_CHECK(std::isfinite(range), "hqq: group {} of the weight spans {} .. {}, beyond float32", b,
             *mn, *mx);
    const float inv = (1.0f / range) * qmax;
    s[b] = inv > 2e4f ? 2e4f : inv;
    z[b] = -*mn * s[b];
    if (o.bits == 4) z[b] = std::nearbyint(z[b]);
    const float reach = std::max(std::fabs(*mn), std::fabs(*mx)) * s[b] + std::fabs(z[b]);
    wide[b] = od == DType::F16 && (reach > 16384.0f || s[b] < 0x1p-14f);
  }

  DType qdt = ct;
  if (o.optimize) {
    qdt = od;
    for (int64_t b = 0; b < NG; ++b) {
      const DType t = wide[b] ? DType::F32 : od;
      s[b] = round_in(t, s[b]);
      z[b] = round_in(t, z[b]);
    }
    const Shrink base{0, static_cast<float>(as_typed(o.lp_norm) - 1.0), o.lp_norm == 1.0f};
    double beta = as_typed(o.beta);
    const double kappa = as_typed(o.kappa);
    double best = 1e4;
    std::vector<float> z_new(NG), z_best = z;
    std::vector<double> row_err(static_cast<size_t>(N));
    for (int it = 0; it < o.iters; ++it) {
      Shrink sh = base;
      sh.inv_beta = static_cast<float>(1.0 / beta);
#pragma omp parallel for schedule(static) if (parallel)
      for (int64_t n = 0; n < N; ++n) {
        double err = 0;
        for (int64_t g = 0; g < ng; ++g) {
          const int64_t b = n * ng + g;
          const float* p = W + b * G;
          if (wide[b] || od == DType::F32)
            z_new[b] = prox_step(p, G, s[b], z[b], qmax, sh, err, RoundF32{});
          else if (od == DType::F16)
            z_new[b] = prox_step(p, G, s[b], z[b], qmax, sh, err, RoundF16{});
          else
            z_new[b] = prox_step(p, G, s[b], z[b], qmax, sh, err, RoundBF16{});
        }
        row_err[n] = err;
      }
      beta *= kappa;
      double total = 0;
      for (double e : row_err) total += e;  // fixed order: the result does not depend on threads
      const double err = round_in(od, static_cast<float>(total / static_cast<double>(N * K)));
      if (o.early_stop && !(err < best)) {
        z = o.keep_best ? z_best : z_new;
        break;
      }
      best = err;
      z_best = z;
      z.swap(z_new);
    }
  } else {
    for (int64_t b = 0; b < NG; ++b) {  // torchao casts to the compute dtype before quantizing
      s[b] = round_in(ct, s[b]);
      z[b] = round_in(ct, z[b]);
    }
  }

  // Final codes in float32 arithmetic with the rounded qparams; the scale is stored inverted.
  GroupCodes out;
  out.q = Tensor::empty({N, K}, DType::I32);
  int32_t* q = out.q.data<int32_t>();
  std::vector<float> scale(NG);
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t b = 0; b < NG; ++b) {
    for (int64_t j = 0; j < G; ++j) {
      const float v = std::nearbyint(W[b * G + j] * s[b] + z[b]);
      q[b * G + j] = static_cast<int32_t>(std::clamp(v, 0.0f, qmax));
    }
    scale[b] = round_in(wide[b] && o.optimize ? DType::F32 : qdt, 1.0f / s[b]);
  }
  out.scale = Tensor::from_floats(scale, {N, ng}, DType::F32);
  out.zero = Tensor::from_floats(z, {N, ng}, DType::F32);
  out.bits = o.bits;
  out.group_size = o.group_size;
  out.dtype = qdt;
  return out;
}

Tensor hqq_dequantize(const GroupCodes& c) {
  check_codes(c, "hqq_dequantize");
  const int64_t N = c.q.size(0), K = c.q.size(1), G = c.group_size;
  const auto s = c.scale.to_f32_vector(), z = c.zero.to_f32_vector();
  const int32_t* q = c.q.contiguous().data<int32_t>();
  Tensor out = Tensor::empty({N, K}, DType::F32);
  float* o = out.data<float>();
  for (int64_t i = 0; i < N * K; ++i) o[i] = (static_cast<float>(q[i]) - z[i / G]) * s[i / G];
  return out;
}

TinygemmCodes to_tinygemm(const GroupCodes& c) {
  check_codes(c, "to_tinygemm");
  LB_CHECK(c.bits == 4, "to_tinygemm: the tinygemm int4 layout needs 4-bit codes, got {} bits",
           c.bits);
  const Shape qs = c.scale.shape();
  const auto s = c.scale.to_f32_vector(), z = c.zero.to_f32_vector();
  std::vector<float> zt(z.size());
  // (mid - zero) * scale in float32, back to the zero's dtype; torchao then casts both to bf16.
  for (size_t b = 0; b < z.size(); ++b) zt[b] = round_in(c.dtype, (8.0f - z[b]) * s[b]);
  return {c.q, Tensor::from_floats(s, qs, DType::BF16), Tensor::from_floats(zt, qs, DType::BF16)};
}

}  // namespace lowbit::algorithms
