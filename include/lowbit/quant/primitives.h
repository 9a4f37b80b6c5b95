// Affine quantization primitives, bit-compatible with torchao's quant_primitives (SPEC.md §2).
//
// Every function takes a `block_size` with one entry per dimension of the input: a dimension whose
// block equals its size is reduced whole, 1 means not reduced, anything else must divide the size.
// Per-row = {1, K}, per-group = {1, G}, per-token = {1, ..., 1, K}, per-tensor = the shape itself.
// Arithmetic follows PyTorch's: ops on bf16/fp16 operands compute in fp32 and round the result to
// bf16/fp16 after every op; mixed dtypes promote; rounding is half-to-even.
// Inputs holding NaN or infinity are rejected with lowbit::Error.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "lowbit/core/tensor.h"

namespace lowbit::quant {

enum class MappingType { Symmetric, SymmetricNoClippingErr, Asymmetric };
enum class ZeroPointDomain { None, Int, Float };

MappingType mapping_from_name(std::string_view s);  // "SYMMETRIC", "SYMMETRIC_NO_CLIPPING_ERR", "ASYMMETRIC"
std::string_view mapping_name(MappingType m);

// The integer range of a quantized dtype: int8 [-128, 127], uint8 [0, 255], int32 [-2^31, 2^31-1].
struct QRange {
  int64_t qmin;
  int64_t qmax;
};
QRange qrange_of(DType target);
QRange int_range(int bits, bool is_signed);  // intN / uintN

// How a tensor of `shape` splits into blocks of `block_size` (validated; errors name both).
class BlockGrid {
 public:
  BlockGrid(const Shape& shape, const std::vector<int64_t>& block_size);
  const Shape& grid() const { return grid_; }  // blocks along each dimension
  int64_t num_blocks() const { return num_blocks_; }
  // torchao's qparams shape: grid dimensions that were reduced whole are dropped (keepdim=False).
  Shape reduced_shape() const;
  // Calls fn(element_index, block_index) for every element of a contiguous tensor, in memory order.
  template <typename F>
  void for_each(F&& fn) const;

 private:
  Shape shape_, block_, grid_, grid_strides_;
  int64_t num_blocks_ = 1;
};

struct AffineQParams {
  Tensor scale;
  Tensor zero_point;  // undefined when the mapping has none
};

struct ChooseQParamsOptions {
  MappingType mapping = MappingType::Asymmetric;
  std::vector<int64_t> block_size;
  int64_t qmin = -128;
  int64_t qmax = 127;
  std::optional<double> eps;          // default: finfo(input dtype).tiny, as torchao 0.19 does
  std::optional<DType> scale_dtype;   // default: the input dtype
  DType zero_point_dtype = DType::I32;
};

// torchao choose_qparams_affine: min/max and the scale computed in the input's dtype.
AffineQParams choose_qparams_affine(const Tensor& x, const ChooseQParamsOptions& o);

// torchao's tinygemm variant (float zero-point domain): scale = (max - min) / (qmax - qmin),
// zero = min + scale * mid, mid = (qmax + qmin + 1) / 2. Zero point dtype defaults to the input dtype.
AffineQParams choose_qparams_affine_float_zero(const Tensor& x, const std::vector<int64_t>& block_size,
                                               int64_t qmin, int64_t qmax, std::optional<double> eps = {},
                                               std::optional<DType> scale_dtype = {},
                                               std::optional<DType> zero_point_dtype = {});

// scale/zero_point: numel equal to the number of blocks, in block (row-major grid) order.
// Int: q = clamp(round(x * (1/scale)) + zp); None: without zp; Float: q = clamp(round((x - (zp - scale*mid)) / scale)).
Tensor quantize_affine(const Tensor& x, const std::vector<int64_t>& block_size, const Tensor& scale,
                       const Tensor& zero_point, ZeroPointDomain domain, int64_t qmin, int64_t qmax,
                       DType out_dtype);
// Int: (q - zp) * scale; None: q * scale; Float: (q - mid) * scale + zp; computed in out_dtype.
Tensor dequantize_affine(const Tensor& q, const std::vector<int64_t>& block_size, const Tensor& scale,
                         const Tensor& zero_point, ZeroPointDomain domain, int64_t qmin, int64_t qmax,
                         DType out_dtype = DType::F32);

// float8: scale = amax|x| / finfo(f8).max per block, in the input dtype, returned as float32 with the
// full grid shape. A block of zeros gets scale 0 and quantizes to 0 (torchao divides by zero there).
Tensor choose_scale_float8(const Tensor& x, const std::vector<int64_t>& block_size, DType f8);
Tensor quantize_float8(const Tensor& x, const std::vector<int64_t>& block_size, const Tensor& scale, DType f8);
Tensor dequantize_float8(const Tensor& q, const std::vector<int64_t>& block_size, const Tensor& scale,
                         DType out_dtype = DType::F32);

// fp-x (torchao floatx, e.g. fp6 e3m2): codes in the low 1+ebits+mbits bits of a uint8.
Tensor fpx_encode(const Tensor& x, int ebits, int mbits);   // round to nearest even, saturating
Tensor fpx_decode(const Tensor& codes, int ebits, int mbits);  // float32
// Per-row scale of a 2-D weight: max(amax|row|, 1e-12) / max_normal, in the weight's dtype.
Tensor choose_scale_fpx(const Tensor& w, int ebits, int mbits);
Tensor quantize_fpx(const Tensor& w, const Tensor& scale, int ebits, int mbits);
Tensor dequantize_fpx(const Tensor& codes, const Tensor& scale, int ebits, int mbits,
                      DType out_dtype = DType::F32);

// Throws lowbit::Error naming `what` and the first index holding NaN or infinity.
void check_finite(const Tensor& x, std::string_view what);

// ---------------------------------------------------------------- implementation details

template <typename F>
void BlockGrid::for_each(F&& fn) const {
  const size_t r = shape_.size();
  if (r == 0) {
    fn(int64_t{0}, int64_t{0});
    return;
  }
  for (auto d : shape_)
    if (d == 0) return;
  const int64_t inner = shape_[r - 1];
  std::vector<int64_t> inner_block(static_cast<size_t>(inner));
  for (int64_t j = 0; j < inner; ++j) inner_block[j] = (j / block_[r - 1]) * grid_strides_[r - 1];
  std::vector<int64_t> idx(r - 1, 0);
  int64_t elem = 0;
  while (true) {
    int64_t base = 0;
    for (size_t d = 0; d + 1 < r; ++d) base += (idx[d] / block_[d]) * grid_strides_[d];
    for (int64_t j = 0; j < inner; ++j) fn(elem++, base + inner_block[j]);
    size_t d = r - 1;
    while (d > 0) {
      --d;
      if (++idx[d] < shape_[d]) break;
      idx[d] = 0;
      if (d == 0) return;
    }
    if (r == 1) return;
  }
}

}  // namespace lowbit::quant
