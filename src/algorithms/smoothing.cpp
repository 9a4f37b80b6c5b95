#include "algorithms/smoothing.h"

#include "algorithms/group_quant.h"

#include <algorithm>
#include <cmath>

#include "kernels/cpu/gemm.h"
#include "lowbit/quant/quantize.h"

namespace lowbit::algorithms {
namespace {

const Tensor& dense_weight(const quant::LinearPtr& p) {
  const auto* d = dynamic_cast<const quant::DenseWeight*>(p.get());
  LB_CHECK(d != nullptr, "channel scaling needs unquantized weights, found {}", p->scheme());
  return d->weight();
}

std::vector<float> weight_f32(const quant::LinearPtr& p) { return dense_weight(p).to_f32_vector(); }

// y [rows, N] = x [rows, K] · wᵀ, w float32 [N, K].
std::vector<float> matmul(const float* x, int64_t rows, const std::vector<float>& w, int64_t N, int64_t K) {
  std::vector<float> y(static_cast<size_t>(rows * N));
  kernels::cpu::gemm({x, K, w.data(), kernels::cpu::WType::F32, K, y.data(), N, rows, N, K});
  return y;
}

}  // namespace

std::vector<ScaleGroup> scale_groups(LlamaModel& m, int64_t l) {
  auto& L = m.layers[static_cast<size_t>(l)];
  return {{LinearSite::AttnIn, {&L.wq, &L.wk, &L.wv}, &L.attn_norm, nullptr, 2},
          {LinearSite::MlpIn, {&L.w_gate, &L.w_up}, &L.ffn_norm, nullptr},
          {LinearSite::MlpDown, {&L.w_down}, nullptr, &L.w_up}};
}

void fold_scales(const ScaleGroup& g, const std::vector<float>& s) {
  const auto K = static_cast<int64_t>(s.size());
  for (quant::LinearPtr* p : g.linears) {
    const int64_t N = (*p)->out_features();
    LB_CHECK((*p)->in_features() == K, "fold_scales: {} scales for {} input features", K, (*p)->in_features());
    std::vector<float> w = weight_f32(*p);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t k = 0; k < K; ++k) w[n * K + k] *= s[k];
    *p = std::make_shared<quant::DenseWeight>(Tensor::from_vector(w, {N, K}));
  }
  if (g.norm) {
    LB_CHECK(static_cast<int64_t>(g.norm->size()) == K, "fold_scales: norm of {} for {} scales", g.norm->size(), K);
    for (int64_t k = 0; k < K; ++k) (*g.norm)[k] /= s[k];
  }
  if (g.prev) {
    const int64_t N = (*g.prev)->out_features(), Kp = (*g.prev)->in_features();
    LB_CHECK(N == K, "fold_scales: previous Linear has {} outputs for {} scales", N, K);
    std::vector<float> w = weight_f32(*g.prev);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t k = 0; k < Kp; ++k) w[n * Kp + k] /= s[n];
    *g.prev = std::make_shared<quant::DenseWeight>(Tensor::from_vector(w, {N, Kp}));
  }
}

std::vector<float> smoothquant_scales(const ScaleGroup& g, const SiteStats& x, float alpha) {
  LB_CHECK(alpha >= 0.0f && alpha <= 1.0f, "smoothquant: alpha {} outside [0, 1]", alpha);
  const int64_t K = x.K;
  std::vector<float> wmax(static_cast<size_t>(K), 0.0f);
  for (quant::LinearPtr* p : g.linears) {
    const std::vector<float> w = weight_f32(*p);
    const int64_t N = (*p)->out_features();
    for (int64_t n = 0; n < N; ++n)
      for (int64_t k = 0; k < K; ++k) wmax[k] = std::max(wmax[k], std::fabs(w[n * K + k]));
  }
  std::vector<float> s(static_cast<size_t>(K));
  for (int64_t k = 0; k < K; ++k) {
    const double a = std::max<double>(x.absmax[k], 1e-5), b = std::max<double>(wmax[k], 1e-5);
    s[k] = static_cast<float>(std::clamp(std::pow(a, alpha) / std::pow(b, 1.0 - alpha), 1e-5, 1e5));
  }
  return s;
}

std::vector<float> search_scales(const ScaleGroup& g, const SiteStats& x, const quant::Config& config,
                                 const std::vector<std::vector<float>>& candidates) {
  const int64_t K = x.K, R = x.sample_rows;
  LB_CHECK(R > 0, "channel-scale search: no activation rows were kept");
  struct Lin {
    std::vector<float> w;
    int64_t N;
    std::vector<float> y;  // reference output on the kept rows
  };
  std::vector<Lin> lins;
  for (quant::LinearPtr* p : g.linears) {
    Lin l{weight_f32(*p), (*p)->out_features(), {}};
    l.y = matmul(x.sample.data(), R, l.w, l.N, K);
    lins.push_back(std::move(l));
  }
  std::vector<float> xs(x.sample.size()), ws, y;
  double best_err = INFINITY;
  size_t best = 0;
  for (size_t c = 0; c < candidates.size(); ++c) {
    const std::vector<float>& s = candidates[c];
    for (int64_t r = 0; r < R; ++r)
      for (int64_t k = 0; k < K; ++k) xs[r * K + k] = x.sample[r * K + k] / s[k];
    double err = 0;
    for (const Lin& l : lins) {
      ws = l.w;
      for (int64_t n = 0; n < l.N; ++n)
        for (int64_t k = 0; k < K; ++k) ws[n * K + k] *= s[k];
      // The layer as it will run: the scheme's weights and, for dynamic-activation schemes, its activations.
      const quant::LinearPtr q = quant::quantize_weight(Tensor::from_vector(ws, {l.N, K}).to(DType::BF16), config);
      y.resize(static_cast<size_t>(R * l.N));
      q->linear(xs.data(), R, y.data());
      for (size_t j = 0; j < y.size(); ++j) {
        const double d = static_cast<double>(y[j]) - l.y[j];
        err += d * d;
      }
    }
    if (err < best_err) {
      best_err = err;
      best = c;
    }
  }
  return candidates[best];
}

