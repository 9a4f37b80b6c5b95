// Activation quantization for the integer kernels, their scalar versions, and the dispatch.
#include "kernels/cpu/qgemm.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "kernels/cpu/gemm.h"
#include "lowbit/core/error.h"
#include "lowbit/core/float_formats.h"

namespace lowbit::kernels::cpu {
namespace {

std::atomic<bool>& scalar_forced() {
  static std::atomic<bool> f{false};
  return f;
}

// Per-row sums of the block sums (the offset correction of per-channel weights).
float row_dsum(const Q8Acts& a, int64_t m) {
  float s = 0.0f;
  const int64_t nb = a.K / a.group;
  for (int64_t b = 0; b < nb; ++b) s += a.dsum[m * nb + b];
  return s;
}

int unpack_u4(const uint8_t* row, int64_t k) {
  const uint8_t byte = row[(k / 64) * 32 + (k % 32)];
  return (k % 64) < 32 ? (byte & 0xf) : (byte >> 4);
}

}  // namespace

bool integer_kernels_enabled() {
  static const bool on = [] {
    const char* e = std::getenv("LOWBIT_KERNELS");
    return !(e && std::strcmp(e, "reference") == 0);
  }();
  return on;
}

bool vnni_kernels_active() { return cpu_has_vnni() && active_isa() == Isa::Avx512 && !scalar_forced().load(); }
void force_scalar_integer_kernels(bool on) { scalar_forced().store(on); }

void quantize_q8_blocks(const float* x, int64_t M, int64_t K, Q8Acts& a, int64_t block) {
  LB_CHECK(K % 64 == 0, "int8 block activations need K divisible by 64, got {}", K);
  LB_CHECK((block == 32 || block == 256) && K % block == 0, "int8 block activations: block {} for K {}", block, K);
  const int64_t nb = K / block;
  a.M = M;
  a.K = K;
  a.q.resize(static_cast<size_t>(M * K));
  a.d.resize(static_cast<size_t>(M * nb));
  a.dexp.resize(static_cast<size_t>(M * (K / 64) * 16));
  a.dsum.resize(static_cast<size_t>(M * nb));
  a.group = block;
  a.windowed = false;
  a.ldq = K;
#pragma omp parallel for schedule(static) if (M * K > 65536)
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t b = 0; b < nb; ++b) {
      const float* xb = x + m * K + b * block;
      float amax = 0.0f;
      for (int64_t i = 0; i < block; ++i) amax = std::max(amax, std::fabs(xb[i]));
      const float d = amax / 127.0f;
      const float id = d > 0.0f ? 1.0f / d : 0.0f;
      int32_t s = 0;
      int8_t* qb = a.q.data() + m * K + b * block;
      for (int64_t i = 0; i < block; ++i) {
        const int v = static_cast<int>(std::nearbyint(xb[i] * id));
        qb[i] = static_cast<int8_t>(std::clamp(v, -127, 127));
        s += qb[i];
      }
      a.d[m * nb + b] = d;
      a.dsum[m * nb + b] = d * static_cast<float>(s);
    }
    // Each 64-chunk's lanes 0-7 carry the scale of its first 32 values, lanes 8-15 of its second.
    for (int64_t h = 0; h < K / 32; ++h) {
      float* e = a.dexp.data() + (m * (K / 64) + h / 2) * 16 + (h % 2) * 8;
      for (int i = 0; i < 8; ++i) e[i] = a.d[m * nb + h * 32 / block];
    }
  }
}

void pack_u4_windows(const uint8_t* q, int64_t K, uint8_t* out) {
  std::memset(out, 0, static_cast<size_t>(u4_window_padded(K) / 2));
  for (int64_t k = 0; k < K; ++k) {
    const int64_t l = (k % 512) / 32;
    uint8_t& byte = out[(k / 512) * 256 + ((k % 32) / 4) * 32 + (l % 8) * 4 + k % 4];
    byte = static_cast<uint8_t>(byte | (l < 8 ? q[k] : q[k] << 4));
  }
}

