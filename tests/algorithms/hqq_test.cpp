// HQQ: codes and qparams in range, reconstruction error below plain min/max RTN, determinism, bad
// input, and the tinygemm conversion.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <random>

#include "algorithms/hqq.h"
#include "lowbit/core/float_formats.h"
#include "lowbit/quant/primitives.h"
#include "quant/layouts/layouts.h"

namespace lowbit::algorithms {
namespace {

using quant::ZeroPointDomain;

// Normal weights (std 0.02) plus `outliers` entries of 5-12 std at random places.
Tensor weight(int64_t N, int64_t K, uint32_t seed, DType dt = DType::BF16, int outliers = 6) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 0.02f);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  std::uniform_int_distribution<int64_t> at(0, N * K - 1);
  std::vector<float> v(static_cast<size_t>(N * K));
  for (auto& x : v) x = nd(rng);
  for (int i = 0; i < outliers; ++i)
    v[at(rng)] = (u(rng) < 0.5f ? -1.0f : 1.0f) * 0.02f * (5.0f + 7.0f * u(rng));
  return Tensor::from_floats(v, {N, K}, dt);
}

double rel_err(const std::vector<float>& w, const std::vector<float>& dq) {
  double num = 0, den = 0;
  for (size_t i = 0; i < w.size(); ++i) {
    num += (double(w[i]) - dq[i]) * (double(w[i]) - dq[i]);
    den += double(w[i]) * w[i];
  }
  return std::sqrt(num / den);
}

// Plain min/max asymmetric RTN with an integer zero point (torchao's uintx-B-G math).
std::vector<float> rtn_minmax(const Tensor& w, int bits, int64_t G) {
  const int64_t qmax = (1 << bits) - 1;
  quant::ChooseQParamsOptions o{.mapping = quant::MappingType::Asymmetric,
                                .block_size = {1, G},
                                .qmin = 0,
                                .qmax = qmax,
                                .eps = 0x1p-23,
                                .zero_point_dtype = DType::I32};
  const auto qp = quant::choose_qparams_affine(w, o);
  const Tensor q = quant::quantize_affine(w, {1, G}, qp.scale, qp.zero_point, ZeroPointDomain::Int,
                                          0, qmax, DType::I32);
  return quant::dequantize_affine(q, {1, G}, qp.scale, qp.zero_point, ZeroPointDomain::Int, 0, qmax)
      .to_f32_vector();
}

// int4wo-G RTN (tinygemm float zero point, bf16 qparams).
std::vector<float> rtn_tinygemm(const Tensor& w, int64_t G) {
  const auto qp =
      quant::choose_qparams_affine_float_zero(w, {1, G}, 0, 15, 1e-6, DType::BF16, DType::BF16);
  const Tensor q = quant::quantize_affine(w, {1, G}, qp.scale, qp.zero_point,
                                          ZeroPointDomain::Float, 0, 15, DType::I32);
  return quant::dequantize_affine(q, {1, G}, qp.scale, qp.zero_point, ZeroPointDomain::Float, 0, 15)
      .to_f32_vector();
}

// (q - 8) * scale + zero in float32, as the int4 layout's kernels dequantize.
std::vector<float> tinygemm_dequant(const TinygemmCodes& t, int64_t G) {
  const auto q = t.q.to_f32_vector(), s = t.scale.to_f32_vector(), z = t.zero.to_f32_vector();
  const int64_t K = t.q.size(1);
  std::vector<float> out(q.size());
  for (size_t i = 0; i < q.size(); ++i) {
    const size_t b = (i / K) * (K / G) + (i % K) / G;
    out[i] = (q[i] - 8.0f) * s[b] + z[b];
  }
  return out;
}

void expect_well_formed(const GroupCodes& c, int64_t N, int64_t K, int bits, int G) {
  ASSERT_EQ(c.q.shape(), (Shape{N, K}));
  ASSERT_EQ(c.q.dtype(), DType::I32);
  ASSERT_EQ(c.scale.shape(), (Shape{N, K / G}));
  ASSERT_EQ(c.zero.shape(), (Shape{N, K / G}));
  EXPECT_EQ(c.bits, bits);
  EXPECT_EQ(c.group_size, G);
  const int32_t* q = c.q.data<int32_t>();
  for (int64_t i = 0; i < N * K; ++i) ASSERT_TRUE(q[i] >= 0 && q[i] < (1 << bits)) << q[i];
  for (float s : c.scale.to_f32_vector()) ASSERT_TRUE(std::isfinite(s) && s > 0) << s;
  for (float z : c.zero.to_f32_vector()) ASSERT_TRUE(std::isfinite(z)) << z;
}

