// Dynamic activation quantization with torchao's math (the reference every fast path is checked against).
#include <cmath>

#include "layouts.h"
#include "kernels/cpu/qgemm.h"
#include "lowbit/core/float_formats.h"
#include "lowbit/quant/primitives.h"

namespace lowbit::quant {

std::vector<float> fake_quantize_activations(const float* x, int64_t M, int64_t K, ActQuant act) {
  std::vector<float> out(static_cast<size_t>(M * K));
  switch (act) {
    case ActQuant::None: std::copy(x, x + M * K, out.begin()); break;
    case ActQuant::Int8Token:
    case ActQuant::Int8TokenAsym: {
      // The same arithmetic as torchao's choose_qparams/quantize/dequantize on fp32 input (tested).
      kernels::cpu::Q8Acts q;
      kernels::cpu::quantize_q8_tokens(x, M, K, act == ActQuant::Int8TokenAsym, K, q);
#pragma omp parallel for schedule(static) if (M * K > 65536)
      for (int64_t m = 0; m < M; ++m)
        for (int64_t k = 0; k < K; ++k)
          out[m * K + k] = (static_cast<float>(q.q[m * K + k]) - static_cast<float>(q.zero[m])) * q.scale[m];
      break;
    }
    case ActQuant::Fp8Token:
    case ActQuant::Fp8Tensor: {
      // scale = amax / 448 over a token (or the whole tensor); x / scale rounded to e4m3; times scale.
      const int64_t rows = act == ActQuant::Fp8Token ? M : 1, len = act == ActQuant::Fp8Token ? K : M * K;
#pragma omp parallel for schedule(static) if (M * K > 65536)
      for (int64_t r = 0; r < rows; ++r) {
        const float* xr = x + r * len;
        float amax = 0.0f;
        for (int64_t i = 0; i < len; ++i) amax = std::max(amax, std::fabs(xr[i]));
        const float s = amax / 448.0f;
        for (int64_t i = 0; i < len; ++i) {
          const float t = xr[i] == 0.0f ? 0.0f : std::clamp(xr[i] / s, -448.0f, 448.0f);
          out[r * len + i] = round_to(DType::F8E4M3, t) * s;
        }
      }
      break;
    }
  }
  return out;
}

}  // namespace lowbit::quant
