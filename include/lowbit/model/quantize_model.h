// quantize_: a scheme applied to a model's Linear layers in one call, with per-name overrides.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "lowbit/model/llama.h"
#include "lowbit/quant/config.h"

namespace lowbit {

// A per-layer override: an exact Linear name ("lm_head", "model.layers.0.mlp.down_proj") or a regular
// expression matched against the whole name. The first rule that matches a layer decides its scheme.
struct QuantRule {
  std::string pattern;
  bool is_regex = false;
  quant::Config config;
};

struct QuantPlan {
  std::optional<quant::Config> default_config;  // for layers no rule matches; unset leaves them as they are
  std::vector<QuantRule> rules;
};

// A recipe file: {"default": "int4wo-64", "rules": [{"name": "lm_head", "quant": "int8wo"},
// {"regex": "model\\.layers\\.[0-3]\\..*", "quant": "bf16"}]}. Errors name the file and the entry.
QuantPlan load_recipe(const std::filesystem::path& path);

struct LayerReport {
  std::string name;
  std::string scheme;
  int64_t bytes_before = 0, bytes_after = 0;
  double seconds = 0;
  double rel_output_error = -1;  // calibrated algorithms: the layer's relative output error (else -1)
};

// Replaces the Linear weights (every Linear, including lm_head; embeddings are never touched). Each
// weight is cast to bf16 first, as torchao quantizes models loaded in bf16. A rule that matches no layer
// is an error (a typo should not pass silently).
std::vector<LayerReport> quantize_(LlamaModel& model, const QuantPlan& plan, bool progress = true);
std::vector<LayerReport> quantize_(LlamaModel& model, const quant::Config& config, bool progress = true);

// A rule that matches no layer of the model is an error (a typo should not pass silently).
void check_plan(const LlamaModel& model, const QuantPlan& plan);

// The scheme a plan gives to `name` (nullopt: left unquantized).
std::optional<quant::Config> plan_config_for(const QuantPlan& plan, const std::string& name);

}  // namespace lowbit
