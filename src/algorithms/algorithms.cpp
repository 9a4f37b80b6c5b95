#include "algorithms/algorithms.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <set>

#include "algorithms/hqq.h"
#include "algorithms/resume.h"
#include "algorithms/smoothing.h"
#include "lowbit/core/progress.h"
#include "lowbit/quant/quantize.h"
#include "quant/layouts/layouts.h"

namespace lowbit::algorithms {
namespace {

using quant::LinearPtr;

// One Linear of a block: its name, the slot quantize_ replaces, and the site its input comes from.
struct Slot {
  std::string name;
  LinearPtr* ptr;
  LinearSite site;
};

// model.linears() lists each block's seven Linears in this order.
std::vector<Slot> block_slots(LlamaModel& m, int64_t l) {
  static constexpr LinearSite kSites[7] = {LinearSite::AttnIn,  LinearSite::AttnIn, LinearSite::AttnIn,
                                           LinearSite::AttnOut, LinearSite::MlpIn,  LinearSite::MlpIn,
                                           LinearSite::MlpDown};
  const auto all = m.linears();
  std::vector<Slot> slots;
  for (int i = 0; i < 7; ++i) {
    const auto& [name, ptr] = all[static_cast<size_t>(7 * l + i)];
    slots.push_back({name, ptr, kSites[i]});
  }
  return slots;
}

Tensor dense_bf16(const Slot& s) {
  const auto* dense = dynamic_cast<const quant::DenseWeight*>(s.ptr->get());
  LB_CHECK(dense != nullptr, "layer {} is already quantized ({}); quantize the original checkpoint", s.name,
           (*s.ptr)->scheme());
  return dense->weight().to(DType::BF16);
}

GptqOptions gptq_options(const quant::Config& cfg, const AlgorithmOptions& o, const std::string& layer) {
  GptqOptions g;
  g.percdamp = o.percdamp;
  g.block_size = o.gptq_block;
  g.act_order = o.act_order;
  g.clip_grid = o.clip_grid;
  if (const auto* c = std::get_if<quant::Int4WeightOnly>(&cfg)) {
    g.scheme = GptqScheme::Int4FloatZero;
    g.group_size = c->group_size;
  } else if (const auto* u = std::get_if<quant::UIntXWeightOnly>(&cfg)) {
    g.scheme = GptqScheme::UIntIntZero;
    g.bits = u->bits;
    g.group_size = u->group_size;
  } else if (std::holds_alternative<quant::Int8WeightOnly>(cfg)) {
    g.scheme = GptqScheme::Int8PerRow;
  } else {
    fail("layer {}: gptq quantizes int4wo-G, uintx-B-G and int8wo, not {}", layer, quant::config_name(cfg));
  }
  return g;
}

// Σ over the rows v of w [n, K] of v·H·vᵀ; per-row values summed in order, so the result is deterministic.
double quadratic_form_sum(const std::vector<float>& w, int64_t n, const std::vector<double>& H, int64_t K) {
  std::vector<double> per_row(static_cast<size_t>(n));
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < n; ++r) {
    const float* v = w.data() + r * K;
    double s = 0;
    for (int64_t i = 0; i < K; ++i) {
      if (v[i] == 0) continue;
      const double* hi = H.data() + i * K;
      double t = 0;
      for (int64_t j = 0; j < K; ++j) t += hi[j] * v[j];
      s += v[i] * t;
    }
    per_row[static_cast<size_t>(r)] = s;
  }
  double total = 0;
  for (const double x : per_row) total += x;
  return total;
}

// GPTQ on at most `max_rows` output rows at a time. Rows are independent in GPTQ (they share only H), so
// the codes and qparams are those of one call; the working memory (several float copies of the weight)
// stays that of a block's Linear even for a large lm_head. The relative error is recombined exactly:
// Σ rel_c·d_c / Σ d_c with d_c = tr(W_c H W_cᵀ).
}  // namespace

