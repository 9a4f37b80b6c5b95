// `lowbit bench` options, shared by the CPU measurement (bench.cpp) and the GPU one (bench_cuda.cpp).
#pragma once

#include <string>

#include "common.h"

namespace lowbit::cli {

struct BenchOptions {
  ModelOptions model;
  std::string arch;
  bool random = false;
  std::string device = "cpu";
  std::string quants = "bf16";
  int64_t batch = 1;
  int64_t prompt_len = 128;
  int64_t n = 200;
  uint64_t seed = 0;
  bool json = false;
  bool profile = false;  // --device cuda: GPU time per op of one decode step and of the prefill
};

// The GPU table (random weights are generated on the device). Only in CUDA builds.
int run_bench_cuda(const BenchOptions& o);

}  // namespace lowbit::cli
