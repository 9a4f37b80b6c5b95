// The integer kernels: VNNI against the scalar versions on odd shapes, and activation quantization
// against torchao's primitives.
#include <gtest/gtest.h>

#include <random>

#include "kernels/cpu/qgemm.h"
#include "lowbit/core/float_formats.h"
#include "lowbit/quant/primitives.h"

namespace lowbit::kernels::cpu {
namespace {

struct ScalarGuard {
  ~ScalarGuard() { force_scalar_integer_kernels(false); }
};

std::vector<float> randn(size_t n, uint32_t seed, float std = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, std);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

double nmse(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    den += double(b[i]) * b[i];
  }
  return num / den;
}

// Runs `kernel` over column ranges [n0, n1) split oddly, with VNNI and with the scalar path.
template <typename F>
void compare_paths(int64_t M, int64_t N, F kernel) {
  ScalarGuard guard;
  std::vector<float> fast(M * (N + 3), -1.0f), slow(M * (N + 3), -1.0f);
  const int64_t splits[] = {0, 1, N / 3, N - 1, N};
  for (int s = 0; s + 1 < 5; ++s) kernel(fast.data(), N + 3, splits[s], splits[s + 1]);
  force_scalar_integer_kernels(true);
  kernel(slow.data(), N + 3, 0, N);
  EXPECT_LT(nmse(fast, slow), 1e-12) << "M=" << M << " N=" << N;
  for (int64_t m = 0; m < M; ++m)  // columns beyond N untouched
    for (int64_t n = N; n < N + 3; ++n) ASSERT_EQ(fast[m * (N + 3) + n], -1.0f);
}

TEST(IntegerKernels, VnniMatchesScalarOnOddShapes) {
  if (!vnni_kernels_active()) GTEST_SKIP() << "no AVX-512 VNNI on this CPU: the scalar kernels are the only path";
  std::mt19937 rng(5);
  for (auto [M, N, K] : {std::tuple<int64_t, int64_t, int64_t>{1, 7, 64}, {2, 13, 128}, {3, 5, 192}, {4, 9, 256},
                         {5, 17, 64}, {9, 3, 384}, {17, 11, 512}, {1, 6, 1280}}) {
    const auto x = randn(M * K, 1);
    std::vector<uint8_t> u8(N * K), u4(N * K / 2), u4w(N * u4_window_padded(K) / 2);
    for (auto& v : u8) v = static_cast<uint8_t>(rng());
    for (auto& v : u4) v = static_cast<uint8_t>(rng());
    for (auto& v : u4w) v = static_cast<uint8_t>(rng());  // padding too: it meets zero activations
    const auto ws = randn(N, 2, 0.01f);
    Q8Acts blocks, windows, tok_sym, tok_asym;
    quantize_q8_blocks(x.data(), M, K, blocks);
    quantize_q8_windows(x.data(), M, K, windows);
    compare_paths(M, N, [&](float* y, int64_t ldy, int64_t n0, int64_t n1) {
      qgemm_u8_blocks(blocks, u8.data(), ws.data(), y, ldy, n0, n1);
    });
    if (K % 256 == 0) {  // int8 weights also take activation blocks of 256
      Q8Acts b256;
      quantize_q8_blocks(x.data(), M, K, b256, 256);
      compare_paths(M, N, [&](float* y, int64_t ldy, int64_t n0, int64_t n1) {
        qgemm_u8_blocks(b256, u8.data(), ws.data(), y, ldy, n0, n1);
      });
    }
    quantize_q8_tokens(x.data(), M, K, false, K, tok_sym);
    compare_paths(M, N, [&](float* y, int64_t ldy, int64_t n0, int64_t n1) {
      qgemm_u8_tokens(tok_sym, u8.data(), ws.data(), y, ldy, n0, n1);
    });
    for (int64_t G : {32, 64, 128, 256}) {
      if (K % G) continue;
      std::vector<uint16_t> s(N * K / G), z(N * K / G);
      const auto sf = randn(s.size(), 3, 0.01f), zf = randn(z.size(), 4, 0.05f);
      for (size_t i = 0; i < s.size(); ++i) {
        s[i] = f32_to_bf16(std::fabs(sf[i]));
        z[i] = f32_to_bf16(zf[i]);
      }
      compare_paths(M, N, [&](float* y, int64_t ldy, int64_t n0, int64_t n1) {
        qgemm_u4_blocks(windows, u4w.data(), s.data(), z.data(), G, y, ldy, n0, n1);
      });
      const auto gs = randn(N * K / G, 5, 0.02f), cs = randn(N, 6, 1.0f);
      std::vector<float> wsum(N);
      for (auto& v : wsum) v = static_cast<float>(rng() % 1000) * 0.01f;
      for (bool asym : {false, true}) {
        quantize_q8_tokens(x.data(), M, K, asym, G, tok_asym);
        for (int bits : {4, 8}) {
          const GroupWeights gw{bits == 8 ? u8.data() : u4.data(), bits, gs.data(), asym ? nullptr : cs.data(),
                                wsum.data(), G};
          compare_paths(M, N, [&](float* y, int64_t ldy, int64_t n0, int64_t n1) {
            qgemm_group_tokens(tok_asym, gw, y, ldy, n0, n1);
          });
        }
      }
    }
  }
}

// The scalar kernels' math is the definition: check them against plain float dot products.
TEST(IntegerKernels, ScalarKernelsComputeTheDequantizedProduct) {
  ScalarGuard guard;
  force_scalar_integer_kernels(true);
  const int64_t M = 3, N = 5, K = 128, G = 64;
  std::mt19937 rng(9);
  const auto x = randn(M * K, 7);
  std::vector<uint8_t> u8(N * K), u4(N * K / 2);
  for (auto& v : u8) v = static_cast<uint8_t>(rng());
  for (auto& v : u4) v = static_cast<uint8_t>(rng());
  Q8Acts tok;
  quantize_q8_tokens(x.data(), M, K, true, G, tok);
  const auto gs = randn(N * K / G, 8, 0.02f);
  std::vector<float> wsum(N, 0.0f);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k) wsum[n] += gs[n * (K / G) + k / G] * (static_cast<float>(u8[n * K + k]) - 128.0f);
  std::vector<float> y(M * N);
  qgemm_group_tokens(tok, {u8.data(), 8, gs.data(), nullptr, wsum.data(), G}, y.data(), N, 0, N);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      double want = 0;
      for (int64_t k = 0; k < K; ++k) {
        const double xd = (tok.q[m * K + k] - tok.zero[m]) * double(tok.scale[m]);
        const double wd = (u8[n * K + k] - 128.0) * gs[n * (K / G) + k / G];
        want += xd * wd;
      }
      EXPECT_NEAR(y[m * N + n], want, 1e-4 * (1 + std::fabs(want)));
    }
}

