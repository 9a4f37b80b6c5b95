// Conversions between float32 and the narrow float formats, all round-to-nearest-even.
//
// bf16/fp16 follow IEEE (overflow to infinity, NaN kept). The float8 formats saturate: a finite value
// (or an infinity) beyond the largest normal becomes ±max, as lowbit's quantizers require; NaN stays NaN.
// The fp-x formats of torchao (fp6 e3m2/e2m3, fp4 e2m1, ...) have no infinities or NaN and saturate too.
#pragma once

#include <bit>
#include <cstdint>

#include "lowbit/core/dtype.h"

namespace lowbit {

inline float bf16_to_f32(uint16_t b) { return std::bit_cast<float>(static_cast<uint32_t>(b) << 16); }

inline uint16_t f32_to_bf16(float f) {
  uint32_t x = std::bit_cast<uint32_t>(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 0x40u);  // quiet NaN
  x += 0x7fffu + ((x >> 16) & 1u);
  return static_cast<uint16_t>(x >> 16);
}

float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);

// A small float format: sign bit, ebits exponent bits, mbits mantissa bits.
struct MiniFloat {
  int ebits;
  int mbits;
  int bias;
  double max_value;  // largest finite magnitude; values beyond saturate to it
  enum class Specials : uint8_t {
    None,    // every code is finite (torchao's fp-x)
    OnlyNaN, // S.1111.111 is NaN, no infinities (float8_e4m3fn)
    IEEE,    // all-ones exponent holds infinities and NaN (float8_e5m2)
  } specials;
};

// torchao's fp-x layout (MX-style: every code finite), e.g. fpx_format(3, 2) for fp6 e3m2.
MiniFloat fpx_format(int ebits, int mbits);
extern const MiniFloat kE4M3;  // float8_e4m3fn
extern const MiniFloat kE5M2;  // float8_e5m2 (saturating encode; decodes infinities of foreign data)

// Encoded bits in the low 1+ebits+mbits bits of the result (sign highest).
uint8_t minifloat_encode(float x, const MiniFloat& fmt);
float minifloat_decode(uint8_t code, const MiniFloat& fmt);

float e4m3_to_f32(uint8_t b);
uint8_t f32_to_e4m3(float f);
float e5m2_to_f32(uint8_t b);
uint8_t f32_to_e5m2(float f);

// Round a float32 value to `t` and back (identity for F32): the rounding PyTorch applies to the result
// of every elementwise op on a bf16/fp16 tensor.
float round_to(DType t, float v);

// Largest finite value of a float dtype, its machine epsilon (torch.finfo(t).eps) and its smallest
// normal value (torch.finfo(t).tiny).
double dtype_max(DType t);
double dtype_eps(DType t);
double dtype_tiny(DType t);

}  // namespace lowbit
