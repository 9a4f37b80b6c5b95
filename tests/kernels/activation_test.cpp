// The vectorized SwiGLU and masked softmax against their scalar references on odd lengths.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "kernels/cpu/activation.h"
#include "kernels/cpu/gemm.h"

namespace lowbit::kernels::cpu {
namespace {

// The fast exp is within a few ulp of std::exp: compare relative to the value, plus a tiny absolute floor.
void expect_close(const std::vector<float>& got, const std::vector<float>& want, float rel) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i)
    ASSERT_NEAR(got[i], want[i], rel * std::fabs(want[i]) + 1e-37f) << "at " << i << " of " << got.size();
}

TEST(Activations, SiluMulMatchesReference) {
  if (detected_isa() != Isa::Avx512) GTEST_SKIP() << "no AVX-512 on this CPU: only the reference runs";
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0.0f, 4.0f);
  for (int64_t n : {1, 7, 16, 17, 33, 100, 5633}) {
    std::vector<float> g(n), u(n);
    for (auto& v : g) v = nd(rng);
    for (auto& v : u) v = nd(rng);
    g[0] = -120.0f;  // e^120 overflows: SiLU is -0 · up
    if (n > 1) g[1] = 95.0f;
    std::vector<float> want = g, got = g;
    silu_mul_reference(want.data(), u.data(), n);
    avx512::silu_mul(got.data(), u.data(), n);
    expect_close(got, want, 4e-7f);
  }
}

TEST(Activations, SoftmaxMaskedMatchesReference) {
  if (detected_isa() != Isa::Avx512) GTEST_SKIP() << "no AVX-512 on this CPU: only the reference runs";
  std::mt19937 rng(6);
  std::normal_distribution<float> nd(0.0f, 6.0f);
  for (auto [visible, n] : {std::pair<int64_t, int64_t>{1, 1}, {1, 9}, {5, 17}, {16, 16}, {17, 40}, {129, 130}, {700, 701}}) {
    std::vector<float> s(n);
    for (auto& v : s) v = nd(rng);
    std::vector<float> want = s, got = s;
    softmax_masked_reference(want.data(), visible, n, 0.125f);
    avx512::softmax_masked(got.data(), visible, n, 0.125f);
    expect_close(got, want, 2e-6f);
    double sum = 0;
    for (int64_t l = 0; l < visible; ++l) sum += got[l];
    EXPECT_NEAR(sum, 1.0, 1e-5);
    for (int64_t l = visible; l < n; ++l) EXPECT_EQ(got[l], 0.0f);
  }
}

}  // namespace
}  // namespace lowbit::kernels::cpu
