// Perplexity on the GPU model: the windows and scoring of eval/perplexity.cpp, with each window's
// logits (float32, from the prefill path) computed on the device.
#include <chrono>
#include <cmath>

#include "lowbit/core/progress.h"
#include "lowbit/model/llama_cuda.h"

namespace lowbit {

PplResult perplexity(LlamaGpu& model, const std::vector<int32_t>& ids, const PplOptions& opt) {
  LB_CHECK(opt.ctx >= 4, "perplexity: --ctx must be at least 4, got {}", opt.ctx);
  LB_CHECK(opt.ctx <= model.options().max_seq, "perplexity: --ctx {} exceeds the GPU model's KV cache of {}", opt.ctx,
           model.options().max_seq);
  const int64_t n_windows_all = static_cast<int64_t>(ids.size()) / opt.ctx;
  LB_CHECK(n_windows_all > 0, "perplexity: the text holds {} tokens, fewer than one window of {}", ids.size(),
           opt.ctx);
  const int64_t n_windows = opt.max_windows > 0 ? std::min(opt.max_windows, n_windows_all) : n_windows_all;
  const int64_t V = model.config().vocab_size;
  const int32_t bos = model.config().bos_token_id;
  const int64_t first = opt.protocol == PplProtocol::Windows ? 0 : opt.ctx / 2, last = opt.ctx - 1;

  Progress progress("perplexity", n_windows, opt.progress && stderr_is_terminal());
  const auto t0 = std::chrono::steady_clock::now();
  double sum = 0, sum2 = 0;
  int64_t count = 0;
  std::vector<int32_t> window(static_cast<size_t>(opt.ctx));
  std::vector<double> nll(static_cast<size_t>(last - first));
  for (int64_t w = 0; w < n_windows; ++w) {
    std::copy(ids.begin() + w * opt.ctx, ids.begin() + (w + 1) * opt.ctx, window.begin());
    if (opt.protocol == PplProtocol::LlamaCpp && bos >= 0) window[0] = bos;
    const std::vector<float> logits = model.prefill(window, 1, 0, Logits::All);
#pragma omp parallel for schedule(static)
    for (int64_t j = first; j < last; ++j) nll[j - first] = token_nll(logits.data() + j * V, V, window[j + 1]);
    for (double v : nll) {
      sum += v;
      sum2 += v * v;
    }
    count += last - first;
    progress.update(w + 1, fmt::format("ppl {:.4f}", std::exp(sum / static_cast<double>(count))));
  }
  progress.finish();
  PplResult r;
  r.protocol = ppl_protocol_name(opt.protocol, opt.ctx);
  r.tokens = count;
  r.windows = n_windows;
  r.nll_mean = sum / static_cast<double>(count);
  const double var = std::max(0.0, sum2 / static_cast<double>(count) - r.nll_mean * r.nll_mean);
  r.nll_stderr = count > 1 ? std::sqrt(var / static_cast<double>(count - 1)) : 0.0;
  r.ppl = std::exp(r.nll_mean);
  r.ppl_stderr = r.ppl * r.nll_stderr;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace lowbit
