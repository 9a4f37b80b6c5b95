#include "lowbit/model/checkpoint.h"
#include "lowbit/model/llama.h"
#include "lowbit/model/quantized_checkpoint.h"

namespace lowbit {
namespace {

std::vector<float> norm_weight(const Checkpoint& ck, const std::string& name, int64_t dim) {
  return ck.tensor(name, {dim}).to_f32_vector();
}

// A Linear layer of a lowbit quantized checkpoint, rebuilt from its manifest entry.
quant::LinearPtr load_quantized_linear(const Checkpoint& ck, const nlohmann::json& manifest,
                                       const std::filesystem::path& dir, const std::string& layer, int64_t out,
                                       int64_t in) {
  const std::string where = (dir / "lowbit.json").string();
  LB_CHECK(manifest["layers"].contains(layer), "{}: no entry for layer {}", where, layer);
  const auto& e = manifest["layers"][layer];
  try {
    LB_CHECK(e.at("shape") == nlohmann::json({out, in}), "{}: layer {} has shape {}, the config says [{}, {}]", where,
             layer, e.at("shape").dump(), out, in);
    const auto& tensors = e.at("tensors");
    quant::LinearPtr w = quant::load_weight(e.at("layout").get<std::string>(), e.at("params"), [&](const std::string& f) {
      LB_CHECK(tensors.contains(f), "{}: layer {} lists no tensor '{}'", where, layer, f);
      return ck.tensor(tensors[f].get<std::string>());
    });
    LB_CHECK(w->out_features() == out && w->in_features() == in, "{}: layer {} holds a [{}, {}] weight, expected [{}, {}]",
             where, layer, w->out_features(), w->in_features(), out, in);
    return w;
  } catch (const nlohmann::json::exception& x) {
    fail("{}: layer {}: {}", where, layer, x.what());
  } catch (const Error& x) {
    const std::string msg = x.what();
    if (msg.find(layer) != std::string::npos) throw;
    fail("{}: layer {}: {}", dir.string(), layer, msg);
  }
}

}  // namespace

LlamaModel LlamaModel::load(const std::filesystem::path& dir, const LoadOptions& opt) {
  LlamaModel m;
  m.config = LlamaConfig::load(dir / "config.json");
  const Checkpoint ck = Checkpoint::open(dir);
  const LlamaConfig& c = m.config;
  const int64_t D = c.hidden_size, F = c.intermediate_size;
  const bool quantized = is_quantized_checkpoint(dir);
  const nlohmann::json manifest = quantized ? read_manifest(dir) : nlohmann::json();
  auto linear = [&](const std::string& name, int64_t out, int64_t in) -> quant::LinearPtr {
    if (quantized) return load_quantized_linear(ck, manifest, dir, name.substr(0, name.size() - 7), out, in);
    Tensor w = ck.tensor(name, {out, in});
    LB_CHECK(dtype_is_float(w.dtype()) && w.dtype() != DType::F8E4M3 && w.dtype() != DType::F8E5M2,
             "{}: tensor '{}' has dtype {}; expected float32, bfloat16 or float16",
             ck.file_of(name).path().string(), name, dtype_name(w.dtype()));
    if (opt.weight_dtype && *opt.weight_dtype != w.dtype()) w = w.to(*opt.weight_dtype);
    return std::make_shared<quant::DenseWeight>(w);
  };
  m.embedding = ck.tensor("model.embed_tokens.weight", {c.vocab_size, D});
  for (int64_t i = 0; i < c.num_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    LlamaLayer L;
    L.attn_norm = norm_weight(ck, p + "input_layernorm.weight", D);
    L.ffn_norm = norm_weight(ck, p + "post_attention_layernorm.weight", D);
    L.wq = linear(p + "self_attn.q_proj.weight", c.q_dim(), D);
    L.wk = linear(p + "self_attn.k_proj.weight", c.kv_dim(), D);
    L.wv = linear(p + "self_attn.v_proj.weight", c.kv_dim(), D);
    L.wo = linear(p + "self_attn.o_proj.weight", D, c.q_dim());
    L.w_gate = linear(p + "mlp.gate_proj.weight", F, D);
    L.w_up = linear(p + "mlp.up_proj.weight", F, D);
    L.w_down = linear(p + "mlp.down_proj.weight", D, F);
    m.layers.push_back(std::move(L));
  }
  m.final_norm = norm_weight(ck, "model.norm.weight", D);
  if (ck.contains("lm_head.weight") || (quantized && manifest["layers"].contains("lm_head"))) {
    m.lm_head = linear("lm_head.weight", c.vocab_size, D);
  } else {
    LB_CHECK(c.tie_word_embeddings, "{}: no lm_head.weight and tie_word_embeddings is false", dir.string());
    m.lm_head = linear("model.embed_tokens.weight", c.vocab_size, D);
  }
  return m;
}

std::vector<std::pair<std::string, quant::LinearPtr*>> LlamaModel::linears() {
  std::vector<std::pair<std::string, quant::LinearPtr*>> v;
  for (size_t i = 0; i < layers.size(); ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    auto& L = layers[i];
    v.emplace_back(p + "self_attn.q_proj", &L.wq);
    v.emplace_back(p + "self_attn.k_proj", &L.wk);
    v.emplace_back(p + "self_attn.v_proj", &L.wv);
    v.emplace_back(p + "self_attn.o_proj", &L.wo);
    v.emplace_back(p + "mlp.gate_proj", &L.w_gate);
    v.emplace_back(p + "mlp.up_proj", &L.w_up);
    v.emplace_back(p + "mlp.down_proj", &L.w_down);
  }
  v.emplace_back("lm_head", &lm_head);
  return v;
}

std::vector<std::pair<std::string, const quant::LinearPtr*>> LlamaModel::linears() const {
  std::vector<std::pair<std::string, const quant::LinearPtr*>> v;
  for (auto& [name, p] : const_cast<LlamaModel*>(this)->linears()) v.emplace_back(name, p);
  return v;
}

int64_t LlamaModel::weight_bytes(bool include_embedding) const {
  int64_t n = 0;
  for (const auto& [name, w] : linears()) n += (*w)->nbytes();
  for (const auto& L : layers) n += static_cast<int64_t>(L.attn_norm.size() + L.ffn_norm.size()) * 4;
  n += static_cast<int64_t>(final_norm.size()) * 4;
  if (include_embedding) n += static_cast<int64_t>(embedding.nbytes());
  return n;
}

KVCache::KVCache(const LlamaConfig& c, int64_t capacity)
    : n_kv_(c.num_kv_heads), head_dim_(c.head_dim), capacity_(capacity) {
  LB_CHECK(capacity > 0, "KV cache capacity must be positive");
  const size_t n = static_cast<size_t>(c.num_layers * c.num_kv_heads * capacity * c.head_dim);
  k_.assign(n, 0.0f);
  v_.assign(n, 0.0f);
}

float* KVCache::keys(int64_t layer, int64_t h) { return k_.data() + ((layer * n_kv_ + h) * capacity_) * head_dim_; }
float* KVCache::values_t(int64_t layer, int64_t h) {
  return v_.data() + ((layer * n_kv_ + h) * head_dim_) * capacity_;
}

}  // namespace lowbit
