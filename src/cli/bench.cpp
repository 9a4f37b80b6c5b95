// `lowbit bench`: gpt-fast-style speed of each scheme: decode tokens/s and the weight bandwidth it implies,
// prefill tokens/s, memory and model size.
#include <algorithm>
#include <chrono>
#include <sstream>

#include <nlohmann/json.hpp>

#include "bench.h"
#include "commands.h"
#include "common.h"
#include "lowbit/core/system.h"
#include "lowbit/kernels/cpu_info.h"
#include "lowbit/model/arch.h"
#include "lowbit/model/quantize_model.h"
#include "table.h"

namespace lowbit::cli {
namespace {

using clock_type = std::chrono::steady_clock;

struct BenchRow {
  std::string scheme;
  int64_t model_bytes = 0;  // every weight and qparam except the embedding
  double decode_tps = 0;    // tokens per second per sequence
  double prefill_tps = 0;   // prompt tokens per second (all sequences)
  double quantize_s = 0;
  int64_t rss = 0;
};

double seconds_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

BenchRow run_scheme(const LlamaModel& base, const std::string& scheme, const BenchOptions& o) {
  BenchRow row;
  row.scheme = scheme;
  LlamaModel m = base;  // shares the base's weights until quantize_ replaces them
  const auto t0 = clock_type::now();
  if (scheme != "checkpoint") quantize_(m, quant::parse_config(scheme));
  row.quantize_s = seconds_since(t0);
  row.model_bytes = m.weight_bytes(false);

  const LlamaConfig& c = m.config;
  const int64_t B = o.batch, P = o.prompt_len, N = o.n;
  LB_CHECK(P + N + 1 <= c.max_position, "bench: prompt {} + {} new tokens exceed the model's {} positions", P, N,
           c.max_position);
  std::vector<std::vector<int32_t>> prompts(B, std::vector<int32_t>(P));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < P; ++t) prompts[b][t] = static_cast<int32_t>((o.seed * 7919 + b * 104729 + t * 31337 + 3) % c.vocab_size);
  LlamaRunner runner(m);
  std::vector<KVCache> caches;
  for (int64_t b = 0; b < B; ++b) caches.emplace_back(c, P + N + 1);
  std::vector<Segment> segs;

  // Warm up (page in the weights, size the buffers), then prefill every prompt in one batch.
  {
    KVCache warm(c, 8);
    const std::vector<int32_t> w{1, 2, 3, 4};
    runner.forward(w, warm);
  }
  for (int64_t b = 0; b < B; ++b) segs.push_back({prompts[b], &caches[b]});
  auto t1 = clock_type::now();
  const std::vector<float> first = runner.forward(segs);
  row.prefill_tps = static_cast<double>(B * P) / seconds_since(t1);

