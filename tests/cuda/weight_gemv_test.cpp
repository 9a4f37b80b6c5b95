// The decode weight kernels (src/kernels/cuda/weight_gemv.h) against host fp32 references on odd
// shapes, every tile configuration, M = 1..16; exact checks where the math is integer or where one
// weight alone makes each output (one-hot activations), and bit-exact activation quantization; and
// int8dq's Hopper prefill product (scaled_gemm.h), exact against the host's integer sums.
// Needs a GPU: built into lowbit_cuda_tests (ctest label `cuda`); skips when no device is present.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "../support/gpu.h"
#include "kernels/cuda/int4_gemm.h"
#include "kernels/cuda/llama_ops.h"
#include "kernels/cuda/scaled_gemm.h"
#include "kernels/cuda/weight_gemv.h"
#include "lowbit/core/error.h"
#include "lowbit/core/float_formats.h"

namespace lowbit::cuda {
namespace {

#define CUDA_OK(call) ASSERT_EQ((call), cudaSuccess) << #call

// A device copy of a host vector, freed on scope exit.
template <typename T>
struct Dev {
  T* p = nullptr;
  size_t n = 0;
  explicit Dev(size_t count) : n(count) {
    if (cudaMalloc(&p, std::max<size_t>(n, 1) * sizeof(T)) != cudaSuccess)
      throw Error("cudaMalloc failed");
  }
  explicit Dev(const std::vector<T>& v) : Dev(v.size()) {
    if (cudaMemcpy(p, v.data(), n * sizeof(T), cudaMemcpyHostToDevice) != cudaSuccess)
      throw Error("copy failed");
  }
  ~Dev() { cudaFree(p); }
  Dev(const Dev&) = delete;
  Dev& operator=(const Dev&) = delete;
  std::vector<T> get() const {
    std::vector<T> v(n);
    if (cudaMemcpy(v.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost) != cudaSuccess)
      throw Error("copy failed");
    return v;
  }
  void poison() {
    cudaMemset(p, 0xff, n * sizeof(T));
  }  // bf16 0xffff is NaN: unwritten outputs fail
};

std::vector<uint16_t> to_bf16(const std::vector<float>& v) {
  std::vector<uint16_t> r(v.size());
  for (size_t i = 0; i < v.size(); ++i) r[i] = f32_to_bf16(v[i]);
  return r;
}

// Random bf16 activations (as their float values).
std::vector<float> random_x(int M, int K, std::mt19937& rng) {
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(M) * K);
  for (auto& v : x) v = bf16_to_f32(f32_to_bf16(d(rng)));
  return x;
}

// y[m, n] = Σ_k x[m, k] · w[n, k] in double.
std::vector<double> reference(const std::vector<float>& x, const std::vector<float>& w, int M,
                              int N, int K) {
  std::vector<double> y(static_cast<size_t>(M) * N);
  for (int m = 0; m < M; ++m)
    for (int n = 0; n < N; ++n) {
      double s = 0;
      const float* xr = &x[static_cast<size_t>(m) * K];
      const float* wr = &w[static_cast<size_t>(n) * K];
      for (int k = 0; k < K; ++k) s += double(xr[k]) * wr[k];
      y[static_cast<size_t>(m) * N + n] = s;
    }
  return y;
}

// Normalized MSE of the bf16 output; NaN (an unwritten output) counts as failure.
double nmse(const std::vector<uint16_t>& got, const std::vector<double>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double g = bf16_to_f32(got[i]);
    if (std::isnan(g)) return INFINITY;
    num += (g - ref[i]) * (g - ref[i]);
    den += ref[i] * ref[i];
  }
  return num / std::max(den, 1e-30);
}

// bf16 output rounding alone gives ≈ 2^-18 / 3 ≈ 1.3e-6; bf16-rounded int4 weights as much again.
constexpr double kNmse = 1e-5;

struct Shape {
  int N, K;
};
const Shape kShapes[] = {{37, 192}, {100, 320}, {513, 4160}};
const int kMs[] = {1, 3, 8, 9, 16};

// Split-K factors the tests sweep: the built-in choice, none, clusters of 2, 3 (uneven shares of
// K) and 8 (more warps than chunks on small K).
const int kSplits[] = {0, 1, 2, 3, 8};

