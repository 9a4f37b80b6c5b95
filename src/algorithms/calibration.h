// Calibration data and the block-by-block runner the calibrated algorithms share: the model runs one
// transformer block at a time over the calibration windows, the inputs of that block's Linear layers are
// summarized (per-channel statistics, a Hessian, a sample of rows), the block is quantized, and the
// hidden states move on through the quantized block, so each block is calibrated on what it will see.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <vector>

#include "algorithms/gptq.h"
#include "lowbit/model/llama.h"

namespace lowbit::algorithms {

struct CalibrationOptions {
  int64_t samples = 128;  // windows
  int64_t seqlen = 512;   // tokens per window
  uint64_t seed = 0;
};

// The token stream cut into non-overlapping windows of seqlen (as ppl-512 cuts it), shuffled with the
// seed; the first `samples` of them (fewer when the text holds fewer). Deterministic.
std::vector<std::vector<int32_t>> calibration_windows(const std::vector<int32_t>& ids, const CalibrationOptions& o);

// What to gather about the input of a Linear site.
struct StatsSpec {
  bool hessian = false;     // GPTQ's H = (2/n) Σ x xᵀ
  int64_t keep_rows = 0;    // a sample of up to this many input rows, evenly spread (AWQ's search)
};

// Statistics of one Linear input site over the calibration tokens.
struct SiteStats {
  SiteStats(int64_t K, const StatsSpec& spec, int64_t expected_rows);
  void add(const float* x, int64_t rows);
  double mean_abs(int64_t k) const { return rows ? abssum[k] / static_cast<double>(rows) : 0.0; }

  int64_t K, rows = 0;
  std::vector<float> absmax;   // per input channel, max |x|
  std::vector<double> abssum;  // per input channel, Σ |x|
  std::optional<HessianAccumulator> hessian;
  std::vector<float> sample;   // kept rows, [sample_rows, K]
  int64_t sample_rows = 0;

 private:
  int64_t stride_ = 1, keep_ = 0;
};

class BlockRunner {
 public:
  // Embeds every window; the hidden states stay in memory (windows x seqlen x hidden floats).
  BlockRunner(const LlamaModel& model, std::vector<std::vector<int32_t>> windows);
  int64_t tokens() const;
  // Runs block l as the model holds it now over every window (hidden states unchanged) and returns the
  // statistics of the requested sites.
  std::map<LinearSite, SiteStats> collect(int64_t l, const std::map<LinearSite, StatsSpec>& sites);
  // Moves the hidden states through block l, with its weights as they are now.
  void advance(int64_t l);
  // The hidden states after the last block advanced, with the final norm applied: the lm_head's input.
  SiteStats final_norm_stats(const StatsSpec& spec);
  // The hidden states (one [seqlen x hidden] buffer per window): the input of the next block to advance.
  // set_hidden() puts back states saved by an earlier run (a resumed run); their shape must match.
  const std::vector<std::vector<float>>& hidden() const { return x_; }
  void set_hidden(std::vector<std::vector<float>> x);

 private:
  const LlamaModel& m_;
  LlamaRunner runner_;
  KVCache cache_;
  std::vector<std::vector<int32_t>> windows_;
  std::vector<std::vector<float>> x_;
};

}  // namespace lowbit::algorithms
