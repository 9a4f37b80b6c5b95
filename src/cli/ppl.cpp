// `lowbit ppl`: perplexity of a model on a text file, under a named protocol.
#include <nlohmann/json.hpp>

#include "commands.h"
#include "common.h"
#include "lowbit/core/file_io.h"
#include "lowbit/core/system.h"
#include "lowbit/eval/perplexity.h"
#ifdef LOWBIT_WITH_CUDA
#include "lowbit/model/llama_cuda.h"
#endif

namespace lowbit::cli {
namespace {

struct PplCliOptions {
  ModelOptions model;
  std::string text;
  std::string protocol = "ppl-512";
  int64_t ctx = 512;
  int64_t limit = 0;
  bool json = false;
  bool quiet = false;
  std::string device = "cpu";
};

int run_ppl(const PplCliOptions& o) {
  check_device("ppl", o.device);
  LoadedModel m = load_model(o.model);
  const std::string text = read_text_file(o.text);
  const std::vector<int32_t> ids = m.tokenizer.encode(text, true);
  PplOptions po;
  po.protocol = ppl_protocol_from_name(o.protocol);
  po.ctx = o.ctx;
  po.max_windows = o.limit;
  po.progress = !o.quiet;
  PplResult r;
  if (o.device == "cuda") {
#ifdef LOWBIT_WITH_CUDA
    GpuOptions go;
    go.max_seq = o.ctx;
    go.max_prefill = o.ctx;
    const auto gpu = LlamaGpu::upload(m.model, go);
    r = perplexity(*gpu, ids, po);
#else
    fail("ppl: --device cuda needs a lowbit built with CUDA (this one was configured without nvcc)");
#endif
  } else {
    r = perplexity(m.model, ids, po);
  }
  if (!o.json) {
    fmt::print("perplexity ({}): {:.4f} ± {:.4f}\n", r.protocol, r.ppl, r.ppl_stderr);
    fmt::print("  {} tokens scored in {} windows of {} ({} tokens in the text); mean NLL {:.5f} ± {:.5f}\n",
               r.tokens, r.windows, o.ctx, ids.size(), r.nll_mean, r.nll_stderr);
    fmt::print("  {:.1f} s ({:.0f} tokens/s evaluated), {}, peak RSS {}\n", r.seconds,
               static_cast<double>(r.windows * o.ctx) / r.seconds,
               o.device == "cuda" ? std::string("on the GPU") : fmt::format("{} threads", max_threads()),
               human_bytes(peak_rss_bytes()));
  } else {
    nlohmann::json j = {{"protocol", r.protocol},     {"ppl", r.ppl},
                        {"ppl_stderr", r.ppl_stderr}, {"nll_mean", r.nll_mean},
                        {"nll_stderr", r.nll_stderr}, {"tokens", r.tokens},
                        {"windows", r.windows},       {"ctx", o.ctx},
                        {"text_tokens", ids.size()},  {"seconds", r.seconds},
                        {"model", o.model.model_dir}, {"text", o.text},
                        {"threads", max_threads()},   {"peak_rss_bytes", peak_rss_bytes()},
                        {"device", o.device}};
    fmt::print("{}\n", j.dump());
  }
  return 0;
}

}  // namespace

Action register_ppl(CLI::App& app) {
  auto o = std::make_shared<PplCliOptions>();
  auto* sub = app.add_subcommand(
      "ppl",
      "Perplexity of a model on a text file.\n"
      "Protocols: ppl-512 (default): [BOS]+text in non-overlapping windows of --ctx tokens, the partial tail\n"
      "dropped, tokens 2..ctx of each window scored from the window's own prefix.\n"
      "llamacpp: llama-perplexity's convention: each window starts with BOS and only its second half is scored.");
  add_model_options(sub, o->model);
  sub->add_option("--text", o->text, "UTF-8 text file to evaluate on")->required()->check(CLI::ExistingFile);
  sub->add_option("--protocol", o->protocol, "ppl-512 or llamacpp")->capture_default_str();
  sub->add_option("--ctx", o->ctx, "window length in tokens")->capture_default_str();
  sub->add_option("--limit", o->limit, "evaluate only the first N windows (0 = all)")->capture_default_str();
  sub->add_flag("--json", o->json, "print one JSON object (the last line of output)");
  sub->add_flag("--quiet,-q", o->quiet, "no progress line");
  sub->add_option("--device", o->device, "cpu, or cuda: windows run on the GPU forward pass")->capture_default_str();
  return [o] { return run_ppl(*o); };
}

}  // namespace lowbit::cli
