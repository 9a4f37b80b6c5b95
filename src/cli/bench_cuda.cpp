// `lowbit bench --device cuda`: the gpt-fast measurement on the GPU forward pass. Random weights for
// a built-in architecture are generated and quantized on the device (an 8B model never touches the
// host); a checkpoint is loaded, quantized on the host and uploaded. Per scheme: a warm-up prefill and
// decode (which also captures the decode graph) and a second of prefills, then five timed prefills of
// the prompt (their median) and a timed run of -n graph-replayed greedy decode steps.
#ifdef LOWBIT_WITH_CUDA
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <optional>

#include <nlohmann/json.hpp>

#include "bench.h"
#include "lowbit/core/system.h"
#include "lowbit/model/arch.h"
#include "lowbit/model/llama_cuda.h"
#include "lowbit/model/quantize_model.h"
#include "runtime/cuda/device.h"
#include "table.h"

namespace lowbit::cli {
namespace {

using clock_type = std::chrono::steady_clock;

// The bandwidth the floor column assumes: what H100 HBM3 sustains in practice (3.35 TB/s peak).
constexpr double kFloorBandwidth = 3.0e12;

struct GpuRow {
  std::string scheme, formats;
  int64_t model_bytes = 0;
  double decode_tps = 0, prefill_tps = 0, build_s = 0;
  int64_t peak_bytes = 0, kv_bytes = 0, embed_bytes = 0;
  std::vector<std::pair<std::string, double>> decode_ops, prefill_ops;
};

double seconds_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

GpuRow run_scheme(const LlamaConfig& cfg, const LlamaModel* base, const std::string& scheme, const BenchOptions& o) {
  GpuRow row;
  row.scheme = scheme;
  const int64_t B = o.batch, P = o.prompt_len, N = o.n;
  LB_CHECK(B <= 16, "bench --device cuda: --batch {} (the decode kernels take 1..16 sequences)", B);
  LB_CHECK(P + N + 1 <= cfg.max_position, "bench: prompt {} + {} new tokens exceed the model's {} positions", P, N,
           cfg.max_position);
  GpuOptions go;
  go.max_batch = static_cast<int>(B);
  go.max_seq = P + N + 1;
  go.max_prefill = B * P;
  // Tuning knobs of the prefill products (measurements, not user options).
  if (const char* e = std::getenv("LOWBIT_DEQUANT_CHUNK_MB")) go.dequant_chunk_bytes = std::atoll(e) << 20;
  if (const char* e = std::getenv("LOWBIT_FP8_FAST_ACCUM")) go.fp8_fast_accum = std::atoi(e) != 0;
  if (const char* e = std::getenv("LOWBIT_STAGE_WEIGHTS")) go.stage_weights = std::atoi(e) != 0;
  gpu::reset_arena_peak();
  const auto t0 = clock_type::now();
  std::unique_ptr<LlamaGpu> m;
  if (base) {
    LlamaModel q = *base;
    if (scheme != "checkpoint") quantize_(q, quant::parse_config(scheme), false);
    m = LlamaGpu::upload(q, go);
  } else {
    m = LlamaGpu::random(cfg, scheme, o.seed, go);
  }
  m->synchronize();
  row.build_s = seconds_since(t0);
  row.model_bytes = m->weight_bytes();
  row.formats = m->describe();

  std::vector<int32_t> prompt(static_cast<size_t>(B * P));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < P; ++t)
      prompt[b * P + t] = static_cast<int32_t>((o.seed * 7919 + b * 104729 + t * 31337 + 3) % cfg.vocab_size);
  // Warm-up: cuBLAS heuristics, kernel setup, the decode graph's capture; then prefills for a second
  // more, so that every scheme's prefill is timed at the clocks of a GPU under load (the tensor cores'
  // clock drops as the chip heats: without this the first scheme of a run, on a cool GPU, gained up
  // to 8% on the others).
  m->prefill(prompt, static_cast<int>(B), 0, Logits::Last);
  m->decode_greedy(std::min<int64_t>(N, 4));
  for (const auto tw = clock_type::now(); seconds_since(tw) < 1.0;) {
    m->prefill(prompt, static_cast<int>(B), 0, Logits::Last);
    m->synchronize();
  }

  // Prefill: the median of five timed runs (one run swings by a few percent).
  std::vector<double> prefill_s;
  for (int i = 0; i < 5; ++i) {
    m->synchronize();
    const auto tp = clock_type::now();
    m->prefill(prompt, static_cast<int>(B), 0, Logits::Last);
    m->synchronize();
    prefill_s.push_back(seconds_since(tp));
  }
  std::sort(prefill_s.begin(), prefill_s.end());
  row.prefill_tps = static_cast<double>(B * P) / prefill_s[2];
  auto t1 = clock_type::now();
  m->decode_greedy(N);  // returns after the last step's tokens reached the host
  row.decode_tps = static_cast<double>(N) / seconds_since(t1);
  row.peak_bytes = static_cast<int64_t>(gpu::arena_bytes_peak());
  row.kv_bytes = 2 * cfg.num_layers * B * cfg.num_kv_heads * go.max_seq * cfg.head_dim * 2;
  row.embed_bytes = cfg.vocab_size * cfg.hidden_size * 2;
  if (o.profile) {
    row.decode_ops = m->profile_decode_step();
    row.prefill_ops = m->profile_prefill(prompt, static_cast<int>(B));
  }
  return row;
}

}  // namespace