// Runs `launch(M, config, y)` for every M, configuration and split-K factor (plus the default with
// PDL) and checks the NMSE against ref(M).
template <typename Launch, typename Ref>
void check_all(int N, int K, Launch launch, Ref ref, double bound = kNmse) {
  for (int M : kMs) {
    const std::vector<double> r = ref(M);
    Dev<uint16_t> y(static_cast<size_t>(M) * N);
    for (int config = -1; config < kGemvConfigs; ++config)
      for (int split : kSplits)
        for (bool pdl : {false, true}) {
          if (pdl && (config != -1 || split > 2)) continue;
          y.poison();
          GemvOptions o;
          o.config = config;
          o.split_k = split;
          o.pdl = pdl;
          launch(M, o, y.p);
          ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
          const double e = nmse(y.get(), r);
          EXPECT_LE(e, bound) << "M=" << M << " N=" << N << " K=" << K << " config=" << config
                              << " split=" << split << " pdl=" << pdl;
        }
  }
}

TEST(CudaGemv, Bf16) {
  REQUIRE_GPU();
  std::mt19937 rng(1);
  for (const auto& s : kShapes) {
    const std::vector<float> w = random_x(s.N, s.K, rng), x = random_x(16, s.K, rng);
    Dev<uint16_t> dw(to_bf16(w)), dx(to_bf16(x));
    check_all(
        s.N, s.K,
        [&](int M, const GemvOptions& o, uint16_t* y) { gemv_bf16(dx.p, dw.p, y, M, s.N, s.K, o); },
        [&](int M) { return reference(x, w, M, s.N, s.K); });
  }
}

TEST(CudaGemv, Bf16CublasReference) {
  REQUIRE_GPU();
  std::mt19937 rng(2);
  const int N = 513, K = 4160;
  const std::vector<float> w = random_x(N, K, rng), x = random_x(16, K, rng);
  Dev<uint16_t> dw(to_bf16(w)), dx(to_bf16(x));
  for (int M : {1, 7, 16})
    for (CublasPath path : {CublasPath::GemmEx, CublasPath::Lt}) {
      Dev<uint16_t> y(static_cast<size_t>(M) * N);
      y.poison();
      gemm_bf16_cublas(dx.p, dw.p, y.p, M, N, K, path);
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      EXPECT_LE(nmse(y.get(), reference(x, w, M, N, K)), kNmse) << "M=" << M;
    }
}

// Small integers make every product and partial sum exact in fp32: the bf16 outputs must match bit
// for bit whatever the order of the sums.
TEST(CudaGemv, Bf16ExactOnIntegers) {
  REQUIRE_GPU();
  std::mt19937 rng(3);
  std::uniform_int_distribution<int> xi(-4, 4), wi(-8, 8);
  const int M = 16, N = 100, K = 4160;
  std::vector<float> x(M * K), w(N * K);
  for (auto& v : x) v = float(xi(rng));
  for (auto& v : w) v = float(wi(rng));
  Dev<uint16_t> dw(to_bf16(w)), dx(to_bf16(x)), y(M * N);
  const auto ref = reference(x, w, M, N, K);
  for (int config = 0; config < kGemvConfigs; ++config) {
    GemvOptions o;
    o.config = config;
    gemv_bf16(dx.p, dw.p, y.p, M, N, K, o);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    const auto got = y.get();
    for (int i = 0; i < M * N; ++i)
      ASSERT_EQ(got[i], f32_to_bf16(float(ref[i]))) << i << " config " << config;
  }
}

struct Int8Weights {
  std::vector<int8_t> q;
  std::vector<float> scale, deq;
};
Int8Weights random_int8(int N, int K, std::mt19937& rng) {
  std::uniform_int_distribution<int> qi(-128, 127);
  std::uniform_real_distribution<float> sd(0.002f, 0.02f);
  Int8Weights w;
  w.q.resize(static_cast<size_t>(N) * K);
  w.scale.resize(N);
  w.deq.resize(w.q.size());
  for (auto& v : w.q) v = static_cast<int8_t>(qi(rng));
  for (auto& v : w.scale) v = sd(rng);
  for (int n = 0; n < N; ++n)
    for (int k = 0; k < K; ++k)
      w.deq[size_t(n) * K + k] = float(w.q[size_t(n) * K + k]) * w.scale[n];
  return w;
}

TEST(CudaGemv, Int8WeightOnly) {
  REQUIRE_GPU();
  std::mt19937 rng(4);
  for (const auto& s : kShapes) {
    const auto w = random_int8(s.N, s.K, rng);
    const auto x = random_x(16, s.K, rng);
    Dev<int8_t> dq(w.q);
    Dev<float> ds(w.scale);
    Dev<uint16_t> dx(to_bf16(x));
    check_all(
        s.N, s.K,
        [&](int M, const GemvOptions& o, uint16_t* y) {
          gemv_int8wo(dx.p, dq.p, ds.p, y, M, s.N, s.K, o);
        },
        [&](int M) { return reference(x, w.deq, M, s.N, s.K); });
  }
}