// HQQ minimizes an l0.7 norm of the error, not the Frobenius norm, so it is not guaranteed to beat
// RTN in L2. It does by 2-8% at 3 and 4 bits; at 2 bits it is ahead on average but can tie or trail
// a little: RTN's integer zero point puts 0 on its four-level grid, which pays off when an outlier
// stretches a group's range (see TwoBitsWithDenseOutliersIsOnParWithRtn).
TEST(Hqq, BeatsMinMaxRtnForEveryBitWidthAndGroup) {
  const Shape shapes[] = {{37, 384}, {19, 256}, {37, 192}};
  double sum_ratio = 0, sum_ratio2 = 0;
  int cases = 0, cases2 = 0;
  for (const auto& shape : shapes)
    for (int bits : {2, 3, 4})
      for (int G : {32, 64, 128}) {
        if (shape[1] % G != 0) continue;
        const Tensor w = weight(shape[0], shape[1], 100 + bits * 7 + G);
        const GroupCodes c = hqq_quantize(w, {.bits = bits, .group_size = G});
        expect_well_formed(c, shape[0], shape[1], bits, G);
        const auto wf = w.to_f32_vector();
        const double e_hqq = rel_err(wf, hqq_dequantize(c).to_f32_vector());
        const double e_rtn = rel_err(wf, rtn_minmax(w, bits, G));
        const double ratio = e_hqq / e_rtn;
        std::printf("[ hqq      ] %s bits %d g%-3d  rel err HQQ %.5f  RTN %.5f  (%.3f)\n",
                    shape_str(shape).c_str(), bits, G, e_hqq, e_rtn, ratio);
        if (bits >= 3) {
          EXPECT_LE(e_hqq, e_rtn) << shape_str(shape) << " bits " << bits << " g" << G;
        }
        EXPECT_LE(ratio, 1.05) << shape_str(shape) << " bits " << bits << " g" << G;
        sum_ratio += ratio;
        ++cases;
        if (bits == 2) {
          sum_ratio2 += ratio;
          ++cases2;
        }
      }
  EXPECT_LT(sum_ratio / cases, 0.97);
  EXPECT_LT(sum_ratio2 / cases2, 1.0);
}

TEST(Hqq, TwoBitsWithDenseOutliersIsOnParWithRtn) {
  double sum = 0, worst = 0;
  for (uint32_t seed = 0; seed < 4; ++seed) {  // 0.5% outliers: a third of the g128 groups hold one
    const Tensor w = weight(37, 384, 200 + seed, DType::BF16, 71);
    const auto wf = w.to_f32_vector();
    const double r =
        rel_err(wf,
                hqq_dequantize(hqq_quantize(w, {.bits = 2, .group_size = 128})).to_f32_vector()) /
        rel_err(wf, rtn_minmax(w, 2, 128));
    std::printf("[ hqq      ] dense outliers, bits 2 g128: HQQ / RTN = %.3f\n", r);
    sum += r;
    worst = std::max(worst, r);
  }
  EXPECT_LT(sum / 4, 1.02);
  EXPECT_LT(worst, 1.05);
}

