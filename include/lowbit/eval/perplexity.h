// Perplexity of a model on a token sequence, under a named protocol (the convention matters: numbers
// from different protocols are not comparable).
//
//   ppl-512   (lowbit's default, DESIGN.md): ids = [BOS] + encode(text); non-overlapping windows of
//             --ctx tokens, the partial tail dropped; in each window tokens 2..ctx are scored, each
//             predicted from the window's own prefix.
//   llamacpp  (llama.cpp's llama-perplexity): the same chunks, the first token of each replaced by BOS,
//             and only the second half of each chunk scored (tokens ctx/2+1 .. ctx-1, 0-based).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "lowbit/model/llama.h"

namespace lowbit {

enum class PplProtocol { Windows, LlamaCpp };
PplProtocol ppl_protocol_from_name(const std::string& s);  // "ppl-512" (or "windows"), "llamacpp"
std::string ppl_protocol_name(PplProtocol p, int64_t ctx);   // "ppl-512", "llamacpp-512"

struct PplOptions {
  PplProtocol protocol = PplProtocol::Windows;
  int64_t ctx = 512;
  int64_t max_windows = 0;  // 0 = every full window
  bool progress = true;     // shown only on a terminal
};

struct PplResult {
  std::string protocol;
  double ppl = 0;
  double nll_mean = 0;
  double nll_stderr = 0;  // standard error of the mean NLL
  double ppl_stderr = 0;  // ppl * nll_stderr (delta method)
  int64_t tokens = 0;     // tokens scored
  int64_t windows = 0;
  double seconds = 0;
};

// `ids` must already start with BOS (both protocols score [BOS] + encode(text)).
PplResult perplexity(const LlamaModel& model, const std::vector<int32_t>& ids, const PplOptions& opt);

// The protocol's windows and scoring for any forward pass: `logits_of(window)` returns the float32 logits
// of every position of one window ([ctx, vocab]), valid until its next call.
using WindowLogits = std::function<const float*(const std::vector<int32_t>& window)>;
PplResult perplexity_windows(const std::vector<int32_t>& ids, const PplOptions& opt, const LlamaConfig& config,
                             const WindowLogits& logits_of);

// Negative log-likelihood of `target` under a row of logits (log-sum-exp in double).
double token_nll(const float* logits, int64_t vocab, int32_t target);

}  // namespace lowbit