struct Fp8Weights {
  std::vector<uint8_t> q;
  std::vector<float> scale, deq;
};
Fp8Weights random_fp8(int N, int K, std::mt19937& rng) {
  std::uniform_int_distribution<int> qi(0, 255);
  std::uniform_real_distribution<float> sd(0.001f, 0.01f);
  Fp8Weights w;
  w.q.resize(static_cast<size_t>(N) * K);
  w.scale.resize(N);
  w.deq.resize(w.q.size());
  for (auto& v : w.q) {
    do v = static_cast<uint8_t>(qi(rng));
    while ((v & 0x7f) == 0x7f);  // every code but NaN, subnormals included
  }
  for (auto& v : w.scale) v = sd(rng);
  for (int n = 0; n < N; ++n)
    for (int k = 0; k < K; ++k)
      w.deq[size_t(n) * K + k] = e4m3_to_f32(w.q[size_t(n) * K + k]) * w.scale[n];
  return w;
}

TEST(CudaGemv, Float8WeightOnly) {
  REQUIRE_GPU();
  std::mt19937 rng(5);
  for (const auto& s : kShapes) {
    const auto w = random_fp8(s.N, s.K, rng);
    const auto x = random_x(16, s.K, rng);
    Dev<uint8_t> dq(w.q);
    Dev<float> ds(w.scale);
    Dev<uint16_t> dx(to_bf16(x));
    check_all(
        s.N, s.K,
        [&](int M, const GemvOptions& o, uint16_t* y) {
          gemv_float8wo(dx.p, dq.p, ds.p, y, M, s.N, s.K, o);
        },
        [&](int M) { return reference(x, w.deq, M, s.N, s.K); });
  }
}

// One-hot activations: y[m, n] = w[n, k_m] · scale exactly, which checks the in-register weight
// conversion of every code and the k mapping of the layout one weight at a time.
std::vector<int> onehot_positions(int M, int K, std::mt19937& rng) {
  std::uniform_int_distribution<int> kd(0, K - 1);
  std::vector<int> ks(M);
  for (auto& k : ks) k = kd(rng);
  return ks;
}
std::vector<float> onehot_x(const std::vector<int>& ks, int K) {
  std::vector<float> x(ks.size() * K, 0.0f);
  for (size_t m = 0; m < ks.size(); ++m) x[m * K + ks[m]] = 1.0f;
  return x;
}

TEST(CudaGemv, OneHotExactInt8AndFloat8) {
  REQUIRE_GPU();
  std::mt19937 rng(6);
  const int M = 16, N = 513, K = 4160;
  const auto ks = onehot_positions(M, K, rng);
  Dev<uint16_t> dx(to_bf16(onehot_x(ks, K))), y(M * N);
  auto i8 = random_int8(N, K, rng);
  auto f8 = random_fp8(N, K, rng);
  const std::vector<float> ones(N, 1.0f);
  Dev<int8_t> di8(i8.q);
  Dev<uint8_t> df8(f8.q);
  Dev<float> d1(ones);
  for (int config = 0; config < kGemvConfigs; ++config) {
    GemvOptions o;
    o.config = config;
    gemv_int8wo(dx.p, di8.p, d1.p, y.p, M, N, K, o);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    auto got = y.get();
    for (int m = 0; m < M; ++m)
      for (int n = 0; n < N; ++n)
        ASSERT_EQ(bf16_to_f32(got[m * N + n]), float(i8.q[size_t(n) * K + ks[m]])) << m << "," << n;
    gemv_float8wo(dx.p, df8.p, d1.p, y.p, M, N, K, o);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    got = y.get();
    for (int m = 0; m < M; ++m)
      for (int n = 0; n < N; ++n) {
        const uint8_t c = f8.q[size_t(n) * K + ks[m]];
        ASSERT_EQ(bf16_to_f32(got[m * N + n]), e4m3_to_f32(c))
            << m << "," << n << " code " << int(c);
      }
  }
}

// Every e4m3 code (subnormals, ±0, the largest) through the in-register conversion: row n = code.
TEST(CudaGemv, Float8EveryCode) {
  REQUIRE_GPU();
  const int N = 256, K = 64, M = 1;
  std::vector<uint8_t> q(N * K, 0);
  for (int n = 0; n < N; ++n) q[n * K + 5] = (n & 0x7f) == 0x7f ? 0 : static_cast<uint8_t>(n);
  Dev<uint8_t> dq(q);
  Dev<float> d1(std::vector<float>(N, 1.0f));
  Dev<uint16_t> dx(to_bf16(onehot_x({5}, K))), y(N);
  gemv_float8wo(dx.p, dq.p, d1.p, y.p, M, N, K);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const auto got = y.get();
  for (int n = 0; n < N; ++n)
    EXPECT_EQ(bf16_to_f32(got[n]), e4m3_to_f32(q[n * K + 5])) << "code " << n;
}

