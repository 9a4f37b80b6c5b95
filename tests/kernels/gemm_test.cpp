// Every ISA path of the CPU GEMM against the scalar reference, on random odd shapes and strides.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "kernels/cpu/gemm.h"
#include "lowbit/core/float_formats.h"

namespace lowbit::kernels::cpu {
namespace {

struct IsaGuard {
  Isa saved = active_isa();
  ~IsaGuard() { force_isa(saved); }
};

double nmse(const std::vector<float>& got, const std::vector<float>& want) {
  double num = 0, den = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    num += (static_cast<double>(got[i]) - want[i]) * (static_cast<double>(got[i]) - want[i]);
    den += static_cast<double>(want[i]) * want[i];
  }
  return num / std::max(den, 1e-30);
}

TEST(CpuGemm, EveryIsaMatchesTheReference) {
  IsaGuard guard;
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const int64_t shapes[][3] = {{1, 1, 1},   {1, 7, 33},   {2, 5, 17},    {3, 9, 100}, {4, 4, 16},
                               {5, 13, 31}, {7, 3, 257},  {37, 29, 130}, {1, 65, 64}, {130, 11, 15},
                               {97, 21, 96}, {200, 9, 48}};
  for (int isa = 0; isa <= static_cast<int>(detected_isa()); ++isa) {
    force_isa(static_cast<Isa>(isa));
    for (const auto& s : shapes) {
      const int64_t M = s[0], N = s[1], K = s[2];
      const int64_t ldx = K + 3, ldw = K + 5, ldy = N + 2;  // strided views
      std::vector<float> x(M * ldx), wf(N * ldw);
      for (auto& v : x) v = nd(rng);
      for (auto& v : wf) v = nd(rng);
      std::vector<uint16_t> wb(wf.size()), wh(wf.size());
      for (size_t i = 0; i < wf.size(); ++i) {
        wb[i] = f32_to_bf16(wf[i]);
        wh[i] = f32_to_f16(wf[i]);
      }
      for (WType wt : {WType::F32, WType::BF16, WType::F16}) {
        const void* w = wt == WType::F32 ? static_cast<const void*>(wf.data())
                        : wt == WType::BF16 ? static_cast<const void*>(wb.data())
                                            : static_cast<const void*>(wh.data());
        std::vector<float> y(M * ldy, 123.0f), yr(M * ldy, 123.0f);
        gemm({x.data(), ldx, w, wt, ldw, y.data(), ldy, M, N, K});
        gemm_reference({x.data(), ldx, w, wt, ldw, yr.data(), ldy, M, N, K});
        EXPECT_LT(nmse(y, yr), 1e-11) << isa_name(static_cast<Isa>(isa)) << " M" << M << " N" << N << " K" << K;
        for (int64_t m = 0; m < M; ++m)  // padding between rows of y untouched
          for (int64_t n = N; n < ldy; ++n) ASSERT_EQ(y[m * ldy + n], 123.0f);
      }
    }
  }
}

}  // namespace
}  // namespace lowbit::kernels::cpu
