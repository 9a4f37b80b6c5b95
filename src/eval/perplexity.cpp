#include "lowbit/eval/perplexity.h"

#include <chrono>
#include <cmath>

#include "lowbit/core/progress.h"

namespace lowbit {

PplProtocol ppl_protocol_from_name(const std::string& s) {
  if (s == "ppl-512" || s == "windows" || s == "ppl") return PplProtocol::Windows;
  if (s == "llamacpp" || s == "llama.cpp") return PplProtocol::LlamaCpp;
  fail("unknown perplexity protocol '{}' (use ppl-512 or llamacpp)", s);
}

std::string ppl_protocol_name(PplProtocol p, int64_t ctx) {
  return p == PplProtocol::Windows ? fmt::format("ppl-{}", ctx) : fmt::format("llamacpp-{}", ctx);
}

double token_nll(const float* row, int64_t V, int32_t target) {
  float mx = row[0];
  for (int64_t v = 1; v < V; ++v) mx = std::max(mx, row[v]);
  // expf per term, summed in double: a float accumulator over a 32k vocabulary biases the sum low.
  double s = 0.0;
  for (int64_t v = 0; v < V; ++v) s += static_cast<double>(std::exp(row[v] - mx));
  return std::log(s) + mx - row[target];
}

PplResult perplexity_windows(const std::vector<int32_t>& ids, const PplOptions& opt, const LlamaConfig& c,
                             const WindowLogits& logits_of) {
  LB_CHECK(opt.ctx >= 4, "perplexity: --ctx must be at least 4, got {}", opt.ctx);
  const int64_t n_windows_all = static_cast<int64_t>(ids.size()) / opt.ctx;
  LB_CHECK(n_windows_all > 0, "perplexity: the text holds {} tokens, fewer than one window of {}", ids.size(),
           opt.ctx);
  const int64_t n_windows = opt.max_windows > 0 ? std::min(opt.max_windows, n_windows_all) : n_windows_all;
  const int64_t V = c.vocab_size;
  const int32_t bos = c.bos_token_id;
  // Rows scored in each window: row j predicts token j+1.
  const int64_t first = opt.protocol == PplProtocol::Windows ? 0 : opt.ctx / 2;
  const int64_t last = opt.ctx - 1;  // exclusive

  Progress progress("perplexity", n_windows, opt.progress && stderr_is_terminal());
  const auto t0 = std::chrono::steady_clock::now();
  double sum = 0, sum2 = 0;
  int64_t count = 0;
  std::vector<int32_t> window(static_cast<size_t>(opt.ctx));
  std::vector<double> nll(static_cast<size_t>(last - first));
  for (int64_t w = 0; w < n_windows; ++w) {
    std::copy(ids.begin() + w * opt.ctx, ids.begin() + (w + 1) * opt.ctx, window.begin());
    if (opt.protocol == PplProtocol::LlamaCpp && bos >= 0) window[0] = bos;
    const float* logits = logits_of(window);
#pragma omp parallel for schedule(static)
    for (int64_t j = first; j < last; ++j) nll[j - first] = token_nll(logits + j * V, V, window[j + 1]);
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

PplResult perplexity(const LlamaModel& model, const std::vector<int32_t>& ids, const PplOptions& opt) {
  LlamaRunner runner(model);
  KVCache cache(model.config, std::max<int64_t>(opt.ctx, 1));
  return perplexity_windows(ids, opt, model.config, [&](const std::vector<int32_t>& window) {
    cache.clear();
    return runner.forward(window, cache, Logits::All).data();
  });
}

}  // namespace lowbit