struct Int4Weights {
  std::vector<int32_t> codes;
  std::vector<uint16_t> scale, zero;  // bf16 [N, K/G]
  std::vector<float> deq;
  std::vector<uint8_t> packed, qparams;
};
// w = (q − 8) · scale + zero in fp32, as the CPU layout dequantizes.
Int4Weights make_int4(int N, int K, int G, std::mt19937& rng, bool integer) {
  std::uniform_int_distribution<int> qi(0, 15), zi(-3, 3);
  std::uniform_real_distribution<float> sd(0.005f, 0.02f);
  std::normal_distribution<float> zd(0.0f, 0.05f);
  Int4Weights w;
  w.codes.resize(size_t(N) * K);
  w.scale.resize(size_t(N) * (K / G));
  w.zero.resize(w.scale.size());
  for (auto& c : w.codes) c = qi(rng);
  for (auto& s : w.scale) s = f32_to_bf16(integer ? 1.0f : sd(rng));
  for (auto& z : w.zero) z = f32_to_bf16(integer ? float(zi(rng)) : zd(rng));
  w.deq.resize(w.codes.size());
  for (int n = 0; n < N; ++n)
    for (int k = 0; k < K; ++k) {
      const size_t g = size_t(n) * (K / G) + k / G;
      w.deq[size_t(n) * K + k] =
          (float(w.codes[size_t(n) * K + k]) - 8.0f) * bf16_to_f32(w.scale[g]) +
          bf16_to_f32(w.zero[g]);
    }
  w.packed.resize(int4_packed_bytes(N, K));
  w.qparams.resize(int4_qparam_bytes(N, K, G));
  pack_int4(w.codes.data(), w.scale.data(), w.zero.data(), N, K, G, w.packed.data(),
            w.qparams.data());
  return w;
}

TEST(CudaGemv, Int4WeightOnly) {
  REQUIRE_GPU();
  std::mt19937 rng(7);
  for (int G : {32, 64, 128}) {
    const Shape shapes[] = {
        {37, G == 128 ? 256 : 192}, {100, G == 128 ? 384 : 320}, {513, G == 128 ? 4224 : 4160}};
    for (const auto& s : shapes) {
      const auto w = make_int4(s.N, s.K, G, rng, false);
      const auto x = random_x(16, s.K, rng);
      Dev<uint8_t> dp(w.packed), dqp(w.qparams);
      Dev<uint16_t> dx(to_bf16(x));
      check_all(
          s.N, s.K,
          [&](int M, const GemvOptions& o, uint16_t* y) {
            gemv_int4wo(dx.p, dp.p, dqp.p, y, M, s.N, s.K, G, o);
          },
          [&](int M) { return reference(x, w.deq, M, s.N, s.K); });
    }
  }
}

TEST(CudaGemv, Int4ExactOnIntegers) {
  REQUIRE_GPU();
  std::mt19937 rng(8);
  std::uniform_int_distribution<int> xi(-4, 4);
  const int M = 16, N = 100, K = 4160, G = 64;
  const auto w = make_int4(N, K, G, rng, true);  // scale 1, integer zeros: integer weights
  std::vector<float> x(M * K);
  for (auto& v : x) v = float(xi(rng));
  Dev<uint8_t> dp(w.packed), dqp(w.qparams);
  Dev<uint16_t> dx(to_bf16(x)), y(M * N);
  const auto ref = reference(x, w.deq, M, N, K);
  for (int config = 0; config < kGemvConfigs; ++config)
    for (int split : kSplits) {
      GemvOptions o;
      o.config = config;
      o.split_k = split;
      gemv_int4wo(dx.p, dp.p, dqp.p, y.p, M, N, K, G, o);
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      const auto got = y.get();
      for (int i = 0; i < M * N; ++i)
        ASSERT_EQ(got[i], f32_to_bf16(float(ref[i]))) << i << " config " << config << " split " << split;
    }
}

