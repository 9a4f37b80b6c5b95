// Dynamic activation quantization with torchao's math (the reference every fast path is checked against).
#include <cmath>

#include "layouts.h"
#include "lowbit/quant/primitives.h"

namespace lowbit::quant {

std::vector<float> fake_quantize_activations(const float* x, int64_t M, int64_t K, ActQuant act) {
  const Tensor xt = Tensor::from_storage(Storage::borrow(const_cast<float*>(x), M * K * 4, nullptr), {M, K},
                                         DType::F32);
  Tensor dq;
  switch (act) {
    case ActQuant::None: return std::vector<float>(x, x + M * K);
    case ActQuant::Int8Token: {
      // torchao _int8_symm_per_token_reduced_range_quant: [-127, 127], eps 1e-5.
      ChooseQParamsOptions o{.mapping = MappingType::Symmetric, .block_size = {1, K}, .qmin = -127, .qmax = 127,
                             .eps = 1e-5};
      const auto qp = choose_qparams_affine(xt, o);
      const Tensor q = quantize_affine(xt, {1, K}, qp.scale, qp.zero_point, ZeroPointDomain::Int, -127, 127, DType::I8);
      dq = dequantize_affine(q, {1, K}, qp.scale, qp.zero_point, ZeroPointDomain::Int, -127, 127);
      break;
    }
    case ActQuant::Int8TokenAsym: {
      ChooseQParamsOptions o{.mapping = MappingType::Asymmetric, .block_size = {1, K}, .qmin = -128, .qmax = 127,
                             .eps = 0x1p-23};
      const auto qp = choose_qparams_affine(xt, o);
      const Tensor q = quantize_affine(xt, {1, K}, qp.scale, qp.zero_point, ZeroPointDomain::Int, -128, 127, DType::I8);
      dq = dequantize_affine(q, {1, K}, qp.scale, qp.zero_point, ZeroPointDomain::Int, -128, 127);
      break;
    }
    case ActQuant::Fp8Token:
    case ActQuant::Fp8Tensor: {
      const std::vector<int64_t> block = act == ActQuant::Fp8Token ? std::vector<int64_t>{1, K} : std::vector<int64_t>{M, K};
      const Tensor s = choose_scale_float8(xt, block, DType::F8E4M3);
      dq = dequantize_float8(quantize_float8(xt, block, s, DType::F8E4M3), block, s);
      break;
    }
  }
  return dq.to_f32_vector();
}

}  // namespace lowbit::quant
