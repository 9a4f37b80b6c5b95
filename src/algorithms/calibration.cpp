#include "algorithms/calibration.h"

#include <algorithm>
#include <cmath>
#include <random>

namespace lowbit::algorithms {

std::vector<std::vector<int32_t>> calibration_windows(const std::vector<int32_t>& ids, const CalibrationOptions& o) {
  LB_CHECK(o.samples > 0 && o.seqlen > 1, "calibration: --calib-samples {} and --calib-seqlen {} must be positive",
           o.samples, o.seqlen);
  const auto n = static_cast<int64_t>(ids.size()) / o.seqlen;
  LB_CHECK(n > 0, "calibration: the text holds {} tokens, fewer than one window of {}", ids.size(), o.seqlen);
  std::vector<int64_t> order(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) order[i] = i;
  // A Fisher–Yates shuffle driven by a fixed generator: the same windows on every machine.
  std::mt19937_64 rng(o.seed);
  for (int64_t i = n - 1; i > 0; --i) std::swap(order[i], order[rng() % static_cast<uint64_t>(i + 1)]);
  std::vector<std::vector<int32_t>> out;
  for (int64_t i = 0; i < std::min(n, o.samples); ++i)
    out.emplace_back(ids.begin() + order[i] * o.seqlen, ids.begin() + (order[i] + 1) * o.seqlen);
  return out;
}

SiteStats::SiteStats(int64_t k, const StatsSpec& spec, int64_t expected_rows)
    : K(k), absmax(static_cast<size_t>(k), 0.0f), abssum(static_cast<size_t>(k), 0.0) {
  if (spec.hessian) hessian.emplace(k);
  if (spec.keep_rows > 0) {
    keep_ = spec.keep_rows;
    stride_ = std::max<int64_t>(1, expected_rows / spec.keep_rows);
  }
}

void SiteStats::add(const float* x, int64_t n) {
  for (int64_t r = 0; r < n; ++r) {
    const float* row = x + r * K;
    for (int64_t k = 0; k < K; ++k) {
      const float a = std::fabs(row[k]);
      absmax[k] = std::max(absmax[k], a);
      abssum[k] += a;
    }
    if (keep_ > 0 && (rows + r) % stride_ == 0 && sample_rows < keep_) {
      sample.insert(sample.end(), row, row + K);
      ++sample_rows;
    }
  }
  if (hessian) hessian->add(x, n);
  rows += n;
}

BlockRunner::BlockRunner(const LlamaModel& model, std::vector<std::vector<int32_t>> windows)
    : m_(model), runner_(model), cache_(model.config, static_cast<int64_t>(windows.at(0).size())),
      windows_(std::move(windows)) {
  const int64_t D = m_.config.hidden_size;
  for (const auto& w : windows_) {
    LB_CHECK(w.size() == windows_[0].size(), "calibration: windows must have one length");
    x_.emplace_back(w.size() * D);
    runner_.embed(w, x_.back().data());
  }
}

int64_t BlockRunner::tokens() const { return static_cast<int64_t>(windows_.size() * windows_[0].size()); }

std::map<LinearSite, SiteStats> BlockRunner::collect(int64_t l, const std::map<LinearSite, StatsSpec>& sites) {
  const LlamaConfig& c = m_.config;
  std::map<LinearSite, SiteStats> stats;
  for (const auto& [site, spec] : sites) {
    const int64_t K = site == LinearSite::AttnOut ? c.q_dim() : site == LinearSite::MlpDown ? c.intermediate_size
                                                                                               : c.hidden_size;
    stats.emplace(site, SiteStats(K, spec, tokens()));
  }
  const LinearObserver observe = [&](int64_t, LinearSite site, const float* x, int64_t rows, int64_t) {
    const auto it = stats.find(site);
    if (it != stats.end()) it->second.add(x, rows);
  };
  std::vector<float> h;
  for (const auto& x : x_) {
    h = x;
    runner_.forward_layer(l, h.data(), static_cast<int64_t>(windows_[0].size()), cache_, observe);
  }
  return stats;
}

void BlockRunner::advance(int64_t l) {
  for (auto& x : x_) runner_.forward_layer(l, x.data(), static_cast<int64_t>(windows_[0].size()), cache_);
}

void BlockRunner::set_hidden(std::vector<std::vector<float>> x) {
  LB_CHECK(x.size() == x_.size(), "calibration: {} saved windows, {} now", x.size(), x_.size());
  for (size_t i = 0; i < x.size(); ++i)
    LB_CHECK(x[i].size() == x_[i].size(), "calibration: saved window {} holds {} values, expected {}", i, x[i].size(),
             x_[i].size());
  x_ = std::move(x);
}

SiteStats BlockRunner::final_norm_stats(const StatsSpec& spec) {
  const int64_t D = m_.config.hidden_size;
  SiteStats s(D, spec, tokens());
  std::vector<float> normed;
  for (const auto& x : x_) {
    normed.resize(x.size());
    const auto rows = static_cast<int64_t>(x.size()) / D;
    runner_.final_norm(x.data(), rows, normed.data());
    s.add(normed.data(), rows);
  }
  return s;
}

}  // namespace lowbit::algorithms
