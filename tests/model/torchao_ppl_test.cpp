// Perplexity of each quantization scheme on the real model against torchao's own figures (oracle.json:
// torchao 0.19 on the same checkpoint, weights cast to bf16 first, ppl-512 on the whole validation text).
#include <gtest/gtest.h>

#include <cmath>

#include <nlohmann/json.hpp>

#include "../support/sotu.h"
#include "lowbit/core/file_io.h"
#include "lowbit/eval/perplexity.h"
#include "lowbit/model/quantize_model.h"
#include "lowbit/model/tokenizer.h"

namespace lowbit {
namespace {

const std::vector<int32_t>& validation_ids() {
  static const std::vector<int32_t> ids =
      Tokenizer::load(test::sotu_dir()).encode(read_text_file(test::validation_text()), true);
  return ids;
}

double ppl_of(const std::string& scheme, int64_t windows) {
  LlamaModel m = LlamaModel::load(test::sotu_dir());
  quantize_(m, quant::parse_config(scheme), false);
  PplOptions po;
  po.progress = false;
  po.max_windows = windows;
  return perplexity(m, validation_ids(), po).ppl;
}

class TorchaoPerplexity : public ::testing::TestWithParam<std::string> {};

// Same scheme, same math: within ±0.2% of torchao over the whole text.
TEST_P(TorchaoPerplexity, WithinPointTwoPercent) {
  const auto oracle = nlohmann::json::parse(read_text_file(test::sotu_dir() / "oracle.json"));
  const double expected = oracle.at("validation/" + GetParam()).get<double>();
  const double got = ppl_of(GetParam(), 0);
  RecordProperty("ppl", std::to_string(got));
  EXPECT_NEAR(got / expected, 1.0, 0.002) << GetParam() << ": lowbit " << got << ", torchao " << expected;
}

INSTANTIATE_TEST_SUITE_P(Schemes, TorchaoPerplexity,
                         ::testing::Values("int8wo", "int8dq", "int4wo-32", "int4wo-64", "int4wo-128", "float8wo",
                                           "float8dq-row", "float8dq-tensor"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (auto& c : n)
                             if (c == '-') c = '_';
                           return n;
                         });

// Schemes torchao has no figure for here: they run on the real model and give a finite perplexity close
// to bf16's for the 4-bit-and-up ones (first windows only; BENCHMARKS.md has the whole-text figures).
TEST(SchemePerplexity, EveryOtherSchemeIsFiniteAndSane) {
  const double bf16 = ppl_of("bf16", 4);
  for (const char* scheme : {"fp6", "uintx-4-64", "uintx-3-64", "uintx-2-64", "a8wx-4-32", "w4a8", "codebook-4-64"}) {
    const double p = ppl_of(scheme, 4);
    EXPECT_TRUE(std::isfinite(p)) << scheme;
    EXPECT_GE(p, bf16 * 0.98) << scheme;
    const bool two_or_three_bits = std::string(scheme).starts_with("uintx-2") || std::string(scheme).starts_with("uintx-3");
    EXPECT_LT(p, bf16 * (two_or_three_bits ? 2.0 : 1.05)) << scheme << " " << p << " vs bf16 " << bf16;
  }
}

}  // namespace
}  // namespace lowbit
