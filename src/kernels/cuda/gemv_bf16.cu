// bf16 weights, row-major [N, K]: the tensor-core product needs no conversion at all.
// Chunk = 32 k: lane (g, t) reads 16 bytes (k = 8t .. 8t + 7) of rows g and g + 8; two mma steps
// take k = 8t + 4s .. + 3 (s = 0, 1), and the activations of the same k come in one 16-byte load.
#include "kernels/cuda/gemv_kernel.cuh"

namespace lowbit::cuda {
namespace detail {
namespace {

struct Bf16Format {
  using Acc = float;
  static constexpr int KC = 32, WL = 2, XV = 1, XB = 2;
  static constexpr bool QP = false, XSUM = false;
  __device__ static const void* wsrc(const GemvParams& p, int tile, int c, int g, int t, int,
                                     int i) {
    return row_major_src(p, tile, c, g, t, i, p.K * 2);
  }
  template <int MT>
  __device__ static void mma(const GemvParams&, float (&acc)[MT][4], const WFrag<WL>& f,
                             const uint4 (&x)[MT][XV]) {
    const uint4 &r0 = f.v[0], &r1 = f.v[1];  // rows g and g + 8
#pragma unroll
    for (int j = 0; j < MT; ++j) {
      mma_bf16(acc[j], r0.x, r1.x, r0.y, r1.y, x[j][0].x, x[j][0].y);
      mma_bf16(acc[j], r0.z, r1.z, r0.w, r1.w, x[j][0].z, x[j][0].w);
    }
  }
  __device__ static float epilogue(const GemvParams&, float s, int, int) {
    return s;
  }
};

}  // namespace
}  // namespace detail

void gemv_bf16(const void* x, const void* w, void* y, int M, int N, int K, const GemvOptions& o) {
  detail::check_gemv_args("gemv_bf16", x, w, y, M, N, K);
  detail::GemvParams p{x, nullptr, w, nullptr, static_cast<__nv_bfloat16*>(y), M, N, K, 0};
  detail::launch_gemv<detail::Bf16Format>(GemvFormat::Bf16, p, o);
}

}  // namespace lowbit::cuda
