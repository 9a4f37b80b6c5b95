// Layouts register a loader here, keyed by the name their save() writes.
#pragma once

#include <functional>
#include <map>
#include <string>

#include "lowbit/quant/linear.h"

namespace lowbit::quant {

using LayoutLoader = std::function<LinearPtr(const nlohmann::json& params,
                                             const std::function<Tensor(const std::string&)>& get)>;
const std::map<std::string, LayoutLoader>& layout_loaders();

// Shared checks for loaders: a tensor with the expected dtype and shape, naming the layer on mismatch.
Tensor expect_tensor(const std::function<Tensor(const std::string&)>& get, const std::string& name, DType dtype,
                     const Shape& shape);

}  // namespace lowbit::quant