// One-hot activations on random qparams: each output is one dequantized weight, rounded to bf16 by
// the kernel's bf16 fma (at most one bf16 ulp from the fp32 reference rounded once).
TEST(CudaGemv, Int4OneHot) {
  REQUIRE_GPU();
  std::mt19937 rng(9);
  const int M = 16, N = 513, K = 4224;
  for (int G : {32, 128}) {
    const auto w = make_int4(N, K, G, rng, false);
    const auto ks = onehot_positions(M, K, rng);
    Dev<uint8_t> dp(w.packed), dqp(w.qparams);
    Dev<uint16_t> dx(to_bf16(onehot_x(ks, K))), y(M * N);
    gemv_int4wo(dx.p, dp.p, dqp.p, y.p, M, N, K, G);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    const auto got = y.get();
    for (int m = 0; m < M; ++m)
      for (int n = 0; n < N; ++n) {
        const float ref = w.deq[size_t(n) * K + ks[m]];
        const float g = bf16_to_f32(got[m * N + n]);
        ASSERT_LE(std::fabs(g - ref), std::fabs(ref) * 0x1p-8f + 1e-30f)
            << m << "," << n << " G " << G;
      }
  }
}

// Host copies of the dynamic activation quantization (quantize_q8_tokens / the float8 reference).
void quantize_int8_host(const std::vector<float>& x, int M, int K, std::vector<int8_t>& q,
                        std::vector<float>& s) {
  q.resize(size_t(M) * K);
  s.resize(M);
  for (int m = 0; m < M; ++m) {
    float amax = 0.0f;
    for (int k = 0; k < K; ++k) amax = std::max(amax, std::fabs(x[size_t(m) * K + k]));
    s[m] = std::max(amax / 127.0f, 1e-5f);
    const float recip = 1.0f / s[m];
    for (int k = 0; k < K; ++k)
      q[size_t(m) * K + k] = static_cast<int8_t>(
          std::clamp(std::nearbyint(x[size_t(m) * K + k] * recip), -127.0f, 127.0f));
  }
}
void quantize_fp8_host(const std::vector<float>& x, int M, int K, std::vector<uint8_t>& q,
                       std::vector<float>& s) {
  q.resize(size_t(M) * K);
  s.resize(M);
  for (int m = 0; m < M; ++m) {
    float amax = 0.0f;
    for (int k = 0; k < K; ++k) amax = std::max(amax, std::fabs(x[size_t(m) * K + k]));
    s[m] = amax / 448.0f;
    for (int k = 0; k < K; ++k) {
      const float v = x[size_t(m) * K + k];
      q[size_t(m) * K + k] = f32_to_e4m3(v == 0.0f ? 0.0f : std::clamp(v / s[m], -448.0f, 448.0f));
    }
  }
}

TEST(CudaGemv, QuantizeRowsBitExact) {
  REQUIRE_GPU();
  std::mt19937 rng(10);
  const int M = 16, K = 4160;
  auto x = random_x(M, K, rng);
  std::fill(x.begin() + 3 * K, x.begin() + 4 * K, 0.0f);  // an all-zero row: scale floor, no NaN
  Dev<uint16_t> dx(to_bf16(x));
  Dev<int8_t> q8(M * K);
  Dev<uint8_t> qf(M * K);
  Dev<float> s8(M), sf(M);
  quantize_rows_int8(dx.p, M, K, q8.p, s8.p);
  quantize_rows_float8(dx.p, M, K, qf.p, sf.p);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  std::vector<int8_t> hq8;
  std::vector<uint8_t> hqf;
  std::vector<float> hs8, hsf;
  quantize_int8_host(x, M, K, hq8, hs8);
  quantize_fp8_host(x, M, K, hqf, hsf);
  EXPECT_EQ(q8.get(), hq8);
  EXPECT_EQ(s8.get(), hs8);
  EXPECT_EQ(qf.get(), hqf);
  EXPECT_EQ(sf.get(), hsf);
}