TEST(Hqq, Fp32OptimizerAndKeepBestAlsoBeatRtn) {
  const Tensor w = weight(37, 384, 7, DType::F32);
  const auto wf = w.to_f32_vector();
  for (int bits : {2, 3, 4}) {
    const double e_rtn = rel_err(wf, rtn_minmax(w, bits, 64));
    const GroupCodes a = hqq_quantize(w, {.bits = bits, .opt_dtype = DType::F32});
    const GroupCodes b = hqq_quantize(w, {.bits = bits, .keep_best = true});
    const GroupCodes off = hqq_quantize(w, {.bits = bits, .optimize = false});
    expect_well_formed(a, 37, 384, bits, 64);
    EXPECT_EQ(a.dtype, DType::F32);
    EXPECT_EQ(b.dtype, DType::F16);
    EXPECT_EQ(off.dtype, DType::F32);
    const double ea = rel_err(wf, hqq_dequantize(a).to_f32_vector());
    const double eb = rel_err(wf, hqq_dequantize(b).to_f32_vector());
    const double eoff = rel_err(wf, hqq_dequantize(off).to_f32_vector());
    std::printf("[ hqq      ] bits %d g64 fp32-opt %.5f  keep-best %.5f  no-opt %.5f  RTN %.5f\n",
                bits, ea, eb, eoff, e_rtn);
    EXPECT_LE(ea, e_rtn);
    EXPECT_LE(eb, e_rtn);
    EXPECT_LT(ea, eoff);  // the optimizer improves on HQQ's own min/max start
    EXPECT_LT(eb, eoff);
  }
}

TEST(Hqq, QparamsAreExactInTheirDtype) {
  const Tensor w = weight(16, 256, 3);
  const GroupCodes c = hqq_quantize(w, {});
  EXPECT_EQ(c.dtype, DType::F16);
  for (float v : c.scale.to_f32_vector()) EXPECT_EQ(round_to(DType::F16, v), v);
  for (float v : c.zero.to_f32_vector()) EXPECT_EQ(round_to(DType::F16, v), v);
  const GroupCodes off =
      hqq_quantize(w, {.optimize = false});  // torchao casts to the weight's dtype
  EXPECT_EQ(off.dtype, DType::BF16);
  for (float v : off.zero.to_f32_vector()) EXPECT_EQ(round_to(DType::BF16, v), v);
  for (float v : off.zero.to_f32_vector()) EXPECT_EQ(std::nearbyint(v), v);  // 4-bit: rounded zero
}

TEST(Hqq, Deterministic) {
  const Tensor w = weight(37, 192, 11);
  const GroupCodes a = hqq_quantize(w, {.bits = 3, .group_size = 64});
  const GroupCodes b = hqq_quantize(w, {.bits = 3, .group_size = 64});
  EXPECT_EQ(a.q.to_f32_vector(), b.q.to_f32_vector());
  EXPECT_EQ(a.scale.to_f32_vector(), b.scale.to_f32_vector());
  EXPECT_EQ(a.zero.to_f32_vector(), b.zero.to_f32_vector());
}

