#include "common.h"

#include <chrono>
#include <sstream>

#include "lowbit/core/system.h"
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
}

LoadedModel load_model(const ModelOptions& o) {
  set_threads(o.threads);
  const auto t0 = std::chrono::steady_clock::now();
  LoadedModel m{LlamaModel::load(o.model_dir), Tokenizer::load(o.model_dir)};
  m.load_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  m.scheme = "checkpoint";
  if (!o.quant.empty() || !o.recipe.empty()) {
    QuantPlan plan = o.recipe.empty() ? QuantPlan{} : load_recipe(o.recipe);
    if (!o.quant.empty()) plan.default_config = quant::parse_config(o.quant);
    const auto t1 = std::chrono::steady_clock::now();
    quantize_(m.model, plan);
    m.quantize_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
    m.scheme = o.quant.empty() ? "recipe" : o.quant;
    if (!o.recipe.empty() && !o.quant.empty()) m.scheme = o.quant + " + recipe";
  }
  return m;
}

std::string human_bytes(int64_t b) {
  const double v = static_cast<double>(b);
  if (v >= 1e9) return fmt::format("{:.2f} GB", v / 1e9);
  if (v >= 1e6) return fmt::format("{:.1f} MB", v / 1e6);
  if (v >= 1e3) return fmt::format("{:.1f} kB", v / 1e3);
  return fmt::format("{} B", b);
}

std::filesystem::path default_demo_model() {
  namespace fs = std::filesystem;
  for (const fs::path base : {fs::path("../shared/models/sotu-llama-23m"), fs::path(LOWBIT_SOURCE_DIR) / ".." /
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
