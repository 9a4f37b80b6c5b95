#include "lowbit/quant/primitives.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "lowbit/core/float_formats.h"

namespace lowbit::quant {
namespace {

// Round-half-to-even of a float (torch.round).
float round_half_even(float v) { return std::nearbyint(v); }

// Values of a scale / zero-point tensor as floats (already exact in their own dtype).
std::vector<float> qparam_values(const Tensor& t, int64_t expected, std::string_view what) {
  LB_CHECK(t.defined(), "{} is missing", what);
  LB_CHECK(t.numel() == expected, "{} has {} elements, expected one per block ({})", what, t.numel(), expected);
  return t.to_f32_vector();
}

Tensor host_contiguous(const Tensor& x, std::string_view what) {
  LB_CHECK(x.defined(), "{}: undefined tensor", what);
  LB_CHECK(x.device() == Device::CPU, "{}: the reference primitives run on host tensors", what);
  return x.contiguous();
}

void check_float_input(const Tensor& x, std::string_view what) {
  LB_CHECK(x.dtype() == DType::F32 || x.dtype() == DType::BF16 || x.dtype() == DType::F16,
           "{}: input must be float32, bfloat16 or float16, got {}", what, dtype_name(x.dtype()));
}

// Stores a quantized value. torchao can produce NaN here without NaN input: in float16, 1/scale
// overflows to infinity for a tiny clamped scale and 0 * inf = NaN. PyTorch's CPU cast of NaN to an
// integer yields the x86 "integer indefinite" 0x80000000 truncated to the target width (0 for 8-bit
// types); reproducing it keeps lowbit bit-identical with torchao in that corner.
void store_quantized(void* dst, DType t, int64_t i, float q) {
  if (!std::isnan(q)) return store_f32(dst, t, i, q);
  switch (t) {
    case DType::I32: static_cast<int32_t*>(dst)[i] = std::numeric_limits<int32_t>::min(); return;
    case DType::I64: static_cast<int64_t*>(dst)[i] = std::numeric_limits<int64_t>::min(); return;
    default: store_f32(dst, t, i, 0.0f); return;
  }
}

void check_range(int64_t qmin, int64_t qmax) {
  LB_CHECK(qmin < qmax, "quantization range [{}, {}] is empty", qmin, qmax);
}

}  // namespace

MappingType mapping_from_name(std::string_view s) {
  if (s == "SYMMETRIC") return MappingType::Symmetric;
  if (s == "SYMMETRIC_NO_CLIPPING_ERR") return MappingType::SymmetricNoClippingErr;
  if (s == "ASYMMETRIC") return MappingType::Asymmetric;
  fail("unknown mapping type '{}'", s);
}

std::string_view mapping_name(MappingType m) {
  switch (m) {
    case MappingType::Symmetric: return "SYMMETRIC";
    case MappingType::SymmetricNoClippingErr: return "SYMMETRIC_NO_CLIPPING_ERR";
    case MappingType::Asymmetric: return "ASYMMETRIC";
  }
  return "?";
}

QRange qrange_of(DType t) {
  switch (t) {
    case DType::I8: return {-128, 127};
    case DType::U8: return {0, 255};
    case DType::I32: return {std::numeric_limits<int32_t>::min(), std::numeric_limits<int32_t>::max()};
    default: fail("{} is not a quantized integer dtype", dtype_name(t));
  }
}

QRange int_range(int bits, bool is_signed) {
  LB_CHECK(bits >= 1 && bits <= 8, "bit width {} outside 1..8", bits);
  if (is_signed) return {-(int64_t{1} << (bits - 1)), (int64_t{1} << (bits - 1)) - 1};
  return {0, (int64_t{1} << bits) - 1};
}

void check_finite(const Tensor& x, std::string_view what) {
  const Tensor c = host_contiguous(x, what);
  if (!dtype_is_float(c.dtype())) return;
  const int64_t n = c.numel();
  // Finite means an exponent field that is not all ones; bf16 and fp16 are checked on their bits.
  int64_t first_bad = n;
  const auto scan = [&](auto bits_of, auto exp_mask) {
#pragma omp parallel for reduction(min : first_bad) schedule(static)
    for (int64_t i = 0; i < n; ++i)
      if ((bits_of(i) & exp_mask) == exp_mask && i < first_bad) first_bad = i;
  };
  switch (c.dtype()) {
    case DType::F32: scan([p = static_cast<const uint32_t*>(c.raw())](int64_t i) { return p[i]; }, 0x7f800000u); break;
    case DType::BF16: scan([p = static_cast<const uint16_t*>(c.raw())](int64_t i) { return p[i]; }, uint16_t{0x7f80}); break;
    case DType::F16: scan([p = static_cast<const uint16_t*>(c.raw())](int64_t i) { return p[i]; }, uint16_t{0x7c00}); break;
    default:
      for (int64_t i = 0; i < n && first_bad == n; ++i)
        if (!std::isfinite(load_f32(c.raw(), c.dtype(), i))) first_bad = i;
  }
  LB_CHECK(first_bad == n, "{}: non-finite value {} at flat index {} of {}", what, load_f32(c.raw(), c.dtype(), first_bad),
           first_bad, c.describe());
}

// ---------------------------------------------------------------- BlockGrid

BlockGrid::BlockGrid(const Shape& shape, const std::vector<int64_t>& block_size)
    : shape_(shape), block_(block_size) {
  LB_CHECK(block_size.size() == shape.size(), "block_size {} has {} entries for a tensor of shape {}",
           shape_str(block_size), block_size.size(), shape_str(shape));
  grid_.resize(shape.size());
  for (size_t d = 0; d < shape.size(); ++d) {
    LB_CHECK(block_[d] >= 1, "block_size {}: entry {} must be positive", shape_str(block_size), d);
    LB_CHECK(shape[d] % block_[d] == 0,
             "block_size {} does not divide shape {}: dimension {} of size {} is not a multiple of {}",
             shape_str(block_size), shape_str(shape), d, shape[d], block_[d]);
    grid_[d] = shape[d] / block_[d];
  }
  grid_strides_.assign(shape.size(), 1);
  for (size_t d = shape.size(); d-- > 0;) {
    grid_strides_[d] = num_blocks_;
    num_blocks_ *= grid_[d];
  }
}

Shape BlockGrid::reduced_shape() const {
  Shape s;
  for (size_t d = 0; d < shape_.size(); ++d)
    if (!(block_[d] == shape_[d] && block_[d] != 1)) s.push_back(grid_[d]);
  return s;
}

// ---------------------------------------------------------------- choose_qparams

AffineQParams choose_qparams_affine(const Tensor& x_in, const ChooseQParamsOptions& o) {
  check_float_input(x_in, "choose_qparams_affine");
  check_range(o.qmin, o.qmax);
  const Tensor x = host_contiguous(x_in, "choose_qparams_affine");
  check_finite(x, "choose_qparams_affine input");
  const BlockGrid g(x.shape(), o.block_size);
  const DType ct = x.dtype();
  const auto R = [ct](float v) { return round_to(ct, v); };
  const int64_t nb = g.num_blocks();

  std::vector<float> mn(nb, std::numeric_limits<float>::infinity()), mx(nb, -std::numeric_limits<float>::infinity());
  const void* data = x.raw();
  g.for_each([&](int64_t i, int64_t b) {
    const float v = load_f32(data, ct, i);
    mn[b] = std::min(mn[b], v);
    mx[b] = std::max(mx[b], v);
  });

  // torch.clamp(scale, min=eps) converts eps to the tensor's dtype first. Without an eps, torchao 0.19
  // clamps at finfo(dtype).tiny (its golden outputs show it), not at finfo(dtype).eps.
  const float eps = R(static_cast<float>(o.eps.value_or(dtype_tiny(ct))));
  const float qmin = static_cast<float>(o.qmin), qmax = static_cast<float>(o.qmax);
  std::vector<float> scale(nb), zp(nb);
  for (int64_t b = 0; b < nb; ++b) {
    const float mn_neg = std::min(mn[b], 0.0f), mx_pos = std::max(mx[b], 0.0f);
    float s = 0.0f;
    switch (o.mapping) {
      case MappingType::Symmetric: {
        const float amax = std::max(-mn_neg, mx_pos);
        s = R(amax / static_cast<float>(static_cast<double>(o.qmax - o.qmin) / 2.0));
        zp[b] = static_cast<float>(static_cast<int64_t>(static_cast<double>(o.qmax + o.qmin + 1) / 2.0));
        break;
      }
      case MappingType::SymmetricNoClippingErr: {
        const float smin = R(mn_neg / qmin), smax = R(mx_pos / qmax);
        s = smin > smax ? smin : smax;
        zp[b] = static_cast<float>(static_cast<int64_t>(static_cast<double>(o.qmax + o.qmin + 1) / 2.0));
        break;
      }
      case MappingType::Asymmetric:
        s = R(R(mx_pos - mn_neg) / static_cast<float>(o.qmax - o.qmin));
        break;
    }
    if (s < eps) s = eps;
    scale[b] = s;
    if (o.mapping == MappingType::Asymmetric) {
      const float z = R(qmin - R(round_half_even(R(mn_neg / s))));
      zp[b] = std::clamp(z, qmin, qmax);
    }
  }
  const Shape qshape = g.reduced_shape();
  AffineQParams out;
  out.scale = Tensor::from_floats(scale, qshape, o.scale_dtype.value_or(ct));
  out.zero_point = Tensor::from_floats(zp, qshape, o.zero_point_dtype);
  return out;
}

AffineQParams choose_qparams_affine_float_zero(const Tensor& x_in, const std::vector<int64_t>& block_size,
                                               int64_t qmin, int64_t qmax, std::optional<double> eps_opt,
                                               std::optional<DType> scale_dtype,
                                               std::optional<DType> zero_point_dtype) {
  check_float_input(x_in, "choose_qparams_affine_float_zero");
  check_range(qmin, qmax);
  const Tensor x = host_contiguous(x_in, "choose_qparams_affine_float_zero");
  check_finite(x, "choose_qparams_affine_float_zero input");
  const BlockGrid g(x.shape(), block_size);
  const DType ct = x.dtype();
  const auto R = [ct](float v) { return round_to(ct, v); };
  const int64_t nb = g.num_blocks();
  std::vector<float> mn(nb, std::numeric_limits<float>::infinity()), mx(nb, -std::numeric_limits<float>::infinity());
  const void* data = x.raw();
  g.for_each([&](int64_t i, int64_t b) {
    const float v = load_f32(data, ct, i);
    mn[b] = std::min(mn[b], v);
    mx[b] = std::max(mx[b], v);
  });
  const float eps = R(static_cast<float>(eps_opt.value_or(dtype_eps(ct))));
  const float mid = static_cast<float>(static_cast<double>(qmax + qmin + 1) / 2.0);
  std::vector<float> scale(nb), zero(nb);
  for (int64_t b = 0; b < nb; ++b) {
    float s = R(R(mx[b] - mn[b]) / static_cast<float>(qmax - qmin));
    if (s < eps) s = eps;
    scale[b] = s;
    zero[b] = R(mn[b] + R(s * mid));
  }
  const Shape qshape = g.reduced_shape();
  AffineQParams out;
  out.scale = Tensor::from_floats(scale, qshape, scale_dtype.value_or(ct));
  out.zero_point = Tensor::from_floats(zero, qshape, zero_point_dtype.value_or(ct));
  return out;
}

// ---------------------------------------------------------------- quantize / dequantize

Tensor quantize_affine(const Tensor& x_in, const std::vector<int64_t>& block_size, const Tensor& scale_t,
                       const Tensor& zp_t, ZeroPointDomain domain, int64_t qmin, int64_t qmax, DType out_dtype) {
  check_float_input(x_in, "quantize_affine");
  check_range(qmin, qmax);
  LB_CHECK(dtype_is_integer(out_dtype), "quantize_affine: output dtype {} is not an integer dtype",
           dtype_name(out_dtype));
  const Tensor x = host_contiguous(x_in, "quantize_affine");
  check_finite(x, "quantize_affine input");
  const BlockGrid g(x.shape(), block_size);
  const DType xt = x.dtype(), st = scale_t.dtype();
  const std::vector<float> scale = qparam_values(scale_t, g.num_blocks(), "scale");
  std::vector<float> zp;
  DType zt = DType::I32;
  if (domain != ZeroPointDomain::None) {
    zp = qparam_values(zp_t, g.num_blocks(), "zero_point");
    zt = zp_t.dtype();
  }
  const float lo = static_cast<float>(qmin), hi = static_cast<float>(qmax);
  Tensor out = Tensor::empty(x.shape(), out_dtype);
  void* dst = out.raw();
  const void* src = x.raw();

  if (domain == ZeroPointDomain::Float) {
    // min_val = zero_point - scale * mid; q = round((x - min_val) / scale)
    const float mid = static_cast<float>(static_cast<double>(qmax + qmin + 1) / 2.0);
    const DType mt = promote(zt, st), dt = promote(xt, mt), qt = promote(dt, st);
    std::vector<float> min_val(scale.size());
    for (size_t b = 0; b < scale.size(); ++b) min_val[b] = round_to(mt, zp[b] - round_to(st, scale[b] * mid));
    g.for_each([&](int64_t i, int64_t b) {
      const float d = round_to(dt, load_f32(src, xt, i) - min_val[b]);
      const float q = round_half_even(round_to(qt, d / scale[b]));
      store_quantized(dst, out_dtype, i, std::isnan(q) ? q : std::clamp(q, lo, hi));
    });
    return out;
  }
  // Int / None: q = round(x * (1 / scale)) [+ zero_point]; 1/scale is computed in the scale's dtype.
  std::vector<float> recip(scale.size());
  for (size_t b = 0; b < scale.size(); ++b) recip[b] = round_to(st, 1.0f / scale[b]);
  const DType pt = promote(xt, st);
  const DType at = domain == ZeroPointDomain::Int ? promote(pt, zt) : pt;
  const bool has_zp = domain == ZeroPointDomain::Int;
  g.for_each([&](int64_t i, int64_t b) {
    float q = round_half_even(round_to(pt, load_f32(src, xt, i) * recip[b]));
    if (has_zp) q = round_to(at, q + zp[b]);
    store_quantized(dst, out_dtype, i, std::isnan(q) ? q : std::clamp(q, lo, hi));
  });
  return out;
}

Tensor dequantize_affine(const Tensor& q_in, const std::vector<int64_t>& block_size, const Tensor& scale_t,
                         const Tensor& zp_t, ZeroPointDomain domain, int64_t qmin, int64_t qmax, DType out_dtype) {
  LB_CHECK(dtype_is_float(out_dtype), "dequantize_affine: output dtype {} is not a float dtype",
           dtype_name(out_dtype));
  const Tensor q = host_contiguous(q_in, "dequantize_affine");
  const BlockGrid g(q.shape(), block_size);
  const DType qt = q.dtype(), st = scale_t.dtype(), ot = out_dtype;
  const std::vector<float> scale = qparam_values(scale_t, g.num_blocks(), "scale");
  std::vector<float> zp;
  if (domain != ZeroPointDomain::None) zp = qparam_values(zp_t, g.num_blocks(), "zero_point");
  Tensor out = Tensor::empty(q.shape(), ot);
  void* dst = out.raw();
  const void* src = q.raw();
  const DType mt = promote(ot, st);
  switch (domain) {
    case ZeroPointDomain::Float: {
      // (q - mid) is an integer tensor minus a Python float: float32. Then *= scale, += zero in out_dtype.
      const float mid = static_cast<float>(static_cast<double>(qmax + qmin + 1) / 2.0);
      g.for_each([&](int64_t i, int64_t b) {
        float d = round_to(ot, load_f32(src, qt, i) - mid);
        d = round_to(ot, d * scale[b]);
        store_f32(dst, ot, i, round_to(ot, d + zp[b]));
      });
      break;
    }
    case ZeroPointDomain::Int:
      g.for_each([&](int64_t i, int64_t b) {
        const float d = round_to(ot, round_to(ot, load_f32(src, qt, i)) - round_to(ot, zp[b]));
        store_f32(dst, ot, i, round_to(ot, round_to(mt, d * scale[b])));
      });
      break;
    case ZeroPointDomain::None:
      g.for_each([&](int64_t i, int64_t b) {
        const float d = round_to(ot, load_f32(src, qt, i));
        store_f32(dst, ot, i, round_to(ot, round_to(mt, d * scale[b])));
      });
      break;
  }
  return out;
}

// ---------------------------------------------------------------- float8

namespace {
void check_f8(DType f8) {
  LB_CHECK(f8 == DType::F8E4M3 || f8 == DType::F8E5M2, "{} is not a float8 dtype", dtype_name(f8));
}
}  // namespace

Tensor choose_scale_float8(const Tensor& x_in, const std::vector<int64_t>& block_size, DType f8) {
  check_f8(f8);
  check_float_input(x_in, "choose_scale_float8");
  const Tensor x = host_contiguous(x_in, "choose_scale_float8");
  check_finite(x, "choose_scale_float8 input");
  const BlockGrid g(x.shape(), block_size);
  const DType ct = x.dtype();
  std::vector<float> amax(g.num_blocks(), 0.0f);
  const void* src = x.raw();
  g.for_each([&](int64_t i, int64_t b) { amax[b] = std::max(amax[b], std::fabs(load_f32(src, ct, i))); });
  const float fmax = static_cast<float>(dtype_max(f8));
  for (auto& a : amax) a = round_to(ct, a / fmax);
  return Tensor::from_floats(amax, g.grid(), DType::F32);
}

Tensor quantize_float8(const Tensor& x_in, const std::vector<int64_t>& block_size, const Tensor& scale_t, DType f8) {
  check_f8(f8);
  check_float_input(x_in, "quantize_float8");
  const Tensor x = host_contiguous(x_in, "quantize_float8");
  check_finite(x, "quantize_float8 input");
  const BlockGrid g(x.shape(), block_size);
  const std::vector<float> scale = qparam_values(scale_t, g.num_blocks(), "float8 scale");
  const float fmax = static_cast<float>(dtype_max(f8));
  Tensor out = Tensor::empty(x.shape(), f8);
  auto* dst = static_cast<uint8_t*>(out.raw());
  const void* src = x.raw();
  const DType xt = x.dtype();
  const MiniFloat& fmt = f8 == DType::F8E4M3 ? kE4M3 : kE5M2;
  g.for_each([&](int64_t i, int64_t b) {
    const float v = load_f32(src, xt, i);
    // A zero block has scale 0: its zeros stay 0 instead of becoming 0/0 = NaN.
    const float t = (v == 0.0f) ? 0.0f : v / scale[b];
    dst[i] = minifloat_encode(std::clamp(t, -fmax, fmax), fmt);
  });
  return out;
}

Tensor dequantize_float8(const Tensor& q_in, const std::vector<int64_t>& block_size, const Tensor& scale_t,
                         DType out_dtype) {
  const Tensor q = host_contiguous(q_in, "dequantize_float8");
  check_f8(q.dtype());
  const BlockGrid g(q.shape(), block_size);
  const std::vector<float> scale = qparam_values(scale_t, g.num_blocks(), "float8 scale");
  Tensor out = Tensor::empty(q.shape(), out_dtype);
  void* dst = out.raw();
  const void* src = q.raw();
  const DType qt = q.dtype();
  g.for_each([&](int64_t i, int64_t b) { store_f32(dst, out_dtype, i, load_f32(src, qt, i) * scale[b]); });
  return out;
}

// ---------------------------------------------------------------- fp-x

Tensor fpx_encode(const Tensor& x_in, int ebits, int mbits) {
  const MiniFloat fmt = fpx_format(ebits, mbits);
  const Tensor x = host_contiguous(x_in, "fpx_encode");
  check_finite(x, "fpx_encode input");
  Tensor out = Tensor::empty(x.shape(), DType::U8);
  auto* dst = out.data<uint8_t>();
  for (int64_t i = 0; i < x.numel(); ++i) dst[i] = minifloat_encode(load_f32(x.raw(), x.dtype(), i), fmt);
  return out;
}

Tensor fpx_decode(const Tensor& codes_in, int ebits, int mbits) {
  const MiniFloat fmt = fpx_format(ebits, mbits);
  const Tensor c = host_contiguous(codes_in, "fpx_decode");
  LB_CHECK(c.dtype() == DType::U8, "fpx_decode: codes must be uint8, got {}", dtype_name(c.dtype()));
  Tensor out = Tensor::empty(c.shape(), DType::F32);
  const auto* src = c.data<uint8_t>();
  auto* dst = out.data<float>();
  for (int64_t i = 0; i < c.numel(); ++i) dst[i] = minifloat_decode(src[i], fmt);
  return out;
}

Tensor choose_scale_fpx(const Tensor& w_in, int ebits, int mbits) {
  const MiniFloat fmt = fpx_format(ebits, mbits);
  check_float_input(w_in, "choose_scale_fpx");
  const Tensor w = host_contiguous(w_in, "choose_scale_fpx");
  LB_CHECK(w.dim() == 2, "choose_scale_fpx: expects a 2-D weight, got {}", w.describe());
  check_finite(w, "choose_scale_fpx input");
  const int64_t rows = w.size(0), cols = w.size(1);
  std::vector<float> s(static_cast<size_t>(rows));
  const float maxn = static_cast<float>(fmt.max_value);
  for (int64_t r = 0; r < rows; ++r) {
    float a = 0.0f;
    for (int64_t c = 0; c < cols; ++c) a = std::max(a, std::fabs(load_f32(w.raw(), w.dtype(), r * cols + c)));
    s[r] = std::max(a, 1e-12f) / maxn;
  }
  return Tensor::from_floats(s, {rows}, w.dtype());
}

Tensor quantize_fpx(const Tensor& w_in, const Tensor& scale_t, int ebits, int mbits) {
  const MiniFloat fmt = fpx_format(ebits, mbits);
  const Tensor w = host_contiguous(w_in, "quantize_fpx");
  LB_CHECK(w.dim() == 2, "quantize_fpx: expects a 2-D weight, got {}", w.describe());
  check_finite(w, "quantize_fpx input");
  const int64_t rows = w.size(0), cols = w.size(1);
  const std::vector<float> scale = qparam_values(scale_t, rows, "fp-x scale");
  Tensor out = Tensor::empty(w.shape(), DType::U8);
  auto* dst = out.data<uint8_t>();
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c)
      dst[r * cols + c] = minifloat_encode(load_f32(w.raw(), w.dtype(), r * cols + c) / scale[r], fmt);
  return out;
}

Tensor dequantize_fpx(const Tensor& codes_in, const Tensor& scale_t, int ebits, int mbits, DType out_dtype) {
  const Tensor dec = fpx_decode(codes_in, ebits, mbits);
  LB_CHECK(dec.dim() == 2, "dequantize_fpx: expects 2-D codes, got {}", dec.describe());
  const int64_t rows = dec.size(0), cols = dec.size(1);
  const std::vector<float> scale = qparam_values(scale_t, rows, "fp-x scale");
  Tensor out = Tensor::empty(dec.shape(), out_dtype);
  const float* src = dec.data<float>();
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) store_f32(out.raw(), out_dtype, r * cols + c, src[r * cols + c] * scale[r]);
  return out;
}

}  // namespace lowbit::quant