void quantize_q8_windows(const float* x, int64_t M, int64_t K, Q8Acts& a) {
  LB_CHECK(K % 32 == 0, "int8 window activations need K divisible by 32, got {}", K);
  const int64_t Kp = u4_window_padded(K), nb = K / 32;
  a.M = M;
  a.K = K;
  a.group = 32;
  a.windowed = true;
  a.ldq = Kp;
  a.q.assign(static_cast<size_t>(M * Kp), 0);
  a.d.resize(static_cast<size_t>(M * nb));
  a.dsum.resize(static_cast<size_t>(M * nb));
  a.dexp.clear();
  if (vnni_kernels_active()) return vnni::quantize_q8_windows(x, a);
#pragma omp parallel for schedule(static) if (M * K > 65536)
  for (int64_t m = 0; m < M; ++m)
    for (int64_t b = 0; b < nb; ++b) {
      const float* xb = x + m * K + b * 32;
      float amax = 0.0f;
      for (int64_t i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(xb[i]));
      const float d = amax / 127.0f;
      const float id = d > 0.0f ? 1.0f / d : 0.0f;
      int32_t s = 0;
      for (int64_t i = 0; i < 32; ++i) {
        const auto v = static_cast<int8_t>(std::clamp(static_cast<int>(std::nearbyint(xb[i] * id)), -127, 127));
        a.q[m * Kp + u4_window_x_pos(b * 32 + i)] = v;
        s += v;
      }
      a.d[m * nb + b] = d;
      a.dsum[m * nb + b] = d * static_cast<float>(s);
    }
}

void quantize_q8_tokens(const float* x, int64_t M, int64_t K, bool asym, int64_t group, Q8Acts& a) {
  LB_CHECK(group > 0 && K % group == 0, "token activations: group {} does not divide K {}", group, K);
  a.M = M;
  a.K = K;
  a.windowed = false;
  a.ldq = K;
  a.group = group;
  a.q.resize(static_cast<size_t>(M * K));
  a.scale.resize(static_cast<size_t>(M));
  a.zero.resize(static_cast<size_t>(M));
  a.gsum.resize(static_cast<size_t>(M * (K / group)));
#pragma omp parallel for schedule(static) if (M * K > 65536)
  for (int64_t m = 0; m < M; ++m) {
    const float* xr = x + m * K;
    float mn = 0.0f, mx = 0.0f;  // min(min, 0) and max(max, 0), as torchao's choose_qparams
    for (int64_t k = 0; k < K; ++k) {
      mn = std::min(mn, xr[k]);
      mx = std::max(mx, xr[k]);
    }
    float scale, zp = 0.0f, lo, hi;
    if (asym) {
      scale = std::max((mx - mn) / 255.0f, 0x1p-23f);
      zp = std::clamp(-128.0f - std::nearbyint(mn / scale), -128.0f, 127.0f);
      lo = -128.0f;
      hi = 127.0f;
    } else {
      scale = std::max(std::max(-mn, mx) / 127.0f, 1e-5f);
      lo = -127.0f;
      hi = 127.0f;
    }
    const float recip = 1.0f / scale;
    int8_t* qr = a.q.data() + m * K;
    for (int64_t k = 0; k < K; ++k) qr[k] = static_cast<int8_t>(std::clamp(std::nearbyint(xr[k] * recip) + zp, lo, hi));
    for (int64_t g = 0; g < K / group; ++g) {
      int32_t s = 0;
      for (int64_t k = g * group; k < (g + 1) * group; ++k) s += qr[k];
      a.gsum[m * (K / group) + g] = s;
    }
    a.scale[m] = scale;
    a.zero[m] = static_cast<int32_t>(zp);
  }
}

// ---------------------------------------------------------------- scalar kernels (same math)

