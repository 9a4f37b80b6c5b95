#include "registry.h"

namespace lowbit::quant {

LinearPtr load_dense(const nlohmann::json&, const std::function<Tensor(const std::string&)>&);
LinearPtr load_int8(const nlohmann::json&, const std::function<Tensor(const std::string&)>&);
LinearPtr load_int4(const nlohmann::json&, const std::function<Tensor(const std::string&)>&);
LinearPtr load_float8(const nlohmann::json&, const std::function<Tensor(const std::string&)>&);
LinearPtr load_fpx(const nlohmann::json&, const std::function<Tensor(const std::string&)>&);
LinearPtr load_uintx(const nlohmann::json&, const std::function<Tensor(const std::string&)>&);
LinearPtr load_intx_group(const nlohmann::json&, const std::function<Tensor(const std::string&)>&);
LinearPtr load_codebook(const nlohmann::json&, const std::function<Tensor(const std::string&)>&);

const std::map<std::string, LayoutLoader>& layout_loaders() {
  static const std::map<std::string, LayoutLoader> m = {
      {"dense", load_dense}, {"int8", load_int8},           {"int4", load_int4},
      {"float8", load_float8}, {"fpx", load_fpx},           {"uintx", load_uintx},
      {"intx_group", load_intx_group}, {"codebook", load_codebook},
  };
  return m;
}

Tensor expect_tensor(const std::function<Tensor(const std::string&)>& get, const std::string& name, DType dtype,
                     const Shape& shape) {
  Tensor t = get(name);
  LB_CHECK(t.dtype() == dtype && t.shape() == shape, "tensor '{}' is {}{}, expected {}{}", name,
           dtype_name(t.dtype()), shape_str(t.shape()), dtype_name(dtype), shape_str(shape));
  return t;
}

}  // namespace lowbit::quant
