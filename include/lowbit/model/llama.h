// The Llama-family transformer on the CPU: fp32 activations over weights in any layout.
// Explicit ops, one function each (RMSNorm, RoPE, GQA attention over a KV cache, SwiGLU).
#pragma once

#include <filesystem>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "lowbit/model/config.h"
#include "lowbit/quant/linear.h"

namespace lowbit {

struct LlamaLayer {
  std::vector<float> attn_norm, ffn_norm;
  quant::LinearPtr wq, wk, wv, wo, w_gate, w_up, w_down;
};

struct LoadOptions {
  // Cast every Linear weight to this dtype at load (e.g. bf16, as torchao runs models); unset keeps
  // the checkpoint's dtype (computation is fp32 either way).
  std::optional<DType> weight_dtype;
};

class LlamaModel {
 public:
  static LlamaModel load(const std::filesystem::path& dir, const LoadOptions& opt = {});

  LlamaConfig config;
  Tensor embedding;  // [vocab, hidden], any float dtype
  std::vector<LlamaLayer> layers;
  std::vector<float> final_norm;
  quant::LinearPtr lm_head;

  // Every Linear layer with its Hugging Face name ("model.layers.3.mlp.down_proj", "lm_head"); the
  // pointers let quantize_ replace weights in place.
  std::vector<std::pair<std::string, quant::LinearPtr*>> linears();
  std::vector<std::pair<std::string, const quant::LinearPtr*>> linears() const;
  // Bytes of all weights and qparams; the embedding table only when asked.
  int64_t weight_bytes(bool include_embedding) const;
};

// Keys [layer][kv_head][position][head_dim] and values transposed [layer][kv_head][head_dim][position],
// so both attention products are row-by-row dot products.
class KVCache {
 public:
  KVCache(const LlamaConfig& c, int64_t capacity);
  int64_t capacity() const { return capacity_; }
  int64_t length() const { return length_; }
  void clear() { length_ = 0; }
  float* keys(int64_t layer, int64_t kv_head);
  float* values_t(int64_t layer, int64_t kv_head);
  int64_t nbytes() const { return static_cast<int64_t>(k_.size() + v_.size()) * 4; }

 private:
  friend class LlamaRunner;
  int64_t n_kv_, head_dim_, capacity_, length_ = 0;
  std::vector<float> k_, v_;
};

enum class Logits { Last, All };

// Where a Linear layer's input comes from, for calibration: the normed hidden state of q/k/v, the
// attention output of o_proj, the normed hidden state of gate/up, and SiLU(gate)·up of down_proj.
enum class LinearSite { AttnIn, AttnOut, MlpIn, MlpDown };
using LinearObserver =
    std::function<void(int64_t layer, LinearSite site, const float* x, int64_t rows, int64_t cols)>;

// Tokens of one sequence in a batch: they run at positions cache->length() onwards.
struct Segment {
  std::span<const int32_t> tokens;
  KVCache* cache;
};

class LlamaRunner {
 public:
  explicit LlamaRunner(const LlamaModel& model);
  // Runs `tokens` at positions cache.length() .. + tokens.size(), appending to the cache. Returns the
  // logits of the last position ([vocab]) or of every position ([tokens, vocab]).
  const std::vector<float>& forward(std::span<const int32_t> tokens, KVCache& cache, Logits which = Logits::Last);
  // Several sequences at once (batched decode: one token each): every Linear sees all their rows together.
  // Returns the logits of each segment's last token ([segments, vocab]) or of every token.
  const std::vector<float>& forward(std::span<const Segment> batch, Logits which = Logits::Last);

  // Calibration, one block at a time: the embeddings of `tokens` into x [tokens, hidden]; and block `l`
  // alone on the hidden states x [T, hidden] of one sequence at positions 0 .. T-1 (the cache is cleared
  // first), replacing x with the block's output; `observe`, when set, sees every Linear's input.
  void embed(std::span<const int32_t> tokens, float* x) const;
  // The final RMSNorm of T hidden states (the lm_head's input).
  void final_norm(const float* x, int64_t T, float* out) const;
  void forward_layer(int64_t l, float* x, int64_t T, KVCache& cache, const LinearObserver& observe = {});

 private:
  void layer(int64_t l, std::span<const Segment> batch, const std::vector<int64_t>& row0,
             const LinearObserver* observe);
  void resize(int64_t T);
  void attention(int64_t layer, int64_t row0, int64_t T, int64_t p0, KVCache& cache);
  void rope(float* v, int64_t n_heads);

  const LlamaModel& m_;
  std::vector<float> inv_freq_;
  std::vector<int64_t> pos_;  // position of each row in the batch
  std::vector<float> x_, xb_, q_, k_, v_, att_, hb_, hb2_, scores_, logits_;
};

}  // namespace lowbit
