// `lowbit quantize`: quantize a checkpoint and write lowbit's quantized checkpoint directory.
#include <map>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "common.h"
#include "lowbit/core/system.h"
#include "lowbit/model/quantized_checkpoint.h"
#include "lowbit/model/quantize_model.h"
#include "table.h"

namespace lowbit::cli {
namespace {

struct QuantizeCliOptions {
  ModelOptions model;
  std::string out;
  bool force = false;
  bool json = false;
};

int run_quantize(const QuantizeCliOptions& o) {
  LB_CHECK(!o.model.quant.empty() || !o.model.recipe.empty(), "quantize: give --quant NAME and/or --recipe FILE");
  LB_CHECK(!is_quantized_checkpoint(o.model.model_dir), "quantize: {} is already a quantized checkpoint",
           o.model.model_dir);
  set_threads(o.model.threads);
  const auto t0 = std::chrono::steady_clock::now();
  LlamaModel model = LlamaModel::load(o.model.model_dir);
  const int64_t before = model.weight_bytes(false);
  const auto report = apply_quantization(model, Tokenizer::load(o.model.model_dir), o.model);
  std::string desc = o.model.quant.empty() ? "recipe " + o.model.recipe
                     : o.model.recipe.empty() ? o.model.quant
                                              : o.model.quant + " with recipe " + o.model.recipe;
  if (o.model.algo != "rtn") desc += " (" + o.model.algo + ")";
  save_quantized(model, o.out, {.source_dir = o.model.model_dir, .description = desc, .overwrite = o.force});
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  std::map<std::string, std::pair<int, int64_t>> by_scheme;
  for (const auto& [name, w] : model.linears()) {
    auto& e = by_scheme[(*w)->scheme()];
    ++e.first;
    e.second += (*w)->nbytes();
  }
  if (o.json) {
    nlohmann::json j = {{"out", o.out}, {"quantization", desc}, {"weight_bytes_before", before},
                        {"weight_bytes_after", model.weight_bytes(false)}, {"seconds", secs},
                        {"peak_rss_bytes", peak_rss_bytes()}};
    for (const auto& [s, e] : by_scheme) j["schemes"][s] = {{"layers", e.first}, {"bytes", e.second}};
    fmt::print("{}\n", j.dump());
    return 0;
  }
  Table t({"scheme", "layers", "bytes"});
  for (const auto& [s, e] : by_scheme) t.add({s, std::to_string(e.first), human_bytes(e.second)});
  fmt::print("{}", t.render());
  fmt::print("weights (embedding excluded): {} -> {} ({:.2f}x smaller); {} layers quantized in {:.1f} s, peak RSS {}\n",
             human_bytes(before), human_bytes(model.weight_bytes(false)),
             static_cast<double>(before) / static_cast<double>(model.weight_bytes(false)), report.size(), secs,
             human_bytes(peak_rss_bytes()));
  fmt::print("wrote {} (load it with --model {})\n", o.out, o.out);
  return 0;
}

}  // namespace

Action register_quantize(CLI::App& app) {
  auto o = std::make_shared<QuantizeCliOptions>();
  auto* sub = app.add_subcommand(
      "quantize",
      "Quantize a Hugging Face checkpoint and write a lowbit quantized checkpoint directory (sharded\n"
      "safetensors with packed codes and qparams, a manifest, the config and tokenizer). Every Linear layer\n"
      "is quantized (lm_head included; embeddings never) unless a --recipe says otherwise. The directory is\n"
      "written under a temporary name and renamed into place when complete.");
  add_model_options(sub, o->model);
  sub->add_option("--out,-o", o->out, "output directory")->required();
  sub->add_flag("--force", o->force, "replace --out if it exists");
  sub->add_flag("--json", o->json, "print one JSON object");
  return [o] { return run_quantize(*o); };
}

}  // namespace lowbit::cli
