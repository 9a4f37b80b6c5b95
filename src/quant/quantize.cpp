#include "lowbit/quant/quantize.h"

#include "layouts/layouts.h"
#include "lowbit/quant/primitives.h"

namespace lowbit::quant {

LinearPtr quantize_weight(const Tensor& w_in, const Config& config) {
  LB_CHECK(w_in.dim() == 2, "quantize: a Linear weight must be 2-D, got {}", w_in.describe());
  const Tensor w = w_in.contiguous();
  check_finite(w, "quantize: weight");
  struct V {
    const Tensor& w;
    LinearPtr operator()(const NoQuant& q) const { return std::make_shared<DenseWeight>(w.to(q.dtype)); }
    LinearPtr operator()(const Int8WeightOnly&) const { return Int8Weight::quantize(w, ActQuant::None); }
    LinearPtr operator()(const Int4WeightOnly& q) const { return Int4Weight::quantize(w, q.group_size); }
    LinearPtr operator()(const Int8DynActInt8Weight&) const { return Int8Weight::quantize(w, ActQuant::Int8Token); }
    LinearPtr operator()(const Float8WeightOnly&) const { return Float8Weight::quantize(w, true, ActQuant::None); }
    LinearPtr operator()(const Float8DynActFloat8Weight& q) const {
      return Float8Weight::quantize(w, q.per_row, q.per_row ? ActQuant::Fp8Token : ActQuant::Fp8Tensor);
    }
    LinearPtr operator()(const FpxWeightOnly& q) const { return FpxWeight::quantize(w, q.ebits, q.mbits); }
    LinearPtr operator()(const UIntXWeightOnly& q) const { return UIntXWeight::quantize(w, q.bits, q.group_size); }
    LinearPtr operator()(const Int8DynActIntxWeight& q) const {
      return IntxGroupWeight::quantize_a8wx(w, q.bits, q.group_size);
    }
    LinearPtr operator()(const Int8DynActInt4Weight& q) const { return IntxGroupWeight::quantize_w4a8(w, q.group_size); }
    LinearPtr operator()(const CodebookWeightOnly& q) const { return CodebookWeight::quantize(w, q.bits, q.block_size); }
  };
  return std::visit(V{w}, config);
}

}  // namespace lowbit::quant
