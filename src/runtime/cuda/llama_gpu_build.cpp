// Building a LlamaGpu: uploading a CPU model (any mix of layouts), or random weights generated on the
// device; then the caches and activation buffers.
#include <algorithm>
#include <cmath>

#include "kernels/cuda/llama_ops.h"
#include "kernels/cuda/weight_gemv.h"
#include "runtime/cuda/llama_gpu_impl.h"

namespace lowbit {
namespace {

using gpu::FormatChoice;
using gpu::GpuLinear;
using gpu::WFormat;

uint64_t mix(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

float* upload_floats(gpu::DeviceArena& arena, const std::vector<float>& v, cudaStream_t stream) {
  float* p = arena.alloc_n<float>(v.size());
  LB_CUDA(cudaMemcpyAsync(p, v.data(), v.size() * 4, cudaMemcpyHostToDevice, stream));
  LB_CUDA(cudaStreamSynchronize(stream));
  return p;
}

// One product from CPU weights: fused into one GPU weight when every part maps to the same format
// (int4 parts other than the last must end on a 16-row tile), else one weight per part.
GpuGroup upload_group(LlamaGpu::Impl& m, std::initializer_list<const quant::LinearWeight*> parts) {
  GpuGroup g;
  std::vector<FormatChoice> f;
  const int64_t K = (*parts.begin())->in_features();
  for (const auto* p : parts) {
    LB_CHECK(p->in_features() == K, "GPU upload: fused weights disagree on in_features ({} vs {})",
             p->in_features(), K);
    f.push_back(gpu::choose_format(*p));
    g.N += p->out_features();
  }
  bool fuse = std::all_of(f.begin(), f.end(), [&](const FormatChoice& x) { return x == f[0]; });
  if (fuse && f[0].fmt == WFormat::Int4wo) {
    int64_t n = 0;
    for (const auto* p : parts) {
      fuse = fuse && n % 16 == 0;
      n += p->out_features();
    }
  }
  if (fuse) {
    GpuLinear L = gpu::allocate_linear(m.arena, f[0], g.N, K);
    int64_t n0 = 0;
    for (const auto* p : parts) {
      gpu::upload_rows(L, n0, *p, m.stream);
      n0 += p->out_features();
    }
    g.parts = {L};
    g.col0 = {0};
    return g;
  }
  int64_t n0 = 0, i = 0;
  for (const auto* p : parts) {
    GpuLinear L = gpu::allocate_linear(m.arena, f[i++], p->out_features(), K);
    gpu::upload_rows(L, 0, *p, m.stream);
    g.parts.push_back(L);
    g.col0.push_back(n0);
    n0 += p->out_features();
  }
  return g;
}

// The MLP's gate and up weights: one weight in the SwiGLU epilogue's row order when both map to one
// format and F is a multiple of 8 (sets glu), else as upload_group does.
GpuGroup upload_gate_up(LlamaGpu::Impl& m, const quant::LinearWeight& gate, const quant::LinearWeight& up,
                        bool& glu) {
  const FormatChoice f = gpu::choose_format(gate);
  const int64_t F = gate.out_features();
  glu = f == gpu::choose_format(up) && up.out_features() == F && F % 8 == 0 && up.in_features() == gate.in_features();
  if (!glu) return upload_group(m, {&gate, &up});
  GpuGroup g;
  g.N = 2 * F;
  GpuLinear L = gpu::allocate_linear(m.arena, f, g.N, gate.in_features());
  gpu::upload_gate_up(L, gate, up, m.stream);
  g.parts = {L};
  g.col0 = {0};
  return g;
}

GpuGroup random_group(LlamaGpu::Impl& m, const FormatChoice& f, int64_t N, int64_t K, uint64_t seed, float std) {
  GpuGroup g;
  GpuLinear L = gpu::allocate_linear(m.arena, f, N, K);
  gpu::randomize(L, seed, std, m.stream);
  g.parts = {L};
  g.col0 = {0};
  g.N = N;
  return g;
}

void check_config(const LlamaConfig& c, const GpuOptions& o) {
  LB_CHECK(c.head_dim == 64 || c.head_dim == 128, "GPU forward: head_dim {} (supported: 64, 128)", c.head_dim);
  LB_CHECK(c.num_kv_heads > 0 && c.num_heads % c.num_kv_heads == 0, "GPU forward: {} heads over {} kv heads",
           c.num_heads, c.num_kv_heads);
  const int64_t G = c.num_heads / c.num_kv_heads;
  LB_CHECK(G == 1 || G == 2 || G == 4 || G == 8, "GPU forward: {} query heads per kv head (supported 1, 2, 4, 8)", G);
  LB_CHECK(o.max_batch >= 1 && o.max_batch <= 16, "GPU forward: batch {} (supported 1..16)", o.max_batch);
  LB_CHECK(o.max_seq >= 1 && o.max_prefill >= 1, "GPU forward: max_seq and max_prefill must be positive");
  LB_CHECK(c.vocab_size > 0 && c.hidden_size > 0 && c.intermediate_size > 0, "GPU forward: bad model shape");
}

}  // namespace

int64_t GpuGroup::bytes() const {
  int64_t b = 0;
  for (const auto& p : parts) b += p.bytes();
  return b;
}

LlamaGpu::Impl::Impl(const LlamaConfig& config, const GpuOptions& opt) : c(config), o(opt) {
  check_config(c, o);
  int n = 0;
  LB_CUDA(cudaGetDeviceCount(&n));
  LB_CHECK(n > 0, "GPU forward: no CUDA device");
  // The highest priority: blocks of the weight staging's low-priority stream (LinearExec::stage)
  // take only the SMs the forward pass leaves idle.
  stream = gpu::create_stream(true);
  cuda::set_programmatic_launch(o.pdl);
}

LlamaGpu::Impl::~Impl() {
  if (stream) cudaStreamSynchronize(stream);
  for (auto& [b, g] : graphs) cudaGraphExecDestroy(g);
  lin.reset();
  if (stream) cudaStreamDestroy(stream);
}

void LlamaGpu::Impl::finish_setup() {
  const int64_t D = c.hidden_size, F = c.intermediate_size, V = c.vocab_size, HD = c.head_dim;
  const int64_t H = c.num_heads, KV = c.num_kv_heads, B = o.max_batch, S = o.max_seq;
  // The rotary table, as the CPU runner computes each angle: float32 pos · inv_freq, cos/sin in double.
  {
    const std::vector<float> inv = rope_inv_freq(c);
    const int64_t half = HD / 2;
    std::vector<float> table(static_cast<size_t>(S * half * 2));
    for (int64_t p = 0; p < S; ++p)
      for (int64_t i = 0; i < half; ++i) {
        const float angle = static_cast<float>(p) * inv[i];
        table[(p * half + i) * 2] = static_cast<float>(std::cos(static_cast<double>(angle)));
        table[(p * half + i) * 2 + 1] = static_cast<float>(std::sin(static_cast<double>(angle)));
      }
    rope = upload_floats(arena, table, stream);
  }
  layer_cache_elems = static_cast<size_t>(B * KV * S * HD);
  k_cache = arena.alloc(layer_cache_elems * 2 * c.num_layers);
  v_cache = arena.alloc(layer_cache_elems * 2 * c.num_layers);

  R = static_cast<int>(std::max<int64_t>(o.max_prefill, B));
  const int64_t qkv_n = (H + 2 * KV) * HD;
  x = arena.alloc_n<float>(R * D);
  xn = arena.alloc(2 * R * D);
  qkv = arena.alloc(2 * R * qkv_n);
  q = arena.alloc(2 * R * H * HD);
  att = arena.alloc(2 * R * H * HD);
  ob = arena.alloc(2 * R * D);
  gu = arena.alloc(2 * R * 2 * F);
  h = arena.alloc(2 * R * F);
  dn = arena.alloc(2 * R * D);
  logits16 = arena.alloc(2 * B * V);
  // Splits of the decode attention: enough blocks to fill the GPU at batch 1 (chunks of ≥ 64 positions).
  splits = static_cast<int>(std::clamp<int64_t>((S + 63) / 64, 1, 32));
  {
    int dev = 0;
    LB_CUDA(cudaGetDevice(&dev));
    LB_CUDA(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  }
  const size_t ws = cuda::attention_decode_workspace_floats(static_cast<int>(B), static_cast<int>(H),
                                                           static_cast<int>(HD), splits);
  attn_o = arena.alloc_n<float>(ws);
  attn_ml = attn_o + B * H * splits * HD;
  attn_counters = arena.alloc_n<unsigned>(B * KV);
  LB_CUDA(cudaMemsetAsync(attn_counters, 0, 4 * B * KV, stream));

  hist_cap = static_cast<int>(S);
  d_token = arena.alloc_n<int32_t>(B);
  d_pos = arena.alloc_n<int32_t>(B);
  d_n = arena.alloc_n<int32_t>(B);
  d_backup = arena.alloc_n<int32_t>(3 * B);
  d_hist = arena.alloc_n<int32_t>(B * S);
  d_rows_tok = arena.alloc_n<int32_t>(R);
  d_rows_pos = arena.alloc_n<int32_t>(R);
  LB_CUDA(cudaMemsetAsync(d_token, 0, 4 * B, stream));
  LB_CUDA(cudaMemsetAsync(d_pos, 0, 4 * B, stream));
  LB_CUDA(cudaMemsetAsync(d_n, 0, 4 * B, stream));

  // The product executor: the dequantization scratch covers the largest quantized weight, capped at
  // 256 MB (bigger ones, e.g. a 128K-vocabulary lm_head, run in row chunks).
  int64_t max_n = V, max_k = std::max({D, F, H * HD}), scratch = 0;
  auto visit = [&](const GpuGroup& g) {
    max_n = std::max(max_n, g.N);
    for (const auto& p : g.parts) {
      max_k = std::max(max_k, p.K);
      if (p.f.fmt != gpu::WFormat::Bf16) scratch = std::max(scratch, std::max<int64_t>(2 * p.N * p.K, 32 * p.K));
    }
  };
  for (const auto& L : layers) {
    visit(L.qkv);
    visit(L.wo);
    visit(L.gate_up);
    visit(L.down);
  }
  visit(lm_head);
  scratch = std::min<int64_t>(scratch, std::max<int64_t>(int64_t(256) << 20, 32 * max_k));
  // Staging banks hold the largest layer's weight-only weights in bf16; the layers' products then
  // do not use the scratch, which stays for lm_head (in row chunks).
  int64_t stage = 0;
  if (o.stage_weights && R > cuda::kGemvMaxM) {
    for (int l = 0; l < static_cast<int>(layers.size()); ++l) {
      int64_t bytes = 0;
      for (const gpu::GpuLinear* p : layer_weights(l)) bytes += static_cast<int64_t>(gpu::LinearExec::staged_bytes(*p));
      stage = std::max(stage, bytes);
    }
    if (stage > 0) scratch = std::min<int64_t>(scratch, std::max<int64_t>(int64_t(64) << 20, 32 * max_k));
  }
  lin = std::make_unique<gpu::LinearExec>(arena, stream, R, max_k, max_n, static_cast<size_t>(scratch), o.pdl,
                                          o.dequant_chunk_bytes, o.fp8_fast_accum, static_cast<size_t>(stage));
  host_pos.assign(static_cast<size_t>(B), 0);
  LB_CUDA(cudaStreamSynchronize(stream));
}

std::vector<const gpu::GpuLinear*> LlamaGpu::Impl::layer_weights(int l) const {
  std::vector<const gpu::GpuLinear*> out;
  for (const GpuGroup* g : {&layers[l].qkv, &layers[l].wo, &layers[l].gate_up, &layers[l].down})
    for (const auto& p : g->parts) out.push_back(&p);
  return out;
}

LlamaGpu::LlamaGpu(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
LlamaGpu::~LlamaGpu() = default;

std::unique_ptr<LlamaGpu> LlamaGpu::upload(const LlamaModel& model, const GpuOptions& opt) {
  auto m = std::make_unique<Impl>(model.config, opt);
  const LlamaConfig& c = m->c;
  LB_CHECK(model.embedding.dim() == 2 && model.embedding.size(0) == c.vocab_size &&
               model.embedding.size(1) == c.hidden_size,
           "GPU upload: embedding {} does not match the config", model.embedding.describe());
  const Tensor emb = model.embedding.to(DType::BF16).contiguous();
  m->embedding = m->arena.alloc(emb.nbytes());
  LB_CUDA(cudaMemcpyAsync(m->embedding, emb.raw(), emb.nbytes(), cudaMemcpyHostToDevice, m->stream));
  for (const LlamaLayer& L : model.layers) {
    GpuLayer g;
    g.attn_norm = upload_floats(m->arena, L.attn_norm, m->stream);
    g.ffn_norm = upload_floats(m->arena, L.ffn_norm, m->stream);
    g.qkv = upload_group(*m, {L.wq.get(), L.wk.get(), L.wv.get()});
    g.wo = upload_group(*m, {L.wo.get()});
    g.gate_up = upload_gate_up(*m, *L.w_gate, *L.w_up, g.glu);
    g.down = upload_group(*m, {L.w_down.get()});
    m->layers.push_back(std::move(g));
  }
  m->final_norm = upload_floats(m->arena, model.final_norm, m->stream);
  m->lm_head = upload_group(*m, {model.lm_head.get()});
  m->finish_setup();
  return std::unique_ptr<LlamaGpu>(new LlamaGpu(std::move(m)));
}

std::unique_ptr<LlamaGpu> LlamaGpu::random(const LlamaConfig& config, const std::string& scheme, uint64_t seed,
                                           const GpuOptions& opt, float std) {
  const FormatChoice f = gpu::format_from_scheme(scheme);
  auto m = std::make_unique<Impl>(config, opt);
  const LlamaConfig& c = m->c;
  const int64_t D = c.hidden_size, F = c.intermediate_size, V = c.vocab_size;
  uint64_t stream_seed = mix(seed);
  auto next = [&] { return stream_seed = mix(stream_seed); };
  m->embedding = m->arena.alloc(static_cast<size_t>(2 * V * D));
  cuda::random_bf16(m->embedding, V, D, next(), std, m->stream);
  auto ones = [&] {
    float* p = m->arena.alloc_n<float>(D);
    cuda::fill_f32(p, D, 1.0f, m->stream);
    return p;
  };
  for (int64_t l = 0; l < c.num_layers; ++l) {
    GpuLayer g;
    g.attn_norm = ones();
    g.ffn_norm = ones();
    g.qkv = random_group(*m, f, c.q_dim() + 2 * c.kv_dim(), D, next(), std);
    g.wo = random_group(*m, f, D, c.q_dim(), next(), std);
    g.gate_up = random_group(*m, f, 2 * F, D, next(), std);
    g.glu = F % 8 == 0;  // random rows: any order is the interleaved one
    g.down = random_group(*m, f, D, F, next(), std);
    m->layers.push_back(std::move(g));
  }
  m->final_norm = ones();
  m->lm_head = random_group(*m, f, V, D, next(), std);
  m->finish_setup();
  return std::unique_ptr<LlamaGpu>(new LlamaGpu(std::move(m)));
}

}  // namespace lowbit
