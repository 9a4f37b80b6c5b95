// GPU tests: whether the CUDA runtime sees a device here (asked of the runtime directly, so tests can
// compare lowbit's own answer with it), and a skip for tests that need one.
#pragma once

#include <cuda_runtime.h>
#include <gtest/gtest.h>

namespace lowbit::test {

inline bool have_gpu() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

}  // namespace lowbit::test

#define REQUIRE_GPU() \
  if (!::lowbit::test::have_gpu()) GTEST_SKIP() << "no CUDA device"
