// Llama-family model configuration, read from a Hugging Face config.json.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace lowbit {

struct RopeScaling {
  std::string type = "default";  // "default" or "llama3"
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position = 8192;
};

struct LlamaConfig {
  std::string architecture = "LlamaForCausalLM";
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;  // given, or hidden_size / num_heads
  int64_t max_position = 2048;
  double rms_norm_eps = 1e-5;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  int32_t bos_token_id = -1;
  int32_t eos_token_id = -1;
  std::string dtype = "float32";  // the checkpoint's declared dtype

  // Accepts both rope styles seen in the wild: `rope_theta` + `rope_scaling` (Llama 3.1/3.2) and
  // transformers v5's `rope_parameters`. Errors name the file and the field.
  static LlamaConfig from_json(const nlohmann::json& j, const std::string& source = "config.json");
  static LlamaConfig load(const std::filesystem::path& config_json);
  nlohmann::json to_json() const;

  int64_t q_dim() const { return num_heads * head_dim; }
  int64_t kv_dim() const { return num_kv_heads * head_dim; }
};

// RoPE's inverse frequencies as Hugging Face computes them (float32), with Llama 3's wavelength-dependent
// scaling when rope_scaling asks for it; the CPU and GPU forward passes rotate by these.
std::vector<float> rope_inv_freq(const LlamaConfig& c);

}  // namespace lowbit