GptqResult gptq_in_row_chunks(const Tensor& w, const HessianAccumulator& H, const GptqOptions& g, int64_t max_rows) {
  const int64_t N = w.size(0), K = w.size(1);
  if (N <= max_rows) return gptq_quantize(w, H, g);
  std::vector<GptqResult> parts;
  double num = 0, den = 0;
  for (int64_t r0 = 0; r0 < N; r0 += max_rows) {
    const Tensor rows = w.slice(0, r0, std::min(N, r0 + max_rows)).contiguous();
    parts.push_back(gptq_quantize(rows, H, g));
    const double d = quadratic_form_sum(rows.to_f32_vector(), rows.size(0), H.h(), K);
    num += parts.back().rel_output_error * d;
    den += d;
  }
  auto concat = [&](Tensor GptqResult::*field) {
    const Tensor& first = parts[0].*field;
    if (!first.defined()) return Tensor();
    Shape shape = first.shape();
    shape[0] = N;
    Tensor out = Tensor::empty(shape, first.dtype());
    size_t at = 0;
    for (const GptqResult& p : parts) {
      const Tensor c = (p.*field).contiguous();
      std::memcpy(static_cast<uint8_t*>(out.raw()) + at, c.raw(), c.nbytes());
      at += c.nbytes();
    }
    return out;
  };
  GptqResult r;
  r.q = concat(&GptqResult::q);
  r.scale = concat(&GptqResult::scale);
  r.zero = concat(&GptqResult::zero);
  r.rel_output_error = den > 0 ? num / den : 0.0;
  return r;
}

namespace {

LinearPtr pack_gptq(const GptqResult& r, const GptqOptions& g) {
  switch (g.scheme) {
    case GptqScheme::Int4FloatZero: return quant::Int4Weight::from_codes(r.q, r.scale, r.zero, g.group_size);
    case GptqScheme::UIntIntZero: return quant::UIntXWeight::from_codes(r.q, r.scale, r.zero, g.bits, g.group_size);
    case GptqScheme::Int8PerRow:
      return std::make_shared<quant::Int8Weight>(r.q.to(DType::I8), r.scale, quant::ActQuant::None);
  }
  fail("gptq: unknown scheme");
}

LinearPtr hqq_layer(const Tensor& w, const quant::Config& cfg, const std::string& layer) {
  HqqOptions h;
  if (const auto* c = std::get_if<quant::Int4WeightOnly>(&cfg)) {
    h.bits = 4;
    h.group_size = c->group_size;
    const TinygemmCodes t = to_tinygemm(hqq_quantize(w, h));
    return quant::Int4Weight::from_codes(t.q, t.scale, t.zero, c->group_size);
  }
  const auto* u = std::get_if<quant::UIntXWeightOnly>(&cfg);
  LB_CHECK(u != nullptr, "layer {}: hqq quantizes int4wo-G and uintx-B-G, not {}", layer, quant::config_name(cfg));
  h.bits = u->bits;
  h.group_size = u->group_size;
  const GroupCodes c = hqq_quantize(w, h);
  // HQQ's float zero point, kept in the dtype its optimizer computed it in.
  return quant::UIntXWeight::from_codes_float_zero(c.q, c.scale.to(c.dtype), c.zero.to(c.dtype), u->bits,
                                                   u->group_size);
}

class Driver {
 public:
  Driver(LlamaModel& m, const QuantPlan& plan, const AlgorithmOptions& o) : plan_(plan), o_(o) {
    if (m.config.num_layers > 0)
      for (const Slot& s : block_slots(m, 0))
      max_block_linear_ = std::max(max_block_linear_, (*s.ptr)->out_features() * (*s.ptr)->in_features());
  }

  // AWQ / SmoothQuant: channel scales for each foldable group of block l, folded into the weights.
  void scale_block(LlamaModel& m, int64_t l, const std::map<LinearSite, SiteStats>& stats) {
    const std::vector<Slot> slots = block_slots(m, l);
    for (const ScaleGroup& g : scale_groups(m, l)) {
      // The group's scheme: every Linear in it must be quantized, all with one scheme.
      std::optional<quant::Config> cfg;
      bool uniform = true;
      for (quant::LinearPtr* p : g.linears) {
        const auto it = std::find_if(slots.begin(), slots.end(), [&](const Slot& s) { return s.ptr == p; });
        const auto c = plan_config_for(plan_, it->name);
        if (!c || std::holds_alternative<quant::NoQuant>(*c) || (cfg && quant::config_name(*c) != quant::config_name(*cfg)))
          uniform = false;
        else
          cfg = c;
      }
      if (!uniform || !cfg) continue;
      const SiteStats& x = stats.at(g.site);
      const std::vector<float> s = o_.algorithm == Algorithm::Awq ? awq_scales(g, x, *cfg, o_.awq_grid)
                                   : o_.smooth_alpha < 0      ? smoothquant_search(g, x, *cfg)
                                                              : smoothquant_scales(g, x, o_.smooth_alpha);
      fold_scales(g, s);
      for (quant::LinearPtr* p : g.linears) scaled_.insert(p);
      if (o_.algorithm == Algorithm::Awq && o_.awq_clip)
        for (size_t i = g.clip_from; i < g.linears.size(); ++i) awq_clip(g.linears[i], x, &s, *cfg);
    }
    // o_proj has no foldable scale (its input mixes the query heads of a shared value head) but is clipped.
    const auto attn_out = stats.find(LinearSite::AttnOut);
    if (o_.algorithm == Algorithm::Awq && o_.awq_clip && attn_out != stats.end())
      for (const Slot& s : slots)
        if (s.site == LinearSite::AttnOut)
          if (const auto c = plan_config_for(plan_, s.name); c && !std::holds_alternative<quant::NoQuant>(*c))
            awq_clip(s.ptr, attn_out->second, nullptr, *c);
  }

