// `lowbit demo`: quantize a built-in random weight with every scheme the primitives support and
// report what each costs (bits, bytes) and loses (SQNR, max error).
#include <chrono>
#include <cmath>
#include <functional>
#include <random>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "common.h"
#include "lowbit/core/file_io.h"
#include "lowbit/core/float_formats.h"
#include "lowbit/core/system.h"
#include "lowbit/eval/perplexity.h"
#include "lowbit/model/generate.h"
#include "lowbit/quant/primitives.h"
#include "table.h"

namespace lowbit::cli {
namespace {

using namespace quant;

struct DemoOptions {
  int64_t rows = 4096;
  int64_t cols = 4096;
  uint64_t seed = 0;
  bool json = false;
  ModelOptions model;
  std::string text;
  int64_t windows = 16;
  int64_t scheme_windows = 6;
  std::string schemes =
      "bf16,int8wo,int8dq,int4wo-32,int4wo-64,int4wo-128,float8wo,float8dq-row,float8dq-tensor,fp6,uintx-3-64,"
      "uintx-2-64,a8wx-4-32,w4a8,codebook-4-64";
  bool no_model = false;
};

// The result of quantizing a weight: its reconstruction and the bytes the quantized form occupies.
struct Quantized {
  Tensor dequantized;  // float32
  int64_t bytes;
};

struct Scheme {
  std::string name;
  std::string description;
  std::function<Quantized(const Tensor&)> run;
};

int64_t bytes_of(const Tensor& t) { return static_cast<int64_t>(t.nbytes()); }

// Integer codes of `bits` bits occupy bits/8 bytes each once packed.
int64_t packed_code_bytes(int64_t n, int bits) { return (n * bits + 7) / 8; }

std::vector<Scheme> demo_schemes() {
  std::vector<Scheme> s;
  s.push_back({"int8wo", "int8 symmetric, per output channel", [](const Tensor& w) {
                 const int64_t K = w.size(1);
                 ChooseQParamsOptions o{MappingType::Symmetric, {1, K}, -128, 127, 0x1p-23, {}, DType::I64};
                 const auto qp = choose_qparams_affine(w, o);
                 const Tensor q = quantize_affine(w, {1, K}, qp.scale, qp.zero_point, ZeroPointDomain::Int,
                                                  -128, 127, DType::I8);
                 return Quantized{dequantize_affine(q, {1, K}, qp.scale, qp.zero_point, ZeroPointDomain::Int,
                                                    -128, 127),
                                  bytes_of(q) + bytes_of(qp.scale)};
               }});
  for (int64_t g : {32, 64, 128}) {
    s.push_back({fmt::format("int4wo-{}", g), fmt::format("uint4 asymmetric, float zero point, group {}", g),
                 [g](const Tensor& w) {
                   const auto qp = choose_qparams_affine_float_zero(w, {1, g}, 0, 15, 1e-6, DType::BF16,
                                                                    DType::BF16);
                   const Tensor q = quantize_affine(w, {1, g}, qp.scale, qp.zero_point, ZeroPointDomain::Float,
                                                    0, 15, DType::I32);
                   return Quantized{dequantize_affine(q, {1, g}, qp.scale, qp.zero_point,
                                                      ZeroPointDomain::Float, 0, 15),
                                    packed_code_bytes(q.numel(), 4) + bytes_of(qp.scale) +
                                        bytes_of(qp.zero_point)};
                 }});
  }
  for (bool per_row : {false, true}) {
    s.push_back({per_row ? "float8-row" : "float8-tensor",
                 per_row ? "float8 e4m3, one scale per row" : "float8 e4m3, one scale per tensor",
                 [per_row](const Tensor& w) {
                   const std::vector<int64_t> block = per_row ? std::vector<int64_t>{1, w.size(1)} : w.shape();
                   const Tensor scale = choose_scale_float8(w, block, DType::F8E4M3);
                   const Tensor q = quantize_float8(w, block, scale, DType::F8E4M3);
                   return Quantized{dequantize_float8(q, block, scale), bytes_of(q) + bytes_of(scale)};
                 }});
  }
  s.push_back({"fp6", "fp6 e3m2, one scale per row", [](const Tensor& w) {
                 const Tensor scale = choose_scale_fpx(w, 3, 2);
                 const Tensor q = quantize_fpx(w, scale, 3, 2);
                 return Quantized{dequantize_fpx(q, scale, 3, 2), packed_code_bytes(q.numel(), 6) + bytes_of(scale)};
               }});
  for (int bits : {3, 2}) {
    s.push_back({fmt::format("uintx-{}-64", bits), fmt::format("uint{} asymmetric, integer zero point, group 64", bits),
                 [bits](const Tensor& w) {
                   const QRange r = int_range(bits, false);
                   ChooseQParamsOptions o{MappingType::Asymmetric, {1, 64}, r.qmin, r.qmax, 0x1p-23, {}, DType::I32};
                   const auto qp = choose_qparams_affine(w, o);
                   const Tensor q = quantize_affine(w, {1, 64}, qp.scale, qp.zero_point, ZeroPointDomain::Int,
                                                    r.qmin, r.qmax, DType::U8);
                   // zero points fit in `bits` bits too, and are stored packed like the codes.
                   return Quantized{dequantize_affine(q, {1, 64}, qp.scale, qp.zero_point, ZeroPointDomain::Int,
                                                      r.qmin, r.qmax),
                                    packed_code_bytes(q.numel(), bits) + bytes_of(qp.scale) +
                                        packed_code_bytes(qp.zero_point.numel(), bits)};
                 }});
  }
  return s;
}

Tensor random_weight(int64_t rows, int64_t cols, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  std::vector<float> v(static_cast<size_t>(rows * cols));
  for (auto& x : v) x = normal(rng);
  return Tensor::from_floats(v, {rows, cols}, DType::BF16);
}

// Every scheme on the real model: size, decode speed on this CPU, perplexity on the first windows and its
// change from bf16 (the weights are cast to bf16 first, as torchao runs them).
void run_scheme_table(const DemoOptions& opt, const std::vector<int32_t>& text_ids) {
  fmt::print("\nEach scheme on this model (decode: 32 greedy tokens after an 8-token prompt on {} threads; "
             "perplexity: {} on the first {} windows):\n\n",
             max_threads(), "ppl-512", opt.scheme_windows);
  Table table({"scheme", "model bytes", "bits/weight", "decode tok/s", "ppl", "Δppl vs bf16", "quantize s"});
  double base = 0;
  for (const std::string& scheme : split_list(opt.schemes)) {
    ModelOptions mo = opt.model;
    mo.quant = scheme;
    LoadedModel m = load_model(mo);
    int64_t params = 0;
    for (const auto& [name, w] : m.model.linears()) params += (*w)->out_features() * (*w)->in_features();
    const int64_t bytes = m.model.weight_bytes(false);
    std::vector<int32_t> prompt(text_ids.begin(), text_ids.begin() + std::min<size_t>(8, text_ids.size()));
    Sampler greedy({.temperature = 0.0f});
    const GenerateStats st = generate(m.model, prompt, 32, greedy, -1, [](int32_t) { return true; });
    PplOptions po;
    po.max_windows = opt.scheme_windows;
    const PplResult r = perplexity(m.model, text_ids, po);
    if (base == 0) base = r.ppl;
    table.add({scheme, human_bytes(bytes), fmt::format("{:.2f}", 8.0 * static_cast<double>(bytes) / params),
               fmt::format("{:.0f}", st.decode_tokens_per_second()), fmt::format("{:.4f}", r.ppl),
               fmt::format("{:+.2f}%", 100.0 * (r.ppl / base - 1.0)), fmt::format("{:.2f}", m.quantize_seconds)});
  }
  fmt::print("{}", table.render());
  fmt::print("\nmodel bytes: every Linear weight with its qparams (the output projection included, the embedding "
             "not);\nbits/weight = 8 · model bytes / Linear parameters. Full-text figures: BENCHMARKS.md.\n");
}

// The real-model part: a short greedy continuation and the perplexity of the first windows of a text.
void run_model_demo(const DemoOptions& opt) {
  LoadedModel m = load_model(opt.model);
  fmt::print("\nModel {} ({} layers, hidden {}, {} heads / {} KV heads, vocab {}): weights {} + embedding {}, "
             "loaded in {:.2f} s\n",
             opt.model.model_dir, m.model.config.num_layers, m.model.config.hidden_size, m.model.config.num_heads,
             m.model.config.num_kv_heads, m.model.config.vocab_size, human_bytes(m.model.weight_bytes(false)),
             human_bytes(static_cast<int64_t>(m.model.embedding.nbytes())), m.load_seconds);
  const std::string prompt = "The state of the Union is";
  const auto ids = m.tokenizer.encode(prompt, m.tokenizer.add_bos_default());
  Sampler greedy({.temperature = 0.0f});
  std::vector<int32_t> all = ids;
  const GenerateStats st = generate(m.model, ids, 48, greedy, m.tokenizer.eos_id(), [&](int32_t id) {
    all.push_back(id);
    return true;
  });
  fmt::print("\nGreedy continuation (48 tokens):\n  {}\n", m.tokenizer.decode(all));
  fmt::print("  prefill {:.0f} tok/s, decode {:.1f} tok/s on {} threads\n", st.prefill_tokens_per_second(),
             st.decode_tokens_per_second(), max_threads());
  if (opt.text.empty()) return;
  const auto text_ids = m.tokenizer.encode(read_text_file(opt.text), true);
  PplOptions po;
  po.max_windows = opt.windows;
  const PplResult r = perplexity(m.model, text_ids, po);
  fmt::print("\nPerplexity ({}) on the first {} windows of {}: {:.4f} ± {:.4f} ({} tokens, {:.1f} s)\n", r.protocol,
             r.windows, opt.text, r.ppl, r.ppl_stderr, r.tokens, r.seconds);
  fmt::print("  (the whole file: lowbit ppl --model {} --text {})\n", opt.model.model_dir, opt.text);
  if (!opt.schemes.empty()) run_scheme_table(opt, text_ids);
}

int run_demo(DemoOptions opt) {
  if (opt.model.model_dir.empty() && !opt.no_model) {
    const auto found = default_demo_model();
    if (!found.empty()) {
      opt.model.model_dir = found.string();
      const auto text = found.parent_path().parent_path() / "data" / "sotu" / "validation.txt";
      if (opt.text.empty() && std::filesystem::exists(text)) opt.text = text.string();
    }
  }
  LB_CHECK(opt.rows > 0 && opt.cols > 0 && opt.cols % 128 == 0,
           "demo: --cols must be a positive multiple of 128 (got {}), --rows positive (got {})", opt.cols, opt.rows);
  const Tensor w = random_weight(opt.rows, opt.cols, opt.seed);
  const std::vector<float> ref = w.to_f32_vector();
  double signal = 0;
  for (float x : ref) signal += static_cast<double>(x) * x;
  const int64_t n = w.numel();

  if (!opt.json)
    fmt::print("Quantizing a random bf16 weight [{} x {}] (normal, std 0.02, seed {}) with each scheme:\n\n",
               opt.rows, opt.cols, opt.seed);
  Table table({"scheme", "bits/weight", "bytes", "SQNR dB", "max |err|", "time ms", "what"});
  nlohmann::json rows = nlohmann::json::array();
  table.add({"bf16", "16.00", fmt::format("{}", n * 2), "inf", "0", "-", "the unquantized weight"});
  for (const auto& s : demo_schemes()) {
    const auto t0 = std::chrono::steady_clock::now();
    const Quantized q = s.run(w);
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    const std::vector<float> dq = q.dequantized.to_f32_vector();
    double noise = 0, max_err = 0;
    for (int64_t i = 0; i < n; ++i) {
      const double e = static_cast<double>(dq[i]) - ref[i];
      noise += e * e;
      max_err = std::max(max_err, std::fabs(e));
    }
    const double sqnr = 10.0 * std::log10(signal / noise);
    const double bpw = 8.0 * static_cast<double>(q.bytes) / static_cast<double>(n);
    table.add({s.name, fmt::format("{:.2f}", bpw), fmt::format("{}", q.bytes), fmt::format("{:.2f}", sqnr),
               fmt::format("{:.3g}", max_err), fmt::format("{:.0f}", ms), s.description});
    rows.push_back({{"scheme", s.name}, {"bits_per_weight", bpw}, {"bytes", q.bytes}, {"sqnr_db", sqnr},
                    {"max_abs_err", max_err}, {"ms", ms}});
  }
  if (opt.json) {
    fmt::print("{}\n", nlohmann::json{{"rows", opt.rows}, {"cols", opt.cols}, {"schemes", rows}}.dump());
  } else {
    fmt::print("{}", table.render());
    fmt::print("\nbits/weight counts codes and their scales/zero points; SQNR = 10·log10(Σw² / Σ(w−ŵ)²).\n");
  }
  if (!opt.model.model_dir.empty() && !opt.json) run_model_demo(opt);
  return 0;
}

}  // namespace

Action register_demo(CLI::App& app) {
  auto opt = std::make_shared<DemoOptions>();
  auto* sub = app.add_subcommand(
      "demo",
      "Quantize a built-in random weight matrix (bf16, 4096x4096 by default) with each scheme and print\n"
      "bits per weight (scales included), bytes, SQNR, max abs error and time per scheme. Then, given --model\n"
      "(default: ../shared/models/sotu-llama-23m when it exists), generate a short continuation and report\n"
      "perplexity on the first --windows windows of --text.");
  sub->add_option("--rows", opt->rows, "rows (output features) of the weight")->capture_default_str();
  sub->add_option("--cols", opt->cols, "columns (input features); a multiple of 128")->capture_default_str();
  sub->add_option("--seed", opt->seed, "random seed")->capture_default_str();
  sub->add_flag("--json", opt->json, "print one JSON object instead of the table (random weight only)");
  add_model_options(sub, opt->model, false);
  sub->add_option("--text", opt->text, "text for the perplexity part (default: the sotu validation text)");
  sub->add_option("--windows", opt->windows, "perplexity windows of 512 tokens to evaluate")->capture_default_str();
  sub->add_option("--schemes", opt->schemes, "schemes for the per-scheme table on the model (comma-separated; '' skips)")
      ->capture_default_str();
  sub->add_option("--scheme-windows", opt->scheme_windows, "perplexity windows per scheme in that table")
      ->capture_default_str();
  sub->add_flag("--no-model", opt->no_model, "skip the real-model part");
  return [opt] { return run_demo(*opt); };
}

}  // namespace lowbit::cli
