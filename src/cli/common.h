// Pieces the model-running subcommands share: model options, loading, and output helpers.
#pragma once

#include <filesystem>
#include <string>

#include <CLI/CLI.hpp>

#include "algorithms/algorithms.h"
#include "lowbit/model/llama.h"
#include "lowbit/model/quantize_model.h"
#include "lowbit/model/tokenizer.h"

namespace lowbit::cli {

struct ModelOptions {
  std::string model_dir;
  int threads = 0;
  std::string quant;   // quantize on the fly with this scheme
  std::string recipe;  // per-layer overrides (JSON)
  // Algorithm beyond round-to-nearest, and its calibration data.
  std::string algo = "rtn";
  std::string calib;
  int64_t calib_samples = 128, calib_seqlen = 512;
  uint64_t calib_seed = 0;
  bool act_order = false;
  double percdamp = 0.01;
  int clip_grid = 100;
  float smooth_alpha = 0.5f;
};

// Adds --model (required unless `model_required` is false), --threads, and unless `with_quant` is false
// --quant and --recipe.
void add_model_options(CLI::App* sub, ModelOptions& o, bool model_required = true, bool with_quant = true);

struct LoadedModel {
  LlamaModel model;
  Tokenizer tokenizer;
  double load_seconds = 0;
  double quantize_seconds = 0;
  std::string scheme = "bf16";  // what --quant/--recipe applied, for display
};

LoadedModel load_model(const ModelOptions& o);

// What --quant/--recipe/--algo/--calib ask for, ready for quantize_with_algorithm.
struct QuantizationRequest {
  QuantPlan plan;
  algorithms::AlgorithmOptions options;
  std::vector<std::vector<int32_t>> windows;  // calibration windows (calibrated algorithms)
};
QuantizationRequest quantization_request(const Tokenizer& tok, const ModelOptions& o);

// Applies --quant/--recipe with --algo to a loaded model (nothing when neither is given); returns the
// per-layer reports.
std::vector<LayerReport> apply_quantization(LlamaModel& model, const Tokenizer& tok, const ModelOptions& o);

std::string human_bytes(int64_t bytes);
std::vector<std::string> split_list(const std::string& s);  // "a,b,,c" -> {a, b, c}  // "45.3 MB"

// --device: "cpu", or "cuda" where a GPU can be used here; else a one-line error naming `cmd` and why
// (checked before any model is loaded).
void check_device(const char* cmd, const std::string& device);

// The sotu-llama-23m checkpoint beside the repository (../shared/models), if present.
std::filesystem::path default_demo_model();

}  // namespace lowbit::cli
