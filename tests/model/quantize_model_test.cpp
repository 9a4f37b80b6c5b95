// quantize_ with recipes, and lowbit's quantized checkpoints: round trips and broken files.
#include <gtest/gtest.h>

#include <cstring>

#include "../support/sotu.h"
#include "../support/temp_dir.h"
#include "../support/tiny_model.h"
#include "lowbit/eval/perplexity.h"
#include "lowbit/model/quantize_model.h"
#include "lowbit/model/quantized_checkpoint.h"
#include "lowbit/model/tokenizer.h"

namespace lowbit {
namespace {

test::TinySpec tiny() {
  test::TinySpec s;
  s.hidden = 64;
  s.ffn = 128;
  s.vocab = 96;
  return s;
}

std::vector<float> logits_of(const LlamaModel& m) {
  LlamaRunner r(m);
  KVCache c(m.config, 16);
  const std::vector<int32_t> ids{1, 7, 19, 33, 4, 60};
  return r.forward(ids, c, Logits::All);
}

bool same_bytes(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() &&
         std::memcmp(a.contiguous().raw(), b.contiguous().raw(), a.nbytes()) == 0;
}

TEST(QuantizeModel, RecipeRulesFirstMatchWins) {
  test::TempDir d;
  test::write_tiny_model(d / "m", tiny());
  d.write("recipe.json", R"({"default": "int4wo-32", "rules": [
      {"name": "lm_head", "quant": "int8wo"},
      {"regex": "model\\.layers\\.0\\..*", "quant": "bf16"},
      {"regex": ".*down_proj", "quant": "float8wo"}]})");
  LlamaModel m = LlamaModel::load(d / "m");
  quantize_(m, load_recipe(d / "recipe.json"), false);
  std::map<std::string, std::string> got;
  for (const auto& [name, w] : m.linears()) got[name] = (*w)->scheme();
  EXPECT_EQ(got["lm_head"], "int8wo");
  EXPECT_EQ(got["model.layers.0.mlp.down_proj"], "bf16");  // the layer-0 rule comes first
  EXPECT_EQ(got["model.layers.0.self_attn.q_proj"], "bf16");
  EXPECT_EQ(got["model.layers.1.mlp.down_proj"], "float8wo");
  EXPECT_EQ(got["model.layers.1.self_attn.v_proj"], "int4wo-32");
}

TEST(QuantizeModel, BadRecipesAreClearErrors) {
  test::TempDir d;
  test::write_tiny_model(d / "m", tiny());
  LlamaModel m = LlamaModel::load(d / "m");
  d.write("typo.json", R"({"rules": [{"name": "model.layers.0.mlp.dwn_proj", "quant": "int8wo"}]})");
  try {
    quantize_(m, load_recipe(d / "typo.json"), false);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("matches no Linear layer"), std::string::npos) << e.what();
  }
  const std::pair<const char*, const char*> bad[] = {
      {R"({"rules": [{"regex": "([", "quant": "int8wo"}]})", "invalid regular expression"},
      {R"({"rules": [{"name": "lm_head", "quant": "int5wo"}]})", "unknown quantization scheme 'int5wo'"},
      {R"({"rules": [{"name": "lm_head"}]})", "needs \"quant\""},
      {R"({"defaults": "int8wo"})", "unknown recipe key 'defaults'"},
      {R"({"rules": )", "invalid JSON"}};
  for (const auto& [text, needle] : bad) {
    d.write("bad.json", text);
    try {
      load_recipe(d / "bad.json");
      FAIL() << text;
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(needle), std::string::npos) << msg;
      EXPECT_NE(msg.find("bad.json"), std::string::npos) << msg;
    }
  }
  // A group size that does not divide a layer's in_features names the layer.
  LlamaModel m2 = LlamaModel::load(d / "m");
  try {
    quantize_(m2, quant::parse_config("uintx-4-256"), false);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("layer model.layers.0.self_attn.q_proj"), std::string::npos) << e.what();
  }
}

TEST(QuantizedCheckpoint, SaveLoadIsBitIdentical) {
  test::TempDir d;
  test::write_tiny_model(d / "m", tiny());
  for (const char* scheme : {"int8wo", "int4wo-32", "int8dq", "float8dq-tensor", "fp6", "uintx-3-32", "a8wx-4-32",
                             "w4a8-32", "codebook-4-32", "bf16"}) {
    SCOPED_TRACE(scheme);
    LlamaModel m = LlamaModel::load(d / "m");
    quantize_(m, quant::parse_config(scheme), false);
    save_quantized(m, d / "q", {.source_dir = d / "m", .description = scheme, .overwrite = true});
    const LlamaModel back = LlamaModel::load(d / "q");
    const auto a = std::as_const(m).linears();
    const auto b = back.linears();
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) {
      const auto sa = (*a[i].second)->save(), sb = (*b[i].second)->save();
      EXPECT_EQ(sa.layout, sb.layout);
      EXPECT_EQ(sa.params, sb.params);
      ASSERT_EQ(sa.tensors.size(), sb.tensors.size());
      for (size_t t = 0; t < sa.tensors.size(); ++t) EXPECT_TRUE(same_bytes(sa.tensors[t].second, sb.tensors[t].second));
    }
    EXPECT_EQ(logits_of(m), logits_of(back));
    EXPECT_EQ(m.weight_bytes(true), back.weight_bytes(true));
    EXPECT_FALSE(std::filesystem::exists(d / ("q.tmp-" + std::to_string(::getpid()))));
  }
}

