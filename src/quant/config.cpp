#include "lowbit/quant/config.h"

#include <charconv>

#include "lowbit/core/error.h"

namespace lowbit::quant {
namespace {

// Splits "uintx-3-64" into {"uintx", "3", "64"}.
std::vector<std::string_view> split(std::string_view s) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  for (size_t i = 0; i <= s.size(); ++i)
    if (i == s.size() || s[i] == '-') {
      parts.push_back(s.substr(start, i - start));
      start = i + 1;
    }
  return parts;
}

int to_int(std::string_view s, std::string_view whole) {
  int v = 0;
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  LB_CHECK(ec == std::errc() && p == s.data() + s.size() && v > 0, "'{}': '{}' is not a positive integer", whole, s);
  return v;
}

[[noreturn]] void unknown(std::string_view name) {
  fail("unknown quantization scheme '{}'; known: {} (G = group size, B = bits)", name,
       "bf16, fp16, fp32, int8wo, int4wo-G (G in 32/64/128/256), int8dq, float8wo, float8dq-row, "
       "float8dq-tensor, fp6 (or fpx-E-M), uintx-B-G (B in 1..7), a8wx-B-G (B in 1..8), w4a8, codebook-B-G");
}

void check_group(int g, std::string_view whole) {
  LB_CHECK(g >= 8 && (g & (g - 1)) == 0, "'{}': group size {} must be a power of two of at least 8", whole, g);
}

}  // namespace

Config parse_config(std::string_view name) {
  const auto p = split(name);
  const std::string_view head = p[0];
  if (p.size() == 1) {
    if (name == "bf16" || name == "bfloat16") return NoQuant{DType::BF16};
    if (name == "fp16" || name == "float16") return NoQuant{DType::F16};
    if (name == "fp32" || name == "float32") return NoQuant{DType::F32};
    if (name == "int8wo") return Int8WeightOnly{};
    if (name == "int4wo") return Int4WeightOnly{};
    if (name == "int8dq") return Int8DynActInt8Weight{};
    if (name == "float8wo") return Float8WeightOnly{};
    if (name == "float8dq") return Float8DynActFloat8Weight{};
    if (name == "fp6") return FpxWeightOnly{3, 2};
    if (name == "a8wx") return Int8DynActIntxWeight{};
    if (name == "w4a8") return Int8DynActInt4Weight{};
    if (name == "codebook") return CodebookWeightOnly{};
    unknown(name);
  }
  if (head == "int4wo" && p.size() == 2) {
    const int g = to_int(p[1], name);
    LB_CHECK(g == 32 || g == 64 || g == 128 || g == 256, "'{}': int4wo group size must be 32, 64, 128 or 256", name);
    return Int4WeightOnly{g};
  }
  if (head == "float8dq" && p.size() == 2) {
    if (p[1] == "row") return Float8DynActFloat8Weight{true};
    if (p[1] == "tensor") return Float8DynActFloat8Weight{false};
    fail("'{}': float8dq granularity must be row or tensor", name);
  }
  if (head == "fpx" && p.size() == 3) {
    const int e = to_int(p[1], name), m = to_int(p[2], name);
    LB_CHECK(e >= 2 && 1 + e + m <= 8, "'{}': fp-x needs 2 or more exponent bits and at most 8 bits in all", name);
    return FpxWeightOnly{e, m};
  }
  if (head == "uintx" && p.size() == 3) {
    const int b = to_int(p[1], name), g = to_int(p[2], name);
    LB_CHECK(b >= 1 && b <= 7, "'{}': uintx bits must be 1..7 (use int8wo for 8)", name);
    check_group(g, name);
    return UIntXWeightOnly{b, g};
  }
  if (head == "a8wx" && p.size() == 3) {
    const int b = to_int(p[1], name), g = to_int(p[2], name);
    LB_CHECK(b >= 1 && b <= 8, "'{}': a8wx weight bits must be 1..8", name);
    check_group(g, name);
    return Int8DynActIntxWeight{b, g};
  }
  if (head == "w4a8" && p.size() == 2) {
    const int g = to_int(p[1], name);
    check_group(g, name);
    return Int8DynActInt4Weight{g};
  }
  if (head == "codebook" && p.size() == 3) {
    const int b = to_int(p[1], name), g = to_int(p[2], name);
    LB_CHECK(b >= 1 && b <= 8, "'{}': codebook bits must be 1..8", name);
    check_group(g, name);
    return CodebookWeightOnly{b, g};
  }
  unknown(name);
}

