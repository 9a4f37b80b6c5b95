// float8 e4m3 weights, row-major [N, K], one float scale per row: float8wo (bf16 activations,
// weights converted to bf16 in registers, exact) and float8dq-row (e4m3 activations; e4m3 tensor
// cores on sm_89+, the bf16 path on sm_80). Same lane mapping as the int8 file.
#include "kernels/cuda/gemv_kernel.cuh"

namespace lowbit::cuda {
namespace detail {
namespace {

// Four k16 bf16 steps, step s on k = 16t + 4s .. + 3; `xe4m3` converts the activations too.
template <int MT, bool kXe4m3, int XV>
__device__ __forceinline__ void mma_e4m3_as_bf16(float (&acc)[MT][4], const WFrag<2>& f,
                                                 const uint4 (&x)[MT][XV]) {
#pragma unroll
  for (int s = 0; s < 4; ++s) {
    uint32_t a0, a1, a2, a3;
    e4m3x4_to_bf16(word(f.v[0], s), a0, a2);
    e4m3x4_to_bf16(word(f.v[1], s), a1, a3);
#pragma unroll
    for (int j = 0; j < MT; ++j) {
      uint32_t b0, b1;
      if constexpr (kXe4m3) {
        e4m3x4_to_bf16(word(x[j][0], s), b0, b1);
      } else {
        b0 = word(x[j][s >> 1], 2 * (s & 1));
        b1 = word(x[j][s >> 1], 2 * (s & 1) + 1);
      }
      mma_bf16(acc[j], a0, a1, a2, a3, b0, b1);
    }
  }
}

struct Float8WoFormat : ByteRowWeights {
  using Acc = float;
  static constexpr int XV = 2, XB = 2;
  template <int MT>
  __device__ static void mma(const GemvParams&, float (&acc)[MT][4], const WFrag<WL>& f,
                             const uint4 (&x)[MT][XV]) {
    mma_e4m3_as_bf16<MT, false>(acc, f, x);
  }
  __device__ static float epilogue(const GemvParams& p, float s, int n, int) {
    return s * static_cast<const float*>(p.aux)[n];
  }
};

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
// e4m3 × e4m3 → f32, m16n8k32 (sm_89+); same fragment shapes as the s8 product.
__device__ __forceinline__ void mma_e4m3(float (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2,
                                         uint32_t a3, uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e4m3.f32 "
      "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}
#endif

struct Float8DqFormat : ByteRowWeights {
  using Acc = float;
  static constexpr int XV = 1, XB = 1;
  template <int MT>
  __device__ static void mma(const GemvParams&, float (&acc)[MT][4], const WFrag<WL>& f,
                             const uint4 (&x)[MT][XV]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
#pragma unroll
    for (int j = 0; j < MT; ++j) {
      mma_e4m3(acc[j], f.v[0].x, f.v[1].x, f.v[0].y, f.v[1].y, x[j][0].x, x[j][0].y);
      mma_e4m3(acc[j], f.v[0].z, f.v[1].z, f.v[0].w, f.v[1].w, x[j][0].z, x[j][0].w);
    }
#else
    mma_e4m3_as_bf16<MT, true>(acc, f, x);
#endif
  }
  __device__ static float epilogue(const GemvParams& p, float s, int n, int m) {
    return s * p.xscale[m] * static_cast<const float*>(p.aux)[n];
  }
};

}  // namespace
}  // namespace detail

void gemv_float8wo(const void* x, const uint8_t* w, const float* scale, void* y, int M, int N,
                   int K, const GemvOptions& o) {
  detail::check_gemv_args("gemv_float8wo", x, w, y, M, N, K);
  LB_CHECK(scale, "gemv_float8wo: null scale");
  detail::GemvParams p{x, nullptr, w, scale, static_cast<__nv_bfloat16*>(y), M, N, K, 0};
  detail::launch_gemv<detail::Float8WoFormat>(GemvFormat::Float8wo, p, o);
}

void gemv_float8dq(const uint8_t* xq, const float* xscale, const uint8_t* w, const float* wscale,
                   void* y, int M, int N, int K, const GemvOptions& o) {
  detail::check_gemv_args("gemv_float8dq", xq, w, y, M, N, K);
  LB_CHECK(xscale && wscale, "gemv_float8dq: null scale");
  detail::GemvParams p{xq, xscale, w, wscale, static_cast<__nv_bfloat16*>(y), M, N, K, 0};
  detail::launch_gemv<detail::Float8DqFormat>(GemvFormat::Float8dq, p, o);
}

}  // namespace lowbit::cuda
