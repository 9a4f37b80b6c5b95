// Quantization with an algorithm beyond round-to-nearest, for a whole model: GPTQ (calibrated), HQQ
// (calibration-free), AWQ and SmoothQuant (calibrated channel scaling, then round-to-nearest), with the
// same quantize_ plans (default scheme + per-layer rules) as plain RTN.
#pragma once

#include <functional>
#include <string_view>
#include <vector>

#include "algorithms/calibration.h"
#include "lowbit/model/quantize_model.h"

namespace lowbit::algorithms {

enum class Algorithm { Rtn, Gptq, Hqq, Awq, SmoothQuant };
Algorithm algorithm_from_name(std::string_view name);  // "rtn", "gptq", "hqq", "awq", "smoothquant"
std::string_view algorithm_name(Algorithm a);
bool needs_calibration(Algorithm a);

struct AlgorithmOptions {
  Algorithm algorithm = Algorithm::Rtn;
  // GPTQ
  double percdamp = 0.01;
  int clip_grid = 100;  // GptqOptions::clip_grid (the CLI default; 0: RTN qparams of the full range)
  int gptq_block = 128;
  bool act_order = false;
  // SmoothQuant's migration strength; negative: searched per layer group on the calibration rows
  float smooth_alpha = 0.5f;
  // AWQ (and SmoothQuant's search): grid points for α, activation rows kept per site for the search
  int awq_grid = 20;
  int64_t awq_rows = 4096;
  bool awq_clip = true;  // AWQ's per-group weight clipping after the scales (awq_clip)
  // Quantize the Linears of a block in the order data flows (q/k/v, then o with the quantized q/k/v's
  // output, then gate/up, then down), each calibrated on the inputs it will really see.
  bool sequential = true;
  bool progress = true;
};

class BlockCheckpoints;

// gptq_quantize on at most `max_rows` output rows at a time, with the same codes and qparams as one call
// (GPTQ's rows share only H) and the relative output error of the whole weight; bounds GPTQ's working
// memory for a large lm_head.
GptqResult gptq_in_row_chunks(const Tensor& w, const HessianAccumulator& H, const GptqOptions& g, int64_t max_rows);

// Called after each transformer block (and once for lm_head, with block = number of layers); with
// checkpoints, once the block is saved. An exception thrown here stops the run (a saved block stays saved).
using BlockDone = std::function<void(int64_t block, const std::vector<LayerReport>& layers)>;

// Quantizes `model` as `plan` says, with `opt.algorithm`; `windows` are the calibration token windows
// (calibration_windows) for the algorithms that need them. Layers of a scheme the algorithm does not
// handle are an error naming the layer. Returns one report per quantized layer (rel_output_error set
// where the algorithm measures it).
//
// One block is worked on at a time: the dense weights of later blocks stay where the checkpoint maps
// them (untouched, so not resident), and a finished block's dense pages are released. With
// `checkpoints`, each finished block is saved there and reloaded from it (memory-mapped), the blocks it
// already holds are restored instead of recomputed, and the calibration resumes from its saved hidden
// states: the result is bit for bit that of an uninterrupted run.
std::vector<LayerReport> quantize_with_algorithm(LlamaModel& model, const QuantPlan& plan,
                                                 const AlgorithmOptions& opt,
                                                 const std::vector<std::vector<int32_t>>& windows,
                                                 const BlockDone& on_block = {},
                                                 BlockCheckpoints* checkpoints = nullptr);

}  // namespace lowbit::algorithms
