#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "lowbit/core/error.h"
#include "lowbit/core/float_formats.h"

namespace lowbit {
namespace {

// Independent reference: round |x| to a binary format with `mbits` stored mantissa bits and smallest
// normal exponent `min_exp`, by exact scaling in double and nearbyint (round half to even).
double ref_round(double x, int mbits, int min_exp) {
  if (x == 0) return x;
  int e;
  std::frexp(std::fabs(x), &e);
  const int exp = std::max(e - 1, min_exp);
  const double q = std::ldexp(1.0, exp - mbits);
  return std::copysign(std::nearbyint(std::fabs(x) / q) * q, x);
}

std::vector<float> sample_floats(size_t n) {
  std::mt19937 rng(1234);
  std::vector<float> v;
  for (size_t i = 0; i < n; ++i) {
    uint32_t b = rng();
    v.push_back(std::bit_cast<float>(b));
  }
  // Ties and boundaries that random sampling rarely hits.
  for (float f : {0.0f, -0.0f, 1.0f, 1.00390625f, 1.01171875f, 65504.0f, 65519.0f, 65520.0f, 5.96e-8f, 2.98e-8f,
                  6.1035156e-05f, 3.0517578e-05f, 3.4e38f, -3.4e38f, 1e-40f, 448.0f, 464.0f, 480.0f})
    v.push_back(f);
  return v;
}

TEST(FloatFormats, Bf16MatchesReferenceRounding) {
  for (float f : sample_floats(2'000'000)) {
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(f))));
      continue;
    }
    const double want = ref_round(f, 7, -126);
    const float got = bf16_to_f32(f32_to_bf16(f));
    if (std::fabs(want) > 0x1.fe8p127 || std::isinf(f)) {
      EXPECT_TRUE(std::isinf(got)) << f;
    } else {
      ASSERT_EQ(static_cast<double>(got), want) << "f=" << f;
    }
  }
}

TEST(FloatFormats, F16MatchesReferenceRounding) {
  for (float f : sample_floats(2'000'000)) {
    const float got = f16_to_f32(f32_to_f16(f));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(got));
      continue;
    }
    const double want = ref_round(f, 10, -14);
    if (std::fabs(want) > 65504.0 || std::isinf(f)) {
      EXPECT_TRUE(std::isinf(got)) << f;
      EXPECT_EQ(std::signbit(got), std::signbit(f));
    } else {
      ASSERT_EQ(static_cast<double>(got), want) << "f=" << f;
    }
  }
}

TEST(FloatFormats, F16DecodesEveryCodeAndReencodesIt) {
  for (uint32_t c = 0; c < 65536; ++c) {
    const float f = f16_to_f32(static_cast<uint16_t>(c));
    if (std::isnan(f)) continue;
    EXPECT_EQ(f32_to_f16(f), c);
  }
  EXPECT_EQ(f16_to_f32(0x3c00), 1.0f);
  EXPECT_EQ(f16_to_f32(0x0001), 0x1p-24f);
  EXPECT_EQ(f16_to_f32(0x7bff), 65504.0f);
}

void check_float8(const MiniFloat& fmt, float (*dec)(uint8_t), uint8_t (*enc)(float), double maxv) {
  int finite = 0;
  for (int c = 0; c < 256; ++c) {
    const float f = dec(static_cast<uint8_t>(c));
    if (std::isnan(f) || std::isinf(f)) continue;
    ++finite;
    EXPECT_EQ(enc(f) & 0x7f, c & 0x7f) << "code " << c;  // -0 and +0 both decode to zero
  }
  EXPECT_GT(finite, 240);
  for (float f : sample_floats(500'000)) {
    const float got = dec(enc(f));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(got));
      continue;
    }
    double want = ref_round(std::clamp<double>(f, -maxv, maxv), fmt.mbits, 1 - fmt.bias);
    want = std::clamp(want, -maxv, maxv);  // saturating
    ASSERT_EQ(static_cast<double>(got), want) << "f=" << f;
  }
}

TEST(FloatFormats, E4M3RoundsToNearestEvenAndSaturates) {
  check_float8(kE4M3, e4m3_to_f32, f32_to_e4m3, 448.0);
  EXPECT_EQ(e4m3_to_f32(0x7e), 448.0f);
  EXPECT_TRUE(std::isnan(e4m3_to_f32(0x7f)));
  EXPECT_EQ(e4m3_to_f32(0x01), 0x1p-9f);
  EXPECT_EQ(f32_to_e4m3(1000.0f), 0x7e);
  EXPECT_EQ(f32_to_e4m3(-INFINITY), 0xfe);
}

TEST(FloatFormats, E5M2RoundsToNearestEvenAndSaturates) {
  check_float8(kE5M2, e5m2_to_f32, f32_to_e5m2, 57344.0);
  EXPECT_EQ(e5m2_to_f32(0x7b), 57344.0f);
  EXPECT_TRUE(std::isinf(e5m2_to_f32(0x7c)));
  EXPECT_EQ(f32_to_e5m2(1e6f), 0x7b);
}

TEST(FloatFormats, FpxFormatsHaveTheDocumentedRanges) {
  const MiniFloat e3m2 = fpx_format(3, 2), e2m3 = fpx_format(2, 3), e2m1 = fpx_format(2, 1);
  EXPECT_EQ(e3m2.max_value, 28.0);
  EXPECT_EQ(e2m3.max_value, 7.5);
  EXPECT_EQ(e2m1.max_value, 6.0);
  // Every fp6 code is finite and re-encodes to itself (the sign of zero aside).
  for (int c = 0; c < 64; ++c) {
    const float f = minifloat_decode(static_cast<uint8_t>(c), e3m2);
    EXPECT_TRUE(std::isfinite(f));
    EXPECT_EQ(minifloat_encode(f, e3m2) & 0x1f, c & 0x1f);
  }
  EXPECT_EQ(minifloat_encode(100.0f, e3m2), 0x1f);   // saturates to +28
  EXPECT_EQ(minifloat_encode(-100.0f, e3m2), 0x3f);  // -28
  EXPECT_EQ(minifloat_decode(0x01, e3m2), 0.0625f);  // smallest subnormal 2^-4
  EXPECT_EQ(minifloat_decode(minifloat_encode(0.09375f, e3m2), e3m2), 0.125f);  // tie 1.5 quanta -> even (2)
  EXPECT_THROW(fpx_format(5, 3), Error);
}

TEST(FloatFormats, RoundToAppliesTheDtypesRounding) {
  EXPECT_EQ(round_to(DType::F32, 1.0000001f), 1.0000001f);
  EXPECT_EQ(round_to(DType::BF16, 1.00390625f), 1.0f);     // tie -> even
  EXPECT_EQ(round_to(DType::BF16, 1.01171875f), 1.015625f);  // tie -> even (up)
  EXPECT_EQ(round_to(DType::F16, 1.0f + 0x1p-11f), 1.0f);
  EXPECT_EQ(dtype_eps(DType::BF16), 0x1p-7);
  EXPECT_EQ(dtype_tiny(DType::F16), 0x1p-14);
  EXPECT_THROW(round_to(DType::I8, 1.0f), Error);
}

}  // namespace
}  // namespace lowbit
