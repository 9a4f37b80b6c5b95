// Broken checkpoints give one clear error naming the file and the tensor, never a crash.
#include <gtest/gtest.h>

#include <fstream>

#include "../support/temp_dir.h"
#include "../support/tiny_model.h"
#include "lowbit/model/llama.h"

namespace lowbit {
namespace {

// Loading `dir` must fail with a message holding every needle.
void expect_load_error(const std::filesystem::path& dir, const std::vector<std::string>& needles) {
  try {
    LlamaModel::load(dir);
    FAIL() << "loaded a broken checkpoint";
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const auto& n : needles) EXPECT_NE(msg.find(n), std::string::npos) << "'" << n << "' not in: " << msg;
  }
}

std::string read_bytes(const std::filesystem::path& p) { return read_text_file(p); }
void write_bytes(const std::filesystem::path& p, const std::string& s) { std::ofstream(p, std::ios::binary) << s; }

const char* kShard1 = "model-00001-of-00002.safetensors";

TEST(CheckpointErrors, TheTinyModelLoadsSingleAndSharded) {
  test::TempDir d;
  test::write_tiny_model(d / "single");
  test::write_tiny_model(d / "sharded", {}, true);
  const auto a = LlamaModel::load(d / "single");
  const auto b = LlamaModel::load(d / "sharded");
  EXPECT_EQ(a.layers.size(), 2u);
  EXPECT_EQ(a.weight_bytes(false), b.weight_bytes(false));
  LlamaRunner ra(a), rb(b);
  KVCache ca(a.config, 8), cb(b.config, 8);
  const std::vector<int32_t> ids{1, 5, 9};
  EXPECT_EQ(ra.forward(ids, ca), rb.forward(ids, cb));
}

TEST(CheckpointErrors, TruncatedShard) {
  test::TempDir d;
  test::write_tiny_model(d.path(), {}, true);
  const std::string s = read_bytes(d / kShard1);
  write_bytes(d / kShard1, s.substr(0, s.size() - 100));
  expect_load_error(d.path(), {kShard1, "out of range", "truncated"});
}

TEST(CheckpointErrors, HeaderLengthBeyondTheFile) {
  test::TempDir d;
  test::write_tiny_model(d.path(), {}, true);
  std::string s = read_bytes(d / kShard1);
  s[5] = 0x10;  // header length far beyond the file size
  write_bytes(d / kShard1, s);
  expect_load_error(d.path(), {kShard1, "header length"});
}

TEST(CheckpointErrors, OffsetsOutOfRange) {
  test::TempDir d;
  test::write_tiny_model(d.path(), {}, true);
  std::string s = read_bytes(d / kShard1);
  const std::string key = "\"data_offsets\":[0,";
  const size_t at = s.find(key);
  ASSERT_NE(at, std::string::npos);
  s.replace(at, key.size(), "\"data_offsets\":[9,");  // same length: begin moved, size no longer matches
  write_bytes(d / kShard1, s);
  expect_load_error(d.path(), {kShard1, "model.embed_tokens.weight"});
}

TEST(CheckpointErrors, ShapeMismatch) {
  test::TempDir d;
  auto tensors = test::tiny_tensors({});
  for (auto& [n, t] : tensors)
    if (n == "model.layers.1.mlp.up_proj.weight") t = Tensor::zeros({40, 32}, DType::BF16);
  test::write_tiny_model(d.path(), {}, false, tensors);
  expect_load_error(d.path(), {"model.safetensors", "model.layers.1.mlp.up_proj.weight", "[40, 32]", "[48, 32]"});
}

TEST(CheckpointErrors, DtypeMismatch) {
  test::TempDir d;
  auto tensors = test::tiny_tensors({});
  for (auto& [n, t] : tensors)
    if (n == "model.layers.0.self_attn.k_proj.weight") t = Tensor::zeros({16, 32}, DType::I32);
  test::write_tiny_model(d.path(), {}, false, tensors);
  expect_load_error(d.path(), {"model.safetensors", "model.layers.0.self_attn.k_proj.weight", "int32"});
}

TEST(CheckpointErrors, MissingTensor) {
  test::TempDir d;
  auto tensors = test::tiny_tensors({});
  std::erase_if(tensors, [](auto& p) { return p.first == "model.layers.1.self_attn.o_proj.weight"; });
  test::write_tiny_model(d.path(), {}, false, tensors);
  expect_load_error(d.path(), {"model.layers.1.self_attn.o_proj.weight", "missing"});
}

TEST(CheckpointErrors, BadJson) {
  test::TempDir d;
  test::write_tiny_model(d.path(), {}, true);
  write_bytes(d / "config.json", "{\"vocab_size\": 64,");
  expect_load_error(d.path(), {"config.json", "invalid JSON"});
  test::write_tiny_model(d.path(), {}, true);
  write_bytes(d / "model.safetensors.index.json", "{\"weight_map\": [}");
  expect_load_error(d.path(), {"model.safetensors.index.json", "invalid JSON"});
  test::write_tiny_model(d.path(), {}, true);
  write_bytes(d / "config.json", "{\"vocab_size\": 64}");
  expect_load_error(d.path(), {"config.json", "hidden_size"});
}

TEST(CheckpointErrors, IndexNamesAMissingShard) {
  test::TempDir d;
  test::write_tiny_model(d.path(), {}, true);
  std::filesystem::remove(d / kShard1);
  expect_load_error(d.path(), {kShard1, "missing"});
}

TEST(Config, BothRopeStylesAndDerivedHeadDim) {
  nlohmann::json v5 = test::tiny_config({});
  v5.erase("rope_theta");
  v5["rope_parameters"] = {{"rope_theta", 500000.0}, {"rope_type", "default"}};
  EXPECT_EQ(LlamaConfig::from_json(v5).rope_theta, 500000.0);
  EXPECT_EQ(LlamaConfig::from_json(v5).head_dim, 8);  // 32 / 4
  nlohmann::json l31 = test::tiny_config({});
  l31["rope_theta"] = 500000.0;
  l31["rope_scaling"] = {{"factor", 8.0},
                         {"low_freq_factor", 1.0},
                         {"high_freq_factor", 4.0},
                         {"original_max_position_embeddings", 8192},
                         {"rope_type", "llama3"}};
  l31["head_dim"] = 16;
  l31["eos_token_id"] = {128001, 128008, 128009};
  const LlamaConfig c = LlamaConfig::from_json(l31);
  EXPECT_EQ(c.rope_scaling.type, "llama3");
  EXPECT_EQ(c.rope_scaling.factor, 8.0);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_EQ(c.eos_token_id, 128001);
  l31["rope_scaling"]["rope_type"] = "yarn";
  EXPECT_THROW(LlamaConfig::from_json(l31), Error);
}

}  // namespace
}  // namespace lowbit
