#include "lowbit/model/generate.h"

#include <algorithm>
#include <chrono>
#include <cmath>

namespace lowbit {

int32_t Sampler::sample(const float* logits, int64_t V) {
  if (opt_.temperature <= 0.0f) return static_cast<int32_t>(std::max_element(logits, logits + V) - logits);
  buf_.resize(static_cast<size_t>(V));
  for (int64_t i = 0; i < V; ++i) buf_[i] = {logits[i], static_cast<int32_t>(i)};
  int64_t k = opt_.top_k > 0 ? std::min<int64_t>(opt_.top_k, V) : V;
  std::partial_sort(buf_.begin(), buf_.begin() + k, buf_.end(), [](auto& a, auto& b) { return a.first > b.first; });
  const float mx = buf_[0].first;
  double total = 0;
  std::vector<double> p(static_cast<size_t>(k));
  for (int64_t i = 0; i < k; ++i) total += p[i] = std::exp((buf_[i].first - mx) / opt_.temperature);
  double r = std::uniform_real_distribution<double>(0.0, total)(rng_);
  for (int64_t i = 0; i < k; ++i) {
    r -= p[i];
    if (r <= 0) return buf_[i].second;
  }
  return buf_[k - 1].second;
}

GenerateStats generate(const LlamaModel& model, const std::vector<int32_t>& prompt, int64_t max_new, Sampler& sampler,
                       int32_t stop_token, const std::function<bool(int32_t)>& on_token) {
  LB_CHECK(!prompt.empty(), "generate: empty prompt");
  using clock = std::chrono::steady_clock;
  GenerateStats st;
  st.prompt_tokens = static_cast<int64_t>(prompt.size());
  const int64_t capacity = st.prompt_tokens + std::max<int64_t>(max_new, 1);
  LB_CHECK(capacity <= model.config.max_position,
           "generate: {} prompt tokens + {} new exceed the model's {} positions", prompt.size(), max_new,
           model.config.max_position);
  LlamaRunner runner(model);
  KVCache cache(model.config, capacity);
  const int64_t V = model.config.vocab_size;
  auto t0 = clock::now();
  int32_t next = sampler.sample(runner.forward(prompt, cache).data(), V);
  st.prefill_seconds = std::chrono::duration<double>(clock::now() - t0).count();
  t0 = clock::now();
  while (st.generated_tokens < max_new) {
    ++st.generated_tokens;
    if (!on_token(next) || next == stop_token || st.generated_tokens == max_new) break;
    const int32_t one[1] = {next};
    next = sampler.sample(runner.forward(one, cache).data(), V);
  }
  st.decode_seconds = std::chrono::duration<double>(clock::now() - t0).count();
  return st;
}

}  // namespace lowbit
