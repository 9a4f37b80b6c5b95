#include "common.h"

#include <chrono>
#include <sstream>

#include "core/cuda_runtime.h"
#include "lowbit/core/system.h"
#include "algorithms/algorithms.h"
#include "lowbit/core/file_io.h"
#include "lowbit/model/quantize_model.h"

namespace lowbit::cli {

void add_model_options(CLI::App* sub, ModelOptions& o, bool model_required, bool with_quant) {
  auto* opt = sub->add_option("--model", o.model_dir,
                              "Hugging Face model directory (config.json, *.safetensors, tokenizer.json)");
  if (model_required) opt->required();
  sub->add_option("--threads", o.threads, "CPU threads (default: every core)");
  if (!with_quant) return;
  sub->add_option("--quant", o.quant,
                  "quantize every Linear layer on the fly: bf16, int8wo, int4wo-{32,64,128,256}, int8dq, float8wo,\n"
                  "float8dq-row, float8dq-tensor, fp6, uintx-B-G, a8wx-B-G, w4a8, codebook-4-64");
  sub->add_option("--recipe", o.recipe, "JSON recipe of per-layer schemes (docs/quantized-format.md)")
      ->check(CLI::ExistingFile);
  sub->add_option("--algo", o.algo,
                  "rtn (round to nearest); gptq (calibrated: int4wo-G, uintx-B-G, int8wo); hqq (calibration-free:\n"
                  "int4wo-G, uintx-B-G with a float zero point); awq (calibrated channel scales, then RTN; weight-only schemes); smoothquant\n"
                  "(calibrated smoothing, then RTN; for int8dq / float8dq)")
      ->capture_default_str();
  sub->add_option("--calib", o.calib, "calibration text for gptq, awq, smoothquant (plain text, tokenized with the model's tokenizer)")
      ->check(CLI::ExistingFile);
  sub->add_option("--calib-samples", o.calib_samples, "calibration windows (fewer if the text holds fewer)")
      ->capture_default_str();
  sub->add_option("--calib-seqlen", o.calib_seqlen, "tokens per calibration window")->capture_default_str();
  sub->add_option("--calib-seed", o.calib_seed, "seed that picks the calibration windows")->capture_default_str();
  sub->add_flag("--act-order", o.act_order, "gptq: quantize columns by decreasing activation energy");
  sub->add_option("--smooth-alpha", o.smooth_alpha, "smoothquant: migration strength α in [0, 1]; -1 searches α per layer group")
      ->capture_default_str();
  sub->add_option("--percdamp", o.percdamp, "gptq: damping, as a fraction of the Hessian's mean diagonal")
      ->capture_default_str();
  sub->add_option("--clip-grid", o.clip_grid,
                  "gptq: pick each group's range among N shrinks of [min, max] by reconstruction error (0: full range)")
      ->capture_default_str();
}

LoadedModel load_model(const ModelOptions& o) {
  set_threads(o.threads);
  const auto t0 = std::chrono::steady_clock::now();
  LoadedModel m{LlamaModel::load(o.model_dir), Tokenizer::load(o.model_dir)};
  m.load_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  m.scheme = "checkpoint";
  if (!o.quant.empty() || !o.recipe.empty()) {
    const auto t1 = std::chrono::steady_clock::now();
    apply_quantization(m.model, m.tokenizer, o);
    m.quantize_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
    m.scheme = o.quant.empty() ? "recipe" : o.quant;
    if (!o.recipe.empty() && !o.quant.empty()) m.scheme = o.quant + " + recipe";
    if (o.algo != "rtn") m.scheme += " (" + o.algo + ")";
  }
  return m;
}

QuantizationRequest quantization_request(const Tokenizer& tok, const ModelOptions& o) {
  QuantizationRequest r;
  r.plan = o.recipe.empty() ? QuantPlan{} : load_recipe(o.recipe);
  if (!o.quant.empty()) r.plan.default_config = quant::parse_config(o.quant);
  algorithms::AlgorithmOptions& ao = r.options;
  ao.algorithm = algorithms::algorithm_from_name(o.algo);
  ao.act_order = o.act_order;
  ao.percdamp = o.percdamp;
  ao.clip_grid = o.clip_grid;
  ao.smooth_alpha = o.smooth_alpha;
  if (algorithms::needs_calibration(ao.algorithm)) {
    LB_CHECK(!o.calib.empty(), "--algo {} needs calibration text: --calib FILE (never the text you evaluate on)",
             o.algo);
    const auto ids = tok.encode(read_text_file(o.calib), true);
    r.windows = algorithms::calibration_windows(
        ids, {.samples = o.calib_samples, .seqlen = o.calib_seqlen, .seed = o.calib_seed});
  }
  return r;
}

std::vector<LayerReport> apply_quantization(LlamaModel& model, const Tokenizer& tok, const ModelOptions& o) {
  if (o.quant.empty() && o.recipe.empty()) {
    LB_CHECK(o.algo == "rtn", "--algo {} needs --quant or --recipe", o.algo);
    return {};
  }
  const QuantizationRequest r = quantization_request(tok, o);
  if (r.options.algorithm == algorithms::Algorithm::Rtn) return quantize_(model, r.plan);
  return algorithms::quantize_with_algorithm(model, r.plan, r.options, r.windows);
}

std::string human_bytes(int64_t b) {
  const double v = static_cast<double>(b);
  if (v >= 1e9) return fmt::format("{:.2f} GB", v / 1e9);
  if (v >= 1e6) return fmt::format("{:.1f} MB", v / 1e6);
  if (v >= 1e3) return fmt::format("{:.1f} kB", v / 1e3);
  return fmt::format("{} B", b);
}

void check_device(const char* cmd, const std::string& device) {
  LB_CHECK(device == "cpu" || device == "cuda", "{}: --device must be cpu or cuda, got '{}'", cmd, device);
  if (device == "cpu") return;
  const std::string why = detail::cuda_unavailable_reason();
  LB_CHECK(why.empty(), "{}: --device cuda: no usable NVIDIA GPU: {}; use --device cpu", cmd, why);
}

std::filesystem::path default_demo_model() {
  namespace fs = std::filesystem;
  for (const fs::path& base : {fs::path("../shared/models/sotu-llama-23m"), fs::path(LOWBIT_SOURCE_DIR) / ".." /
                                                                               "shared/models/sotu-llama-23m"}) {
    if (fs::exists(base / "config.json")) return fs::weakly_canonical(base);
  }
  return {};
}

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ','))
    if (!item.empty()) out.push_back(item);
  return out;
}

}  // namespace lowbit::cli
