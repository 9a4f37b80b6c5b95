#include "kernels/cpu/gemm.h"

#include <atomic>

#include "lowbit/core/error.h"
#include "lowbit/core/float_formats.h"

namespace lowbit::kernels::cpu {
namespace {

float load_w(const void* w, WType t, int64_t i) {
  switch (t) {
    case WType::F32: return static_cast<const float*>(w)[i];
    case WType::BF16: return bf16_to_f32(static_cast<const uint16_t*>(w)[i]);
    case WType::F16: return f16_to_f32(static_cast<const uint16_t*>(w)[i]);
  }
  return 0.0f;
}

Isa detect() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("fma"))
    return Isa::Avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c"))
    return Isa::Avx2;
  return Isa::Scalar;
}

std::atomic<Isa>& active() {
  static std::atomic<Isa> isa{detect()};
  return isa;
}

void gemm_scalar(const GemmArgs& a) {
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < a.N; ++n) {
    const char* wrow = static_cast<const char*>(a.w) + n * a.ldw * (a.wt == WType::F32 ? 4 : 2);
    for (int64_t m = 0; m < a.M; ++m) {
      const float* xr = a.x + m * a.ldx;
      float s = 0.0f;
      for (int64_t k = 0; k < a.K; ++k) s += xr[k] * load_w(wrow, a.wt, k);
      a.y[m * a.ldy + n] = s;
    }
  }
}

}  // namespace

void gemm_reference(const GemmArgs& a) {
  const size_t es = a.wt == WType::F32 ? 4 : 2;
  for (int64_t m = 0; m < a.M; ++m)
    for (int64_t n = 0; n < a.N; ++n) {
      const char* wrow = static_cast<const char*>(a.w) + n * a.ldw * es;
      float s = 0.0f;
      for (int64_t k = 0; k < a.K; ++k) s += a.x[m * a.ldx + k] * load_w(wrow, a.wt, k);
      a.y[m * a.ldy + n] = s;
    }
}

Isa detected_isa() {
  static const Isa isa = detect();
  return isa;
}
Isa active_isa() { return active().load(); }
void force_isa(Isa isa) {
  LB_CHECK(static_cast<int>(isa) <= static_cast<int>(detected_isa()), "this CPU does not support {}",
           isa_name(isa));
  active().store(isa);
}
std::string_view isa_name(Isa isa) {
  switch (isa) {
    case Isa::Scalar: return "scalar";
    case Isa::Avx2: return "avx2";
    case Isa::Avx512: return "avx512";
  }
  return "?";
}

void gemm(const GemmArgs& a) {
  if (a.M <= 0 || a.N <= 0) return;
  if (a.K <= 0) {
    for (int64_t m = 0; m < a.M; ++m)
      for (int64_t n = 0; n < a.N; ++n) a.y[m * a.ldy + n] = 0.0f;
    return;
  }
  switch (active_isa()) {
    case Isa::Avx512: return gemm_avx512(a);
    case Isa::Avx2: return gemm_avx2(a);
    case Isa::Scalar: return gemm_scalar(a);
  }
}

}  // namespace lowbit::kernels::cpu