  // AWQ on lm_head: scales folded into the final RMSNorm, then clipping.
  void scale_head(LlamaModel& m, const SiteStats& x) {
    const auto c = plan_config_for(plan_, "lm_head");
    if (!c || std::holds_alternative<quant::NoQuant>(*c)) return;
    const ScaleGroup g{LinearSite::AttnIn, {&m.lm_head}, &m.final_norm, nullptr, 0};
    const std::vector<float> s = awq_scales(g, x, *c, o_.awq_grid);
    fold_scales(g, s);
    scaled_.insert(&m.lm_head);
    if (o_.awq_clip) awq_clip(&m.lm_head, x, &s, *c);
  }

  // Quantizes one slot (a no-op when the plan leaves it alone); `stats` is its site's, when calibrated.
  void quantize(const Slot& s, const SiteStats* stats, std::vector<LayerReport>& out) {
    const auto cfg = plan_config_for(plan_, s.name);
    if (!cfg) return;
    const auto t0 = std::chrono::steady_clock::now();
    LayerReport r{s.name, quant::config_name(*cfg), (*s.ptr)->nbytes(), 0, 0};
    const Tensor w = dense_bf16(s);
    try {
      const bool rtn = o_.algorithm != Algorithm::Gptq && o_.algorithm != Algorithm::Hqq;
      if (rtn || std::holds_alternative<quant::NoQuant>(*cfg)) {
        // RTN, and AWQ / SmoothQuant once their scales are folded in.
        *s.ptr = quant::quantize_weight(w, *cfg);
        if (o_.algorithm != Algorithm::Rtn && scaled_.contains(s.ptr)) r.scheme.append("+").append(algorithm_name(o_.algorithm));
      } else if (o_.algorithm == Algorithm::Hqq) {
        *s.ptr = hqq_layer(w, *cfg, s.name);
        r.scheme += "+hqq";
      } else {
        const GptqOptions g = gptq_options(*cfg, o_, s.name);
        // Rows per GPTQ call: as many as the largest Linear of a block holds (a large lm_head is split).
        const int64_t max_rows = std::max<int64_t>(16, max_block_linear_ / std::max<int64_t>(1, w.size(1)));
        const GptqResult res = gptq_in_row_chunks(w, *stats->hessian, g, max_rows);
        r.rel_output_error = res.rel_output_error;
        *s.ptr = pack_gptq(res, g);
        r.scheme += "+gptq";
      }
    } catch (const Error& e) {
      fail("layer {}: {}", s.name, e.what());
    }
    r.bytes_after = (*s.ptr)->nbytes();
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    out.push_back(r);
  }

 private:
  const QuantPlan& plan_;
  const AlgorithmOptions& o_;
  std::set<const quant::LinearPtr*> scaled_;
  int64_t max_block_linear_ = 0;  // elements of the largest Linear of a block
};

}  // namespace

Algorithm algorithm_from_name(std::string_view n) {
  if (n == "rtn") return Algorithm::Rtn;
  if (n == "gptq") return Algorithm::Gptq;
  if (n == "hqq") return Algorithm::Hqq;
  if (n == "awq") return Algorithm::Awq;
  if (n == "smoothquant") return Algorithm::SmoothQuant;
  fail("unknown algorithm '{}' (known: rtn, gptq, hqq, awq, smoothquant)", n);
}

std::string_view algorithm_name(Algorithm a) {
  switch (a) {
    case Algorithm::Rtn: return "rtn";
    case Algorithm::Gptq: return "gptq";
    case Algorithm::Hqq: return "hqq";
    case Algorithm::Awq: return "awq";
    case Algorithm::SmoothQuant: return "smoothquant";
  }
  return "?";
}

bool needs_calibration(Algorithm a) {
  return a == Algorithm::Gptq || a == Algorithm::Awq || a == Algorithm::SmoothQuant;
}

