// Quantization configs: value types with torchao's names and defaults, parsed from and printed to the
// short names users type ("int8wo", "int4wo-64", "float8dq-row", "uintx-3-64", ...).
#pragma once

#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "lowbit/core/dtype.h"

namespace lowbit::quant {

// Keep the weight unquantized, cast to a float dtype ("bf16", "fp16", "fp32").
struct NoQuant {
  DType dtype = DType::BF16;
};
// Int8WeightOnlyConfig: int8 symmetric per output channel; activations stay float.
struct Int8WeightOnly {};
// Int4WeightOnlyConfig(group_size): uint4 asymmetric per group along K with a float zero point (tinygemm).
struct Int4WeightOnly {
  int group_size = 128;
};
// Int8DynamicActivationInt8WeightConfig: int8 per-channel weights, int8 per-token activations ([-127, 127]).
struct Int8DynActInt8Weight {};
// Float8WeightOnlyConfig: float8 e4m3 per output channel.
struct Float8WeightOnly {};
// Float8DynamicActivationFloat8WeightConfig: e4m3 weights and activations, per tensor or per row/token.
struct Float8DynActFloat8Weight {
  bool per_row = true;
};
// FPXWeightOnlyConfig(ebits, mbits): fp-x codes with a per-row scale; fp6 = e3m2.
struct FpxWeightOnly {
  int ebits = 3;
  int mbits = 2;
};
// UIntXWeightOnlyConfig(bits, group_size): uintB asymmetric per group with an integer zero point.
struct UIntXWeightOnly {
  int bits = 4;
  int group_size = 64;
};
// Int8DynamicActivationIntxWeightConfig: intB symmetric per group weights, int8 asymmetric per-token
// activations (torchao's CPU kernels).
struct Int8DynActIntxWeight {
  int bits = 8;
  int group_size = 32;
};
// Int8DynamicActivationInt4WeightConfig with the QQQ layout: int4 per group (128) with a per-channel int8
// second-level scale; int8 per-token activations.
struct Int8DynActInt4Weight {
  int group_size = 128;
};
// CodebookWeightOnlyConfig: 2^bits-entry k-means codebook per tensor, codes per weight, one scale per
// block of `block_size` weights along K.
struct CodebookWeightOnly {
  int bits = 4;
  int block_size = 64;
};

using Config = std::variant<NoQuant, Int8WeightOnly, Int4WeightOnly, Int8DynActInt8Weight, Float8WeightOnly,
                            Float8DynActFloat8Weight, FpxWeightOnly, UIntXWeightOnly, Int8DynActIntxWeight,
                            Int8DynActInt4Weight, CodebookWeightOnly>;

// Parses a short name; errors list what is accepted.
Config parse_config(std::string_view name);
std::string config_name(const Config& c);
// One line describing the scheme, for --help and tables.
std::string config_description(const Config& c);
// The short names of every scheme with its default parameters (for --help and benchmarks).
std::vector<std::string> known_config_names();

}  // namespace lowbit::quant