// int8dq: integer dot products, then float(acc) · xscale · wscale as the CPU computes: bit exact.
TEST(CudaGemv, Int8DynamicBitExact) {
  REQUIRE_GPU();
  std::mt19937 rng(11);
  for (const auto& s : kShapes) {
    const auto w = random_int8(s.N, s.K, rng);
    const auto x = random_x(16, s.K, rng);
    std::vector<int8_t> xq;
    std::vector<float> xs;
    quantize_int8_host(x, 16, s.K, xq, xs);
    Dev<int8_t> dw(w.q), dxq(xq);
    Dev<float> dws(w.scale), dxs(xs);
    Dev<uint16_t> dx(to_bf16(x));
    for (int M : kMs) {
      std::vector<uint16_t> ref(size_t(M) * s.N);
      for (int m = 0; m < M; ++m)
        for (int n = 0; n < s.N; ++n) {
          int32_t acc = 0;
          for (int k = 0; k < s.K; ++k)
            acc += int32_t(xq[size_t(m) * s.K + k]) * w.q[size_t(n) * s.K + k];
          ref[size_t(m) * s.N + n] = f32_to_bf16(static_cast<float>(acc) * xs[m] * w.scale[n]);
        }
      Dev<uint16_t> y(size_t(M) * s.N);
      for (int config = -1; config < kGemvConfigs; ++config)
        for (int split : kSplits) {
          GemvOptions o;
          o.config = config;
          o.split_k = split;
          y.poison();
          gemv_int8dq(dxq.p, dxs.p, dw.p, dws.p, y.p, M, s.N, s.K, o);
          ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
          EXPECT_EQ(y.get(), ref) << "M=" << M << " N=" << s.N << " K=" << s.K
                                  << " config=" << config << " split=" << split;
        }
      // The two-step entry point (quantize, then the product) gives the same bits.
      Dev<uint8_t> ws(dq_workspace_bytes(M, s.K));
      y.poison();
      gemv_int8dq(dx.p, dw.p, dws.p, y.p, M, s.N, s.K, ws.p);
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      EXPECT_EQ(y.get(), ref) << "two-step M=" << M;
    }
  }
}

// int8dq's prefill product on Hopper (int8_gemm_bf16): exact int32 sums scaled as the CPU scales
// them, bit for bit; row tails (M not a multiple of 128), several k-slices round the ring, more tiles
// than SMs (CTAs walking several tiles), a row stride wider than N (the columns past N untouched).
TEST(CudaGemm, Int8WithScaledEpilogueBitExact) {
  REQUIRE_GPU();
  if (!int8_gemm_bf16_ok(128, 256, 128, 256)) GTEST_SKIP() << "int8_gemm_bf16 needs an sm_90 GPU and sm_90a code";
  EXPECT_FALSE(int8_gemm_bf16_ok(128, 384, 128, 384));  // N not a multiple of 256
  EXPECT_FALSE(int8_gemm_bf16_ok(128, 256, 192, 256));  // K not a multiple of 128
  EXPECT_FALSE(int8_gemm_bf16_ok(128, 256, 128, 260));  // rows of y not 16-byte aligned
  struct Shape { int M, N, K; int64_t ldy; };
  const Shape shapes[] = {{1, 256, 128, 256}, {300, 512, 384, 512}, {129, 768, 640, 776}, {77, 256, 4096, 256},
                          {1030, 4096, 128, 4096}};
  std::mt19937 rng(17);
  std::uniform_int_distribution<int> code(-127, 127);
  std::uniform_real_distribution<float> scale(1e-4f, 3e-3f);
  for (const Shape& s : shapes) {
    std::vector<int8_t> xq(size_t(s.M) * s.K), wq(size_t(s.N) * s.K);
    std::vector<float> xs(s.M), ws(s.N);
    for (auto& v : xq) v = static_cast<int8_t>(code(rng));
    for (auto& v : wq) v = static_cast<int8_t>(code(rng));
    for (auto& v : xs) v = scale(rng);
    for (auto& v : ws) v = scale(rng);
    std::vector<uint16_t> ref(size_t(s.M) * s.ldy, 0xffff);
    for (int m = 0; m < s.M; ++m)
      for (int n = 0; n < s.N; ++n) {
        int32_t acc = 0;
        for (int k = 0; k < s.K; ++k) acc += int32_t(xq[size_t(m) * s.K + k]) * wq[size_t(n) * s.K + k];
        ref[size_t(m) * s.ldy + n] = f32_to_bf16(static_cast<float>(acc) * xs[m] * ws[n]);
      }
    Dev<int8_t> dx(xq), dw(wq);
    Dev<float> dxs(xs), dws(ws);
    Dev<uint16_t> y(ref.size());
    y.poison();
    int8_gemm_bf16(dx.p, dxs.p, dw.p, dws.p, y.p, s.M, s.N, s.K, s.ldy, nullptr);
    CUDA_OK(cudaDeviceSynchronize());
    EXPECT_EQ(y.get(), ref) << "M=" << s.M << " N=" << s.N << " K=" << s.K << " ldy=" << s.ldy;
  }
}