std::string config_name(const Config& c) {
  struct V {
    std::string operator()(const NoQuant& q) const {
      return q.dtype == DType::BF16 ? "bf16" : q.dtype == DType::F16 ? "fp16" : "fp32";
    }
    std::string operator()(const Int8WeightOnly&) const { return "int8wo"; }
    std::string operator()(const Int4WeightOnly& q) const { return fmt::format("int4wo-{}", q.group_size); }
    std::string operator()(const Int8DynActInt8Weight&) const { return "int8dq"; }
    std::string operator()(const Float8WeightOnly&) const { return "float8wo"; }
    std::string operator()(const Float8DynActFloat8Weight& q) const {
      return q.per_row ? "float8dq-row" : "float8dq-tensor";
    }
    std::string operator()(const FpxWeightOnly& q) const {
      return q.ebits == 3 && q.mbits == 2 ? "fp6" : fmt::format("fpx-{}-{}", q.ebits, q.mbits);
    }
    std::string operator()(const UIntXWeightOnly& q) const { return fmt::format("uintx-{}-{}", q.bits, q.group_size); }
    std::string operator()(const Int8DynActIntxWeight& q) const {
      return fmt::format("a8wx-{}-{}", q.bits, q.group_size);
    }
    std::string operator()(const Int8DynActInt4Weight& q) const {
      return q.group_size == 128 ? "w4a8" : fmt::format("w4a8-{}", q.group_size);
    }
    std::string operator()(const CodebookWeightOnly& q) const {
      return fmt::format("codebook-{}-{}", q.bits, q.block_size);
    }
  };
  return std::visit(V{}, c);
}

std::string config_description(const Config& c) {
  struct V {
    std::string operator()(const NoQuant& q) const { return fmt::format("unquantized {}", dtype_name(q.dtype)); }
    std::string operator()(const Int8WeightOnly&) const { return "int8 weights, symmetric per channel"; }
    std::string operator()(const Int4WeightOnly& q) const {
      return fmt::format("uint4 weights, asymmetric per group of {}, float zero point", q.group_size);
    }
    std::string operator()(const Int8DynActInt8Weight&) const {
      return "int8 weights per channel, int8 activations per token";
    }
    std::string operator()(const Float8WeightOnly&) const { return "float8 e4m3 weights per channel"; }
    std::string operator()(const Float8DynActFloat8Weight& q) const {
      return q.per_row ? "float8 e4m3 weights per channel, activations per token"
                       : "float8 e4m3 weights and activations per tensor";
    }
    std::string operator()(const FpxWeightOnly& q) const {
      return fmt::format("fp{} e{}m{} weights, per-row scale", 1 + q.ebits + q.mbits, q.ebits, q.mbits);
    }
    std::string operator()(const UIntXWeightOnly& q) const {
      return fmt::format("uint{} weights, asymmetric per group of {}", q.bits, q.group_size);
    }
    std::string operator()(const Int8DynActIntxWeight& q) const {
      return fmt::format("int{} weights per group of {}, int8 activations per token", q.bits, q.group_size);
    }
    std::string operator()(const Int8DynActInt4Weight& q) const {
      return fmt::format("int4 weights per group of {} + int8 channel scale, int8 activations", q.group_size);
    }
    std::string operator()(const CodebookWeightOnly& q) const {
      return fmt::format("{}-entry k-means codebook, scale per {} weights", 1 << q.bits, q.block_size);
    }
  };
  return std::visit(V{}, c);
}

std::vector<std::string> known_config_names() {
  return {"bf16",     "int8wo",     "int4wo-32",    "int4wo-64",       "int4wo-128", "int8dq",
          "float8wo", "float8dq-row", "float8dq-tensor", "fp6",        "uintx-2-64", "uintx-3-64",
          "uintx-4-64", "a8wx-4-32", "a8wx-8-32",   "w4a8",            "codebook-4-64"};
}

}  // namespace lowbit::quant
