// The CPU forward pass against transformers' fp32 outputs for sotu-llama-23m.
#include <gtest/gtest.h>

#include <cmath>

#include "../support/sotu.h"
#include "lowbit/model/llama.h"

namespace lowbit {
namespace {

class LlamaOracle : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { model_ = new LlamaModel(LlamaModel::load(test::sotu_dir())); }
  static void TearDownTestSuite() {
    delete model_;
    model_ = nullptr;
  }
  static LlamaModel* model_;
};
LlamaModel* LlamaOracle::model_ = nullptr;

int32_t argmax(const float* v, int64_t n) { return static_cast<int32_t>(std::max_element(v, v + n) - v); }

TEST_F(LlamaOracle, ConfigIsReadFromRopeParameters) {
  const LlamaConfig& c = model_->config;
  EXPECT_EQ(c.num_layers, 8);
  EXPECT_EQ(c.hidden_size, 256);
  EXPECT_EQ(c.num_heads, 4);
  EXPECT_EQ(c.num_kv_heads, 2);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.vocab_size, 32000);
  EXPECT_EQ(c.rope_theta, 10000.0);
  EXPECT_FALSE(c.tie_word_embeddings);
}

TEST_F(LlamaOracle, PromptLogitsMatchTransformers) {
  const auto oracle = test::sotu_oracle();
  const auto prompt = test::ids_of(oracle.tensor("prompt_ids"));
  const auto want = oracle.tensor("logits_fp32").to_f32_vector();
  LlamaRunner run(*model_);
  KVCache cache(model_->config, 64);
  const auto& got = run.forward(prompt, cache, Logits::All);
  ASSERT_EQ(got.size(), want.size());
  double max_diff = 0;
  for (size_t i = 0; i < got.size(); ++i) max_diff = std::max(max_diff, std::fabs(double(got[i]) - want[i]));
  std::cout << "prompt logits: max |diff| vs transformers fp32 = " << max_diff << "\n";
  EXPECT_LE(max_diff, 1e-3);
}

TEST_F(LlamaOracle, GreedyDecodingThroughTheCacheMatches) {
  const auto oracle = test::sotu_oracle();
  const auto prompt = test::ids_of(oracle.tensor("prompt_ids"));
  const auto want = test::ids_of(oracle.tensor("greedy_ids"));
  LlamaRunner run(*model_);
  KVCache cache(model_->config, 128);
  const int64_t V = model_->config.vocab_size;
  int32_t next = argmax(run.forward(prompt, cache).data(), V);
  std::vector<int32_t> got;
  while (got.size() < want.size()) {
    got.push_back(next);
    const std::vector<int32_t> one{next};
    next = argmax(run.forward(one, cache).data(), V);
  }
  EXPECT_EQ(got, want);
}

TEST_F(LlamaOracle, WindowNllMatchesTransformers) {
  const auto oracle = test::sotu_oracle();
  const auto ids = test::ids_of(oracle.tensor("window0_ids"));
  const auto want = oracle.tensor("window0_nll_fp32").to_f32_vector();
  LlamaRunner run(*model_);
  KVCache cache(model_->config, 512);
  const auto& logits = run.forward(ids, cache, Logits::All);
  const int64_t V = model_->config.vocab_size;
  ASSERT_EQ(want.size(), ids.size() - 1);
  double max_diff = 0;
  for (size_t j = 0; j + 1 < ids.size(); ++j) {
    const float* row = logits.data() + j * V;
    const float mx = *std::max_element(row, row + V);
    double s = 0;
    for (int64_t v = 0; v < V; ++v) s += std::exp(double(row[v]) - mx);
    const double nll = (std::log(s) + mx) - row[ids[j + 1]];
    max_diff = std::max(max_diff, std::fabs(nll - want[j]));
  }
  std::cout << "window0 NLL: max |diff| vs transformers fp32 = " << max_diff << "\n";
  EXPECT_LE(max_diff, 1e-3);
}

TEST_F(LlamaOracle, ChunkedPrefillEqualsOneShot) {
  const auto ids = test::ids_of(test::sotu_oracle().tensor("window0_ids"));
  const std::vector<int32_t> head(ids.begin(), ids.begin() + 100);
  LlamaRunner run(*model_);
  KVCache a(model_->config, 128), b(model_->config, 128);
  const auto one = run.forward(head, a);
  run.forward(std::span(head).subspan(0, 37), b);
  run.forward(std::span(head).subspan(37, 40), b);
  const auto chunked = run.forward(std::span(head).subspan(77), b);
  double max_diff = 0;
  for (size_t i = 0; i < one.size(); ++i) max_diff = std::max(max_diff, std::fabs(double(one[i]) - chunked[i]));
  EXPECT_LE(max_diff, 1e-4);
}

}  // namespace
}  // namespace lowbit

namespace lowbit {
namespace {

TEST_F(LlamaOracle, BatchedDecodeEqualsSeparateSequences) {
  const auto ids = test::ids_of(test::sotu_oracle().tensor("window0_ids"));
  const std::vector<int32_t> a(ids.begin(), ids.begin() + 9), b(ids.begin() + 20, ids.begin() + 33);
  LlamaRunner run(*model_);
  KVCache ca(model_->config, 32), cb(model_->config, 32), sa(model_->config, 32), sb(model_->config, 32);
  run.forward(a, ca);
  run.forward(b, cb);
  run.forward(a, sa);
  run.forward(b, sb);
  const std::vector<int32_t> ta{ids[40]}, tb{ids[41]};
  const Segment batch[2] = {{ta, &ca}, {tb, &cb}};
  const std::vector<float> both = run.forward(batch);
  const std::vector<float> one_a = run.forward(ta, sa);
  const std::vector<float> one_b = run.forward(tb, sb);
  const int64_t V = model_->config.vocab_size;
  ASSERT_EQ(both.size(), static_cast<size_t>(2 * V));
  double max_diff = 0;
  for (int64_t v = 0; v < V; ++v) {
    max_diff = std::max(max_diff, std::fabs(double(both[v]) - one_a[v]));
    max_diff = std::max(max_diff, std::fabs(double(both[V + v]) - one_b[v]));
  }
  EXPECT_LE(max_diff, 1e-4);
  EXPECT_EQ(ca.length(), 10);
  EXPECT_EQ(cb.length(), 14);
}

}  // namespace
}  // namespace lowbit
