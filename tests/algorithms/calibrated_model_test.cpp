// The calibrated algorithms on the real model: calibration windows, GPTQ / HQQ / AWQ / SmoothQuant through
// quantize_with_algorithm, and their errors. Calibration is on calibration.txt, evaluation on
// validation.txt (never the same text); both kept small so the test stays fast.
#include <gtest/gtest.h>

#include <set>

#include "../support/sotu.h"
#include "algorithms/algorithms.h"
#include "lowbit/core/file_io.h"
#include "lowbit/eval/perplexity.h"
#include "lowbit/model/tokenizer.h"

namespace lowbit::algorithms {
namespace {

const Tokenizer& tok() {
  static const Tokenizer t = Tokenizer::load(test::sotu_dir());
  return t;
}

const std::vector<std::vector<int32_t>>& calib() {
  static const auto w = calibration_windows(tok().encode(read_text_file(test::calibration_text()), true),
                                            {.samples = 12, .seqlen = 256, .seed = 0});
  return w;
}

double ppl_with(const std::string& scheme, Algorithm a, float smooth_alpha = 0.5f) {
  LlamaModel m = LlamaModel::load(test::sotu_dir());
  AlgorithmOptions o;
  o.algorithm = a;
  o.progress = false;
  o.smooth_alpha = smooth_alpha;
  o.awq_rows = 512;
  const auto report = quantize_with_algorithm(m, QuantPlan{quant::parse_config(scheme), {}}, o,
                                              needs_calibration(a) ? calib() : std::vector<std::vector<int32_t>>{});
  EXPECT_EQ(report.size(), m.linears().size());
  if (a == Algorithm::Gptq) {
    for (const auto& r : report) EXPECT_TRUE(r.rel_output_error >= 0 && r.rel_output_error < 0.1) << r.name;
  }
  static const auto ids = tok().encode(read_text_file(test::validation_text()), true);
  PplOptions po;
  po.progress = false;
  po.max_windows = 4;
  return perplexity(m, ids, po).ppl;
}

TEST(Calibration, WindowsAreDeterministicDistinctAndFromTheText) {
  std::vector<int32_t> ids(1000);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>(i);
  const auto a = calibration_windows(ids, {.samples = 5, .seqlen = 100, .seed = 7});
  const auto b = calibration_windows(ids, {.samples = 5, .seqlen = 100, .seed = 7});
  const auto c = calibration_windows(ids, {.samples = 5, .seqlen = 100, .seed = 8});
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  ASSERT_EQ(a.size(), 5u);
  std::set<int32_t> starts;
  for (const auto& w : a) {
    ASSERT_EQ(w.size(), 100u);
    EXPECT_EQ(w[0] % 100, 0);  // window boundaries of the stream
    for (size_t i = 1; i < w.size(); ++i) EXPECT_EQ(w[i], w[0] + static_cast<int32_t>(i));
    starts.insert(w[0]);
  }
  EXPECT_EQ(starts.size(), 5u);
  EXPECT_EQ(calibration_windows(ids, {.samples = 50, .seqlen = 100}).size(), 10u);  // what the text holds
  EXPECT_THROW(calibration_windows(ids, {.samples = 4, .seqlen = 2000}), Error);
}

// GPTQ and HQQ beat round-to-nearest at 4 bits; AWQ and searched SmoothQuant are no worse than their base.
TEST(CalibratedAlgorithms, BeatRoundToNearestOnTheRealModel) {
  const double rtn4 = ppl_with("int4wo-64", Algorithm::Rtn);
  const double gptq = ppl_with("int4wo-64", Algorithm::Gptq);
  const double hqq = ppl_with("int4wo-64", Algorithm::Hqq);
  const double awq = ppl_with("int4wo-64", Algorithm::Awq);
  EXPECT_LT(gptq, rtn4);
  EXPECT_LT(hqq, rtn4);
  EXPECT_LT(awq, rtn4 * 1.001);
  const double rtn3 = ppl_with("uintx-3-64", Algorithm::Rtn);
  EXPECT_LT(ppl_with("uintx-3-64", Algorithm::Gptq), rtn3);
  const double rtn2 = ppl_with("uintx-2-64", Algorithm::Rtn);
  EXPECT_LT(ppl_with("uintx-2-64", Algorithm::Gptq), rtn2);
  EXPECT_LT(ppl_with("uintx-2-64", Algorithm::Hqq), rtn2);
  const double dq = ppl_with("int8dq", Algorithm::Rtn);
  EXPECT_LT(ppl_with("int8dq", Algorithm::SmoothQuant, -1.0f), dq * 1.001);
  RecordProperty("rtn_gptq_hqq_awq", fmt::format("{:.4f} {:.4f} {:.4f} {:.4f}", rtn4, gptq, hqq, awq));
}

TEST(CalibratedAlgorithms, SchemesAnAlgorithmCannotTakeAreClearErrors) {
  LlamaModel m = LlamaModel::load(test::sotu_dir());
  AlgorithmOptions o;
  o.progress = false;
  o.algorithm = Algorithm::Gptq;
  try {
    quantize_with_algorithm(m, QuantPlan{quant::parse_config("fp6"), {}}, o, calib());
    FAIL() << "gptq accepted fp6";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("model.layers.0.self_attn.q_proj"), std::string::npos) << e.what();
  }
  EXPECT_THROW(quantize_with_algorithm(m, QuantPlan{quant::parse_config("int4wo-64"), {}}, o, {}), Error);
  o.algorithm = Algorithm::Hqq;
  EXPECT_THROW(quantize_with_algorithm(m, QuantPlan{quant::parse_config("int8dq"), {}}, o, {}), Error);
  EXPECT_THROW(algorithm_from_name("gptqq"), Error);
}

}  // namespace
}  // namespace lowbit::algorithms
