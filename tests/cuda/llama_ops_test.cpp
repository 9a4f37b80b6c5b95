// The forward-pass kernels (src/kernels/cuda/llama_ops.h) against host references in double on odd
// shapes: RMSNorm with the residual add, RoPE with the cache append, decode and prefill attention,
// SwiGLU, argmax, weight dequantization, the int4 repack (bit-exact against pack_int4), the dynamic
// activation math, and the random-weight quantizers. Needs a GPU (label `cuda`); skips without one.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "../support/gpu.h"
#include "kernels/cuda/llama_ops.h"
#include "kernels/cuda/scaled_gemm.h"
#include "kernels/cuda/weight_gemv.h"
#include "lowbit/core/error.h"
#include "lowbit/core/float_formats.h"

namespace lowbit::cuda {
namespace {

template <typename T>
struct Dev {
  T* p = nullptr;
  size_t n = 0;
  explicit Dev(size_t count) : n(count) {
    if (cudaMalloc(&p, std::max<size_t>(n, 1) * sizeof(T)) != cudaSuccess) throw Error("cudaMalloc failed");
    cudaMemset(p, 0xff, std::max<size_t>(n, 1) * sizeof(T));  // poison: bf16 0xffff and float NaN
  }
  explicit Dev(const std::vector<T>& v) : Dev(v.size()) {
    if (cudaMemcpy(p, v.data(), n * sizeof(T), cudaMemcpyHostToDevice) != cudaSuccess) throw Error("copy failed");
  }
  ~Dev() { cudaFree(p); }
  Dev(const Dev&) = delete;
  std::vector<T> get() const {
    if (cudaDeviceSynchronize() != cudaSuccess) throw Error("kernel failed");
    std::vector<T> v(n);
    if (cudaMemcpy(v.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost) != cudaSuccess) throw Error("copy failed");
    return v;
  }
};

// Random bf16 values: the device form and the float values they stand for.
struct Bf16Data {
  std::vector<uint16_t> bits;
  std::vector<float> f;
};
Bf16Data random_bf16_host(size_t n, std::mt19937& rng, float sd = 1.0f) {
  std::normal_distribution<float> d(0.0f, sd);
  Bf16Data r;
  for (size_t i = 0; i < n; ++i) {
    r.bits.push_back(f32_to_bf16(d(rng)));
    r.f.push_back(bf16_to_f32(r.bits.back()));
  }
  return r;
}

std::vector<float> floats(const std::vector<uint16_t>& b) {
  std::vector<float> f(b.size());
  for (size_t i = 0; i < b.size(); ++i) f[i] = bf16_to_f32(b[i]);
  return f;
}

// Normalized squared error; a NaN (an unwritten output) is a failure.
double nmse(const std::vector<float>& got, const std::vector<double>& ref) {
  EXPECT_EQ(got.size(), ref.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    if (std::isnan(got[i])) return INFINITY;
    num += (got[i] - ref[i]) * (got[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  return num / std::max(den, 1e-30);
}

TEST(LlamaOps, AddRmsnormWithRowSelection) {
  REQUIRE_GPU();
  std::mt19937 rng(1);
  const int rows = 6, D = 320, M = 3, step = 2, off = 1;
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> x(rows * D), w(D);
  for (auto& v : x) v = d(rng);
  for (auto& v : w) v = 1.0f + 0.1f * d(rng);
  const Bf16Data delta = random_bf16_host(rows * D, rng);
  Dev<float> dx(x), dw(w);
  Dev<uint16_t> ddelta(delta.bits), dout(M * D);
  add_rmsnorm(dx.p, ddelta.p, dw.p, dout.p, M, D, 1e-5f, step, off, nullptr);
  const auto gx = dx.get();
  const auto out = floats(dout.get());
  std::vector<double> ref(M * D);
  for (int r = 0; r < M; ++r) {
    const int i = r * step + off;
    double ss = 0;
    for (int k = 0; k < D; ++k) {
      const float v = x[i * D + k] + delta.f[i * D + k];
      EXPECT_EQ(gx[i * D + k], v);
      ss += double(v) * v;
    }
    const double inv = 1.0 / std::sqrt(ss / D + 1e-5);
    for (int k = 0; k < D; ++k) ref[r * D + k] = w[k] * (x[i * D + k] + delta.f[i * D + k]) * inv;
  }
  for (int r = 0; r < rows; ++r) {  // rows not selected stay as they were
    if (r % step == off) continue;
    for (int k = 0; k < D; ++k) EXPECT_EQ(gx[r * D + k], x[r * D + k]);
  }
  EXPECT_LT(nmse(out, ref), 1e-5);
}

// (cos, sin) of float32 angles pos · θ^(−2i/HD), in double: the model's table.
std::vector<float> rope_table(int positions, int HD, float theta) {
  const int half = HD / 2;
  std::vector<float> t(size_t(positions) * half * 2);
  for (int p = 0; p < positions; ++p)
    for (int i = 0; i < half; ++i) {
      const float angle = float(p) * (1.0f / std::pow(theta, float(2 * i) / float(HD)));
      t[(size_t(p) * half + i) * 2] = float(std::cos(double(angle)));
      t[(size_t(p) * half + i) * 2 + 1] = float(std::sin(double(angle)));
    }
  return t;
}

// Rotate-half of one head in float, as the kernels do it.
std::vector<float> rotated(const float* x, const std::vector<float>& table, int pos, int HD) {
  const int half = HD / 2;
  std::vector<float> y(HD);
  for (int i = 0; i < half; ++i) {
    const float c = table[(size_t(pos) * half + i) * 2], s = table[(size_t(pos) * half + i) * 2 + 1];
    y[i] = x[i] * c - x[i + half] * s;
    y[i + half] = x[i + half] * c + x[i] * s;
  }
  return y;
}

class RopeTest : public ::testing::TestWithParam<int> {};

TEST_P(RopeTest, RotatesAndAppends) {
  REQUIRE_GPU();
  const int HD = GetParam(), H = 6, KV = 2, M = 4, cap = 80000, rows_per_seq = 2;
  std::mt19937 rng(HD);
  const Bf16Data qkv = random_bf16_host(static_cast<size_t>(M) * (H + 2 * KV) * HD, rng);
  std::vector<int32_t> pos = {3, 1000, 0, 79999};
  const std::vector<float> table = rope_table(cap, HD, 500000.0f);
  const size_t cache = static_cast<size_t>(2) * KV * cap * HD;
  Dev<uint16_t> dqkv(qkv.bits), dq(static_cast<size_t>(M) * H * HD), dk(cache), dv(cache);
  Dev<int32_t> dpos(pos);
  Dev<float> drope(table);
  rope_kv_append({dqkv.p, dq.p, dk.p, dv.p, dpos.p, drope.p, M, H, KV, HD, cap, rows_per_seq}, nullptr);
  const auto q = floats(dq.get());
  const auto kc = dk.get(), vc = dv.get();
  std::vector<float> got;
  std::vector<double> ref;
  const int row = (H + 2 * KV) * HD, half = HD / 2;
  for (int r = 0; r < M; ++r) {
    const int seq = r / rows_per_seq;
    for (int h = 0; h < H + KV; ++h)
      for (int i = 0; i < half; ++i) {
        const double c = table[(size_t(pos[r]) * half + i) * 2], s = table[(size_t(pos[r]) * half + i) * 2 + 1];
        const double a = qkv.f[r * row + h * HD + i], b = qkv.f[r * row + h * HD + i + half];
        ref.push_back(a * c - b * s);
        ref.push_back(b * c + a * s);
        const size_t ci = ((size_t(seq) * KV + (h - H)) * cap + pos[r]) * HD;
        if (h < H) {
          got.push_back(q[(r * H + h) * HD + i]);
          got.push_back(q[(r * H + h) * HD + i + half]);
        } else {
          got.push_back(bf16_to_f32(kc[ci + i]));
          got.push_back(bf16_to_f32(kc[ci + i + half]));
        }
      }
    for (int h = 0; h < KV; ++h)
      for (int d = 0; d < HD; ++d)
        EXPECT_EQ(vc[((size_t(seq) * KV + h) * cap + pos[r]) * HD + d], qkv.bits[r * row + (H + KV + h) * HD + d]);
  }
  EXPECT_LT(nmse(got, ref), 1e-5);
  // From int8dq's int32 products (Int32Rows): exactly what their bf16 scaling gives.
  std::uniform_int_distribution<int32_t> ai(-(1 << 20), 1 << 20);
  std::vector<int32_t> acc(qkv.bits.size());
  for (auto& v : acc) v = ai(rng);
  std::vector<float> xs(M, 3e-4f), ws(row);
  for (int j = 0; j < row; ++j) ws[j] = 1e-3f * (1 + j % 7);
  Dev<int32_t> dacc(acc);
  Dev<float> dxs(xs), dws(ws);
  scale_int32_to_bf16(dacc.p, dxs.p, dws.p, M, row, dqkv.p, row, nullptr);
  rope_kv_append({dqkv.p, dq.p, dk.p, dv.p, dpos.p, drope.p, M, H, KV, HD, cap, rows_per_seq}, nullptr);
  const auto q16 = dq.get(), k16 = dk.get(), v16 = dv.get();
  rope_kv_append({nullptr, dq.p, dk.p, dv.p, dpos.p, drope.p, M, H, KV, HD, cap, rows_per_seq,
                  Int32Rows{dacc.p, dxs.p, dws.p}},
                 nullptr);
  EXPECT_TRUE(dq.get() == q16);
  EXPECT_TRUE(dk.get() == k16);
  EXPECT_TRUE(dv.get() == v16);
}
INSTANTIATE_TEST_SUITE_P(HeadDims, RopeTest, ::testing::Values(64, 128));

struct AttnShape {
  int HD, H, KV;
};
class AttentionTest : public ::testing::TestWithParam<AttnShape> {};

// Reference attention of one query row over positions 0 .. last of a cache row block.
void attend(const float* q, const std::vector<float>& K, const std::vector<float>& V, size_t base, int last, int HD,
            double* out) {
  std::vector<double> s(last + 1);
  double mx = -INFINITY;
  for (int p = 0; p <= last; ++p) {
    double d = 0;
    for (int e = 0; e < HD; ++e) d += double(q[e]) * K[base + size_t(p) * HD + e];
    s[p] = d / std::sqrt(double(HD));
    mx = std::max(mx, s[p]);
  }
  double sum = 0;
  for (auto& v : s) sum += v = std::exp(v - mx);
  for (int e = 0; e < HD; ++e) {
    double o = 0;
    for (int p = 0; p <= last; ++p) o += s[p] * V[base + size_t(p) * HD + e];
    out[e] = o / sum;
  }
}

// The fused decode kernel: RoPE of q and the new k, the append at pos, split attention, the merge.
TEST_P(AttentionTest, DecodeRotatesAppendsAndMatchesReference) {
  REQUIRE_GPU();
  const auto [HD, H, KV] = GetParam();
  // 7 splits: chunks of one 64-position tile (5 active at position 299, 1 at 37 and 0); 2 splits:
  // chunks of 150 positions, several tiles each.
  for (const int splits : {7, 2}) {
  SCOPED_TRACE(splits);
  const int B = 3, cap = 300, row = (H + 2 * KV) * HD;
  std::mt19937 rng(HD * 100 + H);
  const Bf16Data qkv = random_bf16_host(size_t(B) * row, rng);
  Bf16Data k = random_bf16_host(size_t(B) * KV * cap * HD, rng), v = random_bf16_host(k.f.size(), rng);
  const std::vector<int32_t> pos = {0, 37, 299};
  const std::vector<float> table = rope_table(cap, HD, 10000.0f);
  Dev<uint16_t> dqkv(qkv.bits), dk(k.bits), dv(v.bits), dout(size_t(B) * H * HD);
  Dev<int32_t> dpos(pos);
  Dev<float> ws(attention_decode_workspace_floats(B, H, HD, splits)), drope(table);
  Dev<unsigned> counters(std::vector<unsigned>(size_t(B) * KV, 0u));
  const DecodeAttnArgs args{dqkv.p, drope.p, dk.p, dv.p, dpos.p, dout.p, ws.p, ws.p + size_t(B) * H * splits * HD,
                            counters.p, B, H, KV, HD, cap, splits, 1.0f / std::sqrt(float(HD))};
  attention_decode(args, nullptr);
  const auto got = floats(dout.get());
  const auto kc = floats(dk.get());
  const auto vc = dv.get();
  // The reference cache: the new rotated key and value at pos.
  std::vector<float> want_k;
  std::vector<double> ref_k;
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < KV; ++h) {
      const size_t at = ((size_t(b) * KV + h) * cap + pos[b]) * HD;
      const std::vector<float> kr = rotated(&qkv.f[size_t(b) * row + (H + h) * HD], table, pos[b], HD);
      for (int d = 0; d < HD; ++d) {
        k.f[at + d] = bf16_to_f32(f32_to_bf16(kr[d]));
        v.f[at + d] = qkv.f[size_t(b) * row + (H + KV + h) * HD + d];
        want_k.push_back(kc[at + d]);
        ref_k.push_back(kr[d]);
        ASSERT_EQ(vc[at + d], qkv.bits[size_t(b) * row + (H + KV + h) * HD + d]);
      }
    }
  EXPECT_LT(nmse(want_k, ref_k), 1e-5);
  std::vector<double> ref(got.size());
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < H; ++h) {
      const std::vector<float> q = rotated(&qkv.f[size_t(b) * row + h * HD], table, pos[b], HD);
      attend(q.data(), k.f, v.f, (size_t(b) * KV + h / (H / KV)) * cap * HD, pos[b], HD, &ref[(size_t(b) * H + h) * HD]);
    }
  EXPECT_LT(nmse(got, ref), 1e-4);
  // The merge counters are back at zero: a second call (a graph replay) gives the same output.
  EXPECT_EQ(counters.get(), std::vector<unsigned>(size_t(B) * KV, 0u));
  attention_decode(args, nullptr);
  EXPECT_EQ(floats(dout.get()), got);
  }
}

TEST_P(AttentionTest, PrefillCausalMatchesReference) {
  REQUIRE_GPU();
  const auto [HD, H, KV] = GetParam();
  // One key tile, then several (a partial last tile, queries starting mid-tile, rows past T), then
  // several query tiles (warps whose rows all precede a key tile skip it).
  for (const auto [T, p0, cap] :
       {std::array<int, 3>{45, 7, 60}, std::array<int, 3>{130, 75, 220}, std::array<int, 3>{300, 21, 330}}) {
  const int B = 2;
  std::mt19937 rng(HD * 7 + H + T);
  const Bf16Data q = random_bf16_host(size_t(B) * T * H * HD, rng);
  const Bf16Data k = random_bf16_host(size_t(B) * KV * cap * HD, rng), v = random_bf16_host(k.f.size(), rng);
  Dev<uint16_t> dq(q.bits), dk(k.bits), dv(v.bits), dout(size_t(B) * T * H * HD);
  attention_prefill({dq.p, dk.p, dv.p, dout.p, B, T, p0, H, KV, HD, cap, 1.0f / std::sqrt(float(HD))}, nullptr);
  const auto got = floats(dout.get());
  std::vector<double> ref(got.size());
  for (int b = 0; b < B; ++b)
    for (int t = 0; t < T; ++t)
      for (int h = 0; h < H; ++h) {
        const size_t r = ((size_t(b) * T + t) * H + h) * HD;
        attend(&q.f[r], k.f, v.f, (size_t(b) * KV + h / (H / KV)) * cap * HD, p0 + t, HD, &ref[r]);
      }
  EXPECT_LT(nmse(got, ref), 1e-4) << "T " << T << ", p0 " << p0;
  }
}
INSTANTIATE_TEST_SUITE_P(Shapes, AttentionTest,
                         ::testing::Values(AttnShape{128, 8, 2}, AttnShape{64, 4, 2}, AttnShape{128, 8, 1},
                                           AttnShape{64, 3, 3}));

TEST(LlamaOps, Swiglu) {
  REQUIRE_GPU();
  std::mt19937 rng(3);
  const int M = 3, F = 200;
  const Bf16Data gu = random_bf16_host(size_t(M) * 2 * F, rng, 3.0f);
  Dev<uint16_t> dgu(gu.bits), dh(size_t(M) * F);
  swiglu(dgu.p, dh.p, M, F, nullptr);
  const auto got = floats(dh.get());
  std::vector<double> ref(got.size());
  for (int m = 0; m < M; ++m)
    for (int j = 0; j < F; ++j) {
      const double g = gu.f[m * 2 * F + j], u = gu.f[m * 2 * F + F + j];
      ref[m * F + j] = g / (1 + std::exp(-g)) * u;
    }
  EXPECT_LT(nmse(got, ref), 1e-5);
}

TEST(LlamaOps, SwigluInterleaved) {
  REQUIRE_GPU();
  std::mt19937 rng(13);
  const int M = 3, F = 200;
  const Bf16Data gu = random_bf16_host(size_t(M) * 2 * F, rng, 3.0f);
  Dev<uint16_t> dgu(gu.bits), dh(size_t(M) * F);
  swiglu_interleaved(dgu.p, dh.p, M, F, nullptr);
  const auto got = floats(dh.get());
  std::vector<double> ref(got.size());
  for (int m = 0; m < M; ++m)
    for (int j = 0; j < F; ++j) {
      const int c = 16 * (j / 8) + j % 8;
      const double g = gu.f[m * 2 * F + c], u = gu.f[m * 2 * F + c + 8];
      ref[m * F + j] = g / (1 + std::exp(-g)) * u;
    }
  EXPECT_LT(nmse(got, ref), 1e-5);
}

// The norm and SwiGLU writing row codes (RowCodes) give exactly what writing bf16 rows and then
// quantize_rows_int8 / quantize_rows_float8 give: the same codes, the same scales; SwiGLU and the
// norm's residual add from int32 products (Int32Rows) exactly what scaling them to bf16 first gives. Widths cover one,
// two and four runs of 8 per thread, and a row of zeros.
TEST(LlamaOps, RowCodesMatchQuantizingTheBf16Rows) {
  REQUIRE_GPU();
  std::mt19937 rng(21);
  std::normal_distribution<float> d(0.0f, 1.0f);
  for (const int D : {72, 4104, 14336, 24576})
    for (const RowQuant kind : {RowQuant::Int8, RowQuant::Float8}) {
      SCOPED_TRACE(testing::Message() << "D " << D << (kind == RowQuant::Int8 ? " int8" : " e4m3"));
      ASSERT_TRUE(row_codes_ok(D));
      const int M = 5;
      auto quantize = [&](const uint16_t* rows, Dev<uint8_t>& q, Dev<float>& s) {
        if (kind == RowQuant::Int8)
          quantize_rows_int8(rows, M, D, reinterpret_cast<int8_t*>(q.p), s.p, nullptr);
        else
          quantize_rows_float8(rows, M, D, q.p, s.p, nullptr);
      };
      // RMSNorm with the residual add.
      std::vector<float> x(size_t(M) * D), w(D);
      for (auto& v : x) v = d(rng);
      for (auto& v : w) v = 1.0f + 0.1f * d(rng);
      const Bf16Data delta = random_bf16_host(size_t(M) * D, rng);
      Dev<float> dx1(x), dx2(x), dw(w), s1(M), s2(M);
      Dev<uint16_t> ddelta(delta.bits), rows(size_t(M) * D);
      Dev<uint8_t> q1(size_t(M) * D), q2(size_t(M) * D);
      add_rmsnorm(dx1.p, ddelta.p, dw.p, rows.p, M, D, 1e-5f, 1, 0, nullptr);
      quantize(rows.p, q1, s1);
      add_rmsnorm(dx2.p, ddelta.p, dw.p, nullptr, M, D, 1e-5f, 1, 0, nullptr, RowCodes{kind, q2.p, s2.p});
      EXPECT_EQ(q1.get(), q2.get());
      EXPECT_EQ(s1.get(), s2.get());
      EXPECT_EQ(dx1.get(), dx2.get());
      // SwiGLU over interleaved gate/up rows, the last row all zeros.
      Bf16Data gu = random_bf16_host(size_t(M) * 2 * D, rng, 3.0f);
      std::fill(gu.bits.end() - 2 * D, gu.bits.end(), uint16_t{0});
      Dev<uint16_t> dgu(gu.bits), h(size_t(M) * D);
      swiglu_interleaved(dgu.p, h.p, M, D, nullptr);
      quantize(h.p, q1, s1);
      swiglu_interleaved(dgu.p, nullptr, M, D, nullptr, RowCodes{kind, q2.p, s2.p});
      EXPECT_EQ(q1.get(), q2.get());
      EXPECT_EQ(s1.get(), s2.get());
      // From int8dq's int32 products: as scaling them to bf16 (scale_int32_to_bf16), then SwiGLU.
      std::uniform_int_distribution<int32_t> ai(-(1 << 20), 1 << 20);
      std::uniform_real_distribution<float> sc(1e-6f, 1e-5f);
      std::vector<int32_t> acc(size_t(M) * 2 * D);
      for (auto& v : acc) v = ai(rng);
      std::vector<float> xs(M), ws(2 * D);
      for (auto& v : xs) v = sc(rng) * 100.0f;
      for (auto& v : ws) v = sc(rng);
      Dev<int32_t> dacc(acc);
      Dev<float> dxs(xs), dws(ws);
      Dev<uint16_t> gu16(size_t(M) * 2 * D);
      scale_int32_to_bf16(dacc.p, dxs.p, dws.p, M, 2 * D, gu16.p, 2 * D, nullptr);
      swiglu_interleaved(gu16.p, nullptr, M, D, nullptr, RowCodes{kind, q1.p, s1.p});
      swiglu_interleaved_int32(Int32Rows{dacc.p, dxs.p, dws.p}, M, D, nullptr, RowCodes{kind, q2.p, s2.p});
      EXPECT_EQ(q1.get(), q2.get());
      EXPECT_EQ(s1.get(), s2.get());
      // The norm's delta from int32 products [M, D]: as adding their bf16 scaling.
      Dev<uint16_t> delta16(size_t(M) * D);
      scale_int32_to_bf16(dacc.p, dxs.p, dws.p, M, D, delta16.p, D, nullptr);
      Dev<float> dx3(x), dx4(x);
      add_rmsnorm(dx3.p, delta16.p, dw.p, nullptr, M, D, 1e-5f, 1, 0, nullptr, RowCodes{kind, q1.p, s1.p});
      add_rmsnorm(dx4.p, nullptr, dw.p, nullptr, M, D, 1e-5f, 1, 0, nullptr, RowCodes{kind, q2.p, s2.p},
                  Int32Rows{dacc.p, dxs.p, dws.p});
      EXPECT_EQ(dx3.get(), dx4.get());
      EXPECT_EQ(q1.get(), q2.get());
      EXPECT_EQ(s1.get(), s2.get());
    }
}

TEST(LlamaOps, ArgmaxAdvanceTakesTheFirstMaximum) {
  REQUIRE_GPU();
  const int B = 3, V = 1001;
  std::mt19937 rng(4);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> logits(size_t(B) * V);
  for (auto& v : logits) v = bf16_to_f32(f32_to_bf16(d(rng)));
  logits[0 * V + 999] = 9.0f;
  logits[1 * V + 17] = logits[1 * V + 800] = 9.0f;  // a tie: the lower index wins
  logits[2 * V + 0] = 9.0f;
  std::vector<uint16_t> l16(logits.size());
  for (size_t i = 0; i < l16.size(); ++i) l16[i] = f32_to_bf16(logits[i]);
  for (bool f32 : {true, false}) {
    Dev<float> dl(logits);
    Dev<uint16_t> dl16(l16);
    Dev<int32_t> tok(B), pos(std::vector<int32_t>{5, 6, 7}), n(std::vector<int32_t>{0, 1, 0}), hist(size_t(B) * 4);
    argmax_advance(f32 ? static_cast<const void*>(dl.p) : dl16.p, f32, V, B, V, tok.p, pos.p, hist.p, n.p, 4,
                   nullptr);
    EXPECT_EQ(tok.get(), (std::vector<int32_t>{999, 17, 0}));
    EXPECT_EQ(pos.get(), (std::vector<int32_t>{6, 7, 8}));
    EXPECT_EQ(n.get(), (std::vector<int32_t>{1, 2, 1}));
    const auto h = hist.get();
    EXPECT_EQ(h[0], 999);
    EXPECT_EQ(h[4 + 1], 17);
    EXPECT_EQ(h[8], 0);
  }
}

// The CPU layout's chunk order (byte j of a 64-weight chunk: weight j low, weight j + 32 high).
std::vector<uint8_t> cpu_chunks(const std::vector<int32_t>& q, int N, int K) {
  std::vector<uint8_t> out(size_t(N) * K / 2);
  for (int n = 0; n < N; ++n)
    for (int c = 0; c < K; c += 64)
      for (int j = 0; j < 32; ++j)
        out[size_t(n) * K / 2 + c / 2 + j] = uint8_t(q[size_t(n) * K + c + j] | q[size_t(n) * K + c + j + 32] << 4);
  return out;
}

TEST(LlamaOps, Int4RepackIsPackInt4AndDequantizes) {
  REQUIRE_GPU();
  const int N = 40, K = 192, G = 64, groups = K / G;
  std::mt19937 rng(5);
  std::vector<int32_t> q(size_t(N) * K);
  for (auto& v : q) v = int(rng() % 16);
  std::vector<uint16_t> s(size_t(N) * groups), z(s.size());
  std::normal_distribution<float> d(0.0f, 1.0f);
  for (size_t i = 0; i < s.size(); ++i) {
    s[i] = f32_to_bf16(0.01f + std::fabs(d(rng)) * 0.01f);
    z[i] = f32_to_bf16(d(rng) * 0.02f);
  }
  std::vector<uint8_t> packed(int4_packed_bytes(N, K)), qp(int4_qparam_bytes(N, K, G));
  pack_int4(q.data(), s.data(), z.data(), N, K, G, packed.data(), qp.data());
  Dev<uint8_t> dcpu(cpu_chunks(q, N, K)), dpacked(packed.size()), dqp(qp.size());
  Dev<uint16_t> ds(s), dz(z), dout(size_t(24) * K);
  repack_int4(dcpu.p, ds.p, dz.p, N, K, G, dpacked.p, dqp.p, nullptr);
  EXPECT_EQ(dpacked.get(), packed);
  EXPECT_EQ(dqp.get(), qp);
  dequant_rows_int4(dpacked.p, dqp.p, 16, 40, K, G, dout.p, nullptr);
  const auto got = dout.get();
  for (int n = 16; n < 40; ++n)
    for (int k = 0; k < K; ++k) {
      const size_t g = size_t(n) * groups + k / G;
      const float want = std::fma(float(q[size_t(n) * K + k] - 8), bf16_to_f32(s[g]), bf16_to_f32(z[g]));
      ASSERT_EQ(got[size_t(n - 16) * K + k], f32_to_bf16(want)) << n << " " << k;
    }
}

TEST(LlamaOps, ByteFormatsDequantize) {
  REQUIRE_GPU();
  const int N = 21, K = 64;
  std::mt19937 rng(6);
  std::vector<int8_t> q(size_t(N) * K);
  std::vector<uint8_t> e(q.size());
  for (size_t i = 0; i < q.size(); ++i) {
    q[i] = int8_t(int(rng() % 256) - 128);
    e[i] = f32_to_e4m3(std::normal_distribution<float>(0, 50)(rng));
  }
  std::vector<float> scale(N);
  for (auto& v : scale) v = 0.001f * float(1 + rng() % 100);
  Dev<int8_t> dq(q);
  Dev<uint8_t> de(e);
  Dev<float> ds(scale);
  Dev<uint16_t> out8(size_t(N - 3) * K), outf(size_t(N - 3) * K);
  dequant_rows_int8(dq.p, ds.p, 3, N, K, out8.p, nullptr);
  dequant_rows_float8(de.p, ds.p, 3, N, K, outf.p, nullptr);
  const auto g8 = out8.get(), gf = outf.get();
  for (int n = 3; n < N; ++n)
    for (int k = 0; k < K; ++k) {
      const size_t i = size_t(n) * K + k, o = size_t(n - 3) * K + k;
      ASSERT_EQ(g8[o], f32_to_bf16(float(q[i]) * scale[n]));
      ASSERT_EQ(gf[o], f32_to_bf16(e4m3_to_f32(e[i]) * scale[n]));
    }
}

TEST(LlamaOps, FakeQuantizedActivations) {
  REQUIRE_GPU();
  const int M = 5, K = 192;
  std::mt19937 rng(7);
  const Bf16Data x = random_bf16_host(size_t(M) * K, rng);
  Dev<uint16_t> dx(x.bits), o8(x.bits.size()), of(x.bits.size());
  fake_quantize_rows_int8(dx.p, M, K, o8.p, nullptr);
  fake_quantize_rows_float8(dx.p, M, K, of.p, nullptr);
  const auto g8 = floats(o8.get()), gf = floats(of.get());
  std::vector<double> r8(g8.size()), rf(gf.size());
  for (int m = 0; m < M; ++m) {
    float amax = 0;
    for (int k = 0; k < K; ++k) amax = std::max(amax, std::fabs(x.f[m * K + k]));
    const float s8 = std::max(amax / 127.0f, 1e-5f), sf = amax / 448.0f;
    for (int k = 0; k < K; ++k) {
      const float v = x.f[m * K + k];
      r8[m * K + k] = std::clamp(std::nearbyint(v * (1.0f / s8)), -127.0f, 127.0f) * s8;
      rf[m * K + k] = e4m3_to_f32(f32_to_e4m3(v / sf)) * sf;
    }
  }
  // float8dq-tensor: one scale for all rows; codes for the decode product and bf16 values for prefill.
  {
    float amax = 0;
    for (float v : x.f) amax = std::max(amax, std::fabs(v));
    const float st = amax / 448.0f;
    Dev<unsigned> damax(1);
    Dev<uint8_t> xq(x.bits.size());
    Dev<float> xs(M);
    Dev<uint16_t> ot(x.bits.size());
    quantize_tensor_float8(dx.p, M, K, damax.p, xq.p, xs.p, nullptr);
    const auto codes = xq.get();
    EXPECT_EQ(xs.get(), std::vector<float>(M, st));
    fake_quantize_tensor_float8(dx.p, M, K, damax.p, ot.p, nullptr);
    const auto gt = floats(ot.get());
    std::vector<double> rt(gt.size());
    int code_diff = 0;
    for (size_t i = 0; i < x.f.size(); ++i) {
      const uint8_t c = f32_to_e4m3(x.f[i] / st);
      code_diff += c != codes[i];
      rt[i] = e4m3_to_f32(c) * st;
    }
    EXPECT_LE(code_diff, 2);  // rounding of x / scale at a tie, at most
    EXPECT_LT(nmse(gt, rt), 1e-5);
  }
  EXPECT_LT(nmse(g8, r8), 1e-5);  // bf16 rounding of q · scale only
  EXPECT_LT(nmse(gf, rf), 1e-5);
  // And the quantization itself is there: the error against x is that of 8-bit codes.
  std::vector<double> xd(x.f.begin(), x.f.end());
  EXPECT_GT(nmse(gf, xd), 1e-6);
}

// Every random format quantizes the same bf16 matrix: dequantized, it stays within its scheme's error.
TEST(LlamaOps, RandomWeightsAreQuantizedBf16Weights) {
  REQUIRE_GPU();
  const int N = 50, K = 256, G = 64;
  const uint64_t seed = 42;
  Dev<uint16_t> w(size_t(N) * K), d8(w.n), df(w.n), d4(w.n);
  Dev<int8_t> q8(w.n);
  Dev<uint8_t> qf(w.n), p4(int4_packed_bytes(N, K)), qp4(int4_qparam_bytes(N, K, G));
  Dev<float> s8(N), sf(N);
  random_bf16(w.p, N, K, seed, 0.02f, nullptr);
  random_int8(q8.p, s8.p, N, K, seed, 0.02f, nullptr);
  random_float8(qf.p, sf.p, N, K, seed, 0.02f, nullptr);
  random_int4(p4.p, qp4.p, N, K, G, seed, 0.02f, nullptr);
  dequant_rows_int8(q8.p, s8.p, 0, N, K, d8.p, nullptr);
  dequant_rows_float8(qf.p, sf.p, 0, N, K, df.p, nullptr);
  dequant_rows_int4(p4.p, qp4.p, 0, N, K, G, d4.p, nullptr);
  const auto wf = floats(w.get());
  const std::vector<double> ref(wf.begin(), wf.end());
  double sd = 0;
  for (double v : ref) sd += v * v;
  sd = std::sqrt(sd / ref.size());
  EXPECT_NEAR(sd, 0.02, 0.002);
  EXPECT_LT(nmse(floats(d8.get()), ref), 1e-4);
  EXPECT_LT(nmse(floats(df.get()), ref), 3e-3);
  const double e4 = nmse(floats(d4.get()), ref);
  EXPECT_LT(e4, 2e-2);
  EXPECT_GT(e4, 1e-4);  // 4-bit codes, not a copy
}

}  // namespace
}  // namespace lowbit::cuda
