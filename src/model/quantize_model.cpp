#include "lowbit/model/quantize_model.h"

#include <chrono>
#include <regex>

#include <nlohmann/json.hpp>

#include "lowbit/core/file_io.h"
#include "lowbit/core/progress.h"
#include "lowbit/quant/quantize.h"

namespace lowbit {

QuantPlan load_recipe(const std::filesystem::path& path) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_text_file(path));
  } catch (const nlohmann::json::exception& e) {
    fail("{}: invalid JSON: {}", path.string(), e.what());
  }
  QuantPlan plan;
  try {
    LB_CHECK(j.is_object(), "{}: a recipe is a JSON object with \"default\" and/or \"rules\"", path.string());
    for (auto it = j.begin(); it != j.end(); ++it)
      LB_CHECK(it.key() == "default" || it.key() == "rules", "{}: unknown recipe key '{}'", path.string(), it.key());
    if (j.contains("default") && !j["default"].is_null()) plan.default_config = quant::parse_config(j["default"].get<std::string>());
    if (j.contains("rules")) {
      LB_CHECK(j["rules"].is_array(), "{}: \"rules\" must be a list", path.string());
      for (size_t i = 0; i < j["rules"].size(); ++i) {
        const auto& r = j["rules"][i];
        LB_CHECK(r.is_object() && r.contains("quant") && (r.contains("name") != r.contains("regex")),
                 "{}: rule {} needs \"quant\" and exactly one of \"name\" or \"regex\"", path.string(), i);
        QuantRule rule;
        rule.is_regex = r.contains("regex");
        rule.pattern = r[rule.is_regex ? "regex" : "name"].get<std::string>();
        rule.config = quant::parse_config(r["quant"].get<std::string>());
        if (rule.is_regex) {
          try {
            std::regex re(rule.pattern);
          } catch (const std::regex_error& e) {
            fail("{}: rule {}: invalid regular expression '{}': {}", path.string(), i, rule.pattern, e.what());
          }
        }
        plan.rules.push_back(std::move(rule));
      }
    }
  } catch (const nlohmann::json::exception& e) {
    fail("{}: {}", path.string(), e.what());
  } catch (const Error& e) {
    const std::string msg = e.what();
    if (msg.rfind(path.string(), 0) == 0) throw;
    fail("{}: {}", path.string(), msg);
  }
  return plan;
}

namespace {
bool rule_matches(const QuantRule& r, const std::string& name) {
  return r.is_regex ? std::regex_match(name, std::regex(r.pattern)) : r.pattern == name;
}
}  // namespace

std::optional<quant::Config> plan_config_for(const QuantPlan& plan, const std::string& name) {
  for (const auto& r : plan.rules)
    if (rule_matches(r, name)) return r.config;
  return plan.default_config;
}

void check_plan(const LlamaModel& model, const QuantPlan& plan) {
  const auto layers = model.linears();
  for (const auto& r : plan.rules) {
    const bool used = std::any_of(layers.begin(), layers.end(), [&](auto& l) { return rule_matches(r, l.first); });
    LB_CHECK(used, "recipe rule {} '{}' matches no Linear layer (names look like 'model.layers.0.mlp.down_proj', "
             "'lm_head')", r.is_regex ? "regex" : "name", r.pattern);
  }
}

std::vector<LayerReport> quantize_(LlamaModel& model, const QuantPlan& plan, bool show_progress) {
  check_plan(model, plan);
  auto layers = model.linears();
  std::vector<LayerReport> report;
  Progress progress("quantizing", static_cast<int64_t>(layers.size()), show_progress && stderr_is_terminal());
  int64_t done = 0;
  for (auto& [name, ptr] : layers) {
    const auto cfg = plan_config_for(plan, name);
    progress.update(done++, name);
    if (!cfg) continue;
    const auto* dense = dynamic_cast<const quant::DenseWeight*>(ptr->get());
    LB_CHECK(dense != nullptr, "layer {} is already quantized ({}); quantize the original checkpoint", name,
             (*ptr)->scheme());
    const auto t0 = std::chrono::steady_clock::now();
    LayerReport lr{name, quant::config_name(*cfg), (*ptr)->nbytes(), 0, 0};
    try {
      *ptr = quant::quantize_weight(dense->weight().to(DType::BF16), *cfg);
    } catch (const Error& e) {
      fail("layer {}: {}", name, e.what());
    }
    lr.bytes_after = (*ptr)->nbytes();
    lr.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    report.push_back(lr);
  }
  progress.finish();
  return report;
}

std::vector<LayerReport> quantize_(LlamaModel& model, const quant::Config& config, bool show_progress) {
  return quantize_(model, QuantPlan{config, {}}, show_progress);
}

}  // namespace lowbit