// int4wo's prefill product on Hopper (int4_gemm_bf16). On integer weights and activations every
// partial sum is exact in fp32, so each output is the exact sum rounded once to bf16, bit for bit; on
// random weights the output matches the double-precision product of the dequantized weights. Row
// tails, ldy > n, groups 32 to 256, K not a multiple of 128 and more tiles than SMs.
TEST(CudaGemm, Int4DequantizedInsideTheProduct) {
  REQUIRE_GPU();
  if (!int4_gemm_bf16_ok(256, 64, 64)) GTEST_SKIP() << "int4_gemm_bf16 needs an sm_90 GPU and sm_90a code";
  EXPECT_FALSE(int4_gemm_bf16_ok(320, 64, 64));   // n not a multiple of 128
  EXPECT_FALSE(int4_gemm_bf16_ok(256, 96, 32));   // K not a multiple of 64
  EXPECT_FALSE(int4_gemm_bf16_ok(256, 128, 48));  // group not a multiple of 32
  EXPECT_FALSE(int4_gemm_bf16_ok(256, 192, 128)); // group does not divide K
  struct Shape { int M, N, K, G; int64_t ldy; };
  const Shape shapes[] = {{1, 256, 64, 64, 256},     {300, 512, 320, 32, 520},    {129, 384, 640, 128, 384},
                          {77, 256, 4160, 64, 264},  {1030, 4096, 128, 64, 4096}, {260, 1024, 512, 256, 1024}};
  std::mt19937 rng(23);
  std::uniform_int_distribution<int> xi(-4, 4);
  for (const Shape& s : shapes)
    for (bool integer : {true, false}) {
      const auto w = make_int4(s.N, s.K, s.G, rng, integer);
      std::vector<float> x = random_x(s.M, s.K, rng);
      if (integer)
        for (auto& v : x) v = float(xi(rng));
      const auto ref = reference(x, w.deq, s.M, s.N, s.K);
      Dev<uint8_t> dp(w.packed), dqp(w.qparams);
      Dev<uint16_t> dx(to_bf16(x)), y(size_t(s.M) * s.ldy);
      y.poison();
      int4_gemm_bf16(dx.p, dp.p, dqp.p, y.p, s.M, s.N, s.K, s.G, s.ldy, nullptr);
      CUDA_OK(cudaDeviceSynchronize());
      const auto got = y.get();
      std::vector<uint16_t> rows(size_t(s.M) * s.N);  // y without its padding columns
      for (int m = 0; m < s.M; ++m) {
        for (int n = s.N; n < s.ldy; ++n) ASSERT_EQ(got[size_t(m) * s.ldy + n], 0xffff) << "padding written";
        for (int n = 0; n < s.N; ++n) rows[size_t(m) * s.N + n] = got[size_t(m) * s.ldy + n];
      }
      const std::string where = "M=" + std::to_string(s.M) + " N=" + std::to_string(s.N) + " K=" +
                                std::to_string(s.K) + " G=" + std::to_string(s.G);
      if (integer) {
        for (size_t i = 0; i < rows.size(); ++i)
          ASSERT_EQ(rows[i], f32_to_bf16(float(ref[i]))) << where << " output " << i;
      } else {
        EXPECT_LE(nmse(rows, ref), kNmse) << where;
      }
    }
}

TEST(CudaGemv, Float8Dynamic) {
  REQUIRE_GPU();
  std::mt19937 rng(12);
  for (const auto& s : kShapes) {
    const auto w = random_fp8(s.N, s.K, rng);
    const auto x = random_x(16, s.K, rng);
    std::vector<uint8_t> xq;
    std::vector<float> xs;
    quantize_fp8_host(x, 16, s.K, xq, xs);
    std::vector<float> xdq(xq.size());
    for (int m = 0; m < 16; ++m)
      for (int k = 0; k < s.K; ++k)
        xdq[size_t(m) * s.K + k] = e4m3_to_f32(xq[size_t(m) * s.K + k]) * xs[m];
    Dev<uint8_t> dw(w.q), dxq(xq);
    Dev<float> dws(w.scale), dxs(xs);
    Dev<uint16_t> dx(to_bf16(x));
    check_all(
        s.N, s.K,
        [&](int M, const GemvOptions& o, uint16_t* y) {
          gemv_float8dq(dxq.p, dxs.p, dw.p, dws.p, y, M, s.N, s.K, o);
        },
        [&](int M) { return reference(xdq, w.deq, M, s.N, s.K); });
    // Two-step entry point from bf16 activations.
    const int M = 9;
    Dev<uint8_t> ws(dq_workspace_bytes(M, s.K));
    Dev<uint16_t> y(size_t(M) * s.N);
    y.poison();
    gemv_float8dq(dx.p, dw.p, dws.p, y.p, M, s.N, s.K, ws.p);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    EXPECT_LE(nmse(y.get(), reference(xdq, w.deq, M, s.N, s.K)), kNmse);
  }
}

