// Perplexity on the GPU model: the windows and scoring of eval/perplexity.cpp, with each window's
// logits (float32, from the prefill path) computed on the device.
#include "lowbit/model/llama_cuda.h"

namespace lowbit {

PplResult perplexity(LlamaGpu& model, const std::vector<int32_t>& ids, const PplOptions& opt) {
  LB_CHECK(opt.ctx <= model.options().max_seq, "perplexity: --ctx {} exceeds the GPU model's KV cache of {}", opt.ctx,
           model.options().max_seq);
  std::vector<float> logits;
  return perplexity_windows(ids, opt, model.config(), [&](const std::vector<int32_t>& window) {
    logits = model.prefill(window, 1, 0, Logits::All);
    return logits.data();
  });
}

}  // namespace lowbit
