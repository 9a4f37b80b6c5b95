// The shared sotu-llama-23m checkpoint and its transformers oracle.
#pragma once

#include <vector>

#include "lowbit/core/safetensors.h"
#include "paths.h"

namespace lowbit::test {

inline std::filesystem::path sotu_dir() { return shared_dir() / "models" / "sotu-llama-23m"; }
inline std::filesystem::path validation_text() { return shared_dir() / "data" / "sotu" / "validation.txt"; }
inline std::filesystem::path calibration_text() { return shared_dir() / "data" / "sotu" / "calibration.txt"; }

inline SafetensorsFile sotu_oracle() { return SafetensorsFile::open(sotu_dir() / "oracle.safetensors"); }

inline std::vector<int32_t> ids_of(const Tensor& t) {
  std::vector<int32_t> v;
  const Tensor l = t.to(DType::I64);
  for (int64_t i = 0; i < l.numel(); ++i) v.push_back(static_cast<int32_t>(l.data<int64_t>()[i]));
  return v;
}

}  // namespace lowbit::test
