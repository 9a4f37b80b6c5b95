#include "common.h"

#include <chrono>

#include "lowbit/core/system.h"

namespace lowbit::cli {

void add_model_options(CLI::App* sub, ModelOptions& o, bool model_required) {
  auto* opt = sub->add_option("--model", o.model_dir,
                              "Hugging Face model directory (config.json, *.safetensors, tokenizer.json)");
  if (model_required) opt->required();
  sub->add_option("--threads", o.threads, "CPU threads (default: every core)");
}

LoadedModel load_model(const ModelOptions& o) {
  set_threads(o.threads);
  const auto t0 = std::chrono::steady_clock::now();
  LoadedModel m{LlamaModel::load(o.model_dir), Tokenizer::load(o.model_dir), 0.0};
  m.load_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
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

}  // namespace lowbit::cli
