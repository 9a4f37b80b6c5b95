#include "lowbit/core/dtype.h"

#include "lowbit/core/error.h"

namespace lowbit {
namespace {

struct DTypeInfo {
  DType type;
  size_t size;
  std::string_view name;
  std::string_view st_name;
  bool is_float;
};

constexpr DTypeInfo kInfo[] = {
    {DType::F32, 4, "float32", "F32", true},
    {DType::F16, 2, "float16", "F16", true},
    {DType::BF16, 2, "bfloat16", "BF16", true},
    {DType::F8E4M3, 1, "float8_e4m3fn", "F8_E4M3", true},
    {DType::F8E5M2, 1, "float8_e5m2", "F8_E5M2", true},
    {DType::I8, 1, "int8", "I8", false},
    {DType::U8, 1, "uint8", "U8", false},
    {DType::I32, 4, "int32", "I32", false},
    {DType::I64, 8, "int64", "I64", false},
};

const DTypeInfo& info(DType t) {
  auto i = static_cast<size_t>(t);
  LB_CHECK(i < std::size(kInfo), "invalid dtype value {}", i);
  return kInfo[i];
}

// Rank in PyTorch's promotion lattice among floating types (higher wins); fp16 vs bf16 promotes to fp32.
int float_rank(DType t) {
  switch (t) {
    case DType::F8E4M3:
    case DType::F8E5M2: return 0;
    case DType::F16:
    case DType::BF16: return 1;
    case DType::F32: return 2;
    default: return -1;
  }
}

}  // namespace

size_t dtype_size(DType t) { return info(t).size; }
std::string_view dtype_name(DType t) { return info(t).name; }
std::string_view dtype_safetensors_name(DType t) { return info(t).st_name; }
bool dtype_is_float(DType t) { return info(t).is_float; }
bool dtype_is_integer(DType t) { return !info(t).is_float; }

DType dtype_from_safetensors_name(std::string_view s) {
  for (const auto& i : kInfo)
    if (i.st_name == s) return i.type;
  fail("unsupported safetensors dtype '{}' (lowbit reads F32, F16, BF16, F8_E4M3, F8_E5M2, I8, U8, I32, I64)",
       s);
}

DType dtype_from_name(std::string_view s) {
  for (const auto& i : kInfo)
    if (i.name == s || i.st_name == s) return i.type;
  fail("unknown dtype '{}'", s);
}

DType promote(DType a, DType b) {
  if (a == b) return a;
  const bool fa = dtype_is_float(a), fb = dtype_is_float(b);
  if (fa && !fb) return a;
  if (fb && !fa) return b;
  if (fa && fb) {
    const int ra = float_rank(a), rb = float_rank(b);
    if (ra != rb) return ra > rb ? a : b;
    return DType::F32;  // bf16 with fp16, or e4m3 with e5m2
  }
  // Both integer: the wider one; int8 with uint8 gives int16 in PyTorch, which lowbit represents as int32.
  if (dtype_size(a) != dtype_size(b)) return dtype_size(a) > dtype_size(b) ? a : b;
  return DType::I32;
}

}  // namespace lowbit
