// Built-in architectures for benchmarks that need no checkpoint, and random models of them.
#pragma once

#include <string>
#include <vector>

#include "lowbit/model/llama.h"

namespace lowbit {

// "tinyllama-1.1b", "llama-2-7b", "llama-3-8b", "llama-3.1-8b"; errors list the known names.
LlamaConfig arch_config(const std::string& name);
std::vector<std::string> known_archs();

// Every weight drawn from N(0, std) (norm weights 1), stored in `dtype`; deterministic for a seed and
// independent of the thread count.
LlamaModel random_model(const LlamaConfig& config, uint64_t seed = 0, DType dtype = DType::BF16, float std = 0.02f);

}  // namespace lowbit
