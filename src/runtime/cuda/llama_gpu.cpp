// The forward pass on the GPU, op by op as the CPU runner (llama_forward.cpp) does it: embedding,
// then per layer RMSNorm → fused q/k/v → RoPE + cache append → attention (one kernel when
// decoding) → o_proj → residual + RMSNorm → fused gate/up → SwiGLU (inside the gate/up GEMV when
// decoding) → down_proj, the residual add folded into the next RMSNorm;
// final norm, lm_head, greedy argmax. Decode steps are captured once per batch size as a CUDA
// graph and replayed; they read token ids and positions from device memory and advance them.
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdlib>
#include <optional>

#include "kernels/cuda/llama_ops.h"
#include "kernels/cuda/weight_gemv.h"
#include "runtime/cuda/llama_gpu_impl.h"

namespace lowbit {

void LlamaGpu::Impl::run_group(const GpuGroup& g, const void* in, int M, void* y, bool y_f32, bool pdl,
                               const cuda::RowCodes& xq) {
  const size_t elt = y_f32 ? 4 : 2;
  for (size_t i = 0; i < g.parts.size(); ++i)
    lin->run(g.parts[i], in, M, static_cast<char*>(y) + g.col0[i] * elt, g.N, y_f32, pdl, xq);
}

namespace {
// down_proj's GEMV with programmatic dependent launch (behind the gate/up GEMV); LOWBIT_PDL_DOWN=0|1
// overrides the built-in choice, for measurements.
bool pdl_down() {
  static const bool on = [] {
    const char* e = std::getenv("LOWBIT_PDL_DOWN");
    return e && *e ? std::atoi(e) != 0 : true;
  }();
  return on;
}
}  // namespace

void LlamaGpu::Impl::mark(const char* name) {
  if (!prof) return;
  cudaEvent_t e = nullptr;
  LB_CUDA(cudaEventCreate(&e));
  prof->emplace_back(name, e);
  LB_CUDA(cudaEventRecord(e, stream));
}

void LlamaGpu::Impl::layer(int l, int M, bool decode, int T, int64_t p0) {
  const GpuLayer& L = layers[l];
  const int D = static_cast<int>(c.hidden_size), F = static_cast<int>(c.intermediate_size);
  const int H = static_cast<int>(c.num_heads), KV = static_cast<int>(c.num_kv_heads);
  const int HD = static_cast<int>(c.head_dim), S = static_cast<int>(o.max_seq);
  const float eps = static_cast<float>(c.rms_norm_eps);
  void* kc = static_cast<char*>(k_cache) + static_cast<size_t>(l) * layer_cache_elems * 2;
  void* vc = static_cast<char*>(v_cache) + static_cast<size_t>(l) * layer_cache_elems * 2;

  // The previous layer's MLP residual joins here (layer 0 starts from the embeddings). The norms
  // and SwiGLU write int8 / e4m3 codes instead of bf16 rows where the next product takes them.
  // int8dq's prefill products stay int32 where the next kernel scales them itself (RoPE, the
  // norms, SwiGLU): no bf16 round trip through memory.
  const cuda::RowCodes qkv_in = lin->input_codes(L.qkv.parts, M, L.qkv.N);
  const cuda::Int32Rows delta32 = l == 0 || !dn32 ? cuda::Int32Rows{} : *dn32;
  cuda::add_rmsnorm(x, l == 0 || delta32 ? nullptr : dn, L.attn_norm, xn, M, D, eps, 1, 0, stream, qkv_in, delta32);
  dn32.reset();
  mark("add + attn_norm");
  const auto qkv32 = single(L.qkv) && !decode ? lin->run_int32(L.qkv.parts[0], xn, M, qkv_in) : std::nullopt;
  if (!qkv32) run_group(L.qkv, xn, M, qkv, false, true, qkv_in);
  mark("qkv_proj");
  const float scale = 1.0f / std::sqrt(static_cast<float>(HD));
  if (decode) {
    // RoPE, the cache append and the split merge all happen inside the decode attention kernel.
    // About two blocks per SM at long contexts (four were slower at batch 16: more merges, the
    // same registers); chunks hold ≥ 64 positions.
    const int sp = std::clamp((2 * sms + M * KV - 1) / (M * KV), 1, splits);
    cuda::DecodeAttnArgs da{qkv, rope, kc, vc, d_pos, att, attn_o, attn_ml, attn_counters, M, H, KV, HD, S,
                            sp, scale};
    cuda::attention_decode(da, stream);
  } else {
    cuda::RopeKvArgs ra{qkv, q, kc, vc, d_rows_pos, rope, M, H, KV, HD, S, T, qkv32.value_or(cuda::Int32Rows{})};
    cuda::rope_kv_append(ra, stream);
    mark("rope + kv append");
    cuda::PrefillAttnArgs pa{q, kc, vc, att, M / T, T, static_cast<int>(p0), H, KV, HD, S, scale};
    cuda::attention_prefill(pa, stream);
  }
  mark("attention");
  const auto o32 = single(L.wo) ? lin->run_int32(L.wo.parts[0], att, M) : std::nullopt;
  if (!o32) run_group(L.wo, att, M, ob);
  mark("o_proj");
  const cuda::RowCodes up_in = lin->input_codes(L.gate_up.parts, M, L.gate_up.N);
  cuda::add_rmsnorm(x, o32 ? nullptr : ob, L.ffn_norm, xn, M, D, eps, 1, 0, stream, up_in,
                    o32.value_or(cuda::Int32Rows{}));
  mark("add + ffn_norm");
  cuda::RowCodes down_in;
  std::optional<cuda::Int32Rows> gu32;
  if (L.glu && lin->run_swiglu(L.gate_up.parts[0], xn, M, h, up_in)) {
    mark("gate_up_proj + swiglu");
  } else if (L.glu && (down_in = lin->input_codes(L.down.parts, M, L.down.N)).kind != cuda::RowQuant::None &&
             (gu32 = lin->run_int32(L.gate_up.parts[0], nullptr, M, up_in))) {
    mark("gate_up_proj");
    cuda::swiglu_interleaved_int32(*gu32, M, F, stream, down_in);
    mark("swiglu");
  } else {
    run_group(L.gate_up, xn, M, gu, false, true, up_in);
    mark("gate_up_proj");
    if (L.glu) {
      down_in = lin->input_codes(L.down.parts, M, L.down.N);
      cuda::swiglu_interleaved(gu, h, M, F, stream, down_in);
    } else {
      cuda::swiglu(gu, h, M, F, stream);
    }
    mark("swiglu");
  }
  // The residual's delta stays int32 into the next norm where it can (prefill, int8dq).
  dn32 = single(L.down) ? lin->run_int32(L.down.parts[0], h, M, down_in) : std::nullopt;
  if (!dn32) run_group(L.down, h, M, dn, false, pdl_down(), down_in);
  mark("down_proj");
}

// One greedy step of B sequences: tokens d_token at positions d_pos → the next tokens, appended to
// the history; positions advance.
void LlamaGpu::Impl::decode_body(int B) {
  const int D = static_cast<int>(c.hidden_size), V = static_cast<int>(c.vocab_size);
  cuda::embed_rows(embedding, c.vocab_size, d_token, B, D, x, stream);
  mark("embedding");
  for (int l = 0; l < static_cast<int>(c.num_layers); ++l) layer(l, B, true, 1, 0);
  cuda::add_rmsnorm(x, dn, final_norm, xn, B, D, static_cast<float>(c.rms_norm_eps), 1, 0, stream);
  mark("final norm");
  run_group(lm_head, xn, B, logits16);
  mark("lm_head");
  cuda::argmax_advance(logits16, false, V, B, V, d_token, d_pos, d_hist, d_n, hist_cap, stream);
  mark("argmax");
}

cudaGraphExec_t LlamaGpu::Impl::graph_for(int B) {
  if (auto it = graphs.find(B); it != graphs.end()) return it->second;
  // One eager step first: the kernels' one-time setup (shared-memory limits, configuration
  // lookups) must not happen inside the capture. The decode state is saved and restored around it;
  // the cache row it writes is rewritten by the real step before anything reads it.
  LB_CUDA(cudaMemcpyAsync(d_backup, d_token, 4 * B, cudaMemcpyDeviceToDevice, stream));
  LB_CUDA(cudaMemcpyAsync(d_backup + B, d_pos, 4 * B, cudaMemcpyDeviceToDevice, stream));
  LB_CUDA(cudaMemcpyAsync(d_backup + 2 * B, d_n, 4 * B, cudaMemcpyDeviceToDevice, stream));
  decode_body(B);
  LB_CUDA(cudaMemcpyAsync(d_token, d_backup, 4 * B, cudaMemcpyDeviceToDevice, stream));
  LB_CUDA(cudaMemcpyAsync(d_pos, d_backup + B, 4 * B, cudaMemcpyDeviceToDevice, stream));
  LB_CUDA(cudaMemcpyAsync(d_n, d_backup + 2 * B, 4 * B, cudaMemcpyDeviceToDevice, stream));
  LB_CUDA(cudaStreamSynchronize(stream));

  cudaGraph_t graph = nullptr;
  LB_CUDA(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  try {
    decode_body(B);
  } catch (...) {
    cudaStreamEndCapture(stream, &graph);
    if (graph) cudaGraphDestroy(graph);
    throw;
  }
  LB_CUDA(cudaStreamEndCapture(stream, &graph));
  cudaGraphExec_t exec = nullptr;
  const cudaError_t e = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);
  LB_CUDA(e);
  graphs[B] = exec;
  return exec;
}

const LlamaConfig& LlamaGpu::config() const { return impl_->c; }
const GpuOptions& LlamaGpu::options() const { return impl_->o; }

int64_t LlamaGpu::weight_bytes() const {
  int64_t b = impl_->lm_head.bytes();
  for (const auto& L : impl_->layers) b += L.qkv.bytes() + L.wo.bytes() + L.gate_up.bytes() + L.down.bytes();
  return b;
}

int64_t LlamaGpu::device_bytes() const { return static_cast<int64_t>(impl_->arena.reserved()); }

std::string LlamaGpu::describe() const {
  std::map<std::string, int> count;
  bool fused = true;
  auto visit = [&](const GpuGroup& g, bool fusable) {
    for (const auto& p : g.parts) ++count[gpu::format_name(p.f)];
    if (fusable && g.parts.size() > 1) fused = false;
  };
  for (const auto& L : impl_->layers) {
    visit(L.qkv, true);
    visit(L.wo, false);
    visit(L.gate_up, true);
    visit(L.down, false);
  }
  visit(impl_->lm_head, false);
  std::string s;
  if (count.size() == 1) {
    s = count.begin()->first;
  } else {
    s = "mixed:";
    for (const auto& [name, n] : count) s += fmt::format(" {} x{}", name, n);
  }
  return s + (fused ? " (q/k/v and gate/up fused)" : " (some q/k/v or gate/up unfused)");
}

void LlamaGpu::synchronize() const { LB_CUDA(cudaStreamSynchronize(impl_->stream)); }

std::vector<float> LlamaGpu::prefill(std::span<const int32_t> tokens, int batch, int64_t pos0, Logits which) {
  Impl& m = *impl_;
  const LlamaConfig& c = m.c;
  LB_CHECK(batch >= 1 && batch <= m.o.max_batch, "prefill: batch {} (the model was set up for 1..{})", batch,
           m.o.max_batch);
  LB_CHECK(!tokens.empty() && tokens.size() % batch == 0, "prefill: {} tokens for {} sequences", tokens.size(), batch);
  const int64_t T = static_cast<int64_t>(tokens.size()) / batch, V = c.vocab_size;
  const int D = static_cast<int>(c.hidden_size);
  LB_CHECK(pos0 >= 0 && pos0 + T <= m.o.max_seq, "prefill: positions {}..{} exceed the KV cache of {}", pos0,
           pos0 + T - 1, m.o.max_seq);
  for (int32_t t : tokens)
    LB_CHECK(t >= 0 && t < V, "prefill: token id {} outside the vocabulary of {}", t, V);
  if (which == Logits::All && !m.logits32) m.logits32 = m.arena.alloc_n<float>(static_cast<size_t>(m.R) * V);

  std::vector<float> out(static_cast<size_t>((which == Logits::All ? batch * T : batch) * V));
  const int64_t chunk = std::max<int64_t>(1, m.R / batch);
  std::vector<int32_t> rows_tok, rows_pos;
  for (int64_t c0 = 0; c0 < T; c0 += chunk) {
    const int t = static_cast<int>(std::min(chunk, T - c0));
    const int M = batch * t;
    const bool last = c0 + t == T;
    rows_tok.resize(M);
    rows_pos.resize(M);
    for (int b = 0; b < batch; ++b)
      for (int i = 0; i < t; ++i) {
        rows_tok[b * t + i] = tokens[b * T + c0 + i];
        rows_pos[b * t + i] = static_cast<int32_t>(pos0 + c0 + i);
      }
    LB_CUDA(cudaMemcpyAsync(m.d_rows_tok, rows_tok.data(), 4 * M, cudaMemcpyHostToDevice, m.stream));
    LB_CUDA(cudaMemcpyAsync(m.d_rows_pos, rows_pos.data(), 4 * M, cudaMemcpyHostToDevice, m.stream));
    cuda::embed_rows(m.embedding, V, m.d_rows_tok, M, D, m.x, m.stream);
    // The GEMM path's quantized weights are dequantized one layer ahead, beside the layer running.
    const int layers = static_cast<int>(c.num_layers);
    const bool stage = M > cuda::kGemvMaxM;
    if (stage) m.lin->stage(m.layer_weights(0));
    for (int l = 0; l < layers; ++l) {
      if (stage && l + 1 < layers) m.lin->stage(m.layer_weights(l + 1));
      m.layer(l, M, false, t, pos0 + c0);
    }
    const float eps = static_cast<float>(c.rms_norm_eps);
    const cuda::Int32Rows last32 = m.dn32.value_or(cuda::Int32Rows{});
    const void* last_delta = last32 ? nullptr : m.dn;
    if (which == Logits::All) {
      cuda::add_rmsnorm(m.x, last_delta, m.final_norm, m.xn, M, D, eps, 1, 0, m.stream, {}, last32);
      m.run_group(m.lm_head, m.xn, M, m.logits32, true);
      for (int b = 0; b < batch; ++b)
        LB_CUDA(cudaMemcpyAsync(out.data() + (b * T + c0) * V, m.logits32 + static_cast<int64_t>(b) * t * V,
                                sizeof(float) * t * V, cudaMemcpyDeviceToHost, m.stream));
    }
    if (!last) continue;
    // The decode state: each sequence's greedy next token, its position after the prompt.
    std::vector<int32_t> pos_last(batch, static_cast<int32_t>(pos0 + T - 1));
    LB_CUDA(cudaMemcpyAsync(m.d_pos, pos_last.data(), 4 * batch, cudaMemcpyHostToDevice, m.stream));
    LB_CUDA(cudaMemsetAsync(m.d_n, 0, 4 * batch, m.stream));
    if (which == Logits::All) {
      cuda::argmax_advance(m.logits32 + static_cast<int64_t>(t - 1) * V, true, static_cast<int64_t>(t) * V, batch,
                           static_cast<int>(V), m.d_token, m.d_pos, nullptr, nullptr, 0, m.stream);
    } else {
      // Only each sequence's last row goes through the final norm and lm_head.
      cuda::add_rmsnorm(m.x, last_delta, m.final_norm, m.xn, batch, D, eps, t, t - 1, m.stream, {}, last32);
      m.run_group(m.lm_head, m.xn, batch, m.logits16);
      cuda::argmax_advance(m.logits16, false, V, batch, static_cast<int>(V), m.d_token, m.d_pos, nullptr, nullptr,
                           0, m.stream);
      std::vector<uint16_t> l16(static_cast<size_t>(batch * V));
      LB_CUDA(cudaMemcpyAsync(l16.data(), m.logits16, 2 * l16.size(), cudaMemcpyDeviceToHost, m.stream));
      LB_CUDA(cudaStreamSynchronize(m.stream));
      for (size_t i = 0; i < l16.size(); ++i) out[i] = std::bit_cast<float>(uint32_t(l16[i]) << 16);
    }
  }
  LB_CUDA(cudaStreamSynchronize(m.stream));
  m.batch = batch;
  m.host_pos.assign(static_cast<size_t>(m.o.max_batch), 0);
  for (int b = 0; b < batch; ++b) m.host_pos[b] = pos0 + T;
  return out;
}

std::vector<int32_t> LlamaGpu::decode_greedy(int64_t steps) {
  Impl& m = *impl_;
  const int B = m.batch;
  LB_CHECK(B > 0, "decode: run prefill first");
  LB_CHECK(steps >= 0 && steps <= m.hist_cap, "decode: {} steps (at most {})", steps, m.hist_cap);
  for (int b = 0; b < B; ++b)
    LB_CHECK(m.host_pos[b] + steps <= m.o.max_seq, "decode: {} steps from position {} exceed the KV cache of {}",
             steps, m.host_pos[b], m.o.max_seq);
  cudaGraphExec_t g = m.graph_for(B);
  LB_CUDA(cudaMemsetAsync(m.d_n, 0, 4 * B, m.stream));
  for (int64_t s = 0; s < steps; ++s) LB_CUDA(cudaGraphLaunch(g, m.stream));
  std::vector<int32_t> hist(static_cast<size_t>(B) * m.hist_cap), out(static_cast<size_t>(steps * B));
  LB_CUDA(cudaMemcpyAsync(hist.data(), m.d_hist, 4 * hist.size(), cudaMemcpyDeviceToHost, m.stream));
  LB_CUDA(cudaStreamSynchronize(m.stream));
  for (int64_t s = 0; s < steps; ++s)
    for (int b = 0; b < B; ++b) out[s * B + b] = hist[static_cast<size_t>(b) * m.hist_cap + s];
  for (int b = 0; b < B; ++b) m.host_pos[b] += steps;
  return out;
}

std::vector<int32_t> LlamaGpu::next_tokens() const {
  const Impl& m = *impl_;
  std::vector<int32_t> t(static_cast<size_t>(m.batch));
  LB_CUDA(cudaMemcpyAsync(t.data(), m.d_token, 4 * t.size(), cudaMemcpyDeviceToHost, m.stream));
  LB_CUDA(cudaStreamSynchronize(m.stream));
  return t;
}

std::vector<float> LlamaGpu::decode_step(std::span<const int32_t> tokens, std::span<const int32_t> positions) {
  Impl& m = *impl_;
  const int B = static_cast<int>(tokens.size());
  LB_CHECK(B >= 1 && B <= m.o.max_batch && positions.size() == tokens.size(),
           "decode_step: {} tokens and {} positions (batch 1..{})", tokens.size(), positions.size(), m.o.max_batch);
  for (int b = 0; b < B; ++b) {
    LB_CHECK(tokens[b] >= 0 && tokens[b] < m.c.vocab_size, "decode_step: token id {} outside the vocabulary",
             tokens[b]);
    LB_CHECK(positions[b] >= 0 && positions[b] < m.o.max_seq, "decode_step: position {} outside the KV cache of {}",
             positions[b], m.o.max_seq);
  }
  LB_CUDA(cudaMemcpyAsync(m.d_token, tokens.data(), 4 * B, cudaMemcpyHostToDevice, m.stream));
  LB_CUDA(cudaMemcpyAsync(m.d_pos, positions.data(), 4 * B, cudaMemcpyHostToDevice, m.stream));
  LB_CUDA(cudaMemsetAsync(m.d_n, 0, 4 * B, m.stream));
  LB_CUDA(cudaGraphLaunch(m.graph_for(B), m.stream));
  const int64_t V = m.c.vocab_size;
  std::vector<uint16_t> l16(static_cast<size_t>(B * V));
  LB_CUDA(cudaMemcpyAsync(l16.data(), m.logits16, 2 * l16.size(), cudaMemcpyDeviceToHost, m.stream));
  LB_CUDA(cudaStreamSynchronize(m.stream));
  std::vector<float> out(l16.size());
  for (size_t i = 0; i < l16.size(); ++i) out[i] = std::bit_cast<float>(uint32_t(l16[i]) << 16);
  m.batch = B;
  for (int b = 0; b < B; ++b) m.host_pos[b] = positions[b] + 1;
  return out;
}

namespace {

// Runs `body` eagerly with an event after each op and returns the time per op name (first-seen
// order, summed over layers) and, last, the total.
template <typename F>
std::vector<std::pair<std::string, double>> profile_ops(LlamaGpu::Impl& m, F&& body) {
  std::vector<std::pair<const char*, cudaEvent_t>> events;
  cudaEvent_t start = nullptr;
  LB_CUDA(cudaEventCreate(&start));
  LB_CUDA(cudaStreamSynchronize(m.stream));
  cuda::gpu_sleep(30000, m.stream);  // the host queues the whole step meanwhile
  LB_CUDA(cudaEventRecord(start, m.stream));
  m.prof = &events;
  try {
    body();
  } catch (...) {
    m.prof = nullptr;
    throw;
  }
  m.prof = nullptr;
  LB_CUDA(cudaStreamSynchronize(m.stream));
  std::vector<std::pair<std::string, double>> out;
  std::map<std::string, size_t> at;
  cudaEvent_t prev = start;
  double total = 0;
  for (auto& [name, e] : events) {
    float ms = 0;
    LB_CUDA(cudaEventElapsedTime(&ms, prev, e));
    total += ms;
    auto it = at.find(name);
    if (it == at.end()) {
      it = at.emplace(name, out.size()).first;
      out.emplace_back(name, 0.0);
    }
    out[it->second].second += ms;
    prev = e;
  }
  for (auto& [name, e] : events) cudaEventDestroy(e);
  cudaEventDestroy(start);
  out.emplace_back("total", total);
  return out;
}

}  // namespace

std::vector<std::pair<std::string, double>> LlamaGpu::profile_decode_step() {
  Impl& m = *impl_;
  const int B = m.batch;
  LB_CHECK(B > 0, "profile: run prefill first");
  for (int b = 0; b < B; ++b)
    LB_CHECK(m.host_pos[b] + 1 <= m.o.max_seq && m.host_pos[b] + 1 <= m.hist_cap,
             "profile: no room in the KV cache for another step");
  m.graph_for(B);  // one-time setup outside the timed step
  auto out = profile_ops(m, [&] { m.decode_body(B); });
  for (int b = 0; b < B; ++b) m.host_pos[b] += 1;
  return out;
}

std::vector<std::pair<std::string, double>> LlamaGpu::profile_prefill(std::span<const int32_t> tokens, int batch) {
  return profile_ops(*impl_, [&] { prefill(tokens, batch, 0, Logits::Last); });
}

}  // namespace lowbit
