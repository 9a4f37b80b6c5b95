// `lowbit generate`: continue a prompt, streaming the text, then one line of statistics.
#include <chrono>
#include <cstdio>

#include "commands.h"
#include "common.h"
#include "lowbit/core/system.h"
#include "lowbit/model/generate.h"
#ifdef LOWBIT_WITH_CUDA
#include "lowbit/model/llama_cuda.h"
#endif

namespace lowbit::cli {
namespace {

struct GenerateOptions {
  ModelOptions model;
  std::string prompt = "Hello, my name is";
  int64_t n = 64;
  SamplerOptions sampler;
  std::string device = "cpu";
};

#ifdef LOWBIT_WITH_CUDA
// The generation loop of model/generate.cpp on the GPU model: prefill, then one graph-replayed
// decode step per token; sampling stays on the host (the logits come back each step).
GenerateStats generate_gpu(const LlamaModel& model, const std::vector<int32_t>& prompt, int64_t max_new,
                           Sampler& sampler, int32_t stop_token, const std::function<bool(int32_t)>& on_token) {
  using clock = std::chrono::steady_clock;
  GenerateStats st;
  st.prompt_tokens = static_cast<int64_t>(prompt.size());
  LB_CHECK(!prompt.empty(), "generate: empty prompt");
  LB_CHECK(st.prompt_tokens + max_new <= model.config.max_position,
           "generate: {} prompt tokens + {} new exceed the model's {} positions", prompt.size(), max_new,
           model.config.max_position);
  GpuOptions go;
  go.max_seq = st.prompt_tokens + std::max<int64_t>(max_new, 1);
  go.max_prefill = std::min<int64_t>(st.prompt_tokens, 512);
  const auto gpu = LlamaGpu::upload(model, go);
  const int64_t V = model.config.vocab_size;
  auto t0 = clock::now();
  int32_t next = sampler.sample(gpu->prefill(prompt, 1, 0, Logits::Last).data(), V);
  st.prefill_seconds = std::chrono::duration<double>(clock::now() - t0).count();
  t0 = clock::now();
  int32_t pos = static_cast<int32_t>(prompt.size());
  while (st.generated_tokens < max_new) {
    ++st.generated_tokens;
    if (!on_token(next) || next == stop_token || st.generated_tokens == max_new) break;
    const int32_t tok[1] = {next}, at[1] = {pos++};
    next = sampler.sample(gpu->decode_step(tok, at).data(), V);
  }
  st.decode_seconds = std::chrono::duration<double>(clock::now() - t0).count();
  return st;
}
#endif

int run_generate(const GenerateOptions& o) {
  check_device("generate", o.device);
  LoadedModel m = load_model(o.model);
  const std::vector<int32_t> ids = m.tokenizer.encode(o.prompt, m.tokenizer.add_bos_default());
  Sampler sampler(o.sampler);
  TokenDecoder dec(m.tokenizer);
  std::string shown;
  for (int32_t id : ids) shown += dec.next(id);
  std::fputs(shown.c_str(), stdout);
  std::fflush(stdout);
  auto show = [&](int32_t id) {
    std::fputs(dec.next(id).c_str(), stdout);
    std::fflush(stdout);
    return true;
  };
  GenerateStats st;
  if (o.device == "cuda") {
#ifdef LOWBIT_WITH_CUDA
    st = generate_gpu(m.model, ids, o.n, sampler, m.tokenizer.eos_id(), show);
#else
    fail("generate: --device cuda needs a lowbit built with CUDA (this one was configured without nvcc)");
#endif
  } else {
    st = generate(m.model, ids, o.n, sampler, m.tokenizer.eos_id(), show);
  }
  std::fputs(dec.finish().c_str(), stdout);
  std::fputs("\n", stdout);
  std::fflush(stdout);
  fmt::print(stderr,
             "prefill {} tokens: {:.1f} tok/s | decode {} tokens: {:.2f} tok/s | weights {} (+{} embedding) | "
             "peak RSS {} | {}\n",
             st.prompt_tokens, st.prefill_tokens_per_second(), st.generated_tokens, st.decode_tokens_per_second(),
             human_bytes(m.model.weight_bytes(false)), human_bytes(static_cast<int64_t>(m.model.embedding.nbytes())),
             human_bytes(peak_rss_bytes()),
             o.device == "cuda" ? std::string("GPU") : fmt::format("{} threads", max_threads()));
  return 0;
}

}  // namespace

Action register_generate(CLI::App& app) {
  auto o = std::make_shared<GenerateOptions>();
  auto* sub = app.add_subcommand("generate", "Continue a prompt with a model and print tokens/s.");
  add_model_options(sub, o->model);
  sub->add_option("--prompt,-p", o->prompt, "prompt text")->capture_default_str();
  sub->add_option("-n,--max-new-tokens", o->n, "tokens to generate")->capture_default_str()->check(CLI::PositiveNumber);
  sub->add_option("--temperature", o->sampler.temperature, "sampling temperature; 0 = greedy")->capture_default_str();
  sub->add_option("--top-k", o->sampler.top_k, "sample among the k most likely tokens; 0 = all")->capture_default_str();
  sub->add_option("--seed", o->sampler.seed, "random seed")->capture_default_str();
  sub->add_option("--device", o->device, "cpu, or cuda: the GPU forward pass (CUDA-graph decode steps)")
      ->capture_default_str();
  return [o] { return run_generate(*o); };
}

}  // namespace lowbit::cli