TEST(Hqq, RejectsNonFiniteWeightsAndBadGroups) {
  for (float bad :
       {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
    std::vector<float> v = weight(4, 64, 5, DType::F32).to_f32_vector();
    v[77] = bad;
    EXPECT_THROW(hqq_quantize(Tensor::from_floats(v, {4, 64}, DType::F32), {}), Error);
  }
  EXPECT_THROW(hqq_quantize(weight(4, 96, 5), {.group_size = 64}), Error);
  EXPECT_THROW(hqq_quantize(weight(4, 96, 5), {.group_size = 0}), Error);
  EXPECT_THROW(hqq_quantize(weight(4, 64, 5), {.bits = 9}), Error);
  EXPECT_THROW(hqq_quantize(Tensor::from_floats({1.f, 2.f, 3.f, 4.f}, {4}, DType::F32), {}), Error);
  GroupCodes c = hqq_quantize(weight(4, 64, 5), {.bits = 3});
  EXPECT_THROW(to_tinygemm(c), Error);  // tinygemm is 4-bit only
}

TEST(Hqq, ConstantAndTinyRangeGroupsStayFinite) {
  std::vector<float> v(4 * 64, 0.0f);
  for (int i = 64; i < 128; ++i) v[i] = 5.0f;  // constant, would overflow fp16
  for (int i = 128; i < 192; ++i) v[i] = 3.0f + 1e-4f * float(i % 3);  // tiny range, large offset
  for (int i = 192; i < 256; ++i) v[i] = 0.01f * float(i % 7) - 0.03f;
  const Tensor w = Tensor::from_floats(v, {4, 64}, DType::F32);
  const GroupCodes c = hqq_quantize(w, {});
  expect_well_formed(c, 4, 64, 4, 64);
  const auto dq = hqq_dequantize(c).to_f32_vector();
  for (size_t i = 0; i < v.size(); ++i) EXPECT_NEAR(dq[i], v[i], 2e-3f) << i;
}

// to_tinygemm: (q - 8) * scale_bf16 + zero_bf16 equals (q - zero) * scale up to the bf16 rounding
// of the scale (times |q - 8| <= 8) and of the zero; and it packs into the int4 layout unchanged.
TEST(Hqq, TinygemmConversionMatchesGroupCodes) {
  const int G = 64;
  const Tensor w = weight(37, 384, 21);
  const GroupCodes c = hqq_quantize(w, {.group_size = G});
  const TinygemmCodes t = to_tinygemm(c);
  ASSERT_EQ(t.scale.dtype(), DType::BF16);
  ASSERT_EQ(t.zero.dtype(), DType::BF16);
  ASSERT_EQ(t.scale.shape(), (Shape{37, 384 / G}));
  EXPECT_EQ(t.q.to_f32_vector(), c.q.to_f32_vector());
  const auto a = tinygemm_dequant(t, G), b = hqq_dequantize(c).to_f32_vector();
  const auto s = c.scale.to_f32_vector(), z = c.zero.to_f32_vector();
  for (size_t i = 0; i < a.size(); ++i) {
    const size_t g = i / G;
    const double zt = std::fabs((8.0 - z[g]) * s[g]);
    const double tol = 0x1p-8 * (8.0 * s[g] + zt) + 1e-7;
    ASSERT_NEAR(a[i], b[i], tol) << i;
  }
  const auto packed = quant::Int4Weight::from_codes(t.q, t.scale, t.zero, G);
  std::vector<float> rows(37 * 384);
  packed->dequantize_rows(0, 37, rows.data());
  EXPECT_EQ(rows, a);
  // int4wo-64-hqq against int4wo-64 RTN, both in the layout's arithmetic.
  const auto wf = w.to_f32_vector();
  const double e_hqq = rel_err(wf, a), e_rtn = rel_err(wf, rtn_tinygemm(w, G));
  std::printf("[ hqq      ] int4wo-64 layout: rel err HQQ %.5f  RTN %.5f\n", e_hqq, e_rtn);
  EXPECT_LT(e_hqq, e_rtn);
}

// uintx-B-G with HQQ: the float zero point packs into the uintx layout, which dequantizes exactly as
// HQQ's own (q - zero) * scale, saves and loads unchanged, and beats the layout's RTN.
TEST(Hqq, UIntXLayoutWithFloatZero) {
  const int G = 64;
  const Tensor w = weight(29, 256, 23);
  const auto wf = w.to_f32_vector();
  for (int bits : {2, 3, 4}) {
    const GroupCodes c = hqq_quantize(w, {.bits = bits, .group_size = G});
    const auto packed = quant::UIntXWeight::from_codes_float_zero(c.q, c.scale.to(c.dtype), c.zero.to(c.dtype), bits, G);
    const auto hq = hqq_dequantize(c).to_f32_vector();
    const auto rows = packed->dequantize().to_f32_vector();
    for (size_t i = 0; i < rows.size(); ++i) ASSERT_NEAR(rows[i], hq[i], 1e-6f * (1 + std::fabs(hq[i]))) << i;
    const quant::SavedWeight sw = packed->save();
    const auto back = quant::load_weight(sw.layout, sw.params, [&](const std::string& n) {
      for (const auto& [name, t] : sw.tensors)
        if (name == n) return t;
      throw Error("missing " + n);
    });
    EXPECT_EQ(back->dequantize().to_f32_vector(), rows);
    EXPECT_EQ(back->scheme(), "uintx-" + std::to_string(bits) + "-64");
    const auto rtn = quant::UIntXWeight::quantize(w, bits, G)->dequantize().to_f32_vector();
    const double e_hqq = rel_err(wf, rows), e_rtn = rel_err(wf, rtn);
    std::printf("[ hqq      ] uintx-%d-64 layout: rel err HQQ %.5f  RTN %.5f\n", bits, e_hqq, e_rtn);
    EXPECT_LT(e_hqq, e_rtn);
  }
}

}  // namespace
}  // namespace lowbit::algorithms
