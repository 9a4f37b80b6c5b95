// The `lowbit` executable on the real sotu checkpoint: perplexity under both protocols, generation, errors.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "../support/run.h"
#include "core/cuda_runtime.h"
#include "../support/sotu.h"

namespace lowbit {
namespace {

std::string model_args() {
  return "--model " + test::sotu_dir().string() + " --text " + test::validation_text().string();
}

nlohmann::json run_ppl_json(const std::string& extra) {
  const auto r = test::run_lowbit("ppl " + model_args() + " --json " + extra);
  EXPECT_EQ(r.exit_code, 0) << r.out;
  return nlohmann::json::parse(test::last_line(r.out));
}

// transformers' fp32 perplexity of this model on this text (oracle.json: validation/fp32).
TEST(PplCli, WindowsProtocolMatchesTransformers) {
  const auto j = run_ppl_json("");
  std::cout << "lowbit ppl (ppl-512): " << j.dump() << "\n";
  EXPECT_EQ(j["protocol"], "ppl-512");
  EXPECT_NEAR(j["ppl"].get<double>(), 108.2674, 0.01);
  EXPECT_EQ(j["tokens"], 136 * 511);
}

// llama.cpp's llama-perplexity on a faithful f32 GGUF of this model gave 105.970.
TEST(PplCli, LlamaCppProtocolMatchesLlamaPerplexity) {
  const auto j = run_ppl_json("--protocol llamacpp");
  std::cout << "lowbit ppl (llamacpp): " << j.dump() << "\n";
  EXPECT_EQ(j["protocol"], "llamacpp-512");
  EXPECT_NEAR(j["ppl"].get<double>(), 105.970, 0.01);
  EXPECT_EQ(j["tokens"], 136 * 255);
}

TEST(GenerateCli, GreedyContinuationAndStats) {
  const auto r = test::run_lowbit("generate --model " + test::sotu_dir().string() +
                                  " --prompt 'The Congress' -n 12 --temperature 0");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(r.out.rfind("The Congress", 0), 0u) << r.out;
  EXPECT_NE(r.out.find("decode 12 tokens:"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("peak RSS"), std::string::npos) << r.out;
  // Greedy is deterministic.
  EXPECT_EQ(r.out.substr(0, r.out.find('\n')), test::run_lowbit("generate --model " + test::sotu_dir().string() +
                                                                " --prompt 'The Congress' -n 12 --temperature 0")
                                                   .out.substr(0, r.out.find('\n')));
}

TEST(Cli, ErrorsAreOneLineAndExitTwo) {
  auto r = test::run_lowbit("ppl --model /nonexistent/model --text " + test::validation_text().string());
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.out.rfind("error: ", 0), 0u) << r.out;
  EXPECT_NE(r.out.find("/nonexistent/model"), std::string::npos) << r.out;
  r = test::run_lowbit("frobnicate");
  EXPECT_EQ(r.exit_code, 2) << r.out;
  r = test::run_lowbit("ppl " + model_args() + " --protocol nonsense");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.out.find("unknown perplexity protocol 'nonsense'"), std::string::npos) << r.out;
  r = test::run_lowbit("--help");
  EXPECT_EQ(r.exit_code, 0);
  for (const char* sub : {"demo", "generate", "ppl"}) EXPECT_NE(r.out.find(sub), std::string::npos) << r.out;
}

// --device is checked before any model is read: a bad value, or cuda where no GPU can be used (this
// machine without a driver or device, or a build without CUDA), is one line naming why.
TEST(Cli, DeviceIsCheckedFirstWithAClearError) {
  auto r = test::run_lowbit("ppl " + model_args() + " --device tpu");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.out.find("error: ppl: --device must be cpu or cuda, got 'tpu'"), std::string::npos) << r.out;
  if (detail::cuda_available()) GTEST_SKIP() << "a GPU is usable here: --device cuda runs (lowbit_cuda_tests)";
  const std::string why = detail::cuda_unavailable_reason();
  ASSERT_FALSE(why.empty());
#ifdef LOWBIT_WITH_CUDA
  // A CUDA build answers from the runtime (no driver, no device), not from the no-CUDA stub.
  EXPECT_EQ(why.find("built without CUDA"), std::string::npos) << why;
#endif
  const std::vector<std::string> cmds = {"ppl " + model_args(), "generate --model /nonexistent/model -n 2",
                                         "bench --arch llama-3.1-8b --quant bf16 -n 2"};
  for (const std::string& cmd : cmds) {
    r = test::run_lowbit(cmd + " --device cuda");
    EXPECT_EQ(r.exit_code, 2) << cmd;
    const std::string sub = cmd.substr(0, cmd.find(' '));
    EXPECT_EQ(r.out, "error: " + sub + ": --device cuda: no usable NVIDIA GPU: " + why + "; use --device cpu\n")
        << cmd;
  }
}

}  // namespace
}  // namespace lowbit
