#include "lowbit/model/config.h"

#include <cmath>
#include <numbers>

#include <nlohmann/json.hpp>

#include "lowbit/core/error.h"
#include "lowbit/core/file_io.h"

namespace lowbit {
namespace {

using nlohmann::json;

int64_t get_int(const json& j, const char* key, const std::string& src) {
  LB_CHECK(j.contains(key) && j[key].is_number_integer(), "{}: missing or non-integer '{}'", src, key);
  const int64_t v = j[key].get<int64_t>();
  LB_CHECK(v > 0, "{}: '{}' must be positive, got {}", src, key, v);
  return v;
}

int32_t token_id(const json& j, const char* key) {
  if (!j.contains(key) || j[key].is_null()) return -1;
  if (j[key].is_array()) return j[key].empty() ? -1 : j[key][0].get<int32_t>();  // Llama 3 lists several EOS
  return j[key].get<int32_t>();
}

RopeScaling parse_scaling(const json& s, const std::string& src) {
  RopeScaling r;
  if (s.is_null()) return r;
  LB_CHECK(s.is_object(), "{}: rope scaling must be an object", src);
  std::string type = s.value("rope_type", s.value("type", std::string("default")));
  if (type == "default") return r;
  LB_CHECK(type == "llama3", "{}: rope scaling type '{}' is not supported (lowbit supports default and llama3)",
           src, type);
  r.type = type;
  r.factor = s.value("factor", 8.0);
  r.low_freq_factor = s.value("low_freq_factor", 1.0);
  r.high_freq_factor = s.value("high_freq_factor", 4.0);
  r.original_max_position = s.value("original_max_position_embeddings", int64_t{8192});
  LB_CHECK(r.factor > 0 && r.high_freq_factor > r.low_freq_factor,
           "{}: invalid llama3 rope scaling (factor {}, low {}, high {})", src, r.factor, r.low_freq_factor,
           r.high_freq_factor);
  return r;
}

}  // namespace

std::vector<float> rope_inv_freq(const LlamaConfig& c) {
  const int64_t half = c.head_dim / 2;
  std::vector<float> f(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i) {
    const float e = static_cast<float>(2 * i) / static_cast<float>(c.head_dim);
    f[i] = 1.0f / std::pow(static_cast<float>(c.rope_theta), e);
  }
  const RopeScaling& s = c.rope_scaling;
  if (s.type == "llama3") {
    const double old_len = static_cast<double>(s.original_max_position);
    const double low_wavelen = old_len / s.low_freq_factor, high_wavelen = old_len / s.high_freq_factor;
    for (auto& v : f) {
      const double wavelen = 2.0 * std::numbers::pi / v;
      if (wavelen > low_wavelen) {
        v = static_cast<float>(v / s.factor);
      } else if (wavelen >= high_wavelen) {
        const double smooth = (old_len / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
        v = static_cast<float>((1.0 - smooth) * v / s.factor + smooth * v);
      }
    }
  }
  return f;
}

LlamaConfig LlamaConfig::from_json(const json& j, const std::string& src) {
  LB_CHECK(j.is_object(), "{}: not a JSON object", src);
  LlamaConfig c;
  if (j.contains("architectures") && j["architectures"].is_array() && !j["architectures"].empty())
    c.architecture = j["architectures"][0].get<std::string>();
  const std::string model_type = j.value("model_type", std::string("llama"));
  LB_CHECK(model_type == "llama" || model_type == "mistral",
           "{}: model_type '{}' is not a Llama-family model (lowbit supports llama, mistral)", src, model_type);
  c.vocab_size = get_int(j, "vocab_size", src);
  c.hidden_size = get_int(j, "hidden_size", src);
  c.intermediate_size = get_int(j, "intermediate_size", src);
  c.num_layers = get_int(j, "num_hidden_layers", src);
  c.num_heads = get_int(j, "num_attention_heads", src);
  c.num_kv_heads = j.contains("num_key_value_heads") && !j["num_key_value_heads"].is_null()
                       ? get_int(j, "num_key_value_heads", src)
                       : c.num_heads;
  LB_CHECK(c.num_heads % c.num_kv_heads == 0, "{}: {} attention heads are not a multiple of {} KV heads", src,
           c.num_heads, c.num_kv_heads);
  if (j.contains("head_dim") && !j["head_dim"].is_null()) {
    c.head_dim = get_int(j, "head_dim", src);
  } else {
    LB_CHECK(c.hidden_size % c.num_heads == 0, "{}: hidden_size {} not divisible by {} heads", src, c.hidden_size,
             c.num_heads);
    c.head_dim = c.hidden_size / c.num_heads;
  }
  LB_CHECK(c.head_dim % 2 == 0, "{}: head_dim {} must be even for rotary embeddings", src, c.head_dim);
  if (j.contains("max_position_embeddings")) c.max_position = get_int(j, "max_position_embeddings", src);
  c.rms_norm_eps = j.value("rms_norm_eps", 1e-6);
  c.tie_word_embeddings = j.value("tie_word_embeddings", false);
  c.bos_token_id = token_id(j, "bos_token_id");
  c.eos_token_id = token_id(j, "eos_token_id");
  if (j.contains("torch_dtype") && j["torch_dtype"].is_string()) c.dtype = j["torch_dtype"];
  if (j.contains("dtype") && j["dtype"].is_string()) c.dtype = j["dtype"];

  if (j.contains("rope_parameters") && j["rope_parameters"].is_object()) {  // transformers v5
    const auto& rp = j["rope_parameters"];
    c.rope_theta = rp.value("rope_theta", 10000.0);
    c.rope_scaling = parse_scaling(rp, src);
  } else {
    c.rope_theta = j.value("rope_theta", 10000.0);
    if (j.contains("rope_scaling")) c.rope_scaling = parse_scaling(j["rope_scaling"], src);
  }
  LB_CHECK(c.rope_theta > 0, "{}: rope_theta must be positive", src);
  return c;
}

LlamaConfig LlamaConfig::load(const std::filesystem::path& path) {
  json j;
  try {
    j = json::parse(read_text_file(path));
  } catch (const json::exception& e) {
    fail("{}: invalid JSON: {}", path.string(), e.what());
  }
  try {
    return from_json(j, path.string());
  } catch (const json::exception& e) {
    fail("{}: unexpected value: {}", path.string(), e.what());
  }
}

json LlamaConfig::to_json() const {
  json j = {{"architectures", {architecture}},
            {"model_type", "llama"},
            {"vocab_size", vocab_size},
            {"hidden_size", hidden_size},
            {"intermediate_size", intermediate_size},
            {"num_hidden_layers", num_layers},
            {"num_attention_heads", num_heads},
            {"num_key_value_heads", num_kv_heads},
            {"head_dim", head_dim},
            {"max_position_embeddings", max_position},
            {"rms_norm_eps", rms_norm_eps},
            {"rope_theta", rope_theta},
            {"tie_word_embeddings", tie_word_embeddings},
            {"torch_dtype", dtype}};
  if (bos_token_id >= 0) j["bos_token_id"] = bos_token_id;
  if (eos_token_id >= 0) j["eos_token_id"] = eos_token_id;
  if (rope_scaling.type == "llama3")
    j["rope_scaling"] = {{"rope_type", "llama3"},
                         {"factor", rope_scaling.factor},
                         {"low_freq_factor", rope_scaling.low_freq_factor},
                         {"high_freq_factor", rope_scaling.high_freq_factor},
                         {"original_max_position_embeddings", rope_scaling.original_max_position}};
  return j;
}

}  // namespace lowbit
