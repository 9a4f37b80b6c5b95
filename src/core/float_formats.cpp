#include "lowbit/core/float_formats.h"

#include <array>
#include <cmath>
#include <limits>

#include "lowbit/core/error.h"

namespace lowbit {

float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t man = h & 0x3ffu;
  if (exp == 0) {
    // zero or subnormal: man * 2^-24, exact in float32
    float v = static_cast<float>(man) * 0x1p-24f;
    return std::bit_cast<float>(std::bit_cast<uint32_t>(v) | sign);
  }
  if (exp == 0x1f) return std::bit_cast<float>(sign | 0x7f800000u | (man << 13));
  return std::bit_cast<float>(sign | ((exp + 112u) << 23) | (man << 13));
}

uint16_t f32_to_f16(float f) {
  uint32_t x = std::bit_cast<uint32_t>(f);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  x &= 0x7fffffffu;
  if (x > 0x7f800000u) return sign | 0x7e00u;   // NaN
  if (x >= 0x477ff000u) return sign | 0x7c00u;  // >= 65520 rounds to infinity
  if (x < 0x38800000u) {
    // Below the smallest normal (2^-14): adding 0.5 leaves the value's bits at the 2^-24 quantum of
    // fp16 subnormals, rounded to nearest even by the float adder itself.
    const float a = std::bit_cast<float>(x) + 0.5f;
    return sign | static_cast<uint16_t>(std::bit_cast<uint32_t>(a) - 0x3f000000u);
  }
  const uint32_t odd = (x >> 13) & 1u;
  x += (static_cast<uint32_t>(15 - 127) << 23) + 0xfffu + odd;
  return sign | static_cast<uint16_t>(x >> 13);
}

MiniFloat fpx_format(int ebits, int mbits) {
  LB_CHECK(ebits >= 1 && mbits >= 0 && 1 + ebits + mbits <= 8,
           "fp-x format e{}m{} does not fit in 8 bits", ebits, mbits);
  const int bias = (1 << (ebits - 1)) - 1;
  const int max_exp = (1 << ebits) - 1 - bias;
  const double max_value = std::ldexp(2.0 - std::ldexp(1.0, -mbits), max_exp);
  return MiniFloat{ebits, mbits, bias, max_value, MiniFloat::Specials::None};
}

const MiniFloat kE4M3{4, 3, 7, 448.0, MiniFloat::Specials::OnlyNaN};
const MiniFloat kE5M2{5, 2, 15, 57344.0, MiniFloat::Specials::IEEE};

uint8_t minifloat_encode(float x, const MiniFloat& fmt) {
  const uint8_t sign_bit = static_cast<uint8_t>(1u << (fmt.ebits + fmt.mbits));
  const bool neg = std::signbit(x);
  if (std::isnan(x)) {
    // All-ones exponent with a nonzero mantissa is NaN in both float8 formats; fp-x has no NaN.
    if (fmt.specials == MiniFloat::Specials::None) return 0;
    return static_cast<uint8_t>(sign_bit - 1);
  }
  double a = std::fabs(static_cast<double>(x));
  const int min_exp = 1 - fmt.bias;  // exponent of the smallest normal
  uint8_t code;
  if (a >= fmt.max_value) {
    a = fmt.max_value;
  } else if (a > 0) {
    int e;
    std::frexp(a, &e);  // a = m * 2^e with m in [0.5, 1)
    const int exp = std::max(e - 1, min_exp);
    const double quantum = std::ldexp(1.0, exp - fmt.mbits);
    a = std::nearbyint(a / quantum) * quantum;  // exact scaling, round half to even
    if (a > fmt.max_value) a = fmt.max_value;
  }
  if (a == 0) {
    code = 0;
  } else {
    int e;
    std::frexp(a, &e);
    const int exp = e - 1;
    if (exp < min_exp) {
      code = static_cast<uint8_t>(std::ldexp(a, fmt.mbits - min_exp));  // subnormal: exponent field 0
    } else {
      const auto mant = static_cast<uint32_t>(std::ldexp(a, fmt.mbits - exp)) - (1u << fmt.mbits);
      code = static_cast<uint8_t>((static_cast<uint32_t>(exp + fmt.bias) << fmt.mbits) | mant);
    }
  }
  return neg ? static_cast<uint8_t>(code | sign_bit) : code;
}

