// GPTQ: output error below RTN of the same scheme on correlated activations, act-order with static
// groups, exact RTN on a diagonal Hessian, packing into the layouts, dead inputs, determinism,
// errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <random>

#include "algorithms/gptq.h"
#include "lowbit/core/float_formats.h"
#include "lowbit/quant/primitives.h"
#include "quant/layouts/layouts.h"

namespace lowbit::algorithms {
namespace {

using quant::ZeroPointDomain;

// bf16-valued float32 weights, std 0.02.
Tensor weight(int64_t N, int64_t K, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 0.02f);
  std::vector<float> v(static_cast<size_t>(N * K));
  for (auto& x : v) x = round_to(DType::BF16, nd(rng));
  return Tensor::from_floats(v, {N, K}, DType::F32);
}

// X = Z·A (Z standard normal [M, K], A = I + R/√K with R standard normal) so H is far from
// diagonal; four channels 10x louder; with `varying`, every channel also scaled by exp(N(0, 1.2)).
std::vector<float> activations(int64_t M, int64_t K, uint32_t seed, bool varying = false) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> a(static_cast<size_t>(K * K)), z(static_cast<size_t>(M * K)), scale(K, 1.0f);
  for (int64_t i = 0; i < K * K; ++i) a[i] = nd(rng) / std::sqrt(float(K)) + (i % (K + 1) == 0);
  for (auto& v : z) v = nd(rng);
  for (int64_t k : {int64_t{1}, K / 3, K / 2, K - 2}) scale[k] = 10.0f;
  if (varying)
    for (auto& s : scale) s *= std::exp(1.2f * nd(rng));
  std::vector<float> x(static_cast<size_t>(M * K), 0.0f);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t i = 0; i < K; ++i) {
      const float zi = z[m * K + i];
      for (int64_t j = 0; j < K; ++j) x[m * K + j] += zi * a[i * K + j];
    }
  for (int64_t m = 0; m < M; ++m)
    for (int64_t j = 0; j < K; ++j) x[m * K + j] *= scale[j];
  return x;
}

HessianAccumulator hessian(const std::vector<float>& x, int64_t K) {
  HessianAccumulator h(K);
  const int64_t M = static_cast<int64_t>(x.size()) / K, half = M / 2;
  h.add(x.data(), half);  // two batches: exercises the running average
  h.add(x.data() + half * K, M - half);
  return h;
}

// tr((W - Q) H (W - Q)ᵀ) / tr(W H Wᵀ), directly in double.
double output_error(const std::vector<float>& w, const std::vector<float>& q,
                    const HessianAccumulator& H) {
  const int64_t K = H.dim(), N = static_cast<int64_t>(w.size()) / K;
  const auto& h = H.h();
  double num = 0, den = 0;
  for (int64_t n = 0; n < N; ++n)
    for (int64_t i = 0; i < K; ++i) {
      const double ei = double(w[n * K + i]) - q[n * K + i], wi = w[n * K + i];
      for (int64_t j = 0; j < K; ++j) {
        const double hij = h[i * K + j];
        num += ei * hij * (double(w[n * K + j]) - q[n * K + j]);
        den += wi * hij * w[n * K + j];
      }
    }
  return num / den;
}

// The layout's RTN for the scheme, in GptqResult form (codes and qparams straight from the
// primitives).
GptqResult rtn(const Tensor& w, const GptqOptions& o) {
  const int64_t N = w.size(0), K = w.size(1), G = o.group_size;
  GptqResult r;
  switch (o.scheme) {
    case GptqScheme::Int4FloatZero: {
      const auto qp =
          quant::choose_qparams_affine_float_zero(w, {1, G}, 0, 15, 1e-6, DType::BF16, DType::BF16);
      r.q = quant::quantize_affine(w, {1, G}, qp.scale, qp.zero_point, ZeroPointDomain::Float, 0,
                                   15, DType::I32);
      r.scale = qp.scale.reshape({N, K / G});
      r.zero = qp.zero_point.reshape({N, K / G});
      break;
    }
    case GptqScheme::UIntIntZero: {
      const int64_t qmax = (1 << o.bits) - 1;
      quant::ChooseQParamsOptions c{.mapping = quant::MappingType::Asymmetric,
                                    .block_size = {1, G},
                                    .qmin = 0,
                                    .qmax = qmax,
                                    .eps = 0x1p-23,
                                    .zero_point_dtype = DType::I32};
      const auto qp = quant::choose_qparams_affine(w, c);
      r.q = quant::quantize_affine(w, {1, G}, qp.scale, qp.zero_point, ZeroPointDomain::Int, 0,
                                   qmax, DType::I32);
      r.scale = qp.scale.reshape({N, K / G});
      r.zero = qp.zero_point.reshape({N, K / G});
      break;
    }
    case GptqScheme::Int8PerRow: {
      quant::ChooseQParamsOptions c{.mapping = quant::MappingType::Symmetric,
                                    .block_size = {1, K},
                                    .qmin = -128,
                                    .qmax = 127,
                                    .eps = 0x1p-23,
                                    .zero_point_dtype = DType::I64};
      const auto qp = quant::choose_qparams_affine(w, c);
      r.q = quant::quantize_affine(w, {1, K}, qp.scale, qp.zero_point, ZeroPointDomain::Int, -128,
                                   127, DType::I32);
      r.scale = qp.scale.reshape({N});
      break;
    }
  }
  return r;
}

