// One weight in, one layout out: the scheme named by a Config applied to a float weight [out, in].
#pragma once

#include "lowbit/quant/config.h"
#include "lowbit/quant/linear.h"

namespace lowbit::quant {

// `w` is float32/bfloat16/float16 [out, in]; quantization math runs in w's dtype, as torchao's does.
// Shape constraints the scheme cannot meet (a group that does not divide in_features) are errors.
LinearPtr quantize_weight(const Tensor& w, const Config& config);

}  // namespace lowbit::quant
