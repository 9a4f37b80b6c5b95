// int8 weights, row-major [N, K], one float scale per row: int8wo (bf16 activations, weights
// converted to bf16 in registers, exact) and int8dq (int8 activations, s8 tensor cores, int32
// sums). Chunk = 64 k: lane (g, t) reads 16 bytes (k = 16t .. 16t + 15) of rows g and g + 8.
#include "kernels/cuda/gemv_kernel.cuh"

namespace lowbit::cuda {
namespace detail {
namespace {

// bf16 activations: four k16 steps, step s on k = 16t + 4s .. + 3 (word s of each row).
struct Int8WoFormat : ByteRowWeights {
  using Acc = float;
  static constexpr int XV = 2, XB = 2;
  template <int MT>
  __device__ static void mma(const GemvParams&, float (&acc)[MT][4], const WFrag<WL>& f,
                             const uint4 (&x)[MT][XV]) {
#pragma unroll
    for (int s = 0; s < 4; ++s) {
      uint32_t a0, a1, a2, a3;  // rows g / g + 8, k pairs (0, 1) and (2, 3) of the step
      i8x4_to_bf16(word(f.v[0], s), a0, a2);
      i8x4_to_bf16(word(f.v[1], s), a1, a3);
#pragma unroll
      for (int j = 0; j < MT; ++j)
        mma_bf16(acc[j], a0, a1, a2, a3, word(x[j][s >> 1], 2 * (s & 1)),
                 word(x[j][s >> 1], 2 * (s & 1) + 1));
    }
  }
  __device__ static float epilogue(const GemvParams& p, float s, int n, int) {
    return s * static_cast<const float*>(p.aux)[n];
  }
};

// int8 activations: two k32 steps, step s on k = 16t + 8s .. + 7 (A: words 2s, 2s + 1 of each row).
struct Int8DqFormat : ByteRowWeights {
  using Acc = int;
  static constexpr int XV = 1, XB = 1;
  template <int MT>
  __device__ static void mma(const GemvParams&, int (&acc)[MT][4], const WFrag<WL>& f,
                             const uint4 (&x)[MT][XV]) {
#pragma unroll
    for (int j = 0; j < MT; ++j) {
      mma_s8(acc[j], f.v[0].x, f.v[1].x, f.v[0].y, f.v[1].y, x[j][0].x, x[j][0].y);
      mma_s8(acc[j], f.v[0].z, f.v[1].z, f.v[0].w, f.v[1].w, x[j][0].z, x[j][0].w);
    }
  }
  // The CPU's order: float(acc) · xscale · wscale.
  __device__ static float epilogue(const GemvParams& p, int s, int n, int m) {
    return static_cast<float>(s) * p.xscale[m] * static_cast<const float*>(p.aux)[n];
  }
};

}  // namespace
}  // namespace detail

void gemv_int8wo(const void* x, const int8_t* w, const float* scale, void* y, int M, int N, int K,
                 const GemvOptions& o) {
  detail::check_gemv_args("gemv_int8wo", x, w, y, M, N, K);
  LB_CHECK(scale, "gemv_int8wo: null scale");
  detail::GemvParams p{x, nullptr, w, scale, static_cast<__nv_bfloat16*>(y), M, N, K, 0};
  detail::launch_gemv<detail::Int8WoFormat>(GemvFormat::Int8wo, p, o);
}

void gemv_int8dq(const int8_t* xq, const float* xscale, const int8_t* w, const float* wscale,
                 void* y, int M, int N, int K, const GemvOptions& o) {
  detail::check_gemv_args("gemv_int8dq", xq, w, y, M, N, K);
  LB_CHECK(xscale && wscale, "gemv_int8dq: null scale");
  detail::GemvParams p{xq, xscale, w, wscale, static_cast<__nv_bfloat16*>(y), M, N, K, 0};
  detail::launch_gemv<detail::Int8DqFormat>(GemvFormat::Int8dq, p, o);
}

}  // namespace lowbit::cuda
