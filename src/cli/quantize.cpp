// `lowbit quantize`: quantize a checkpoint block by block and write lowbit's quantized checkpoint
// directory; finished blocks are kept in OUT.partial so that an interrupted run can be resumed.
#include <algorithm>
#include <map>

#include <nlohmann/json.hpp>

#include "algorithms/resume.h"
#include "commands.h"
#include "common.h"
#include "lowbit/core/progress.h"
#include "lowbit/core/system.h"
#include "lowbit/model/quantized_checkpoint.h"
#include "lowbit/model/quantize_model.h"
#include "table.h"

namespace lowbit::cli {
namespace {
namespace fs = std::filesystem;

struct QuantizeCliOptions {
  ModelOptions model;
  std::string out;
  bool force = false;
  bool resume = false;
  bool json = false;
  int64_t stop_after_block = -1;  // testing: stop as if interrupted once this block is saved
};

// Thrown from the block callback by --stop-after-block.
struct StopRequested {
  int64_t block;
};

// Everything that decides the result: a work directory is only resumed by a run that agrees on all of it.
nlohmann::json fingerprint(const QuantizeCliOptions& o, const QuantizationRequest& r) {
  const fs::path dir = fs::canonical(o.model.model_dir);
  nlohmann::json weights = nlohmann::json::object();
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".safetensors")
      weights[e.path().filename().string()] = {
          e.file_size(), static_cast<int64_t>(e.last_write_time().time_since_epoch().count())};
  nlohmann::json f = {{"model", dir.string()},
                      {"config", algorithms::file_digest(dir / "config.json")},
                      {"weights", weights},
                      {"quant", o.model.quant},
                      {"recipe", o.model.recipe.empty() ? "" : algorithms::file_digest(o.model.recipe)},
                      {"algo", o.model.algo}};
  const algorithms::Algorithm a = r.options.algorithm;
  if (a == algorithms::Algorithm::Gptq) {
    f["percdamp"] = o.model.percdamp;
    f["act_order"] = o.model.act_order;
    f["clip_grid"] = o.model.clip_grid;
  }
  if (a == algorithms::Algorithm::SmoothQuant) f["smooth_alpha"] = o.model.smooth_alpha;
  if (algorithms::needs_calibration(a)) {
    f["calib"] = algorithms::file_digest(o.model.calib);
    f["calib_samples"] = o.model.calib_samples;
    f["calib_seqlen"] = o.model.calib_seqlen;
    f["calib_seed"] = o.model.calib_seed;
  }
  return f;
}

// "q_proj" -> "q", "lm_head" -> "lm_head": short names for the per-block line.
std::string short_name(const std::string& layer) {
  std::string s = layer.substr(layer.rfind('.') + 1);
  if (s.size() > 5 && s.ends_with("_proj")) s.resize(s.size() - 5);
  return s;
}

int run_quantize(const QuantizeCliOptions& o) {
  LB_CHECK(!o.model.quant.empty() || !o.model.recipe.empty(), "quantize: give --quant NAME and/or --recipe FILE");
  LB_CHECK(!is_quantized_checkpoint(o.model.model_dir), "quantize: {} is already a quantized checkpoint",
           o.model.model_dir);
  const fs::path out = fs::absolute(o.out).lexically_normal();
  LB_CHECK(!out.filename().empty(), "quantize: invalid output directory '{}'", o.out);
  LB_CHECK(o.force || !fs::exists(out), "{} already exists (pass --force to replace it)", out.string());
  const fs::path work = out.string() + ".partial";
  if (fs::exists(work) && !o.resume) {
    LB_CHECK(o.force, "{} holds an interrupted run: pass --resume to continue it, or --force to start over",
             work.string());
    fs::remove_all(work);
  }
  set_threads(o.model.threads);
  const auto t0 = std::chrono::steady_clock::now();
  LlamaModel model = LlamaModel::load(o.model.model_dir);
  const Tokenizer tok = Tokenizer::load(o.model.model_dir);
  const int64_t before = model.weight_bytes(false), checkpoint_bytes = model.weight_bytes(true);
  const QuantizationRequest req = quantization_request(tok, o.model);
  algorithms::BlockCheckpoints ck(work, fingerprint(o, req));
  const int64_t L = model.config.num_layers, resumed = ck.finished();

  // Peak RSS per block: the high-water mark is restarted after each one.
  int64_t peak = peak_rss_bytes(), blocks_peak = 0;
  const bool per_block_peaks = reset_peak_rss();
  auto phase_peak = [&] {
    const int64_t p = peak_rss_bytes();
    peak = std::max(peak, p);
    reset_peak_rss();
    return p;
  };
  if (o.json) {
    fmt::print("{}\n", nlohmann::json{{"event", "start"},
                                      {"model", o.model.model_dir},
                                      {"blocks", L},
                                      {"resumed_blocks", resumed},
                                      {"work_dir", work.string()},
                                      {"checkpoint_bytes", checkpoint_bytes},
                                      {"rss_bytes", current_rss_bytes()}}
                           .dump());
    std::fflush(stdout);
  } else if (resumed > 0) {
    fmt::print(stderr, "resuming {}: {} of {} blocks already done\n", work.string(), resumed, L);
  }
  const auto t_blocks = std::chrono::steady_clock::now();
  auto last = t_blocks;
  const bool tty = stderr_is_terminal();
  const algorithms::BlockDone on_block = [&](int64_t l, const std::vector<LayerReport>& layers) {
    const auto now = std::chrono::steady_clock::now();
    const double secs = std::chrono::duration<double>(now - last).count();
    const double elapsed = std::chrono::duration<double>(now - t_blocks).count();
    last = now;
    const int64_t done = l + 1 - resumed, left = L - l;  // steps: L blocks and lm_head
    const double eta = elapsed / static_cast<double>(done) * static_cast<double>(left);
    const int64_t block_peak = phase_peak(), rss = current_rss_bytes();
    blocks_peak = std::max(blocks_peak, block_peak);
    const std::string what = l < L ? fmt::format("block {}", l) : "lm_head";
    if (o.json) {
      nlohmann::json lj = nlohmann::json::array();
      for (const auto& r : layers)
        lj.push_back({{"name", r.name},
                      {"scheme", r.scheme},
                      {"seconds", r.seconds},
                      {"rel_output_error", r.rel_output_error >= 0 ? nlohmann::json(r.rel_output_error) : nullptr}});
      nlohmann::json e = {{"event", "block"}, {"block", l},           {"name", what}, {"seconds", secs},
                          {"eta_seconds", eta}, {"layers", lj},      {"rss_bytes", rss}};
      e["peak_rss_bytes"] = per_block_peaks ? nlohmann::json(block_peak) : nullptr;
      fmt::print("{}\n", e.dump());
      std::fflush(stdout);
    } else {
      std::string errs;
      for (const auto& r : layers)
        if (r.rel_output_error >= 0) errs += fmt::format(" {} {:.2e}", short_name(r.name), r.rel_output_error);
      fmt::print(stderr, "{}{:<9} {:>2}/{}  {:6.1f} s{}{}  RSS {}{}  ETA {}\n", tty ? "\r\033[K" : "", what, l + 1,
                 L + 1, secs, errs.empty() ? "" : "  rel. output error", errs, human_bytes(rss),
                 per_block_peaks ? fmt::format(" (peak {})", human_bytes(block_peak)) : "", format_duration(eta));
    }
    if (l == o.stop_after_block) throw StopRequested{l};
  };

  std::vector<LayerReport> report;
  try {
    report = algorithms::quantize_with_algorithm(model, req.plan, req.options, req.windows, on_block, &ck);
  } catch (const StopRequested& s) {
    const std::string msg = fmt::format("stopped after block {} (--stop-after-block); {} keeps the finished blocks: "
                                        "rerun with --resume to continue",
                                        s.block, work.string());
    if (o.json) fmt::print("{}\n", nlohmann::json{{"event", "stopped"}, {"block", s.block}, {"message", msg}}.dump());
    else fmt::print(stderr, "{}\n", msg);
    return 3;
  }
  std::string desc = o.model.quant.empty() ? "recipe " + o.model.recipe
                     : o.model.recipe.empty() ? o.model.quant
                                              : o.model.quant + " with recipe " + o.model.recipe;
  if (o.model.algo != "rtn") desc += " (" + o.model.algo + ")";
  save_quantized(model, out, {.source_dir = o.model.model_dir, .description = desc, .overwrite = o.force});
  const int64_t write_peak = phase_peak();
  ck.remove();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  std::map<std::string, std::pair<int, int64_t>> by_scheme;
  for (const auto& [name, w] : model.linears()) {
    auto& e = by_scheme[(*w)->scheme()];
    ++e.first;
    e.second += (*w)->nbytes();
  }
  if (o.json) {
    nlohmann::json j = {{"event", "done"},
                        {"out", o.out},
                        {"quantization", desc},
                        {"weight_bytes_before", before},
                        {"weight_bytes_after", model.weight_bytes(false)},
                        {"checkpoint_bytes", checkpoint_bytes},
                        {"resumed_blocks", resumed},
                        {"seconds", secs},
                        {"peak_rss_bytes", peak},
                        {"peak_rss_blocks_bytes", per_block_peaks ? nlohmann::json(blocks_peak) : nullptr},
                        {"peak_rss_write_bytes", per_block_peaks ? nlohmann::json(write_peak) : nullptr}};
    for (const auto& [s, e] : by_scheme) j["schemes"][s] = {{"layers", e.first}, {"bytes", e.second}};
    fmt::print("{}\n", j.dump());
    return 0;
  }
  Table t({"scheme", "layers", "bytes"});
  for (const auto& [s, e] : by_scheme) t.add({s, std::to_string(e.first), human_bytes(e.second)});
  fmt::print("{}", t.render());
  fmt::print("weights (embedding excluded): {} -> {} ({:.2f}x smaller); {} layers quantized in {:.1f} s\n",
             human_bytes(before), human_bytes(model.weight_bytes(false)),
             static_cast<double>(before) / static_cast<double>(model.weight_bytes(false)), report.size(), secs);
  if (per_block_peaks)
    fmt::print("peak RSS {} (blocks {}, writing {}); the checkpoint holds {}\n", human_bytes(peak),
               human_bytes(blocks_peak), human_bytes(write_peak), human_bytes(checkpoint_bytes));
  else
    fmt::print("peak RSS {}; the checkpoint holds {}\n", human_bytes(peak), human_bytes(checkpoint_bytes));
  fmt::print("wrote {} (load it with --model {})\n", o.out, o.out);
  return 0;
}

}  // namespace