std::vector<float> awq_scales(const ScaleGroup& g, const SiteStats& x, const quant::Config& config, int grid) {
  const int64_t K = x.K;
  std::vector<std::vector<float>> candidates;
  for (int i = 0; i < grid; ++i) {
    const double alpha = static_cast<double>(i) / grid;  // α = 0: no scaling
    std::vector<float> s(static_cast<size_t>(K));
    double lo = INFINITY, hi = 0;
    for (int64_t k = 0; k < K; ++k) {
      s[k] = static_cast<float>(std::pow(std::max(x.mean_abs(k), 1e-4), alpha));
      lo = std::min(lo, static_cast<double>(s[k]));
      hi = std::max(hi, static_cast<double>(s[k]));
    }
    const auto norm = static_cast<float>(std::sqrt(lo * hi));
    for (auto& v : s) v /= norm;
    candidates.push_back(std::move(s));
  }
  return search_scales(g, x, config, candidates);
}

std::vector<float> smoothquant_search(const ScaleGroup& g, const SiteStats& x, const quant::Config& config) {
  std::vector<std::vector<float>> candidates{std::vector<float>(static_cast<size_t>(x.K), 1.0f)};
  for (int i = 1; i <= 9; ++i) candidates.push_back(smoothquant_scales(g, x, static_cast<float>(i) / 10));
  return search_scales(g, x, config, candidates);
}

void awq_clip(quant::LinearPtr* linear, const SiteStats& x, const std::vector<float>* s, const quant::Config& config,
              int grid, float max_shrink) {
  GptqOptions go;
  if (const auto* c = std::get_if<quant::Int4WeightOnly>(&config)) {
    go.scheme = GptqScheme::Int4FloatZero;
    go.group_size = c->group_size;
  } else if (const auto* u = std::get_if<quant::UIntXWeightOnly>(&config)) {
    go.scheme = GptqScheme::UIntIntZero;
    go.bits = u->bits;
    go.group_size = u->group_size;
  } else {
    return;
  }
  const GroupScheme sc = make_group_scheme(go);
  const int64_t K = x.K, R = x.sample_rows, G = go.group_size, ng = K / G, N = (*linear)->out_features();
  LB_CHECK(R > 0, "awq clipping: no activation rows were kept");
  LB_CHECK((*linear)->in_features() == K && K % G == 0, "awq clipping: {} inputs for group {}", K, G);
  // Per group, X_gᵀX_g (G x G) of the scaled activations.
  std::vector<float> hg(static_cast<size_t>(ng * G * G), 0.0f);
#pragma omp parallel for schedule(static)
  for (int64_t g = 0; g < ng; ++g) {
    float* h = hg.data() + g * G * G;
    std::vector<float> xr(static_cast<size_t>(G));
    for (int64_t r = 0; r < R; ++r) {
      for (int64_t i = 0; i < G; ++i) {
        const int64_t k = g * G + i;
        xr[i] = x.sample[r * K + k] / (s ? (*s)[k] : 1.0f);
      }
      for (int64_t i = 0; i < G; ++i)
        for (int64_t j = 0; j < G; ++j) h[i * G + j] += xr[i] * xr[j];
    }
  }
  std::vector<float> w = weight_f32(*linear);
#pragma omp parallel for schedule(dynamic, 16)
  for (int64_t n = 0; n < N; ++n) {
    std::vector<float> wc(static_cast<size_t>(G)), best(static_cast<size_t>(G)), d(static_cast<size_t>(G));
    for (int64_t g = 0; g < ng; ++g) {
      float* wg = w.data() + n * K + g * G;
      const float* h = hg.data() + g * G * G;
      const auto [pmn, pmx] = std::minmax_element(wg, wg + G);
      const float mn = *pmn, mx = *pmx;
      double best_err = INFINITY;
      for (int step = 0; step <= static_cast<int>(max_shrink * static_cast<float>(grid)); ++step) {
        const float shrink = 1.0f - static_cast<float>(step) / static_cast<float>(grid);
        for (int64_t i = 0; i < G; ++i) wc[i] = std::clamp(wg[i], shrink * mn, shrink * mx);
        const QParam p = sc.choose(wc.data(), G);
        for (int64_t i = 0; i < G; ++i) d[i] = wg[i] - sc.dequantize(sc.quantize(wc[i], p), p);
        double err = 0;
        for (int64_t i = 0; i < G; ++i) {
          double row = 0;
          for (int64_t j = 0; j < G; ++j) row += static_cast<double>(h[i * G + j]) * d[j];
          err += d[i] * row;
        }
        if (err < best_err) {
          best_err = err;
          best = wc;
        }
      }
      std::copy(best.begin(), best.end(), wg);
    }
  }
  *linear = std::make_shared<quant::DenseWeight>(Tensor::from_vector(w, {N, K}));
}

}  // namespace lowbit::algorithms