TEST(QuantizedCheckpoint, RefusesToOverwriteWithoutForce) {
  test::TempDir d;
  test::write_tiny_model(d / "m", tiny());
  LlamaModel m = LlamaModel::load(d / "m");
  quantize_(m, quant::parse_config("int8wo"), false);
  save_quantized(m, d / "q", {.source_dir = d / "m"});
  EXPECT_THROW(save_quantized(m, d / "q", {.source_dir = d / "m"}), Error);
  EXPECT_TRUE(is_quantized_checkpoint(d / "q"));
}

// Loading `dir` fails with every needle in the message.
void expect_load_error(const std::filesystem::path& dir, const std::vector<std::string>& needles) {
  try {
    LlamaModel::load(dir);
    FAIL() << "loaded";
  } catch (const Error& e) {
    for (const auto& n : needles) EXPECT_NE(std::string(e.what()).find(n), std::string::npos) << e.what();
  }
}

TEST(QuantizedCheckpoint, CorruptCheckpointsAreClearErrors) {
  test::TempDir d;
  test::write_tiny_model(d / "m", tiny());
  LlamaModel m = LlamaModel::load(d / "m");
  quantize_(m, quant::parse_config("int4wo-32"), false);
  auto fresh = [&] {
    save_quantized(m, d / "q", {.source_dir = d / "m", .overwrite = true});
    return read_manifest(d / "q");
  };
  auto write_manifest = [&](const nlohmann::json& j) { write_text_file_atomic(d / "q" / "lowbit.json", j.dump()); };

  auto j = fresh();
  j["format_version"] = 99;
  write_manifest(j);
  expect_load_error(d / "q", {"lowbit.json", "format version 99", "upgrade"});

  j = fresh();
  j["layers"]["model.layers.1.mlp.up_proj"]["tensors"]["scale"] = "nowhere.scale";
  write_manifest(j);
  expect_load_error(d / "q", {"model.layers.1.mlp.up_proj", "nowhere.scale"});

  j = fresh();
  j["layers"]["lm_head"]["layout"] = "int9";
  write_manifest(j);
  expect_load_error(d / "q", {"lm_head", "unknown weight layout 'int9'"});

  j = fresh();
  j["layers"].erase("model.layers.0.self_attn.k_proj");
  write_manifest(j);
  expect_load_error(d / "q", {"model.layers.0.self_attn.k_proj"});

  j = fresh();
  j["layers"]["model.layers.0.mlp.gate_proj"]["params"]["group_size"] = 48;
  write_manifest(j);
  expect_load_error(d / "q", {"model.layers.0.mlp.gate_proj"});

  fresh();
  write_text_file_atomic(d / "q" / "lowbit.json", "{\"format\": \"lowbit\",");
  expect_load_error(d / "q", {"lowbit.json", "invalid JSON"});

  fresh();  // a truncated shard
  const auto shard = d / "q" / "model-00001-of-00001.safetensors";
  std::filesystem::resize_file(shard, std::filesystem::file_size(shard) - 64);
  expect_load_error(d / "q", {"model-00001-of-00001.safetensors"});
}

// On the real model: quantize -> save -> load -> perplexity equals quantizing on the fly, to the last digit.
TEST(QuantizedCheckpoint, SotuPerplexityIsIdenticalAfterSaveAndLoad) {
  test::TempDir d;
  const Tokenizer tok = Tokenizer::load(test::sotu_dir());
  const auto ids = tok.encode(read_text_file(test::validation_text()), true);
  PplOptions po;
  po.max_windows = 3;
  po.progress = false;
  for (const char* scheme : {"int4wo-64", "int8dq", "uintx-3-64"}) {
    LlamaModel m = LlamaModel::load(test::sotu_dir());
    quantize_(m, quant::parse_config(scheme), false);
    save_quantized(m, d / scheme, {.source_dir = test::sotu_dir(), .description = scheme});
    const double on_the_fly = perplexity(m, ids, po).ppl;
    const double loaded = perplexity(LlamaModel::load(d / scheme), ids, po).ppl;
    EXPECT_EQ(on_the_fly, loaded) << scheme;
  }
}

}  // namespace
}  // namespace lowbit
