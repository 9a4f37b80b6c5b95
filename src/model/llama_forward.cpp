#include <algorithm>
#include <cmath>

#include <omp.h>

#include "kernels/cpu/activation.h"
#include "kernels/cpu/gemm.h"
#include "lowbit/core/float_formats.h"
#include "lowbit/model/llama.h"

namespace lowbit {
namespace {

using kernels::cpu::gemm_serial;
using kernels::cpu::GemmArgs;
using kernels::cpu::WType;

void rmsnorm(const float* x, const float* w, float* out, int64_t T, int64_t D, float eps) {
#pragma omp parallel for schedule(static) if (T > 8)
  for (int64_t t = 0; t < T; ++t) {
    const float* xr = x + t * D;
    float ss = 0.0f;
    for (int64_t i = 0; i < D; ++i) ss += xr[i] * xr[i];
    const float r = 1.0f / std::sqrt(ss / static_cast<float>(D) + eps);
    for (int64_t i = 0; i < D; ++i) out[t * D + i] = w[i] * (xr[i] * r);
  }
}

}  // namespace

LlamaRunner::LlamaRunner(const LlamaModel& model) : m_(model), inv_freq_(rope_inv_freq(model.config)) {}

void LlamaRunner::rope(float* v, int64_t n_heads) {
  const int64_t hd = m_.config.head_dim, half = hd / 2, row = n_heads * hd;
  const auto T = static_cast<int64_t>(pos_.size());
#pragma omp parallel for schedule(static) if (T > 8)
  for (int64_t t = 0; t < T; ++t) {
    const float pos = static_cast<float>(pos_[t]);
    for (int64_t i = 0; i < half; ++i) {
      const float angle = pos * inv_freq_[i];  // float32, as transformers computes it
      const float c = static_cast<float>(std::cos(static_cast<double>(angle)));
      const float s = static_cast<float>(std::sin(static_cast<double>(angle)));
      for (int64_t h = 0; h < n_heads; ++h) {
        float* p = v + t * row + h * hd;
        const float a = p[i], b = p[i + half];
        p[i] = a * c - b * s;
        p[i + half] = b * c + a * s;
      }
    }
  }
}

// Attention for the T rows starting at row0, which belong to one sequence at positions p0 .. p0+T-1.
void LlamaRunner::attention(int64_t layer, int64_t row0, int64_t T, int64_t p0, KVCache& cache) {
  const LlamaConfig& c = m_.config;
  const int64_t hd = c.head_dim, H = c.num_heads, KV = c.num_kv_heads, group = H / KV;
  const int64_t L = p0 + T, cap = cache.capacity();
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  // Append this chunk's keys and values.
  for (int64_t h = 0; h < KV; ++h) {
    float* K = cache.keys(layer, h);
    float* Vt = cache.values_t(layer, h);
    for (int64_t t = 0; t < T; ++t)
      for (int64_t d = 0; d < hd; ++d) {
        K[(p0 + t) * hd + d] = k_[(row0 + t) * KV * hd + h * hd + d];
        Vt[d * cap + p0 + t] = v_[(row0 + t) * KV * hd + h * hd + d];
      }
  }
  // Work units in parallel, each with its own scores buffer; the products inside run on one thread. A unit
  // is one head over the T rows, or for a single row (decode) the `group` heads that share a KV head, so
  // that those keys and values are read once as one small GEMM (the rows of q are then contiguous).
  const bool grouped = T == 1;
  const int64_t units = grouped ? KV : H, rows = grouped ? group : T, ldq = grouped ? hd : H * hd;
  const int threads = omp_get_max_threads();
  scores_.resize(static_cast<size_t>(threads * rows * L));
#pragma omp parallel for schedule(static)
  for (int64_t u = 0; u < units; ++u) {
    const int64_t kvh = grouped ? u : u / group, h0 = grouped ? u * group : u;
    float* scores = scores_.data() + static_cast<int64_t>(omp_get_thread_num()) * rows * L;
    const float* q = q_.data() + row0 * H * hd + h0 * hd;
    // scores[r, l] = q_r · k_l
    gemm_serial(GemmArgs{q, ldq, cache.keys(layer, kvh), WType::F32, hd, scores, L, rows, L, hd});
    for (int64_t r = 0; r < rows; ++r)  // causal: row r sees positions 0 .. p0+t
      kernels::cpu::softmax_masked(scores + r * L, p0 + (grouped ? 0 : r) + 1, L, scale);
    // out[r, d] = Σ_l p[r, l] · v_l[d]
    gemm_serial(GemmArgs{scores, L, cache.values_t(layer, kvh), WType::F32, cap, att_.data() + row0 * H * hd + h0 * hd,
                         ldq, rows, hd, L});
  }
}

const std::vector<float>& LlamaRunner::forward(std::span<const int32_t> tokens, KVCache& cache, Logits which) {
  const Segment s{tokens, &cache};
  return forward(std::span<const Segment>(&s, 1), which);
}

const std::vector<float>& LlamaRunner::forward(std::span<const Segment> batch, Logits which) {
  const LlamaConfig& c = m_.config;
  const int64_t D = c.hidden_size;
  pos_.clear();
  std::vector<int64_t> row0(batch.size()), last_rows;
  for (size_t s = 0; s < batch.size(); ++s) {
    const auto& seg = batch[s];
    const auto T = static_cast<int64_t>(seg.tokens.size());
    const int64_t p0 = seg.cache->length();
    LB_CHECK(T > 0, "forward: a sequence with no tokens");
    LB_CHECK(p0 + T <= seg.cache->capacity(), "forward: {} tokens at position {} exceed the KV cache capacity {}", T,
             p0, seg.cache->capacity());
    row0[s] = static_cast<int64_t>(pos_.size());
    for (int64_t t = 0; t < T; ++t) pos_.push_back(p0 + t);
    last_rows.push_back(static_cast<int64_t>(pos_.size()) - 1);
  }
  const auto T = static_cast<int64_t>(pos_.size());
  resize(T);  // pos_ already holds T positions
  int64_t r = 0;
  for (const auto& seg : batch) {
    embed(seg.tokens, x_.data() + r * D);
    r += static_cast<int64_t>(seg.tokens.size());
  }
  for (int64_t l = 0; l < c.num_layers; ++l) layer(l, batch, row0, nullptr);
  for (const auto& seg : batch) seg.cache->length_ += static_cast<int64_t>(seg.tokens.size());

  // Final norm and the output projection, for the rows whose logits were asked for.
  int64_t rows = T;
  if (which == Logits::Last) {
    rows = static_cast<int64_t>(last_rows.size());
    for (int64_t i = 0; i < rows; ++i) std::copy_n(x_.data() + last_rows[i] * D, D, x_.data() + i * D);
  }
  rmsnorm(x_.data(), m_.final_norm.data(), xb_.data(), rows, D, static_cast<float>(c.rms_norm_eps));
  logits_.resize(static_cast<size_t>(rows * c.vocab_size));
  m_.lm_head->linear(xb_.data(), rows, logits_.data());
  return logits_;
}

// One transformer block over the rows in x_ (T = pos_.size()); `observe` sees each Linear's input.
void LlamaRunner::layer(int64_t l, std::span<const Segment> batch, const std::vector<int64_t>& row0,
                        const LinearObserver* observe) {
  const LlamaConfig& c = m_.config;
  const int64_t D = c.hidden_size, F = c.intermediate_size;
  const auto T = static_cast<int64_t>(pos_.size());
  const float eps = static_cast<float>(c.rms_norm_eps);
  const LlamaLayer& L = m_.layers[l];
  auto seen = [&](LinearSite site, const float* x, int64_t cols) {
    if (observe) (*observe)(l, site, x, T, cols);
  };
  rmsnorm(x_.data(), L.attn_norm.data(), xb_.data(), T, D, eps);
  seen(LinearSite::AttnIn, xb_.data(), D);
  {
    const quant::LinearWeight* w[3] = {L.wq.get(), L.wk.get(), L.wv.get()};
    float* out[3] = {q_.data(), k_.data(), v_.data()};
    quant::linear_many(w, xb_.data(), T, out);
  }
  rope(q_.data(), c.num_heads);
  rope(k_.data(), c.num_kv_heads);
  for (size_t s = 0; s < batch.size(); ++s)
    attention(l, row0[s], static_cast<int64_t>(batch[s].tokens.size()), batch[s].cache->length(), *batch[s].cache);
  seen(LinearSite::AttnOut, att_.data(), c.q_dim());
  L.wo->linear(att_.data(), T, xb_.data());
  for (int64_t i = 0; i < T * D; ++i) x_[i] += xb_[i];

  rmsnorm(x_.data(), L.ffn_norm.data(), xb_.data(), T, D, eps);
  seen(LinearSite::MlpIn, xb_.data(), D);
  {
    const quant::LinearWeight* w[2] = {L.w_gate.get(), L.w_up.get()};
    float* out[2] = {hb_.data(), hb2_.data()};
    quant::linear_many(w, xb_.data(), T, out);
  }
#pragma omp parallel for schedule(static) if (T > 8)
  for (int64_t t = 0; t < T; ++t) kernels::cpu::silu_mul(hb_.data() + t * F, hb2_.data() + t * F, F);
  seen(LinearSite::MlpDown, hb_.data(), F);
  L.w_down->linear(hb_.data(), T, xb_.data());
  for (int64_t i = 0; i < T * D; ++i) x_[i] += xb_[i];
}

void LlamaRunner::forward_layer(int64_t l, float* x, int64_t T, KVCache& cache, const LinearObserver& observe) {
  const LlamaConfig& c = m_.config;
  LB_CHECK(l >= 0 && l < c.num_layers, "forward_layer: layer {} of {}", l, c.num_layers);
  LB_CHECK(T > 0 && T <= cache.capacity(), "forward_layer: {} rows for a KV cache of {}", T, cache.capacity());
  cache.clear();
  resize(T);
  for (int64_t t = 0; t < T; ++t) pos_[t] = t;
  std::copy_n(x, T * c.hidden_size, x_.data());
  const std::vector<int32_t> dummy(static_cast<size_t>(T));
  const Segment seg{dummy, &cache};
  layer(l, std::span<const Segment>(&seg, 1), {0}, observe ? &observe : nullptr);
  std::copy_n(x_.data(), T * c.hidden_size, x);
}

void LlamaRunner::final_norm(const float* x, int64_t T, float* out) const {
  rmsnorm(x, m_.final_norm.data(), out, T, m_.config.hidden_size, static_cast<float>(m_.config.rms_norm_eps));
}

void LlamaRunner::embed(std::span<const int32_t> tokens, float* x) const {
  const LlamaConfig& c = m_.config;
  const int64_t D = c.hidden_size;
  for (size_t r = 0; r < tokens.size(); ++r) {
    const int32_t tok = tokens[r];
    LB_CHECK(tok >= 0 && tok < c.vocab_size, "token id {} outside the vocabulary of {}", tok, c.vocab_size);
    convert_elements(static_cast<const char*>(m_.embedding.raw()) + tok * D * dtype_size(m_.embedding.dtype()),
                     m_.embedding.dtype(), x + static_cast<int64_t>(r) * D, DType::F32, D);
  }
}

void LlamaRunner::resize(int64_t T) {
  const LlamaConfig& c = m_.config;
  pos_.resize(static_cast<size_t>(T));
  x_.resize(T * c.hidden_size);
  xb_.resize(T * c.hidden_size);
  q_.resize(T * c.q_dim());
  k_.resize(T * c.kv_dim());
  v_.resize(T * c.kv_dim());
  att_.resize(T * c.q_dim());
  hb_.resize(T * c.intermediate_size);
  hb2_.resize(T * c.intermediate_size);
}

}  // namespace lowbit