float minifloat_decode(uint8_t code, const MiniFloat& fmt) {
  const int nbits = 1 + fmt.ebits + fmt.mbits;
  code &= static_cast<uint8_t>((1u << nbits) - 1);
  const bool neg = (code >> (nbits - 1)) & 1u;
  const uint32_t mag = code & ((1u << (nbits - 1)) - 1);
  const uint32_t exp_field = mag >> fmt.mbits;
  const uint32_t mant = mag & ((1u << fmt.mbits) - 1);
  double v;
  const uint32_t exp_max = (1u << fmt.ebits) - 1;
  const uint32_t mant_max = (1u << fmt.mbits) - 1;
  if (fmt.specials == MiniFloat::Specials::OnlyNaN && exp_field == exp_max && mant == mant_max) {
    v = std::numeric_limits<double>::quiet_NaN();
  } else if (fmt.specials == MiniFloat::Specials::IEEE && exp_field == exp_max) {
    v = mant ? std::numeric_limits<double>::quiet_NaN() : std::numeric_limits<double>::infinity();
  } else if (exp_field == 0) {
    v = std::ldexp(static_cast<double>(mant), 1 - fmt.bias - fmt.mbits);
  } else {
    v = std::ldexp(static_cast<double>(mant + (1u << fmt.mbits)),
                   static_cast<int>(exp_field) - fmt.bias - fmt.mbits);
  }
  return static_cast<float>(neg ? -v : v);
}

namespace {
std::array<float, 256> make_table(const MiniFloat& fmt) {
  std::array<float, 256> t{};
  for (int i = 0; i < 256; ++i) t[i] = minifloat_decode(static_cast<uint8_t>(i), fmt);
  return t;
}
}  // namespace

float e4m3_to_f32(uint8_t b) {
  static const auto table = make_table(kE4M3);
  return table[b];
}
float e5m2_to_f32(uint8_t b) {
  static const auto table = make_table(kE5M2);
  return table[b];
}
uint8_t f32_to_e4m3(float f) {
  // The generic encoder's result, by bit manipulation (hot in float8 activation quantization).
  uint32_t x = std::bit_cast<uint32_t>(f);
  const auto sign = static_cast<uint8_t>((x >> 24) & 0x80u);
  x &= 0x7fffffffu;
  if (x > 0x7f800000u) return 0x7f;                  // NaN
  if (x >= 0x43e00000u) return sign | 0x7e;          // >= 448 (and infinity) saturates
  if (x < 0x3c800000u) {                             // below 2^-6: subnormal quantum 2^-9
    const auto r = static_cast<uint8_t>(std::nearbyint(std::bit_cast<float>(x) * 512.0f));
    return sign | r;                                 // r == 8 is the smallest normal, code 0x08
  }
  x += 0x7ffffu + ((x >> 20) & 1u);                  // round the mantissa to 3 bits, half to even
  const uint32_t e = (x >> 23) - 127 + 7, m = (x >> 20) & 7u;
  return sign | static_cast<uint8_t>((e << 3) | m);
}
uint8_t f32_to_e5m2(float f) { return minifloat_encode(f, kE5M2); }

float round_to(DType t, float v) {
  switch (t) {
    case DType::F32: return v;
    case DType::BF16: return bf16_to_f32(f32_to_bf16(v));
    case DType::F16: return f16_to_f32(f32_to_f16(v));
    case DType::F8E4M3: return e4m3_to_f32(f32_to_e4m3(v));
    case DType::F8E5M2: return e5m2_to_f32(f32_to_e5m2(v));
    default: fail("round_to: {} is not a floating dtype", dtype_name(t));
  }
}

double dtype_max(DType t) {
  switch (t) {
    case DType::F32: return std::numeric_limits<float>::max();
    case DType::BF16: return 0x1.fep127;
    case DType::F16: return 65504.0;
    case DType::F8E4M3: return 448.0;
    case DType::F8E5M2: return 57344.0;
    default: fail("dtype_max: {} is not a floating dtype", dtype_name(t));
  }
}

double dtype_eps(DType t) {
  switch (t) {
    case DType::F32: return 0x1p-23;
    case DType::BF16: return 0x1p-7;
    case DType::F16: return 0x1p-10;
    case DType::F8E4M3: return 0x1p-3;
    case DType::F8E5M2: return 0x1p-2;
    default: fail("dtype_eps: {} is not a floating dtype", dtype_name(t));
  }
}

double dtype_tiny(DType t) {
  switch (t) {
    case DType::F32: return 0x1p-126;
    case DType::BF16: return 0x1p-126;
    case DType::F16: return 0x1p-14;
    case DType::F8E4M3: return 0x1p-6;
    case DType::F8E5M2: return 0x1p-14;
    default: fail("dtype_tiny: {} is not a floating dtype", dtype_name(t));
  }
}

}  // namespace lowbit
