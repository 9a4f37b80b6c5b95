// Sampling and the generation loop.
#pragma once

#include <cstdint>
#include <functional>
#include <random>
#include <vector>

#include "lowbit/model/llama.h"

namespace lowbit {

struct SamplerOptions {
  float temperature = 0.8f;  // 0 = greedy
  int top_k = 40;            // 0 = the whole vocabulary
  uint64_t seed = 42;
};

class Sampler {
 public:
  explicit Sampler(const SamplerOptions& o) : opt_(o), rng_(o.seed) {}
  int32_t sample(const float* logits, int64_t vocab);

 private:
  SamplerOptions opt_;
  std::mt19937_64 rng_;
  std::vector<std::pair<float, int32_t>> buf_;
};

struct GenerateStats {
  int64_t prompt_tokens = 0;
  int64_t generated_tokens = 0;
  double prefill_seconds = 0;
  double decode_seconds = 0;  // for generated_tokens - 1 steps (the first token comes from prefill)
  double prefill_tokens_per_second() const { return prompt_tokens / std::max(prefill_seconds, 1e-12); }
  double decode_tokens_per_second() const {
    return generated_tokens > 1 ? (generated_tokens - 1) / std::max(decode_seconds, 1e-12) : 0.0;
  }
};

// Prefills `prompt`, then samples up to `max_new` tokens, calling on_token for each; stops early at
// `stop_token` (>= 0) or when on_token returns false.
GenerateStats generate(const LlamaModel& model, const std::vector<int32_t>& prompt, int64_t max_new, Sampler& sampler,
                       int32_t stop_token, const std::function<bool(int32_t)>& on_token);

}  // namespace lowbit
