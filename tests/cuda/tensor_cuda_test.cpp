// Tensor storage on the GPU: allocation, zeros, host <-> device and device <-> device copies, on odd
// shapes and a strided source; and the CUDA build's answer to "can a GPU be used here".
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "../support/gpu.h"
#include "core/cuda_runtime.h"
#include "lowbit/core/tensor.h"

namespace lowbit {
namespace {

using test::have_gpu;

std::vector<float> random_values(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = d(rng);
  return v;
}

TEST(TensorCuda, AvailabilityAgreesWithTheRuntime) {
  // This build's core is the CUDA one (not the stub): its answer follows the runtime's.
  EXPECT_EQ(detail::cuda_available(), have_gpu());
  EXPECT_EQ(detail::cuda_unavailable_reason().empty(), have_gpu()) << detail::cuda_unavailable_reason();
}

TEST(TensorCuda, RoundTripsAndZeros) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  const Shape shape = {37, 53};
  const Tensor host = Tensor::from_floats(random_values(37 * 53, 7), shape, DType::BF16);
  const Tensor dev = host.to(Device::CUDA);
  EXPECT_EQ(dev.device(), Device::CUDA);
  EXPECT_EQ(dev.shape(), shape);
  const Tensor back = dev.to(Device::CPU);
  ASSERT_EQ(back.nbytes(), host.nbytes());
  EXPECT_EQ(std::memcmp(back.raw(), host.raw(), host.nbytes()), 0);

  // Device to device, then back.
  Tensor dev2 = Tensor::empty(shape, DType::BF16, Device::CUDA);
  dev2.copy_(dev);
  EXPECT_EQ(std::memcmp(dev2.to(Device::CPU).raw(), host.raw(), host.nbytes()), 0);

  // A strided host view goes over as its contiguous copy.
  const Tensor t = host.transpose(0, 1);
  const Tensor tc = t.contiguous();
  EXPECT_EQ(std::memcmp(t.to(Device::CUDA).to(Device::CPU).raw(), tc.raw(), tc.nbytes()), 0);

  const Tensor z = Tensor::zeros({3, 5, 7}, DType::F32, Device::CUDA).to(Device::CPU);
  for (float v : z.to_f32_vector()) EXPECT_EQ(v, 0.0f);
}

}  // namespace
}  // namespace lowbit
