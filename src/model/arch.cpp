#include "lowbit/model/arch.h"

#include <algorithm>
#include <cmath>

#include "lowbit/core/float_formats.h"

namespace lowbit {
namespace {

LlamaConfig make(int64_t vocab, int64_t dim, int64_t ffn, int64_t layers, int64_t heads, int64_t kv, double theta,
                 int64_t max_pos) {
  LlamaConfig c;
  c.vocab_size = vocab;
  c.hidden_size = dim;
  c.intermediate_size = ffn;
  c.num_layers = layers;
  c.num_heads = heads;
  c.num_kv_heads = kv;
  c.head_dim = dim / heads;
  c.rope_theta = theta;
  c.max_position = max_pos;
  c.rms_norm_eps = 1e-5;
  c.bos_token_id = 1;
  c.eos_token_id = 2;
  c.dtype = "bfloat16";
  return c;
}

// splitmix64: a counter-based generator, so element i's value does not depend on how work is split.
uint64_t mix(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Normal quantiles at the midpoints of 2^16 equal-probability cells: indexing it with 16 random bits
// draws from N(0, 1) discretized to 65536 levels (tails to ±4.3σ), four draws per 64-bit random number.
const std::vector<float>& normal_table() {
  static const std::vector<float> t = [] {
    std::vector<float> v(65536);
    for (int i = 0; i < 65536; ++i) {
      const double p = (i + 0.5) / 65536.0;
      // Inverse CDF by bisection on erfc: exact enough and done once.
      double lo = -10, hi = 10;
      for (int it = 0; it < 80; ++it) {
        const double mid = 0.5 * (lo + hi);
        (0.5 * std::erfc(-mid / std::sqrt(2.0)) < p ? lo : hi) = mid;
      }
      v[i] = static_cast<float>(0.5 * (lo + hi));
    }
    return v;
  }();
  return t;
}

Tensor random_tensor(const Shape& shape, DType dtype, float std, uint64_t seed) {
  Tensor t = Tensor::empty(shape, dtype);
  const int64_t n = t.numel();
  const float* table = normal_table().data();
  void* dst = t.raw();
  const int64_t chunks = (n + 4095) / 4096;
#pragma omp parallel
  {
    std::vector<float> buf(4096);
#pragma omp for schedule(static)
    for (int64_t ch = 0; ch < chunks; ++ch) {
      const int64_t i0 = ch * 4096, len = std::min<int64_t>(4096, n - i0);
      for (int64_t j = 0; j < len; j += 4) {
        const uint64_t r = mix(seed ^ mix(static_cast<uint64_t>(i0 + j)));
        for (int64_t b = 0; b < 4 && j + b < len; ++b) buf[j + b] = table[(r >> (16 * b)) & 0xffff] * std;
      }
      convert_elements(buf.data(), DType::F32, static_cast<char*>(dst) + i0 * dtype_size(dtype), dtype, len);
    }
  }
  return t;
}

}  // namespace

LlamaConfig arch_config(const std::string& name) {
  LlamaConfig c;
  if (name == "tinyllama-1.1b") {
    c = make(32000, 2048, 5632, 22, 32, 4, 10000.0, 2048);
  } else if (name == "llama-2-7b") {
    c = make(32000, 4096, 11008, 32, 32, 32, 10000.0, 4096);
  } else if (name == "llama-3-8b") {
    c = make(128256, 4096, 14336, 32, 32, 8, 500000.0, 8192);
  } else if (name == "llama-3.1-8b") {
    c = make(128256, 4096, 14336, 32, 32, 8, 500000.0, 131072);
    c.rope_scaling = {"llama3", 8.0, 1.0, 4.0, 8192};
  } else {
    fail("unknown architecture '{}' (known: tinyllama-1.1b, llama-2-7b, llama-3-8b, llama-3.1-8b)", name);
  }
  c.architecture = name;
  return c;
}

std::vector<std::string> known_archs() { return {"tinyllama-1.1b", "llama-2-7b", "llama-3-8b", "llama-3.1-8b"}; }

LlamaModel random_model(const LlamaConfig& c, uint64_t seed, DType dtype, float std) {
  LlamaModel m;
  m.config = c;
  uint64_t stream = mix(seed);
  auto next = [&] { return stream = mix(stream); };
  auto linear = [&](int64_t out, int64_t in) {
    return std::make_shared<quant::DenseWeight>(random_tensor({out, in}, dtype, std, next()));
  };
  const int64_t D = c.hidden_size, F = c.intermediate_size;
  m.embedding = random_tensor({c.vocab_size, D}, dtype, std, next());
  for (int64_t i = 0; i < c.num_layers; ++i) {
    LlamaLayer L;
    L.attn_norm.assign(D, 1.0f);
    L.ffn_norm.assign(D, 1.0f);
    L.wq = linear(c.q_dim(), D);
    L.wk = linear(c.kv_dim(), D);
    L.wv = linear(c.kv_dim(), D);
    L.wo = linear(D, c.q_dim());
    L.w_gate = linear(F, D);
    L.w_up = linear(F, D);
    L.w_down = linear(D, F);
    m.layers.push_back(std::move(L));
  }
  m.final_norm.assign(D, 1.0f);
  m.lm_head = linear(c.vocab_size, D);
  return m;
}

}  // namespace lowbit
