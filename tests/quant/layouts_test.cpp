// Every layout: torchao's math on dequantize, save/load round trips, and linear() against the reference.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "lowbit/quant/primitives.h"
#include "lowbit/quant/quantize.h"

namespace lowbit::quant {
namespace {

Tensor randn(const Shape& s, uint32_t seed, float std = 0.02f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, std);
  std::vector<float> v(static_cast<size_t>(shape_numel(s)));
  for (auto& x : v) x = d(rng);
  return Tensor::from_floats(v, s, DType::BF16);
}

double nmse(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    den += double(b[i]) * b[i];
  }
  return num / den;
}

LinearPtr round_trip(const LinearWeight& w) {
  const SavedWeight s = w.save();
  return load_weight(s.layout, s.params, [&](const std::string& name) {
    for (const auto& [n, t] : s.tensors)
      if (n == name) return t.clone();
    fail("missing {}", name);
  });
}

TEST(Config, ShortNamesRoundTrip) {
  for (const auto& name : known_config_names()) EXPECT_EQ(config_name(parse_config(name)), name);
  EXPECT_EQ(config_name(parse_config("int4wo")), "int4wo-128");  // torchao's default group size
  EXPECT_EQ(config_name(parse_config("float8dq")), "float8dq-row");
  EXPECT_EQ(config_name(parse_config("fpx-2-3")), "fpx-2-3");
  EXPECT_EQ(config_name(parse_config("a8wx")), "a8wx-8-32");
  for (const char* bad : {"int4wo-48", "int3wo", "uintx-8-64", "uintx-3", "float8dq-col", "int4wo-x", "", "a8wx-9-32"}) {
    try {
      parse_config(bad);
      FAIL() << "accepted " << bad;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(bad), std::string::npos) << e.what();
    }
  }
}

// Each scheme on a weight of odd row count: dequantize() against the primitives' own result where the
// scheme is torchao's, bounded error otherwise; save/load bit-identical; linear() vs the reference.
TEST(Layouts, EverySchemeQuantizesSavesLoadsAndMultiplies) {
  const Tensor w = randn({37, 384}, 1);
  const std::vector<float> wf = w.to_f32_vector();
  std::mt19937 rng(2);
  std::normal_distribution<float> nd;
  for (const auto& name : known_config_names()) {
    SCOPED_TRACE(name);
    const LinearPtr q = quantize_weight(w, parse_config(name));
    EXPECT_EQ(q->scheme(), name);
    EXPECT_EQ(q->out_features(), 37);
    EXPECT_EQ(q->in_features(), 384);
    const std::vector<float> dq = q->dequantize().to_f32_vector();
    const double err = nmse(dq, wf);
    // Gaussian weights: ~6.8 dB SQNR at 2 bits, ~14 dB at 3 bits, 20+ dB from 4 bits up.
    const double bound = name.rfind("uintx-2", 0) == 0 ? 0.25 : name.rfind("uintx-3", 0) == 0 ? 0.05 : 0.02;
    EXPECT_LT(err, bound) << "weight NMSE";
    const LinearPtr back = round_trip(*q);
    EXPECT_EQ(back->scheme(), name);
    EXPECT_EQ(back->nbytes(), q->nbytes());
    EXPECT_EQ(back->dequantize().to_f32_vector(), dq);
    for (int64_t M : {1, 3, 5, 17}) {
      std::vector<float> x(M * 384), y(M * 37), yb(M * 37), yr(M * 37);
      for (auto& v : x) v = nd(rng);
      q->linear(x.data(), M, y.data());
      back->linear(x.data(), M, yb.data());
      EXPECT_EQ(y, yb) << "M=" << M;
      // The scheme's own math: dynamic schemes' fast paths quantize activations exactly as the reference
      // does (float summation order aside); int8wo/int4wo's integer paths add int8 activations per
      // 32-block (llama.cpp's Q8_0), about -45 dB of noise; everything else is the reference itself.
      q->linear_reference(x.data(), M, yr.data());
      const bool act_blocks = name == "int8wo" || name.rfind("int4wo", 0) == 0;
      EXPECT_LT(nmse(y, yr), act_blocks ? 2e-4 : 1e-9) << "M=" << M;
    }
  }
}

