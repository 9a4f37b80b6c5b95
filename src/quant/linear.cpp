#include "lowbit/quant/linear.h"

#include <cstdlib>
#include <map>

#include "kernels/cpu/gemm.h"
#include "layouts/registry.h"

namespace lowbit::quant {

Tensor LinearWeight::dequantize() const {
  Tensor out = Tensor::empty({out_features(), in_features()}, DType::F32);
  dequantize_rows(0, out_features(), out.data<float>());
  return out;
}

void LinearWeight::linear(const float* x, int64_t M, float* y) const { linear_reference(x, M, y); }

void LinearWeight::linear_reference(const float* x, int64_t M, float* y) const {
  const int64_t N = out_features(), K = in_features();
  constexpr int64_t kRows = 16;  // rows dequantized at a time, per thread
  const int64_t blocks = (N + kRows - 1) / kRows;
#pragma omp parallel
  {
    float* scratch = static_cast<float*>(std::aligned_alloc(64, ((kRows * K * 4 + 63) / 64) * 64));
#pragma omp for schedule(static)
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t n0 = b * kRows, n1 = std::min(N, n0 + kRows);
      dequantize_rows(n0, n1, scratch);
      kernels::cpu::gemm({x, K, scratch, kernels::cpu::WType::F32, K, y + n0, N, M, n1 - n0, K});
    }
    std::free(scratch);
  }
}

LinearPtr load_weight(const std::string& layout, const nlohmann::json& params,
                      const std::function<Tensor(const std::string&)>& get) {
  const auto& loaders = layout_loaders();
  auto it = loaders.find(layout);
  LB_CHECK(it != loaders.end(), "unknown weight layout '{}'", layout);
  try {
    return it->second(params, get);
  } catch (const nlohmann::json::exception& e) {
    fail("layout '{}': bad parameters {}: {}", layout, params.dump(), e.what());
  }
}

}  // namespace lowbit::quant