std::vector<LayerReport> quantize_with_algorithm(LlamaModel& model, const QuantPlan& plan, const AlgorithmOptions& opt,
                                                 const std::vector<std::vector<int32_t>>& windows,
                                                 const BlockDone& on_block, BlockCheckpoints* checkpoints) {
  const bool calibrated = needs_calibration(opt.algorithm);
  LB_CHECK(!calibrated || !windows.empty(), "{} needs calibration data (--calib FILE)", algorithm_name(opt.algorithm));
  check_plan(model, plan);
  Driver d(model, plan, opt);
  std::vector<LayerReport> all;
  const int64_t L = model.config.num_layers;
  std::optional<BlockRunner> runner;
  if (calibrated) runner.emplace(model, windows);
  // The embedding rows the windows touched are not needed again until the checkpoint is written.
  release_mapped_pages(model.embedding);
  int64_t first = 0;
  if (checkpoints) {
    first = checkpoints->finished();
    LB_CHECK(first <= L, "{}: {} finished blocks, the model has {}", checkpoints->dir().string(), first, L);
    for (int64_t l = 0; l < first; ++l) checkpoints->restore_block(model, l);
    all = checkpoints->reports();
    if (calibrated && first > 0) runner->set_hidden(checkpoints->hidden());
  }
  Progress progress(fmt::format("{} blocks", algorithm_name(opt.algorithm)), L + 1 - first,
                    opt.progress && stderr_is_terminal());
  const StatsSpec spec{.hessian = opt.algorithm == Algorithm::Gptq};
  for (int64_t l = first; l < L; ++l) {
    progress.update(l - first, fmt::format("block {}", l));
    std::vector<LayerReport> block;
    const std::vector<Slot> slots = block_slots(model, l);
    std::vector<LinearPtr> originals;  // to release their mapped pages once the block is done
    for (const Slot& s : slots) originals.push_back(*s.ptr);
    if (!calibrated) {
      for (const Slot& s : slots) d.quantize(s, nullptr, block);
    } else if (opt.algorithm != Algorithm::Gptq) {
      const bool search = opt.algorithm == Algorithm::Awq || opt.smooth_alpha < 0;
      const StatsSpec keep{.keep_rows = search ? opt.awq_rows : 0};
      std::map<LinearSite, StatsSpec> want{{LinearSite::AttnIn, keep}, {LinearSite::MlpIn, keep}, {LinearSite::MlpDown, keep}};
      if (opt.algorithm == Algorithm::Awq && opt.awq_clip) want[LinearSite::AttnOut] = keep;
      const auto stats = runner->collect(l, want);
      d.scale_block(model, l, stats);
      for (const Slot& s : slots) d.quantize(s, nullptr, block);
    } else {
      // Sites in data-flow order; with `sequential` each is measured after the ones before it are quantized.
      const LinearSite order[] = {LinearSite::AttnIn, LinearSite::AttnOut, LinearSite::MlpIn, LinearSite::MlpDown};
      std::map<LinearSite, SiteStats> stats;
      if (!opt.sequential) {
        std::map<LinearSite, StatsSpec> want;
        for (LinearSite s : order) want[s] = spec;
        stats = runner->collect(l, want);
      }
      for (LinearSite site : order) {
        if (opt.sequential) stats = runner->collect(l, {{site, spec}});
        for (const Slot& s : slots)
          if (s.site == site) d.quantize(s, &stats.at(site), block);
      }
    }
    for (const LinearPtr& w : originals) release_mapped_pages(*w);
    originals.clear();
    if (checkpoints) {
      // From here on the block runs from its saved file, exactly as it will in a resumed run.
      checkpoints->save_block(model, l);
      checkpoints->restore_block(model, l);
    }
    if (calibrated) runner->advance(l);
    if (checkpoints) {
      checkpoints->commit(l, calibrated ? &runner->hidden() : nullptr, block);
      checkpoints->release_block(l);
    }
    if (on_block) on_block(l, block);
    all.insert(all.end(), block.begin(), block.end());
  }
  progress.update(L - first, "lm_head");
  std::vector<LayerReport> head;
  const Slot lm{"lm_head", &model.lm_head, LinearSite::AttnIn};
  const LinearPtr head_before = model.lm_head;
  if (calibrated) {
    const bool awq = opt.algorithm == Algorithm::Awq;
    const SiteStats s = runner->final_norm_stats(awq ? StatsSpec{.keep_rows = opt.awq_rows} : spec);
    runner.reset();  // the hidden states are not needed any more
    if (awq) d.scale_head(model, s);
    d.quantize(lm, &s, head);
  } else {
    d.quantize(lm, nullptr, head);
  }
  release_mapped_pages(*head_before);
  if (on_block) on_block(L, head);
  all.insert(all.end(), head.begin(), head.end());
  progress.finish();
  return all;
}

}  // namespace lowbit::algorithms