  // Greedy batched decode: N steps, one token per sequence per step.
  std::vector<int32_t> next(B);
  const int64_t V = c.vocab_size;
  for (int64_t b = 0; b < B; ++b)
    next[b] = static_cast<int32_t>(std::max_element(first.begin() + b * V, first.begin() + (b + 1) * V) - (first.begin() + b * V));
  t1 = clock_type::now();
  for (int64_t step = 0; step < N; ++step) {
    segs.clear();
    for (int64_t b = 0; b < B; ++b) segs.push_back({std::span<const int32_t>(&next[b], 1), &caches[b]});
    const std::vector<float>& lg = runner.forward(segs);
    for (int64_t b = 0; b < B; ++b)
      next[b] = static_cast<int32_t>(std::max_element(lg.begin() + b * V, lg.begin() + (b + 1) * V) - (lg.begin() + b * V));
  }
  row.decode_tps = static_cast<double>(N) / seconds_since(t1);
  row.rss = peak_rss_bytes();
  return row;
}

int run_bench(const BenchOptions& o) {
  check_device("bench", o.device);
  // On the GPU, --arch alone means random weights generated on the device.
  const bool random = o.random || (o.device == "cuda" && !o.arch.empty());
  LB_CHECK(o.model.model_dir.empty() != (o.arch.empty() && !random),
           "bench: give either --model DIR or --arch NAME --random");
  LB_CHECK(o.arch.empty() || random, "bench: --arch needs --random (built-in shapes with random weights)");
  LB_CHECK(o.batch >= 1 && o.prompt_len >= 1 && o.n >= 1, "bench: --batch, --prompt-len and -n must be positive");
  if (o.device == "cuda") {
#ifdef LOWBIT_WITH_CUDA
    return run_bench_cuda(o);
#else
    fail("bench: --device cuda needs a lowbit built with CUDA (this one was configured without nvcc)");
#endif
  }
  set_threads(o.model.threads);
  auto t0 = clock_type::now();
  LlamaModel base = o.model.model_dir.empty() ? random_model(arch_config(o.arch), o.seed) : LlamaModel::load(o.model.model_dir);
  const double load_s = seconds_since(t0);
  const std::string what = o.model.model_dir.empty() ? o.arch + " (random weights)" : o.model.model_dir;
  if (!o.json)
    fmt::print("{}: {} layers, hidden {}, ffn {}, {} heads / {} KV heads, vocab {}; ready in {:.1f} s\n"
               "batch {}, prompt {} tokens, {} new tokens, {} threads, kernels: {}\n\n",
               what, base.config.num_layers, base.config.hidden_size, base.config.intermediate_size,
               base.config.num_heads, base.config.num_kv_heads, base.config.vocab_size, load_s, o.batch, o.prompt_len,
               o.n, max_threads(), cpu_kernels_description());
  std::vector<BenchRow> rows;
  for (const auto& s : split_list(o.quants)) rows.push_back(run_scheme(base, s, o));

  if (o.json) {
    nlohmann::json j = {{"model", what}, {"batch", o.batch}, {"prompt_len", o.prompt_len}, {"new_tokens", o.n},
                        {"threads", max_threads()}, {"device", "cpu"}, {"kernels", cpu_kernels_description()}};
    for (const auto& r : rows)
      j["results"].push_back({{"scheme", r.scheme},
                              {"model_bytes", r.model_bytes},
                              {"decode_tokens_per_s", r.decode_tps},
                              {"decode_total_tokens_per_s", r.decode_tps * o.batch},
                              {"weight_GBps", r.model_bytes * r.decode_tps / 1e9},
                              {"prefill_tokens_per_s", r.prefill_tps},
                              {"peak_rss_bytes", r.rss},
                              {"quantize_seconds", r.quantize_s}});
    fmt::print("{}\n", j.dump());
    return 0;
  }
  Table t({"scheme", "model size", "decode tok/s", "weight GB/s", "prefill tok/s", "peak RSS", "quantize s"});
  for (const auto& r : rows)
    t.add({r.scheme, human_bytes(r.model_bytes), fmt::format("{:.2f}", r.decode_tps),
           fmt::format("{:.1f}", r.model_bytes * r.decode_tps / 1e9), fmt::format("{:.1f}", r.prefill_tps),
           human_bytes(r.rss), fmt::format("{:.1f}", r.quantize_s)});
  fmt::print("{}", t.render());
  fmt::print("\ndecode tok/s is per sequence; weight GB/s = model size (all weights and qparams but the embedding) x "
             "decode tok/s;\npeak RSS is the process high-water mark so far (it includes the bf16 source model).\n");
  return 0;
}

}  // namespace

Action register_bench(CLI::App& app) {
  auto o = std::make_shared<BenchOptions>();
  auto* sub = app.add_subcommand(
      "bench",
      "Speed of each quantization scheme, gpt-fast style: decode tokens/s (greedy, after a prompt), the weight\n"
      "bandwidth that implies, prefill tokens/s, memory and model size. Use a checkpoint (--model) or a\n"
      "built-in architecture with random N(0, 0.02) weights (--arch NAME --random; no file needed).\n"
      "--device cuda measures the GPU path: e.g. lowbit bench --device cuda --arch llama-3.1-8b --quant bf16,int4wo-64");
  add_model_options(sub, o->model, false, false);
  sub->add_option("--arch", o->arch, "built-in architecture: tinyllama-1.1b, llama-2-7b, llama-3-8b, llama-3.1-8b");
  sub->add_flag("--random", o->random, "random weights for --arch");
  sub->add_option("--device", o->device,
                  "cpu, or cuda: the GPU forward pass (CUDA-graph decode; random --arch weights are generated and "
                  "quantized on the GPU)")
      ->capture_default_str();
  sub->add_option("--batch", o->batch, "sequences decoded together")->capture_default_str();
  sub->add_option("--prompt-len", o->prompt_len, "prompt tokens (the prefill measurement)")->capture_default_str();
  sub->add_option("-n", o->n, "new tokens to generate")->capture_default_str();
  sub->add_option("--seed", o->seed, "seed of the random weights and prompts")->capture_default_str();
  sub->add_flag("--json", o->json, "print one JSON object");
  sub->add_flag("--profile", o->profile,
                "--device cuda: also time each op of one (un-graphed) decode step and of the prefill");
  sub->add_option("--quant", o->quants, "comma-separated schemes to measure (bf16, int8wo, int4wo-32, ...)")
      ->capture_default_str();
  return [o] { return run_bench(*o); };
}

}  // namespace lowbit::cli