namespace {

void scalar_u8_blocks(const Q8Acts& a, const uint8_t* w, const float* ws, float* y, int64_t ldy, int64_t n0,
                      int64_t n1) {
  const int64_t K = a.K, B = a.group, nb = K / B;
  for (int64_t m = 0; m < a.M; ++m) {
    const float corr = 128.0f * row_dsum(a, m);
    for (int64_t n = n0; n < n1; ++n) {
      float f = 0.0f;
      for (int64_t b = 0; b < nb; ++b) {
        int32_t p = 0;
        for (int64_t k = b * B; k < b * B + B; ++k) p += static_cast<int32_t>(w[n * K + k]) * a.q[m * K + k];
        f += static_cast<float>(p) * a.d[m * nb + b];
      }
      y[m * ldy + n] = ws[n] * (f - corr);
    }
  }
}

void scalar_u8_tokens(const Q8Acts& a, const uint8_t* w, const float* ws, float* y, int64_t ldy, int64_t n0,
                      int64_t n1) {
  const int64_t K = a.K;
  for (int64_t m = 0; m < a.M; ++m)
    for (int64_t n = n0; n < n1; ++n) {
      int32_t p = 0;
      for (int64_t k = 0; k < K; ++k) p += static_cast<int32_t>(w[n * K + k]) * a.q[m * K + k];
      y[m * ldy + n] = static_cast<float>(p - 128 * a.gsum[m]) * a.scale[m] * ws[n];
    }
}

void scalar_u4_blocks(const Q8Acts& a, const uint8_t* w, const uint16_t* s, const uint16_t* z, int64_t G, float* y,
                      int64_t ldy, int64_t n0, int64_t n1) {
  const int64_t K = a.K, nb = K / 32, ng = K / G, ldq = a.ldq;
  for (int64_t m = 0; m < a.M; ++m)
    for (int64_t n = n0; n < n1; ++n) {
      const uint8_t* row = w + n * ldq / 2;
      float f = 0.0f;
      for (int64_t b = 0; b < nb; ++b) {
        int32_t p = 0;
        for (int64_t k = b * 32; k < b * 32 + 32; ++k) p += u4_window_code(row, k) * a.q[m * ldq + u4_window_x_pos(k)];
        const int64_t g = b * 32 / G;
        f += static_cast<float>(p) * a.d[m * nb + b] * bf16_to_f32(s[n * ng + g]);
      }
      for (int64_t g = 0; g < ng; ++g) {
        float ag = 0.0f;
        for (int64_t b = g * G / 32; b < (g + 1) * G / 32; ++b) ag += a.dsum[m * nb + b];
        f += (bf16_to_f32(z[n * ng + g]) - 8.0f * bf16_to_f32(s[n * ng + g])) * ag;
      }
      y[m * ldy + n] = f;
    }
}

void scalar_group_tokens(const Q8Acts& a, const GroupWeights& gw, float* y, int64_t ldy, int64_t n0, int64_t n1) {
  const int64_t K = a.K, G = gw.G, ng = K / G;
  const float offset = static_cast<float>(1 << (gw.bits - 1));
  for (int64_t m = 0; m < a.M; ++m)
    for (int64_t n = n0; n < n1; ++n) {
      float f = 0.0f, sx = 0.0f;
      for (int64_t g = 0; g < ng; ++g) {
        int32_t p = 0;
        for (int64_t k = g * G; k < (g + 1) * G; ++k) {
          const int u = gw.bits == 8 ? gw.w[n * K + k] : unpack_u4(gw.w + n * K / 2, k);
          p += u * a.q[m * K + k];
        }
        const float gs = gw.gscale[n * ng + g];
        f += gs * static_cast<float>(p);
        sx += gs * static_cast<float>(a.gsum[m * ng + g]);
      }
      const float v = f - offset * sx - static_cast<float>(a.zero[m]) * gw.wsum[n];
      y[m * ldy + n] = a.scale[m] * (gw.cscale ? gw.cscale[n] : 1.0f) * v;
    }
}

}  // namespace

void qgemm_u8_blocks(const Q8Acts& a, const uint8_t* w, const float* ws, float* y, int64_t ldy, int64_t n0, int64_t n1) {
  LB_CHECK(!a.windowed, "window-ordered activations are for the int4 kernels only");
  if (vnni_kernels_active()) return vnni::qgemm_u8_blocks(a, w, ws, y, ldy, n0, n1);
  scalar_u8_blocks(a, w, ws, y, ldy, n0, n1);
}

void qgemm_u8_tokens(const Q8Acts& a, const uint8_t* w, const float* ws, float* y, int64_t ldy, int64_t n0, int64_t n1) {
  LB_CHECK(!a.windowed, "window-ordered activations are for the int4 kernels only");
  if (vnni_kernels_active()) return vnni::qgemm_u8_tokens(a, w, ws, y, ldy, n0, n1);
  scalar_u8_tokens(a, w, ws, y, ldy, n0, n1);
}

void qgemm_u4_blocks(const Q8Acts& a, const uint8_t* w, const uint16_t* s, const uint16_t* z, int64_t G, float* y,
                     int64_t ldy, int64_t n0, int64_t n1) {
  LB_CHECK(a.group == 32 && a.windowed, "int4 kernels take window-ordered activations in blocks of 32");
  LB_CHECK(G >= 32 && G <= 256 && (G & (G - 1)) == 0, "int4 kernels: group size {} not in 32 .. 256", G);
  if (vnni_kernels_active()) return vnni::qgemm_u4_blocks(a, w, s, z, G, y, ldy, n0, n1);
  scalar_u4_blocks(a, w, s, z, G, y, ldy, n0, n1);
}

void qgemm_group_tokens(const Q8Acts& a, const GroupWeights& w, float* y, int64_t ldy, int64_t n0, int64_t n1) {
  LB_CHECK(!a.windowed, "window-ordered activations are for the int4 kernels only");
  if (vnni_kernels_active()) return vnni::qgemm_group_tokens(a, w, y, ldy, n0, n1);
  scalar_group_tokens(a, w, y, ldy, n0, n1);
}

}  // namespace lowbit::kernels::cpu
