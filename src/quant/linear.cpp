#include "lowbit/quant/linear.h"

#include <map>
#include <vector>

#include "kernels/cpu/gemm.h"
#include "layouts/layouts.h"
#include "layouts/registry.h"

namespace lowbit::quant {

std::string_view act_quant_name(ActQuant a) {
  switch (a) {
    case ActQuant::None: return "none";
    case ActQuant::Int8Token: return "int8_token";
    case ActQuant::Int8TokenAsym: return "int8_token_asym";
    case ActQuant::Fp8Token: return "fp8_token";
    case ActQuant::Fp8Tensor: return "fp8_tensor";
  }
  return "?";
}

ActQuant act_quant_from_name(std::string_view s) {
  for (ActQuant a : {ActQuant::None, ActQuant::Int8Token, ActQuant::Int8TokenAsym, ActQuant::Fp8Token,
                     ActQuant::Fp8Tensor})
    if (act_quant_name(a) == s) return a;
  fail("unknown activation quantization '{}'", s);
}

Tensor LinearWeight::dequantize() const {
  Tensor out = Tensor::empty({out_features(), in_features()}, DType::F32);
  dequantize_rows(0, out_features(), out.data<float>());
  return out;
}

std::string LinearWeight::activation_key() const {
  return act_quant() == ActQuant::None ? std::string() : "fake:" + std::string(act_quant_name(act_quant()));
}

std::shared_ptr<const void> LinearWeight::prepare_activations(const float* x, int64_t M) const {
  if (act_quant() == ActQuant::None) return nullptr;
  return std::make_shared<const std::vector<float>>(fake_quantize_activations(x, M, in_features(), act_quant()));
}

void LinearWeight::linear_rows(const ActView& a, float* y, int64_t ldy, int64_t n0, int64_t n1) const {
  const int64_t K = in_features();
  const float* x = a.prepared ? static_cast<const std::vector<float>*>(a.prepared)->data() : a.x;
  thread_local std::vector<float> rows;
  constexpr int64_t kRows = 16;  // rows dequantized at a time
  rows.resize(static_cast<size_t>(kRows * K));
  for (int64_t r0 = n0; r0 < n1; r0 += kRows) {
    const int64_t r1 = std::min(n1, r0 + kRows);
    dequantize_rows(r0, r1, rows.data());
    kernels::cpu::gemm_serial({x, K, rows.data(), kernels::cpu::WType::F32, K, y + r0, ldy, a.M, r1 - r0, K});
  }
}

void linear_many(std::span<const LinearWeight* const> ws, const float* x, int64_t M, std::span<float* const> ys) {
  LB_CHECK(ws.size() == ys.size(), "linear_many: {} weights, {} outputs", ws.size(), ys.size());
  // Each distinct activation form is prepared once, outside the parallel pass (it may parallelize itself).
  std::map<std::string, std::shared_ptr<const void>> prepared;
  std::vector<const void*> prep(ws.size(), nullptr);
  int64_t total = 0;
  for (size_t i = 0; i < ws.size(); ++i) {
    const std::string key = ws[i]->activation_key();
    if (!key.empty()) {
      auto it = prepared.find(key);
      if (it == prepared.end()) it = prepared.emplace(key, ws[i]->prepare_activations(x, M)).first;
      prep[i] = it->second.get();
    }
    total += ws[i]->out_features();
  }
  struct Item {
    size_t w;
    int64_t n0, n1;
  };
  std::vector<Item> items;
  const int64_t chunk = kernels::cpu::row_chunk(total, M);
  for (size_t i = 0; i < ws.size(); ++i)
    for (int64_t n0 = 0; n0 < ws[i]->out_features(); n0 += chunk)
      items.push_back({i, n0, std::min(ws[i]->out_features(), n0 + chunk)});
  const auto n_items = static_cast<int64_t>(items.size());
#pragma omp parallel for schedule(dynamic, 1) if (n_items > 1)
  for (int64_t j = 0; j < n_items; ++j) {
    const Item& it = items[j];
    ws[it.w]->linear_rows({x, M, prep[it.w]}, ys[it.w], ws[it.w]->out_features(), it.n0, it.n1);
  }
}

void LinearWeight::linear(const float* x, int64_t M, float* y) const {
  const LinearWeight* w = this;
  linear_many(std::span<const LinearWeight* const>(&w, 1), x, M, std::span<float* const>(&y, 1));
}

void LinearWeight::linear_reference(const float* x, int64_t M, float* y) const {
  const auto prepared = LinearWeight::prepare_activations(x, M);
  const int64_t N = out_features();
  const int64_t chunk = kernels::cpu::row_chunk(N, M);
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t n0 = 0; n0 < N; n0 += chunk)
    LinearWeight::linear_rows({x, M, prepared.get()}, y, N, n0, std::min(N, n0 + chunk));
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
