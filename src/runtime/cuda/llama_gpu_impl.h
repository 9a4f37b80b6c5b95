// LlamaGpu's state, shared by the files that build it (llama_gpu_build.cpp) and run it
// (llama_gpu.cpp).
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "lowbit/model/llama_cuda.h"
#include "runtime/cuda/device.h"
#include "runtime/cuda/gpu_linear.h"

namespace lowbit {

// One logical product (q/k/v, o, gate/up, down, lm_head): a single fused weight when the parts share
// a format, else one weight per part writing its own columns of the common output.
struct GpuGroup {
  std::vector<gpu::GpuLinear> parts;
  std::vector<int64_t> col0;
  int64_t N = 0;
  int64_t bytes() const;
};

struct GpuLayer {
  float* attn_norm = nullptr;
  float* ffn_norm = nullptr;
  GpuGroup qkv, wo, gate_up, down;
  // gate_up is one weight with gate and up rows alternating in blocks of 8 (gpu::upload_gate_up):
  // decode runs the SwiGLU inside the GEMV, prefill with swiglu_interleaved after the GEMM.
  bool glu = false;
};

struct LlamaGpu::Impl {
  LlamaConfig c;
  GpuOptions o;
  gpu::DeviceArena arena;  // first member: freed last, after everything that points into it
  cudaStream_t stream = nullptr;
  std::unique_ptr<gpu::LinearExec> lin;

  void* embedding = nullptr;  // bf16 [V, D]
  float* final_norm = nullptr;
  float* rope = nullptr;  // [max_seq][HD / 2][2]: (cos, sin) of each position's angles
  std::vector<GpuLayer> layers;
  GpuGroup lm_head;

  // KV cache: per layer [max_batch][KV][max_seq][HD] bf16, keys and values.
  void* k_cache = nullptr;
  void* v_cache = nullptr;
  size_t layer_cache_elems = 0;

  // Activations for up to R rows.
  int R = 0;
  float* x = nullptr;  // residual stream, float32 [R, D]
  void *xn = nullptr, *qkv = nullptr, *q = nullptr, *att = nullptr, *ob = nullptr, *gu = nullptr,
       *h = nullptr, *dn = nullptr;
  void* logits16 = nullptr;  // bf16 [max_batch, V]
  float* logits32 = nullptr;  // float [R, V], allocated on first use (Logits::All)
  float *attn_o = nullptr, *attn_ml = nullptr;
  unsigned* attn_counters = nullptr;  // [max_batch · KV]
  int splits = 1;  // most decode-attention splits (the workspace holds this many)
  int sms = 132;    // multiprocessors of the device

  // Decode state in device memory (what the captured graph reads and advances).
  int32_t *d_token = nullptr, *d_pos = nullptr, *d_n = nullptr, *d_hist = nullptr;
  int32_t *d_rows_tok = nullptr, *d_rows_pos = nullptr, *d_backup = nullptr;
  int hist_cap = 0;

  int batch = 0;                  // sequences of the current decode
  std::vector<int64_t> host_pos;  // the positions the next decode step writes (host mirror)
  std::map<int, cudaGraphExec_t> graphs;
  // Set while profile_decode_step() runs the step eagerly: an event after each op, with its name.
  std::vector<std::pair<const char*, cudaEvent_t>>* prof = nullptr;
  void mark(const char* name);

  Impl(const LlamaConfig& config, const GpuOptions& opt);
  ~Impl();
  // After the weights: the rotary table, caches, buffers, the product executor.
  void finish_setup();

  // xq: the input already quantized as lin->input_codes(g.parts, M, g.N) asked.
  void run_group(const GpuGroup& g, const void* x, int M, void* y, bool y_f32 = false, bool pdl = true,
                 const cuda::RowCodes& xq = {});
  // One block over M rows: decode (rows = sequences at d_pos) or prefill (rows b · T + t at
  // positions from d_rows_pos, p0 + t).
  void layer(int l, int M, bool decode, int T, int64_t p0);
  std::vector<const gpu::GpuLinear*> layer_weights(int l) const;  // q/k/v, o, gate/up, down
  // The last layer's down_proj output when it was left as int8dq's int32 products (prefill): the
  // next norm reads it instead of dn.
  std::optional<cuda::Int32Rows> dn32;
  static bool single(const GpuGroup& g) { return g.parts.size() == 1; }
  void decode_body(int B);
  cudaGraphExec_t graph_for(int B);
};

}  // namespace lowbit
