// `lowbit generate`: continue a prompt, streaming the text, then one line of statistics.
#include <cstdio>

#include "commands.h"
#include "common.h"
#include "lowbit/core/system.h"
#include "lowbit/model/generate.h"

namespace lowbit::cli {
namespace {

struct GenerateOptions {
  ModelOptions model;
  std::string prompt = "Hello, my name is";
  int64_t n = 64;
  SamplerOptions sampler;
};

int run_generate(const GenerateOptions& o) {
  LoadedModel m = load_model(o.model);
  const std::vector<int32_t> ids = m.tokenizer.encode(o.prompt, m.tokenizer.add_bos_default());
  Sampler sampler(o.sampler);
  TokenDecoder dec(m.tokenizer);
  std::string shown;
  for (int32_t id : ids) shown += dec.next(id);
  std::fputs(shown.c_str(), stdout);
  std::fflush(stdout);
  const GenerateStats st = generate(m.model, ids, o.n, sampler, m.tokenizer.eos_id(), [&](int32_t id) {
    std::fputs(dec.next(id).c_str(), stdout);
    std::fflush(stdout);
    return true;
  });
  std::fputs(dec.finish().c_str(), stdout);
  std::fputs("\n", stdout);
  std::fflush(stdout);
  fmt::print(stderr,
             "prefill {} tokens: {:.1f} tok/s | decode {} tokens: {:.2f} tok/s | weights {} (+{} embedding) | "
             "peak RSS {} | {} threads\n",
             st.prompt_tokens, st.prefill_tokens_per_second(), st.generated_tokens, st.decode_tokens_per_second(),
             human_bytes(m.model.weight_bytes(false)), human_bytes(static_cast<int64_t>(m.model.embedding.nbytes())),
             human_bytes(peak_rss_bytes()), max_threads());
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
  return [o] { return run_generate(*o); };
}

}  // namespace lowbit::cli