int run_bench_cuda(const BenchOptions& o) {
  cudaDeviceProp prop{};
  int dev = 0;
  LB_CUDA(cudaGetDevice(&dev));
  LB_CUDA(cudaGetDeviceProperties(&prop, dev));
  auto t0 = clock_type::now();
  std::optional<LlamaModel> base;
  LlamaConfig cfg;
  if (!o.model.model_dir.empty()) {
    set_threads(o.model.threads);
    base = LlamaModel::load(o.model.model_dir);
    cfg = base->config;
  } else {
    cfg = arch_config(o.arch);
  }
  const std::string what = base ? o.model.model_dir : o.arch + " (random weights, generated on the GPU)";
  if (!o.json)
    fmt::print("{}: {} layers, hidden {}, ffn {}, {} heads / {} KV heads, vocab {}; loaded in {:.1f} s\n"
               "device {} ({} SMs, {:.0f} GiB), batch {}, prompt {} tokens, {} new tokens (greedy, CUDA graph)\n\n",
               what, cfg.num_layers, cfg.hidden_size, cfg.intermediate_size, cfg.num_heads, cfg.num_kv_heads,
               cfg.vocab_size, seconds_since(t0), prop.name, prop.multiProcessorCount,
               static_cast<double>(prop.totalGlobalMem) / (1 << 30), o.batch, o.prompt_len, o.n);
  std::vector<GpuRow> rows;
  for (const auto& s : split_list(o.quants)) rows.push_back(run_scheme(cfg, base ? &*base : nullptr, s, o));

  if (o.json) {
    nlohmann::json j = {{"model", what}, {"batch", o.batch}, {"prompt_len", o.prompt_len}, {"new_tokens", o.n},
                        {"device", "cuda"}, {"gpu", prop.name}};
    for (const auto& r : rows)
      j["results"].push_back({{"scheme", r.scheme},
                              {"formats", r.formats},
                              {"model_bytes", r.model_bytes},
                              {"decode_tokens_per_s", r.decode_tps},
                              {"decode_total_tokens_per_s", r.decode_tps * o.batch},
                              {"weight_GBps", r.model_bytes * r.decode_tps / 1e9},
                              {"floor_tokens_per_s", kFloorBandwidth / r.model_bytes},
                              {"prefill_tokens_per_s", r.prefill_tps},
                              {"peak_gpu_bytes", r.peak_bytes},
                              {"build_seconds", r.build_s}});
    fmt::print("{}\n", j.dump());
    return 0;
  }
  Table t({"scheme", "model size", "decode tok/s", "weight GB/s", "floor tok/s", "prefill tok/s", "peak GPU mem",
           "build s"});
  for (const auto& r : rows)
    t.add({r.scheme, human_bytes(r.model_bytes), fmt::format("{:.2f}", r.decode_tps),
           fmt::format("{:.1f}", r.model_bytes * r.decode_tps / 1e9),
           fmt::format("{:.1f}", kFloorBandwidth / r.model_bytes), fmt::format("{:.1f}", r.prefill_tps),
           human_bytes(r.peak_bytes), fmt::format("{:.1f}", r.build_s)});
  fmt::print("{}", t.render());
  fmt::print("\ndecode tok/s is per sequence; weight GB/s = model size (all Linear weights and qparams, not the "
             "embedding) x decode tok/s;\nfloor tok/s = 3.0 TB/s / model size; peak GPU mem = the model's device "
             "allocations (weights, embedding, KV cache, buffers, cuBLAS workspace).\n");
  for (const auto& r : rows) fmt::print("  {}: {}\n", r.scheme, r.formats);
  fmt::print("\npeak GPU memory against weights + embedding + KV cache + 1 GiB:\n");
  for (const auto& r : rows) {
    const double budget = static_cast<double>(r.model_bytes + r.embed_bytes + r.kv_bytes) + (1 << 30);
    fmt::print("  {}: peak {} = {:.3f} x ({} weights + {} embedding + {} KV cache + 1 GiB)\n", r.scheme,
               human_bytes(r.peak_bytes), static_cast<double>(r.peak_bytes) / budget, human_bytes(r.model_bytes),
               human_bytes(r.embed_bytes), human_bytes(r.kv_bytes));
  }
  if (o.profile) {
    for (const auto& r : rows) {
      for (const auto* ops : {&r.decode_ops, &r.prefill_ops}) {
        fmt::print("\n{}: GPU ms per op, one {} (events between ops, no graph)\n", r.scheme,
                   ops == &r.decode_ops ? "decode step" : fmt::format("prefill of {} tokens", o.batch * o.prompt_len));
        const double total = ops->empty() ? 0.0 : ops->back().second;
        for (const auto& [name, ms] : *ops)
          fmt::print("  {:<18} {:9.3f} ms {:6.1f}%\n", name, ms, total > 0 ? 100.0 * ms / total : 0.0);
      }
    }
  }
  return 0;
}

}  // namespace lowbit::cli
#endif  // LOWBIT_WITH_CUDA
