// Properties of the primitives on random data of odd shapes (the golden test covers bit-exactness).
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "lowbit/core/float_formats.h"
#include "lowbit/quant/primitives.h"

namespace lowbit::quant {
namespace {

Tensor randn(const Shape& s, DType t, uint32_t seed, float std = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, std);
  std::vector<float> v(static_cast<size_t>(shape_numel(s)));
  for (auto& x : v) x = d(rng);
  return Tensor::from_floats(v, s, t);
}

struct Case {
  MappingType mapping;
  int64_t qmin, qmax;
};

TEST(Primitives, AffineRoundTripIsWithinHalfAStepAndInRange) {
  const Case cases[] = {{MappingType::Symmetric, -128, 127},
                        {MappingType::Symmetric, -8, 7},
                        {MappingType::SymmetricNoClippingErr, -8, 7},
                        {MappingType::Asymmetric, 0, 15},
                        {MappingType::Asymmetric, 0, 3},
                        {MappingType::Asymmetric, -128, 127}};
  const std::vector<std::pair<Shape, std::vector<int64_t>>> shapes = {
      {{7, 96}, {1, 32}}, {{13, 200}, {1, 200}}, {{3, 5, 64}, {1, 1, 64}}, {{6, 40}, {3, 8}}, {{11, 33}, {11, 33}}};
  uint32_t seed = 1;
  for (DType dt : {DType::F32, DType::BF16, DType::F16}) {
    for (const auto& c : cases) {
      for (const auto& [shape, block] : shapes) {
        const Tensor x = randn(shape, dt, seed++);
        ChooseQParamsOptions o{c.mapping, block, c.qmin, c.qmax, {}, DType::F32, DType::I32};
        const auto qp = choose_qparams_affine(x, o);
        const Tensor q = quantize_affine(x, block, qp.scale, qp.zero_point, ZeroPointDomain::Int, c.qmin, c.qmax,
                                         DType::I32);
        const Tensor dq = dequantize_affine(q, block, qp.scale, qp.zero_point, ZeroPointDomain::Int, c.qmin,
                                            c.qmax);
        const BlockGrid g(shape, block);
        const auto xs = x.to_f32_vector(), qs = q.to_f32_vector(), ds = dq.to_f32_vector();
        const auto ss = qp.scale.to_f32_vector();
        int64_t checked = 0;
        g.for_each([&](int64_t i, int64_t b) {
          ASSERT_GE(qs[i], c.qmin);
          ASSERT_LE(qs[i], c.qmax);
          // Values inside the representable range reconstruct within half a step (plus rounding slack of
          // the reduced-precision scale arithmetic); clipped values (symmetric at the edge) may not.
          const double err = std::fabs(static_cast<double>(ds[i]) - xs[i]);
          if (qs[i] > c.qmin && qs[i] < c.qmax) {
            ASSERT_LE(err, 0.5 * ss[b] * 1.02 + 1e-6) << "dtype " << dtype_name(dt) << " index " << i;
            ++checked;
          }
        });
        EXPECT_GT(checked, x.numel() / 2);
      }
    }
  }
}

TEST(Primitives, FloatZeroPointRoundTrip) {
  for (DType dt : {DType::F32, DType::BF16}) {
    const Tensor x = randn({9, 128}, dt, 42, 0.02f);
    const auto qp = choose_qparams_affine_float_zero(x, {1, 64}, 0, 15, 1e-6, DType::BF16, DType::BF16);
    const Tensor q = quantize_affine(x, {1, 64}, qp.scale, qp.zero_point, ZeroPointDomain::Float, 0, 15, DType::I32);
    const Tensor dq = dequantize_affine(q, {1, 64}, qp.scale, qp.zero_point, ZeroPointDomain::Float, 0, 15);
    const auto xs = x.to_f32_vector(), ds = dq.to_f32_vector(), ss = qp.scale.to_f32_vector();
    const auto qs = q.to_f32_vector(), zs = qp.zero_point.to_f32_vector();
    for (int64_t i = 0; i < x.numel(); ++i) {
      ASSERT_GE(qs[i], 0);
      ASSERT_LE(qs[i], 15);
      // Half a step, plus the bf16 rounding of the zero point and of zero - 8*scale (2^-9 relative each),
      // plus, for bf16 input, torchao's bf16 rounding of (x - min) and of the quotient (≤ 16 steps × 2^-9 each).
      const double slack = 0x1p-8 * (std::fabs(zs[i / 64]) + 8 * ss[i / 64]) +
                           (dt == DType::BF16 ? 2 * 16 * 0x1p-9 * ss[i / 64] : 0.0);
      ASSERT_LE(std::fabs(ds[i] - xs[i]), 0.5 * ss[i / 64] + slack)
          << i << " x " << xs[i] << " dq " << ds[i] << " q " << qs[i] << " s " << ss[i / 64] << " z " << zs[i / 64];
    }
  }
}

TEST(Primitives, ZeroAndConstantBlocks) {
  // Block 0 all zeros, block 1 constant positive, block 2 constant negative.
  std::vector<float> v(96, 0.0f);
  for (int i = 32; i < 64; ++i) v[i] = 0.75f;
  for (int i = 64; i < 96; ++i) v[i] = -3.0f;
  const Tensor x = Tensor::from_floats(v, {1, 96}, DType::F32);
  for (auto m : {MappingType::Symmetric, MappingType::Asymmetric, MappingType::SymmetricNoClippingErr}) {
    ChooseQParamsOptions o{m, {1, 32}, -8, 7, {}, {}, DType::I32};
    const auto qp = choose_qparams_affine(x, o);
    for (float s : qp.scale.to_f32_vector()) EXPECT_GT(s, 0.0f);
    const Tensor q = quantize_affine(x, {1, 32}, qp.scale, qp.zero_point, ZeroPointDomain::Int, -8, 7, DType::I8);
    const auto dq = dequantize_affine(q, {1, 32}, qp.scale, qp.zero_point, ZeroPointDomain::Int, -8, 7).to_f32_vector();
    for (int i = 0; i < 32; ++i) EXPECT_EQ(dq[i], 0.0f) << mapping_name(m);  // zero preserved exactly
    EXPECT_NEAR(dq[40], 0.75f, 0.75f / 7);
    EXPECT_NEAR(dq[80], -3.0f, 3.0f / 7);
  }
  // float8: a zero block has scale 0 and quantizes to exact zeros (no NaN).
  const Tensor s8 = choose_scale_float8(x, {1, 32}, DType::F8E4M3);
  EXPECT_EQ(s8.get_f32(0), 0.0f);
  const Tensor q8 = quantize_float8(x, {1, 32}, s8, DType::F8E4M3);
  const auto d8 = dequantize_float8(q8, {1, 32}, s8).to_f32_vector();
  for (int i = 0; i < 32; ++i) EXPECT_EQ(d8[i], 0.0f);
  EXPECT_EQ(d8[40], 0.75f);  // the block max maps to 448 exactly and back
  EXPECT_EQ(d8[80], -3.0f);
}

TEST(Primitives, Float8RelativeErrorIsBounded) {
  const Tensor x = randn({17, 130}, DType::BF16, 5);
  for (DType f8 : {DType::F8E4M3, DType::F8E5M2}) {
    const double rel = f8 == DType::F8E4M3 ? 0x1p-4 : 0x1p-3;  // half an ulp of the mantissa
    const Tensor s = choose_scale_float8(x, {1, 130}, f8);
    const auto d = dequantize_float8(quantize_float8(x, {1, 130}, s, f8), {1, 130}, s).to_f32_vector();
    const auto xs = x.to_f32_vector();
    const auto ss = s.to_f32_vector();
    for (int64_t i = 0; i < x.numel(); ++i) {
      const double smallest_normal = (f8 == DType::F8E4M3 ? 0x1p-6 : 0x1p-14) * ss[i / 130];
      ASSERT_LE(std::fabs(d[i] - xs[i]), std::max(rel * std::fabs(xs[i]), smallest_normal) * 1.01) << i;
    }
  }
}

TEST(Primitives, FpxRowScaleMapsTheRowMaxToMaxNormal) {
  const Tensor w = randn({5, 77}, DType::BF16, 11);
  const Tensor s = choose_scale_fpx(w, 3, 2);
  EXPECT_EQ(s.dtype(), DType::BF16);
  const Tensor q = quantize_fpx(w, s, 3, 2);
  const auto d = dequantize_fpx(q, s, 3, 2).to_f32_vector();
  const auto xs = w.to_f32_vector();
  for (int64_t i = 0; i < w.numel(); ++i) ASSERT_LE(std::fabs(d[i] - xs[i]), 0.13 * std::fabs(xs[i]) + 0.02) << i;
  for (int64_t i = 0; i < q.numel(); ++i) ASSERT_LT(q.data<uint8_t>()[i], 64);
}

TEST(Primitives, NonFiniteInputIsAClearError) {
  for (float bad : {NAN, INFINITY, -INFINITY}) {
    std::vector<float> v(64, 0.5f);
    v[37] = bad;
    const Tensor x = Tensor::from_floats(v, {2, 32}, DType::F32);
    ChooseQParamsOptions o{.mapping = MappingType::Symmetric, .block_size = {1, 32}, .qmin = -128, .qmax = 127};
    try {
      choose_qparams_affine(x, o);
      FAIL() << "no error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("flat index 37"), std::string::npos) << e.what();
    }
    EXPECT_THROW(choose_scale_float8(x, {1, 32}, DType::F8E4M3), Error);
    EXPECT_THROW(choose_qparams_affine_float_zero(x, {1, 32}, 0, 15), Error);
    EXPECT_THROW(fpx_encode(x, 3, 2), Error);
    const Tensor scale = Tensor::from_floats({1, 1}, {2}, DType::F32);
    EXPECT_THROW(quantize_affine(x, {1, 32}, scale, Tensor(), ZeroPointDomain::None, -128, 127, DType::I8), Error);
  }
}

TEST(Primitives, BlockSizesThatDoNotDivideAreClearErrors) {
  const Tensor x = randn({4, 100}, DType::F32, 3);
  ChooseQParamsOptions o{.mapping = MappingType::Asymmetric, .block_size = {1, 32}, .qmin = 0, .qmax = 15};
  try {
    choose_qparams_affine(x, o);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("does not divide"), std::string::npos) << e.what();
  }
  o.block_size = {1};
  EXPECT_THROW(choose_qparams_affine(x, o), Error);  // wrong rank
  o.block_size = {1, 0};
  EXPECT_THROW(choose_qparams_affine(x, o), Error);
  EXPECT_THROW(choose_scale_float8(x, {3, 100}, DType::F8E4M3), Error);
  // Scale with the wrong number of blocks.
  const Tensor scale = Tensor::from_floats({1, 1, 1}, {3}, DType::F32);
  EXPECT_THROW(quantize_affine(x, {1, 100}, scale, Tensor(), ZeroPointDomain::None, -8, 7, DType::I8), Error);
  EXPECT_THROW(choose_scale_float8(x, {1, 100}, DType::BF16), Error);  // not a float8 dtype
}

TEST(Primitives, QParamShapesFollowTorchao) {
  const Tensor x = randn({6, 64}, DType::F32, 8);
  ChooseQParamsOptions o{.mapping = MappingType::Symmetric, .block_size = {1, 64}, .qmin = -128, .qmax = 127};
  EXPECT_EQ(choose_qparams_affine(x, o).scale.shape(), Shape{6});  // whole-reduced dimension dropped
  o.block_size = {1, 16};
  EXPECT_EQ(choose_qparams_affine(x, o).scale.shape(), (Shape{6, 4}));
  o.block_size = {6, 64};
  EXPECT_EQ(choose_qparams_affine(x, o).scale.shape(), Shape{});
  EXPECT_EQ(choose_scale_float8(x, {6, 64}, DType::F8E4M3).shape(), (Shape{1, 1}));
}

}  // namespace
}  // namespace lowbit::quant
