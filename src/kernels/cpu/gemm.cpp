#include "kernels/cpu/gemm.h"

#include <omp.h>

#include <algorithm>
#include <atomic>

#include "lowbit/core/error.h"
#include "lowbit/core/float_formats.h"
#include "lowbit/kernels/cpu_info.h"

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

bool cpu_has_vnni() {
  static const bool v = detected_isa() == Isa::Avx512 && __builtin_cpu_supports("avx512vnni");
  return v;
}

}  // namespace lowbit::kernels::cpu

std::string lowbit::cpu_kernels_description() {
  using namespace lowbit::kernels::cpu;
  return std::string(isa_name(active_isa())) + (cpu_has_vnni() && active_isa() == Isa::Avx512 ? " + vnni" : "");
}

namespace lowbit::kernels::cpu {

void gemm_serial(const GemmArgs& a) {
  if (a.M <= 0 || a.N <= 0) return;
  if (a.K <= 0) {
    for (int64_t m = 0; m < a.M; ++m)
      for (int64_t n = 0; n < a.N; ++n) a.y[m * a.ldy + n] = 0.0f;
    return;
  }
  switch (active_isa()) {
    case Isa::Avx512: return gemm_serial_avx512(a);
    case Isa::Avx2: return gemm_serial_avx2(a);
    case Isa::Scalar: return gemm_scalar(a);
  }
}

int64_t row_chunk(int64_t rows, int64_t M) {
  // About eight chunks per thread keeps threads busy to the end; never under 16 rows (or 4 for big M,
  // where each row is a lot of work), and a multiple of 4 to keep whole tiles.
  const int64_t threads = omp_get_max_threads();
  const int64_t floor_rows = M >= 16 ? 4 : 16;
  const int64_t c = std::max(floor_rows, rows / (threads * 8));
  return std::min<int64_t>(256, (c + 3) / 4 * 4);
}

void gemm(const GemmArgs& a) {
  if (a.M <= 0 || a.N <= 0) return;
  const int64_t chunk = row_chunk(a.N, a.M);
  const int64_t chunks = (a.N + chunk - 1) / chunk;
  const auto* w = static_cast<const char*>(a.w);
  const int64_t es = a.wt == WType::F32 ? 4 : 2;
#pragma omp parallel for schedule(dynamic, 1) if (chunks > 1)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t n0 = c * chunk, n1 = std::min(a.N, n0 + chunk);
    GemmArgs s = a;
    s.w = w + n0 * a.ldw * es;
    s.y = a.y + n0;
    s.N = n1 - n0;
    gemm_serial(s);
  }
}

}  // namespace lowbit::kernels::cpu
