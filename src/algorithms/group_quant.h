// The round-to-nearest math of the group-wise layouts that GPTQ and AWQ's clipping produce codes for,
// per group of weights, exactly as the layouts' own quantize computes it (lowbit::quant primitives on
// float32 weights), plus a search over shrunk ranges (clipping).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "algorithms/gptq.h"
#include "lowbit/core/error.h"
#include "lowbit/core/float_formats.h"

namespace lowbit::algorithms {

// One group's qparams and the values quantize/dequantize need, exactly as the layouts' RTN computes
// them (lowbit::quant primitives on a float32 weight):
//   Int4FloatZero: scale, zero bf16; aux = min_val = bf16(zero - bf16(scale * 8))
//   UIntIntZero:   scale float32, zero an integer; aux = 1 / scale
//   Int8PerRow:    scale float32, zero 0; aux = 1 / scale
struct QParam {
  float scale, zero, aux;
};

struct GroupScheme {
  GptqScheme kind;
  float qmin, qmax;

  QParam choose(const float* x, int64_t n) const {
    const auto [pmn, pmx] = std::minmax_element(x, x + n);
    return choose_range(*pmn, *pmx);
  }

  // choose() of a range shrunk toward zero, the shrink picked by the group's reconstruction error.
  QParam choose_clipped(const float* x, int64_t n, int grid, float max_shrink) const {
    const auto [pmn, pmx] = std::minmax_element(x, x + n);
    QParam best = choose_range(*pmn, *pmx);
    if (grid <= 0 || kind == GptqScheme::Int8PerRow) return best;
    auto error = [&](const QParam& p) {
      double e = 0;
      for (int64_t i = 0; i < n; ++i) e += std::pow(std::fabs(x[i] - dequantize(quantize(x[i], p), p)), 2.4);
      return e;
    };
    double best_err = error(best);
    for (int i = 1; i <= static_cast<int>(max_shrink * static_cast<float>(grid)); ++i) {
      const float s = 1.0f - static_cast<float>(i) / static_cast<float>(grid);
      const QParam p = choose_range(*pmn * s, *pmx * s);
      const double e = error(p);
      if (e < best_err) {
        best_err = e;
        best = p;
      }
    }
    return best;
  }

  QParam choose_range(float mn, float mx) const {
    switch (kind) {
      case GptqScheme::Int4FloatZero: {  // choose_qparams_affine_float_zero, eps 1e-6, bf16 out
        float s = (mx - mn) / 15.0f;
        if (s < 1e-6f) s = 1e-6f;
        const float z = mn + s * 8.0f;
        const float sb = round_to(DType::BF16, s), zb = round_to(DType::BF16, z);
        return {sb, zb, round_to(DType::BF16, zb - round_to(DType::BF16, sb * 8.0f))};
      }
      case GptqScheme::UIntIntZero: {  // choose_qparams_affine ASYMMETRIC, eps 2^-23
        const float lo = std::min(mn, 0.0f), hi = std::max(mx, 0.0f);
        float s = (hi - lo) / (qmax - qmin);
        if (s < 0x1p-23f) s = 0x1p-23f;
        const float z = std::clamp(qmin - std::nearbyint(lo / s), qmin, qmax);
        return {s, z, 1.0f / s};
      }
      case GptqScheme::Int8PerRow: {  // choose_qparams_affine SYMMETRIC [-128, 127], eps 2^-23
        const float amax = std::max(-std::min(mn, 0.0f), std::max(mx, 0.0f));
        float s = amax / 127.5f;
        if (s < 0x1p-23f) s = 0x1p-23f;
        return {s, 0.0f, 1.0f / s};
      }
    }
    return {};
  }

  float quantize(float x, const QParam& p) const {  // quantize_affine (Float / Int domain)
    const float q = kind == GptqScheme::Int4FloatZero ? std::nearbyint((x - p.aux) / p.scale)
                                                      : std::nearbyint(x * p.aux) + p.zero;
    return std::clamp(q, qmin, qmax);
  }

  float dequantize(float q, const QParam& p) const {  // as the layouts' dequantize_rows
    switch (kind) {
      case GptqScheme::Int4FloatZero:
        return (q - 8.0f) * p.scale + p.zero;
      case GptqScheme::UIntIntZero:
        return (q - p.zero) * p.scale;
      default:
        return q * p.scale;
    }
  }
};

inline GroupScheme make_group_scheme(const GptqOptions& o) {
  switch (o.scheme) {
    case GptqScheme::Int4FloatZero:
      return {o.scheme, 0.0f, 15.0f};
    case GptqScheme::UIntIntZero:
      return {o.scheme, 0.0f, static_cast<float>((1 << o.bits) - 1)};
    case GptqScheme::Int8PerRow:
      return {o.scheme, -128.0f, 127.0f};
  }
  fail("gptq: unknown scheme");
}

}  // namespace lowbit::algorithms