// The window order is a permutation: codes and activations land where the kernels read them.
TEST(IntegerKernels, WindowOrderIsAPermutation) {
  for (int64_t K : {64, 512, 1088}) {
    const int64_t Kp = u4_window_padded(K);
    std::vector<int> seen(Kp, 0);
    for (int64_t k = 0; k < K; ++k) ++seen[u4_window_x_pos(k)];
    for (int64_t p = 0; p < Kp; ++p) ASSERT_LE(seen[p], 1);
    std::vector<uint8_t> q(K), packed(Kp / 2);
    for (int64_t k = 0; k < K; ++k) q[k] = static_cast<uint8_t>((k * 7 + K) % 16);
    pack_u4_windows(q.data(), K, packed.data());
    for (int64_t k = 0; k < K; ++k) ASSERT_EQ(u4_window_code(packed.data(), k), q[k]) << k;
    const auto x = randn(2 * K, 13);
    Q8Acts plain, win;
    quantize_q8_blocks(x.data(), 2, K, plain);
    quantize_q8_windows(x.data(), 2, K, win);
    ASSERT_EQ(win.ldq, Kp);
    for (int64_t m = 0; m < 2; ++m)
      for (int64_t k = 0; k < K; ++k) ASSERT_EQ(win.q[m * Kp + u4_window_x_pos(k)], plain.q[m * K + k]);
    ASSERT_EQ(win.d, plain.d);
    ASSERT_EQ(win.dsum, plain.dsum);
    for (int64_t m = 0; m < 2; ++m)  // padding stays zero
      for (int64_t p = K; p < Kp; ++p) ASSERT_EQ(win.q[m * Kp + u4_window_x_pos(p)], 0);
  }
}

// Token quantization reproduces torchao's choose_qparams / quantize_affine bit for bit on fp32 input.
TEST(IntegerKernels, TokenQuantizationIsTorchaos) {
  const int64_t M = 6, K = 96;
  auto x = randn(M * K, 11);
  for (int64_t k = 0; k < K; ++k) x[2 * K + k] = 0.0f;           // an all-zero token
  for (int64_t k = 0; k < K; ++k) x[3 * K + k] = 0.5f + k * 1e-3f;  // all positive
  const Tensor xt = Tensor::from_vector(x, {M, K});
  for (bool asym : {false, true}) {
    Q8Acts a;
    quantize_q8_tokens(x.data(), M, K, asym, 32, a);
    quant::ChooseQParamsOptions o{.mapping = asym ? quant::MappingType::Asymmetric : quant::MappingType::Symmetric,
                                  .block_size = {1, K},
                                  .qmin = asym ? -128 : -127,
                                  .qmax = 127,
                                  .eps = asym ? 0x1p-23 : 1e-5};
    const auto qp = quant::choose_qparams_affine(xt, o);
    const Tensor q = quant::quantize_affine(xt, {1, K}, qp.scale, qp.zero_point, quant::ZeroPointDomain::Int, o.qmin,
                                            o.qmax, DType::I8);
    EXPECT_EQ(std::vector<int8_t>(q.data<int8_t>(), q.data<int8_t>() + M * K), a.q);
    EXPECT_EQ(qp.scale.to_f32_vector(), a.scale);
    for (int64_t m = 0; m < M; ++m) EXPECT_EQ(qp.zero_point.get_f32(m), static_cast<float>(a.zero[m]));
    for (int64_t m = 0; m < M; ++m)
      for (int64_t g = 0; g < K / 32; ++g) {
        int32_t s = 0;
        for (int64_t k = g * 32; k < g * 32 + 32; ++k) s += a.q[m * K + k];
        EXPECT_EQ(a.gsum[m * (K / 32) + g], s);
      }
  }
}

TEST(IntegerKernels, BlockQuantizationBoundsTheError) {
  const int64_t M = 3, K = 192;
  const auto x = randn(M * K, 12);
  Q8Acts a;
  quantize_q8_blocks(x.data(), M, K, a);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t k = 0; k < K; ++k) {
      const float d = a.d[m * (K / 32) + k / 32];
      ASSERT_LE(std::fabs(a.q[m * K + k] * d - x[m * K + k]), 0.5f * d + 1e-7f);
      ASSERT_EQ(a.dexp[(m * (K / 64) + k / 64) * 16 + ((k % 64) / 32) * 8], d);
    }
}

}  // namespace
}  // namespace lowbit::kernels::cpu
