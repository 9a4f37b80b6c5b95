// Element types of tensors and the C++ types that hold them.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace lowbit {

enum class DType : uint8_t {
  F32,
  F16,
  BF16,
  F8E4M3,  // float8_e4m3fn: no infinities, max 448
  F8E5M2,  // float8_e5m2: IEEE-like, max 57344
  I8,
  U8,
  I32,
  I64,
};

// Storage types for the 16- and 8-bit floats: raw bits, converted with the functions in float_formats.h.
struct f16 {
  uint16_t bits;
};
struct bf16 {
  uint16_t bits;
};
struct f8e4m3 {
  uint8_t bits;
};
struct f8e5m2 {
  uint8_t bits;
};

size_t dtype_size(DType t);
std::string_view dtype_name(DType t);               // "float32", "bfloat16", "float8_e4m3fn", ...
std::string_view dtype_safetensors_name(DType t);   // "F32", "BF16", "F8_E4M3", ...
DType dtype_from_safetensors_name(std::string_view s);  // throws on an unknown name
DType dtype_from_name(std::string_view s);  // accepts torch names ("bfloat16") and safetensors names
bool dtype_is_float(DType t);
bool dtype_is_integer(DType t);

// PyTorch's type promotion for two tensor operands (both floating, or one floating one integer).
DType promote(DType a, DType b);

template <typename T>
constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::F32; }
template <> constexpr DType dtype_of<f16>() { return DType::F16; }
template <> constexpr DType dtype_of<bf16>() { return DType::BF16; }
template <> constexpr DType dtype_of<f8e4m3>() { return DType::F8E4M3; }
template <> constexpr DType dtype_of<f8e5m2>() { return DType::F8E5M2; }
template <> constexpr DType dtype_of<int8_t>() { return DType::I8; }
template <> constexpr DType dtype_of<uint8_t>() { return DType::U8; }
template <> constexpr DType dtype_of<int32_t>() { return DType::I32; }
template <> constexpr DType dtype_of<int64_t>() { return DType::I64; }

}  // namespace lowbit