void expect_same(const Tensor& a, const Tensor& b, const char* what) {
  ASSERT_EQ(a.defined(), b.defined()) << what;
  if (!a.defined()) return;
  EXPECT_EQ(a.shape(), b.shape()) << what;
  EXPECT_EQ(a.dtype(), b.dtype()) << what;
  EXPECT_EQ(a.to_f32_vector(), b.to_f32_vector()) << what;
}

struct Compared {
  double gptq, rtn;
};

// Runs GPTQ and RTN on the same weight and Hessian; checks codes, qparams and the reported error.
Compared compare(const Tensor& w, const HessianAccumulator& H, const GptqOptions& o,
                 GptqResult* out = nullptr) {
  const GptqResult g = gptq_quantize(w, H, o);
  const int64_t N = w.size(0), K = w.size(1);
  const bool per_row = o.scheme == GptqScheme::Int8PerRow;
  const int64_t ng = per_row ? 1 : K / o.group_size;
  const int qmin = per_row ? -128 : 0;
  const int qmax = per_row ? 127 : (o.scheme == GptqScheme::Int4FloatZero ? 15 : (1 << o.bits) - 1);
  EXPECT_EQ(g.q.shape(), (Shape{N, K}));
  EXPECT_EQ(g.q.dtype(), DType::I32);
  for (float q : g.q.to_f32_vector()) EXPECT_TRUE(q >= qmin && q <= qmax) << q;
  switch (o.scheme) {
    case GptqScheme::Int4FloatZero:
      EXPECT_EQ(g.scale.dtype(), DType::BF16);
      EXPECT_EQ(g.zero.dtype(), DType::BF16);
      EXPECT_EQ(g.zero.shape(), (Shape{N, ng}));
      break;
    case GptqScheme::UIntIntZero:
      EXPECT_EQ(g.scale.dtype(), DType::F32);
      EXPECT_EQ(g.zero.dtype(), DType::I32);
      EXPECT_EQ(g.zero.shape(), (Shape{N, ng}));
      for (float z : g.zero.to_f32_vector()) EXPECT_TRUE(z >= 0 && z <= qmax) << z;
      break;
    case GptqScheme::Int8PerRow:
      EXPECT_EQ(g.scale.dtype(), DType::F32);
      EXPECT_FALSE(g.zero.defined());
      break;
  }
  EXPECT_EQ(g.scale.numel(), N * ng);
  const auto wf = w.to_f32_vector();
  const double direct = output_error(wf, gptq_dequantize(g, o).to_f32_vector(), H);
  EXPECT_NEAR(g.rel_output_error, direct, 1e-9 + 1e-6 * direct);
  const double r = output_error(wf, gptq_dequantize(rtn(w, o), o).to_f32_vector(), H);
  if (out) *out = g;
  return {g.rel_output_error, r};
}

