// The Llama forward pass on an NVIDIA GPU: bf16 activations (a float32 residual stream), weights in
// the decode kernels' formats (bf16, int8wo, int8dq, float8wo, float8dq, int4wo-G; other layouts run
// as bf16), a static bf16 KV cache, and a decode step captured once as a CUDA graph and replayed
// (token ids and positions live in device memory; the greedy argmax runs on the device).
//
// Only declared when lowbit is built with CUDA (LOWBIT_WITH_CUDA); callers guard their use.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "lowbit/eval/perplexity.h"
#include "lowbit/model/llama.h"

namespace lowbit {

struct GpuOptions {
  int max_batch = 1;           // sequences decoded together (1..16: the decode kernels' rows)
  int64_t max_seq = 2048;      // KV-cache positions per sequence
  int64_t max_prefill = 512;   // rows of one prefill pass (all sequences together); longer prompts
                               // run in chunks
  bool pdl = true;             // programmatic dependent launch between kernels (sm_90)
  // Prefill of weight-only quantized layers: rows dequantized to bf16 per cuBLAS call, in bytes
  // (0: a whole weight where the scratch allows).
  int64_t dequant_chunk_bytes = 0;
  // float8dq prefill: cuBLASLt's fast FP8 accumulation (torchao's inference setting; on
  // sotu-llama-23m also the closer to the CPU reference) instead of the periodically promoted one.
  bool fp8_fast_accum = true;
  // Prefill of weight-only quantized layers: each layer's weights are dequantized on a second,
  // low-priority stream while the layer before runs (two banks of one layer's bf16 weights), instead
  // of just before each product.
  bool stage_weights = true;
};

class LlamaGpu {
 public:
  // Uploads a model whose Linear weights are in any mix of layouts. q/k/v and gate/up become one
  // product each when their formats agree.
  static std::unique_ptr<LlamaGpu> upload(const LlamaModel& model, const GpuOptions& o = {});
  // Random N(0, std) weights (norms 1) generated and quantized to `scheme` on the device: benchmark
  // shapes without a checkpoint or a host copy.
  static std::unique_ptr<LlamaGpu> random(const LlamaConfig& config, const std::string& scheme,
                                          uint64_t seed = 0, const GpuOptions& o = {}, float std = 0.02f);
  ~LlamaGpu();
  LlamaGpu(const LlamaGpu&) = delete;
  LlamaGpu& operator=(const LlamaGpu&) = delete;

  const LlamaConfig& config() const;
  const GpuOptions& options() const;
  // Bytes one decode step reads from the weights: every Linear with its qparams, not the embedding.
  int64_t weight_bytes() const;
  // Device bytes the model holds (weights, embedding, KV cache, buffers, cuBLAS workspace).
  int64_t device_bytes() const;
  // e.g. "int4wo-64 (q/k/v and gate/up fused)"; "mixed: ..." when layers differ.
  std::string describe() const;

  // Runs `batch` sequences of T = tokens.size() / batch tokens each (tokens row-major [batch, T]) at
  // positions pos0 .. pos0 + T − 1 of sequences 0 .. batch − 1, filling their caches. Returns float
  // logits: Logits::Last → [batch, V] (each sequence's last row), Logits::All → [batch · T, V]. The
  // greedy next token of each sequence becomes the decode state.
  std::vector<float> prefill(std::span<const int32_t> tokens, int batch, int64_t pos0, Logits which);
  // `steps` greedy decode steps of the sequences of the last prefill (graph replays, one sync at the
  // end). Returns the tokens [steps][batch]: row s holds what each sequence produced at step s (step
  // 0 feeds the prefill's greedy token).
  std::vector<int32_t> decode_greedy(int64_t steps);
  // The token each sequence will feed next (the last argmax).
  std::vector<int32_t> next_tokens() const;
  // One decode step of tokens[b] at positions[b] (b < tokens.size()), through the same graph; returns
  // the logits [batch, V]. For tests and host-side sampling.
  std::vector<float> decode_step(std::span<const int32_t> tokens, std::span<const int32_t> positions);
  void synchronize() const;

  // Profiling: the GPU time of each op (summed over layers; "total" last), in milliseconds, with
  // an event after every op, run eagerly (no graph) behind a short device-side wait so that the
  // host's launches are queued ahead and the ops run back to back. profile_decode_step() takes one greedy step of
  // the current sequences (state and cache advance as a decode step); profile_prefill() prefills
  // `tokens` (as prefill(tokens, batch, 0, Logits::Last)).
  std::vector<std::pair<std::string, double>> profile_decode_step();
  std::vector<std::pair<std::string, double>> profile_prefill(std::span<const int32_t> tokens, int batch);

  struct Impl;

 private:
  explicit LlamaGpu(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Perplexity under the same protocols as the CPU perplexity() (eval/perplexity.h), on the GPU model.
PplResult perplexity(LlamaGpu& model, const std::vector<int32_t>& ids, const PplOptions& opt);

}  // namespace lowbit
