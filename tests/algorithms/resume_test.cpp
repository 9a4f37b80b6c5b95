// Streaming, resumable `lowbit quantize`: a run stopped after a block and resumed writes exactly the bytes
// of an uninterrupted run; resuming with other options is refused; per-block JSON events; releasing the
// pages of a memory-mapped weight drops them from RSS and never touches other memory. Calibration is
// kept tiny (4 windows of 128 tokens; 2 for AWQ).
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "../support/run.h"
#include "../support/sotu.h"
#include "../support/temp_dir.h"
#include "algorithms/algorithms.h"
#include "algorithms/resume.h"
#include "lowbit/core/system.h"

namespace lowbit::algorithms {
namespace {
namespace fs = std::filesystem;

// AWQ's scale search is the slow part of its run: it gets half the calibration tokens.
std::string quantize_args(const std::string& algo, const fs::path& out, const std::string& extra = "") {
  return fmt::format("quantize --model {} --quant int4wo-64 --algo {} --calib {} --calib-samples {} "
                     "--calib-seqlen 128 --threads 2 --out {} --json {}",
                     test::sotu_dir().string(), algo, test::calibration_text().string(), algo == "awq" ? 2 : 4,
                     out.string(), extra);
}

std::string bytes_of(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::vector<nlohmann::json> events(const std::string& out) {
  std::vector<nlohmann::json> v;
  std::istringstream in(out);
  std::string line;
  while (std::getline(in, line))
    if (!line.empty() && line[0] == '{') v.push_back(nlohmann::json::parse(line));
  return v;
}

// Every file of two directories, byte for byte.
void expect_same_files(const fs::path& a, const fs::path& b) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(a)) names.push_back(e.path().filename().string());
  size_t nb = 0;
  for (const auto& e : fs::directory_iterator(b)) (void)e, ++nb;
  EXPECT_EQ(names.size(), nb);
  for (const auto& n : names) {
    ASSERT_TRUE(fs::exists(b / n)) << n;
    EXPECT_TRUE(bytes_of(a / n) == bytes_of(b / n)) << n << " differs";
  }
}

void interrupted_run_is_bit_identical(const std::string& algo, int stop_after) {
  test::TempDir d;
  const auto full = test::run_lowbit(quantize_args(algo, d / "full"));
  ASSERT_EQ(full.exit_code, 0) << full.out;
  EXPECT_FALSE(fs::exists(d / "full.partial"));

  const auto stopped =
      test::run_lowbit(quantize_args(algo, d / "resumed", fmt::format("--stop-after-block {}", stop_after)));
  ASSERT_EQ(stopped.exit_code, 3) << stopped.out;
  EXPECT_FALSE(fs::exists(d / "resumed"));
  ASSERT_TRUE(fs::exists(d / "resumed.partial" / "state.json"));

  // Without --resume the work directory is not silently thrown away.
  const auto refused = test::run_lowbit(quantize_args(algo, d / "resumed"));
  EXPECT_EQ(refused.exit_code, 2);
  EXPECT_NE(refused.out.find("--resume"), std::string::npos) << refused.out;

  const auto resumed = test::run_lowbit(quantize_args(algo, d / "resumed", "--resume"));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.out;
  const auto ev = events(resumed.out);
  ASSERT_FALSE(ev.empty());
  EXPECT_EQ(ev.front()["event"], "start");
  EXPECT_EQ(ev.front()["resumed_blocks"], stop_after + 1);
  EXPECT_EQ(ev.back()["event"], "done");
  EXPECT_FALSE(fs::exists(d / "resumed.partial"));
  expect_same_files(d / "full", d / "resumed");
}

TEST(Resume, GptqInterruptedAndResumedIsBitIdentical) { interrupted_run_is_bit_identical("gptq", 2); }

// AWQ folds its scales into the RMSNorm weights: those must come back from the saved blocks too.
TEST(Resume, AwqInterruptedAndResumedIsBitIdentical) { interrupted_run_is_bit_identical("awq", 4); }

TEST(Resume, OtherOptionsAreRefusedAndForceStartsOver) {
  test::TempDir d;
  const auto stopped = test::run_lowbit(quantize_args("gptq", d / "q", "--stop-after-block 0"));
  ASSERT_EQ(stopped.exit_code, 3) << stopped.out;
  const auto other = test::run_lowbit(quantize_args("gptq", d / "q", "--resume --calib-seed 1"));
  EXPECT_EQ(other.exit_code, 2);
  EXPECT_NE(other.out.find("calib_seed"), std::string::npos) << other.out;
  EXPECT_TRUE(fs::exists(d / "q.partial" / "block-00000.safetensors"));  // left as it was
  const auto fresh = test::run_lowbit(quantize_args("gptq", d / "q", "--calib-seed 1 --force"));
  ASSERT_EQ(fresh.exit_code, 0) << fresh.out;
  EXPECT_EQ(events(fresh.out).front()["resumed_blocks"], 0);
  EXPECT_FALSE(fs::exists(d / "q.partial"));
}

TEST(Resume, JsonEventsPerBlockWithErrorsAndMemory) {
  test::TempDir d;
  const auto r = test::run_lowbit(quantize_args("gptq", d / "q"));
  ASSERT_EQ(r.exit_code, 0) << r.out;
  const auto ev = events(r.out);
  ASSERT_EQ(ev.size(), 1u + 9u + 1u);  // start, 8 blocks and lm_head, done
  for (size_t i = 1; i <= 9; ++i) {
    const auto& e = ev[i];
    EXPECT_EQ(e["event"], "block");
    EXPECT_EQ(e["block"], i - 1);
    EXPECT_GT(e["rss_bytes"].get<int64_t>(), 0);
    EXPECT_GE(e["eta_seconds"].get<double>(), 0);
    ASSERT_EQ(e["layers"].size(), i < 9 ? 7u : 1u);
    for (const auto& l : e["layers"]) {
      const double err = l["rel_output_error"];
      EXPECT_TRUE(err >= 0 && err < 0.1) << l.dump();
    }
  }
  const auto& done = ev.back();
  EXPECT_EQ(done["event"], "done");
  EXPECT_GE(done["peak_rss_bytes"].get<int64_t>(), done["peak_rss_blocks_bytes"].get<int64_t>());
}

// lm_head's GPTQ runs in row chunks to bound its memory: the same codes and qparams as one call.
TEST(GptqRowChunks, SameCodesAsOneCallAndTheWholeError) {
  const int64_t N = 100, K = 128;
  std::vector<float> w(static_cast<size_t>(N * K)), x(static_cast<size_t>(300 * K));
  uint64_t st = 12345;
  auto rnd = [&] {
    st = st * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<float>(static_cast<int64_t>(st >> 33) % 2001 - 1000) / 1000.0f;
  };
  for (auto& v : w) v = rnd() * 0.05f;
  for (size_t i = 0; i < x.size(); ++i) x[i] = rnd() * (1.0f + static_cast<float>(i % K) / 16.0f);
  HessianAccumulator H(K);
  H.add(x.data(), 300);
  const Tensor wt = Tensor::from_floats(w, {N, K}, DType::BF16);
  for (const bool act_order : {false, true}) {
    GptqOptions g;
    g.scheme = GptqScheme::Int4FloatZero;
    g.group_size = 64;
    g.act_order = act_order;
    const GptqResult one = gptq_quantize(wt, H, g);
    const GptqResult chunked = gptq_in_row_chunks(wt, H, g, 16);
    for (auto f : {&GptqResult::q, &GptqResult::scale, &GptqResult::zero}) {
      ASSERT_EQ((one.*f).shape(), (chunked.*f).shape());
      EXPECT_EQ(std::memcmp((one.*f).raw(), (chunked.*f).raw(), (one.*f).nbytes()), 0);
    }
    EXPECT_NEAR(chunked.rel_output_error, one.rel_output_error, 1e-6 * one.rel_output_error);
  }
}

TEST(ReleaseMappedPages, DropsAMappedWeightAndLeavesOtherMemoryAlone) {
  test::TempDir d;
  const int64_t n = 8 << 20;  // 32 MB of float32
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = static_cast<float>(i % 1000) + 0.5f;
  write_safetensors(d / "w.safetensors", {{"w", Tensor::from_vector(v, {n})}});
  const SafetensorsFile f = SafetensorsFile::open(d / "w.safetensors");
  const Tensor t = f.tensor("w");
  double sum = 0;
  for (int64_t i = 0; i < n; i += 1024) sum += t.data<float>()[i];  // touch every page
  const int64_t touched = current_rss_bytes();
  release_mapped_pages(t);
  const int64_t released = current_rss_bytes();
  EXPECT_LT(released, touched - (24 << 20)) << touched << " -> " << released;
  EXPECT_EQ(t.data<float>()[n - 1], v.back());  // the pages come back from the file

  // Heap memory: untouched (dropping it would zero it).
  const Tensor heap = Tensor::from_vector(v, {n});
  release_mapped_pages(heap);
  EXPECT_EQ(heap.data<float>()[12345], v[12345]);
  EXPECT_GT(sum, 0);
}

}  // namespace
}  // namespace lowbit::algorithms