TEST(Gptq, Int4FloatZeroBeatsRtnClearly) {
  struct Case {
    int64_t K;
    int G;
  };
  for (const Case c : {Case{256, 32}, Case{384, 64}, Case{256, 64}, Case{384, 128}}) {
    const Tensor w = weight(48, c.K, 10 + c.G);
    const HessianAccumulator H = hessian(activations(2 * c.K, c.K, 20 + c.G), c.K);
    const GptqOptions o{.scheme = GptqScheme::Int4FloatZero, .group_size = c.G};
    GptqResult g;
    const Compared e = compare(w, H, o, &g);
    std::printf("[ gptq     ] int4wo-%-3d K %lld  output error GPTQ %.5f  RTN %.5f  (%.3f)\n", c.G,
                static_cast<long long>(c.K), e.gptq, e.rtn, e.gptq / e.rtn);
    EXPECT_LT(e.gptq, 0.8 * e.rtn);
    // The codes pack into the int4 layout, whose kernels' dequantization is (q - 8) * scale + zero.
    const auto packed = quant::Int4Weight::from_codes(g.q, g.scale, g.zero, c.G);
    std::vector<float> rows(static_cast<size_t>(48 * c.K));
    packed->dequantize_rows(0, 48, rows.data());
    const auto q = g.q.to_f32_vector(), s = g.scale.to_f32_vector(), z = g.zero.to_f32_vector();
    for (size_t i = 0; i < rows.size(); ++i) {
      const size_t b = i / c.G;  // groups are contiguous along K, rows of K/G groups
      ASSERT_EQ(rows[i], (q[i] - 8.0f) * s[b] + z[b]) << i;
    }
  }
}

// Heavy-tailed weights: searching each group's range (clip_grid) lowers GPTQ's output error further.
TEST(Gptq, ClippedGroupRangesHelpOnHeavyTails) {
  const int64_t N = 40, K = 256;
  std::mt19937 rng(77);
  std::student_t_distribution<float> t(3.0f);
  std::vector<float> wv(static_cast<size_t>(N * K));
  for (auto& v : wv) v = 0.02f * t(rng);
  const Tensor w = Tensor::from_vector(wv, {N, K}).to(DType::BF16);
  const HessianAccumulator H = hessian(activations(2 * K, K, 78), K);
  for (const int bits : {2, 3}) {
    GptqOptions o{.scheme = GptqScheme::UIntIntZero, .bits = bits, .group_size = 64};
    const double plain = gptq_quantize(w, H, o).rel_output_error;
    o.clip_grid = 100;
    const GptqResult c = gptq_quantize(w, H, o);
    std::printf("[ gptq     ] uintx-%d-64 heavy tails: output error full range %.5f  clipped %.5f\n", bits, plain,
                c.rel_output_error);
    EXPECT_LT(c.rel_output_error, plain);
    EXPECT_NEAR(c.rel_output_error, output_error(w.to_f32_vector(), gptq_dequantize(c, o).to_f32_vector(), H),
                1e-6 * c.rel_output_error);
  }}

TEST(Gptq, UIntIntZeroTwoAndThreeBitsBeatRtnClearly) {
  const int64_t K = 384;
  const Tensor w = weight(48, K, 31);
  const HessianAccumulator H = hessian(activations(2 * K, K, 32), K);
  for (int bits : {2, 3}) {
    const GptqOptions o{.scheme = GptqScheme::UIntIntZero, .bits = bits, .group_size = 64};
    const Compared e = compare(w, H, o);
    std::printf("[ gptq     ] uintx-%d-64 K %lld  output error GPTQ %.5f  RTN %.5f  (%.3f)\n", bits,
                static_cast<long long>(K), e.gptq, e.rtn, e.gptq / e.rtn);
    EXPECT_LT(e.gptq, 0.8 * e.rtn);
  }
}

TEST(Gptq, Int8PerRowBeatsRtnAndPacks) {
  const int64_t K = 256, N = 48;
  const Tensor w = weight(N, K, 41);
  const HessianAccumulator H = hessian(activations(2 * K, K, 42), K);
  const GptqOptions o{.scheme = GptqScheme::Int8PerRow};
  GptqResult g;
  const Compared e = compare(w, H, o, &g);
  std::printf("[ gptq     ] int8wo K %lld  output error GPTQ %.3g  RTN %.3g  (%.3f)\n",
              static_cast<long long>(K), e.gptq, e.rtn, e.gptq / e.rtn);
  EXPECT_LT(e.gptq, e.rtn);
  const quant::Int8Weight packed(g.q.to(DType::I8), g.scale, quant::ActQuant::None);
  std::vector<float> rows(static_cast<size_t>(N * K));
  packed.dequantize_rows(0, N, rows.data());
  EXPECT_EQ(rows, gptq_dequantize(g, o).to_f32_vector());
}

