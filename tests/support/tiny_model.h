// A small random Llama checkpoint written to a directory, for tests that need to break or reshape one.
#pragma once

#include <random>

#include <nlohmann/json.hpp>

#include "lowbit/core/file_io.h"
#include "lowbit/core/safetensors.h"

namespace lowbit::test {

struct TinySpec {
  int64_t vocab = 64, hidden = 32, ffn = 48, layers = 2, heads = 4, kv_heads = 2;
  DType dtype = DType::BF16;
};

inline NamedTensors tiny_tensors(const TinySpec& s, uint32_t seed = 1) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 0.1f);
  auto make = [&](Shape shape, bool ones = false) {
    std::vector<float> v(static_cast<size_t>(shape_numel(shape)));
    for (auto& x : v) x = ones ? 1.0f + nd(rng) : nd(rng);
    return Tensor::from_floats(v, shape, s.dtype);
  };
  const int64_t hd = s.hidden / s.heads;
  NamedTensors t;
  t.emplace_back("model.embed_tokens.weight", make({s.vocab, s.hidden}));
  for (int64_t i = 0; i < s.layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    t.emplace_back(p + "input_layernorm.weight", make({s.hidden}, true));
    t.emplace_back(p + "post_attention_layernorm.weight", make({s.hidden}, true));
    t.emplace_back(p + "self_attn.q_proj.weight", make({s.heads * hd, s.hidden}));
    t.emplace_back(p + "self_attn.k_proj.weight", make({s.kv_heads * hd, s.hidden}));
    t.emplace_back(p + "self_attn.v_proj.weight", make({s.kv_heads * hd, s.hidden}));
    t.emplace_back(p + "self_attn.o_proj.weight", make({s.hidden, s.heads * hd}));
    t.emplace_back(p + "mlp.gate_proj.weight", make({s.ffn, s.hidden}));
    t.emplace_back(p + "mlp.up_proj.weight", make({s.ffn, s.hidden}));
    t.emplace_back(p + "mlp.down_proj.weight", make({s.hidden, s.ffn}));
  }
  t.emplace_back("model.norm.weight", make({s.hidden}, true));
  t.emplace_back("lm_head.weight", make({s.vocab, s.hidden}));
  return t;
}

inline nlohmann::json tiny_config(const TinySpec& s) {
  return {{"architectures", {"LlamaForCausalLM"}},
          {"model_type", "llama"},
          {"vocab_size", s.vocab},
          {"hidden_size", s.hidden},
          {"intermediate_size", s.ffn},
          {"num_hidden_layers", s.layers},
          {"num_attention_heads", s.heads},
          {"num_key_value_heads", s.kv_heads},
          {"max_position_embeddings", 256},
          {"rms_norm_eps", 1e-5},
          {"rope_theta", 10000.0},
          {"bos_token_id", 1},
          {"eos_token_id", 2},
          {"tie_word_embeddings", false}};
}

// Writes config.json and either model.safetensors or two shards with an index.
inline void write_tiny_model(const std::filesystem::path& dir, const TinySpec& s = {}, bool sharded = false,
                             NamedTensors tensors = {}) {
  std::filesystem::create_directories(dir);
  if (tensors.empty()) tensors = tiny_tensors(s);
  write_text_file_atomic(dir / "config.json", tiny_config(s).dump(2));
  if (!sharded) {
    write_safetensors(dir / "model.safetensors", tensors);
    return;
  }
  const size_t half = tensors.size() / 2;
  NamedTensors a(tensors.begin(), tensors.begin() + half), b(tensors.begin() + half, tensors.end());
  write_safetensors(dir / "model-00001-of-00002.safetensors", a);
  write_safetensors(dir / "model-00002-of-00002.safetensors", b);
  nlohmann::json index = {{"metadata", {{"total_size", 0}}}, {"weight_map", nlohmann::json::object()}};
  for (const auto& [n, t] : a) index["weight_map"][n] = "model-00001-of-00002.safetensors";
  for (const auto& [n, t] : b) index["weight_map"][n] = "model-00002-of-00002.safetensors";
  write_text_file_atomic(dir / "model.safetensors.index.json", index.dump(2));
}

}  // namespace lowbit::test