Action register_quantize(CLI::App& app) {
  auto o = std::make_shared<QuantizeCliOptions>();
  auto* sub = app.add_subcommand(
      "quantize",
      "Quantize a Hugging Face checkpoint and write a lowbit quantized checkpoint directory (sharded\n"
      "safetensors with packed codes and qparams, a manifest, the config and tokenizer). Every Linear layer\n"
      "is quantized (lm_head included; embeddings never) unless a --recipe says otherwise. The directory is\n"
      "written under a temporary name and renamed into place when complete.\n"
      "\n"
      "Memory: one transformer block is quantized at a time while the rest of the model stays memory-mapped\n"
      "(untouched weights are not resident; a finished block's pages are released), so peak memory is\n"
      "about one block's weights plus the calibration activations (--calib-samples x --calib-seqlen x\n"
      "hidden size x 4 bytes, e.g. 128 x 512 x 4096 x 4 = 1 GiB for a 7B model) plus the quantized layers\n"
      "finished so far (a quarter of the model at 4 bits), not the model's size. lm_head counts as one\n"
      "more block. The JSON events and the progress lines report each block's peak RSS.\n"
      "\n"
      "Resuming: each finished block is saved (atomically) in OUT.partial, with the calibration state after\n"
      "it. If a run is interrupted, the same command with --resume continues from the last finished block\n"
      "and gives a result identical bit for bit to an uninterrupted run; other options are refused. The\n"
      "directory is removed once OUT is in place.\n"
      "\n"
      "Progress: one line per block on stderr (time, each layer's relative output error where the algorithm\n"
      "measures it, RSS and the block's peak RSS, ETA); with --json, one JSON object per line on stdout\n"
      "instead: {\"event\": \"start\"}, {\"event\": \"block\", ...} per block, then {\"event\": \"done\", ...}.");
  add_model_options(sub, o->model);
  sub->add_option("--out,-o", o->out, "output directory")->required();
  sub->add_flag("--force", o->force, "replace --out if it exists; discard an interrupted run's OUT.partial");
  sub->add_flag("--resume", o->resume, "continue an interrupted run from OUT.partial (a fresh start when there is none)");
  sub->add_flag("--json", o->json, "print one JSON object per event, one per line");
  sub->add_option("--stop-after-block", o->stop_after_block, "testing: stop (exit code 3) once block N is saved")
      ->group("");
  return [o] { return run_quantize(*o); };
}

}  // namespace lowbit::cli