// Strongly varying diag(H): act-order (static groups) must stay below RTN; both printed.
TEST(Gptq, ActOrderWithStaticGroups) {
  const int64_t K = 384, N = 48;
  const Tensor w = weight(N, K, 51);
  const HessianAccumulator H = hessian(activations(2 * K, K, 52, /*varying=*/true), K);
  for (const GptqOptions base : {GptqOptions{.scheme = GptqScheme::Int4FloatZero, .group_size = 64},
                                 GptqOptions{.scheme = GptqScheme::UIntIntZero, .bits = 3}}) {
    GptqOptions act = base;
    act.act_order = true;
    GptqResult g;
    const Compared a = compare(w, H, act, &g), plain = compare(w, H, base);
    std::printf("[ gptq     ] %s act-order %.5f  in order %.5f  RTN %.5f\n",
                base.scheme == GptqScheme::Int4FloatZero ? "int4wo-64" : "uintx-3-64", a.gptq,
                plain.gptq, a.rtn);
    EXPECT_LE(a.gptq, a.rtn);
    EXPECT_LT(plain.gptq, plain.rtn);
    // Static groups: every group's qparams are RTN's, from the original weights.
    const GptqResult r = rtn(w, act);
    expect_same(g.scale, r.scale, "scale");
    expect_same(g.zero, r.zero, "zero");
  }
}

// With a diagonal H there is no error to feed forward: GPTQ must be the layout's RTN bit for bit.
TEST(Gptq, DiagonalHessianReproducesRtnExactly) {
  const int64_t K = 256, N = 37;
  const Tensor w = weight(N, K, 61);
  std::vector<float> x(static_cast<size_t>(K * K), 0.0f);
  for (int64_t k = 0; k < K; ++k) x[k * K + k] = 0.5f + float(k % 7);
  HessianAccumulator H(K);
  H.add(x.data(), K);
  for (const GptqOptions o :
       {GptqOptions{.scheme = GptqScheme::Int4FloatZero, .group_size = 32},
        GptqOptions{.scheme = GptqScheme::Int4FloatZero, .act_order = true},
        GptqOptions{.scheme = GptqScheme::UIntIntZero, .bits = 3},
        GptqOptions{.scheme = GptqScheme::UIntIntZero, .bits = 2, .group_size = 128},
        GptqOptions{.scheme = GptqScheme::Int8PerRow}}) {
    const GptqResult g = gptq_quantize(w, H, o), r = rtn(w, o);
    expect_same(g.q, r.q, "codes");
    expect_same(g.scale, r.scale, "scale");
    expect_same(g.zero, r.zero, "zero");
  }
}

TEST(Gptq, DeadInputsAreZeroedAndHandled) {
  const int64_t K = 256, N = 40;
  const Tensor w = weight(N, K, 71);
  std::vector<float> x = activations(2 * K, K, 72);
  for (int64_t m = 0; m < 2 * K; ++m)
    for (int64_t k : {3, 100, 101, 255}) x[m * K + k] = 0.0f;
  const HessianAccumulator H = hessian(x, K);
  for (bool act : {false, true}) {
    const GptqOptions o{.scheme = GptqScheme::Int4FloatZero, .act_order = act};
    GptqResult g;
    const Compared e = compare(w, H, o, &g);
    EXPECT_TRUE(std::isfinite(e.gptq));
    EXPECT_LT(e.gptq, e.rtn);
    // A dead column is quantized as a zero weight (the nearest code to 0 in its group).
    const auto dq = gptq_dequantize(g, o).to_f32_vector();
    const auto s = g.scale.to_f32_vector();
    for (int64_t n = 0; n < N; ++n)
      for (int64_t k : {3, 100, 101, 255})
        EXPECT_LE(std::fabs(dq[n * K + k]), 0.51f * s[n * (K / 64) + k / 64] + 1e-3f);
  }
}

TEST(Gptq, Deterministic) {
  const int64_t K = 256;
  const Tensor w = weight(45, K, 81);
  const HessianAccumulator H = hessian(activations(K, K, 82, true), K);
  for (bool act : {false, true}) {
    const GptqOptions o{.scheme = GptqScheme::Int4FloatZero, .act_order = act};
    const GptqResult a = gptq_quantize(w, H, o), b = gptq_quantize(w, H, o);
    expect_same(a.q, b.q, "codes");
    expect_same(a.scale, b.scale, "scale");
    expect_same(a.zero, b.zero, "zero");
    EXPECT_EQ(a.rel_output_error, b.rel_output_error);
  }
}