TEST(Layouts, TorchaoMathOnDequantize) {
  const Tensor w = randn({9, 128}, 3);
  // int8wo: (q - 0) * scale with torchao's symmetric per-channel qparams.
  {
    ChooseQParamsOptions o{.mapping = MappingType::Symmetric, .block_size = {1, 128}, .qmin = -128, .qmax = 127,
                           .eps = 0x1p-23, .zero_point_dtype = DType::I64};
    const auto qp = choose_qparams_affine(w, o);
    const Tensor q = quantize_affine(w, {1, 128}, qp.scale, qp.zero_point, ZeroPointDomain::Int, -128, 127, DType::I8);
    const Tensor want = dequantize_affine(q, {1, 128}, qp.scale, qp.zero_point, ZeroPointDomain::Int, -128, 127);
    EXPECT_EQ(quantize_weight(w, Int8WeightOnly{})->dequantize().to_f32_vector(), want.to_f32_vector());
  }
  // int4wo-32: the tinygemm float-zero-point primitives.
  {
    const auto qp = choose_qparams_affine_float_zero(w, {1, 32}, 0, 15, 1e-6, DType::BF16, DType::BF16);
    const Tensor q = quantize_affine(w, {1, 32}, qp.scale, qp.zero_point, ZeroPointDomain::Float, 0, 15, DType::I32);
    const Tensor want = dequantize_affine(q, {1, 32}, qp.scale, qp.zero_point, ZeroPointDomain::Float, 0, 15);
    EXPECT_EQ(quantize_weight(w, Int4WeightOnly{32})->dequantize().to_f32_vector(), want.to_f32_vector());
  }
  // float8wo: per-row e4m3.
  {
    const Tensor s = choose_scale_float8(w, {1, 128}, DType::F8E4M3);
    const Tensor want = dequantize_float8(quantize_float8(w, {1, 128}, s, DType::F8E4M3), {1, 128}, s);
    EXPECT_EQ(quantize_weight(w, Float8WeightOnly{})->dequantize().to_f32_vector(), want.to_f32_vector());
  }
  // fp6: per-row e3m2.
  {
    const Tensor s = choose_scale_fpx(w, 3, 2);
    const Tensor want = dequantize_fpx(quantize_fpx(w, s, 3, 2), s, 3, 2);
    EXPECT_EQ(quantize_weight(w, FpxWeightOnly{3, 2})->dequantize().to_f32_vector(), want.to_f32_vector());
  }
  // uintx-3-64: asymmetric integer zero point.
  {
    ChooseQParamsOptions o{.mapping = MappingType::Asymmetric, .block_size = {1, 64}, .qmin = 0, .qmax = 7,
                           .eps = 0x1p-23, .zero_point_dtype = DType::I32};
    const auto qp = choose_qparams_affine(w, o);
    const Tensor q = quantize_affine(w, {1, 64}, qp.scale, qp.zero_point, ZeroPointDomain::Int, 0, 7, DType::U8);
    const Tensor want = dequantize_affine(q, {1, 64}, qp.scale, qp.zero_point, ZeroPointDomain::Int, 0, 7);
    EXPECT_EQ(quantize_weight(w, UIntXWeightOnly{3, 64})->dequantize().to_f32_vector(), want.to_f32_vector());
  }
}

TEST(Layouts, ShapesTheSchemeCannotTakeAreClearErrors) {
  const Tensor w = randn({8, 96}, 4);
  try {
    quantize_weight(w, Int4WeightOnly{64});
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("in_features 96 is not a multiple of the group size"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(quantize_weight(w, UIntXWeightOnly{4, 64}), Error);
  EXPECT_THROW(quantize_weight(w, Int8DynActIntxWeight{4, 64}), Error);
  EXPECT_THROW(quantize_weight(Tensor::zeros({4}, DType::BF16), Int8WeightOnly{}), Error);
  std::vector<float> v(8 * 96, 0.1f);
  v[5] = NAN;
  EXPECT_THROW(quantize_weight(Tensor::from_floats(v, {8, 96}, DType::F32), Int8WeightOnly{}), Error);
  EXPECT_THROW(load_weight("int9", {}, [](const std::string&) { return Tensor(); }), Error);
}

}  // namespace
}  // namespace lowbit::quant
