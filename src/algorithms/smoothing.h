// Per-input-channel scaling folded into the op before a Linear: y = W x = (W·diag(s)) (x / s), with x / s
// computed for free by the preceding RMSNorm (its weight divided by s) or the preceding Linear (its output
// rows divided by s). SmoothQuant picks s to move activation outliers into the weights before int8/fp8
// activation quantization; AWQ searches s to protect the weights that meet large activations before
// low-bit weight quantization.
#pragma once

#include <vector>

#include "algorithms/calibration.h"
#include "lowbit/quant/config.h"

namespace lowbit::algorithms {

// Linears sharing an input, and where their input's scale can be folded.
struct ScaleGroup {
  LinearSite site;
  std::vector<quant::LinearPtr*> linears;
  std::vector<float>* norm = nullptr;        // RMSNorm weight before them (q/k/v, gate/up)
  quant::LinearPtr* prev = nullptr;          // or the Linear before them (up_proj before down_proj)
  size_t clip_from = 0;                      // AWQ clips linears[clip_from..] (not q/k: they meet in softmax)
};

// The foldable groups of block l: q/k/v after input_layernorm, gate/up after post_attention_layernorm,
// down after up_proj (o_proj is left alone: its input mixes heads that share one value head).
std::vector<ScaleGroup> scale_groups(LlamaModel& m, int64_t l);

// W[:, j] *= s[j] for the group's Linears and the predecessor's output channel j divided by s[j]
// (all weights must still be dense; they become float32).
void fold_scales(const ScaleGroup& g, const std::vector<float>& s);

// SmoothQuant: s_j = max|X_j|^α / max|W_:,j|^(1-α) over the group's weights (SPEC.md §4).
std::vector<float> smoothquant_scales(const ScaleGroup& g, const SiteStats& x, float alpha);

// The candidate with the lowest output error ||X Wᵀ − layer_q(X/s)||² on the kept activation rows, where
// layer_q is the config's quantized Linear of W·diag(s) as it runs (weights and, for dynamic-activation
// schemes, activations quantized).
std::vector<float> search_scales(const ScaleGroup& g, const SiteStats& x, const quant::Config& config,
                                 const std::vector<std::vector<float>>& candidates);

// SmoothQuant with α searched: no smoothing, or α in 0.1 .. 0.9, whichever gives the lowest error.
std::vector<float> smoothquant_search(const ScaleGroup& g, const SiteStats& x, const quant::Config& config);

// AWQ: s = mean|X|^α normalized to a geometric mean of about 1, α searched on a grid of `grid` points
// in [0, 1) (α = 0: no scaling) by search_scales.
std::vector<float> awq_scales(const ScaleGroup& g, const SiteStats& x, const quant::Config& config, int grid = 20);

// AWQ's weight clipping for int4wo-G / uintx-B-G (other schemes: no-op): per output row and group, the
// range [p·min w, p·max w] for p in 1, 1 − 1/grid, ..., 1 − max_shrink whose round-to-nearest codes give
// the lowest error (w − q)ᵀ X_gᵀX_g (w − q) on the kept activation rows X (divided by the channel scales
// `s` when given); the weight (dense) is clamped to it in place.
void awq_clip(quant::LinearPtr* linear, const SiteStats& x, const std::vector<float>* s, const quant::Config& config,
              int grid = 50, float max_shrink = 0.5f);

}  // namespace lowbit::algorithms