TEST(Gptq, RejectsBadInput) {
  const int64_t K = 128;
  const std::vector<float> x = activations(K, K, 91);
  const HessianAccumulator H = hessian(x, K);
  const GptqOptions o{};
  EXPECT_THROW(gptq_quantize(weight(8, 192, 1), H, o), Error);  // K differs from the Hessian's
  EXPECT_THROW(gptq_quantize(weight(8, K, 1), H, {.group_size = 48}), Error);
  EXPECT_THROW(gptq_quantize(weight(8, K, 1), H, {.scheme = GptqScheme::UIntIntZero, .bits = 9}),
               Error);
  EXPECT_THROW(gptq_quantize(weight(8, K, 1), H, {.block_size = 0}), Error);
  EXPECT_THROW(gptq_quantize(weight(8, K, 1), HessianAccumulator(K), o), Error);  // no samples
  EXPECT_THROW(
      gptq_quantize(Tensor::from_floats(std::vector<float>(K, 1.f), {K}, DType::F32), H, o), Error);
  std::vector<float> bad = weight(8, K, 1).to_f32_vector();
  bad[9] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THROW(gptq_quantize(Tensor::from_floats(bad, {8, K}, DType::F32), H, o), Error);
  HessianAccumulator h2(K);
  std::vector<float> xb(x.begin(), x.begin() + 2 * K);
  xb[K + 5] = std::numeric_limits<float>::infinity();
  EXPECT_THROW(h2.add(xb.data(), 2), Error);
  EXPECT_THROW(HessianAccumulator(0), Error);
}

TEST(Gptq, HessianIsTheRunningAverageOfTwoXXt) {
  const int64_t K = 100, M = 150;
  const std::vector<float> x = activations(M, K, 101);
  HessianAccumulator H(K);
  H.add(x.data(), 40);
  H.add(x.data() + 40 * K, 0);
  H.add(x.data() + 40 * K, M - 40);
  EXPECT_EQ(H.samples(), M);
  for (int64_t i = 0; i < K; ++i)
    for (int64_t j = 0; j < K; ++j) {
      double ref = 0;
      for (int64_t m = 0; m < M; ++m) ref += double(x[m * K + i]) * x[m * K + j];
      ref *= 2.0 / M;
      ASSERT_NEAR(H.h()[i * K + j], ref, 1e-5 * (std::fabs(ref) + 1.0)) << i << "," << j;
      ASSERT_EQ(H.h()[i * K + j], H.h()[j * K + i]);
    }
}

TEST(Gptq, UpperCholeskyOfInverse) {
  for (int64_t K : {1, 7, 150}) {
    std::mt19937 rng(K);
    std::normal_distribution<double> nd;
    std::vector<double> b(static_cast<size_t>(K * K)), a(static_cast<size_t>(K * K), 0.0), u;
    for (auto& v : b) v = nd(rng);
    for (int64_t i = 0; i < K; ++i)
      for (int64_t j = 0; j < K; ++j) {
        for (int64_t k = 0; k < K; ++k) a[i * K + j] += b[k * K + i] * b[k * K + j] / double(K);
        if (i == j) a[i * K + j] += 0.1;
      }
    ASSERT_TRUE(detail::upper_cholesky_of_inverse(a, K, u));
    for (int64_t i = 0; i < K; ++i)
      for (int64_t j = 0; j < i; ++j) ASSERT_EQ(u[i * K + j], 0.0);
    // (Uᵀ U) A = I
    std::vector<double> inv(static_cast<size_t>(K * K), 0.0);
    for (int64_t i = 0; i < K; ++i)
      for (int64_t j = 0; j < K; ++j)
        for (int64_t k = 0; k <= std::min(i, j); ++k) inv[i * K + j] += u[k * K + i] * u[k * K + j];
    for (int64_t i = 0; i < K; ++i)
      for (int64_t j = 0; j < K; ++j) {
        double s = 0;
        for (int64_t k = 0; k < K; ++k) s += inv[i * K + k] * a[k * K + j];
        ASSERT_NEAR(s, i == j ? 1.0 : 0.0, 1e-9) << K << ": " << i << "," << j;
      }
    if (K > 1) {
      a[0] = -1.0;  // no longer positive definite
      EXPECT_FALSE(detail::upper_cholesky_of_inverse(a, K, u));
    }
  }
}

}  // namespace
}  // namespace lowbit::algorithms