// The SwiGLU epilogue (gate and up rows alternating in blocks of 8) equals the plain product
// followed by swiglu_interleaved bit for bit, for every format, configuration and M.
TEST(CudaGemv, SwigluEpilogueMatchesTwoSteps) {
  REQUIRE_GPU();
  std::mt19937 rng(21);
  const int N = 2 * 104, K = 320, F = N / 2;
  const auto x = random_x(16, K, rng);
  Dev<uint16_t> dx(to_bf16(x));
  std::normal_distribution<float> wd(0.0f, 0.3f);
  std::vector<float> wf(size_t(N) * K);
  for (auto& v : wf) v = wd(rng);
  Dev<uint16_t> dwb(to_bf16(wf));
  const auto i8 = random_int8(N, K, rng);
  const auto f8 = random_fp8(N, K, rng);
  const auto i4 = make_int4(N, K, 64, rng, false);
  Dev<int8_t> di8(i8.q);
  Dev<uint8_t> df8(f8.q), dp(i4.packed), dqp(i4.qparams);
  Dev<float> ds8(i8.scale), dsf(f8.scale);
  Dev<uint8_t> ws(dq_workspace_bytes(16, K));
  using Run = std::function<void(int, const GemvOptions&, void*)>;
  const std::pair<const char*, Run> formats[] = {
      {"bf16", [&](int M, const GemvOptions& o, void* y) { gemv_bf16(dx.p, dwb.p, y, M, N, K, o); }},
      {"int8wo",
       [&](int M, const GemvOptions& o, void* y) { gemv_int8wo(dx.p, di8.p, ds8.p, y, M, N, K, o); }},
      {"float8wo",
       [&](int M, const GemvOptions& o, void* y) { gemv_float8wo(dx.p, df8.p, dsf.p, y, M, N, K, o); }},
      {"int4wo-64",
       [&](int M, const GemvOptions& o, void* y) { gemv_int4wo(dx.p, dp.p, dqp.p, y, M, N, K, 64, o); }},
      {"int8dq",
       [&](int M, const GemvOptions& o, void* y) { gemv_int8dq(dx.p, di8.p, ds8.p, y, M, N, K, ws.p, o); }},
      {"float8dq",
       [&](int M, const GemvOptions& o, void* y) { gemv_float8dq(dx.p, df8.p, dsf.p, y, M, N, K, ws.p, o); }},
  };
  for (const auto& [name, run] : formats)
    for (int M : {1, 5, 9, 16})
      for (int cfg = 0; cfg < kGemvConfigs; ++cfg)
        for (int split : {1, 2, 3}) {
          GemvOptions o;
          o.config = cfg;
          o.split_k = split;
          Dev<uint16_t> gu(size_t(M) * N), ref(size_t(M) * F), got(size_t(M) * F);
          got.poison();
          run(M, o, gu.p);
          swiglu_interleaved(gu.p, ref.p, M, F, nullptr);
          o.swiglu = true;
          run(M, o, got.p);
          CUDA_OK(cudaDeviceSynchronize());
          // The same sums rounded to bf16, then the same silu_mul: equal bit for bit.
          EXPECT_EQ(got.get(), ref.get()) << name << " M=" << M << " config " << cfg << " split " << split;
        }
}

TEST(CudaGemv, RejectsBadArguments) {
  REQUIRE_GPU();
  Dev<uint16_t> x(16 * 128), w(64 * 128), y(16 * 64);
  EXPECT_THROW(gemv_bf16(x.p, w.p, y.p, 0, 64, 128), Error);
  EXPECT_THROW(gemv_bf16(x.p, w.p, y.p, 17, 64, 128), Error);
  EXPECT_THROW(gemv_bf16(x.p, w.p, y.p, 1, 64, 100), Error);
  EXPECT_THROW(gemv_int4wo(x.p, w.p, w.p, y.p, 1, 64, 128, 96), Error);
  GemvOptions o;
  o.config = kGemvConfigs;
  EXPECT_THROW(gemv_bf16(x.p, w.p, y.p, 1, 64, 128, o), Error);
  o.config = -1;
  o.split_k = kGemvMaxSplit + 1;
  EXPECT_THROW(gemv_bf16(x.p, w.p, y.p, 1, 64, 128, o), Error);
  std::vector<int32_t> codes(64 * 128, 16);
  std::vector<uint16_t> sz(64 * 2);
  std::vector<uint8_t> packed(int4_packed_bytes(64, 128)), qp(int4_qparam_bytes(64, 128, 64));
  EXPECT_THROW(pack_int4(codes.data(), sz.data(), sz.data(), 64, 128, 64, packed.data(), qp.data()),
               Error);
}

}  // namespace
}  // namespace lowbit::cuda
