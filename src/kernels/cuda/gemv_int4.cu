// int4 weights (torchao int4wo / tinygemm math: w = (q − 8) · scale + zero per group of G along K)
// in lowbit's GPU layout (see weight_gemv.h): one 16-byte load per lane and 64-k chunk gives rows
// g and g + 8 at k = 16t .. 16t + 15; word s feeds the k16 step on k = 16t + 4s .. + 3.
// (q | 0x4300), one LOP3 per bf16x2 pair, is the bf16 128 + q.
// G ≥ 64 (a chunk lies in one group): the tensor cores multiply 128 + q itself, and each chunk's
// sums are scaled once per row: Σ w·x = scale · Σ (128 + q)·x + (zero − 136 · scale) · Σ x, with
// Σ x (per token and chunk) from one more product against a matrix of ones, shared by the row
// tiles. Everything after the exact products is fp32: no weight is rounded to bf16, so the sums
// are closer to the real-valued ones than the bf16-rounded weights of the prefill's dequantization.
// G < 64 (four groups in a chunk at G = 16): per weight, 128 + q minus 136 is q − 8 (exact) and one
// bf16 fma with (scale, scale) and (zero, zero) rounds the weight to bf16 once, as tinygemm does.
#include <vector>

#include "kernels/cuda/gemv_kernel.cuh"
#include "kernels/cuda/int4_layout.cuh"

namespace lowbit::cuda {
namespace detail {
namespace {

using int4::biased_pair;
using int4::dequant_pair;

// The weight and qparam streams of the layout.
struct Int4Layout {
  static constexpr int KC = 64, WL = 1, XV = 2, XB = 2;
  static constexpr bool QP = true;
  // The lane's 16 bytes of the (tile, chunk) block, and the (scale, zero) words of rows g and
  // g + 8 for the lane's group.
  __device__ static const void* wsrc(const GemvParams& p, int tile, int c, int, int, int lane,
                                     int) {
    return static_cast<const char*>(p.w) + ((size_t)tile * (p.K >> 6) + c) * 512 + lane * 16;
  }
  __device__ static const void* qsrc(const GemvParams& p, int tile, int c, int g, int t) {
    const int grp = (c * 64 + t * 16) >> p.log2g;
    return static_cast<const uint2*>(p.aux) + ((size_t)tile * (p.K >> p.log2g) + grp) * 8 + g;
  }
  __device__ static float epilogue(const GemvParams&, float s, int, int) {
    return s;
  }
};

// G < 64: weights dequantized to bf16 one by one.
struct Int4Format : Int4Layout {
  using Acc = float;
  static constexpr bool XSUM = false;
  template <int MT>
  __device__ static void mma(const GemvParams&, float (&acc)[MT][4], const WFrag<WL>& f,
                             const uint4 (&x)[MT][XV]) {
    const uint32_t s0 = int4::scale2(f.qp.x), z0 = int4::zero2(f.qp.x);
    const uint32_t s1 = int4::scale2(f.qp.y), z1 = int4::zero2(f.qp.y);
#pragma unroll
    for (int s = 0; s < 4; ++s) {
      const uint32_t u = word(f.v[0], s);
      const uint32_t a0 = dequant_pair(u, 0, s0, z0);
      const uint32_t a1 = dequant_pair(u, 1, s1, z1);
      const uint32_t a2 = dequant_pair(u, 2, s0, z0);
      const uint32_t a3 = dequant_pair(u, 3, s1, z1);
#pragma unroll
      for (int j = 0; j < MT; ++j)
        mma_bf16(acc[j], a0, a1, a2, a3, word(x[j][s >> 1], 2 * (s & 1)),
                 word(x[j][s >> 1], 2 * (s & 1) + 1));
    }
  }
};

// G ≥ 64: products of the biased codes, scaled per chunk (see the top of the file).
struct Int4GroupFormat : Int4Layout {
  using Acc = float;
  static constexpr bool XSUM = true;
  template <int MT>
  __device__ static void xsum(const uint4 (&x)[MT][XV], float (&sums)[MT][2]) {
    constexpr uint32_t kOnes = 0x3f803f80u;
#pragma unroll
    for (int j = 0; j < MT; ++j) {
      float c[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
      for (int s = 0; s < 4; ++s)
        mma_bf16(c, kOnes, kOnes, kOnes, kOnes, word(x[j][s >> 1], 2 * (s & 1)),
                 word(x[j][s >> 1], 2 * (s & 1) + 1));
      sums[j][0] = c[0];
      sums[j][1] = c[1];
    }
  }
  template <int MT>
  __device__ static void mma(const GemvParams&, float (&acc)[MT][4], const WFrag<WL>& f,
                             const uint4 (&x)[MT][XV], const float (&sums)[MT][2]) {
    float c[MT][4];
#pragma unroll
    for (int j = 0; j < MT; ++j) c[j][0] = c[j][1] = c[j][2] = c[j][3] = 0.0f;
#pragma unroll
    for (int s = 0; s < 4; ++s) {
      const uint32_t u = word(f.v[0], s);
      const uint32_t a0 = biased_pair(u, 0), a1 = biased_pair(u, 1);
      const uint32_t a2 = biased_pair(u, 2), a3 = biased_pair(u, 3);
#pragma unroll
      for (int j = 0; j < MT; ++j)
        mma_bf16(c[j], a0, a1, a2, a3, word(x[j][s >> 1], 2 * (s & 1)),
                 word(x[j][s >> 1], 2 * (s & 1) + 1));
    }
    // Rows g (qp.x) and g + 8 (qp.y): bf16 scale in the low half, zero in the high half.
    const float s0 = __uint_as_float(f.qp.x << 16), s1 = __uint_as_float(f.qp.y << 16);
    const float z0 = fmaf(-136.0f, s0, __uint_as_float(f.qp.x & 0xffff0000u));
    const float z1 = fmaf(-136.0f, s1, __uint_as_float(f.qp.y & 0xffff0000u));
#pragma unroll
    for (int j = 0; j < MT; ++j) {
      acc[j][0] = fmaf(s0, c[j][0], fmaf(z0, sums[j][0], acc[j][0]));
      acc[j][1] = fmaf(s0, c[j][1], fmaf(z0, sums[j][1], acc[j][1]));
      acc[j][2] = fmaf(s1, c[j][2], fmaf(z1, sums[j][0], acc[j][2]));
      acc[j][3] = fmaf(s1, c[j][3], fmaf(z1, sums[j][1], acc[j][3]));
    }
  }
};

int log2_group(int group) {
  LB_CHECK(group >= 16 && group <= 4096 && (group & (group - 1)) == 0,
           "int4 GPU layout: group size {} must be a power of two in [16, 4096]", group);
  int l = 0;
  while ((1 << l) < group) ++l;
  return l;
}

}  // namespace
}  // namespace detail

size_t int4_packed_bytes(int64_t N, int64_t K) {
  return static_cast<size_t>((N + 15) / 16 * 16 * K / 2);
}

size_t int4_qparam_bytes(int64_t N, int64_t K, int group) {
  return static_cast<size_t>((N + 15) / 16 * 16 * (K / group) * 4);
}

void pack_int4(const int32_t* codes, const uint16_t* scale, const uint16_t* zero, int64_t N,
               int64_t K, int group, void* packed, void* qparams) {
  detail::log2_group(group);
  LB_CHECK(N > 0 && K > 0 && K % 64 == 0 && K % group == 0,
           "pack_int4: K = {} must be a multiple of 64 and of the group size {}", K, group);
  const int64_t tiles = (N + 15) / 16, chunks = K / 64, groups = K / group;
  for (int64_t i = 0; i < N * K; ++i)
    LB_CHECK(codes[i] >= 0 && codes[i] <= 15, "pack_int4: code {} at {} out of [0, 15]", codes[i],
             i);
  auto* out = static_cast<uint32_t*>(packed);
  for (int64_t tile = 0; tile < tiles; ++tile)
    for (int64_t c = 0; c < chunks; ++c)
      for (int lane = 0; lane < 32; ++lane)
        for (int s = 0; s < 4; ++s) {
          const int g = lane / 4, t = lane % 4;
          uint32_t word = 0;
          for (int i = 0; i < 8; ++i) {
            const int64_t n = tile * 16 + g + 8 * (i & 1);
            const int64_t k = c * 64 + 16 * t + 4 * s + 2 * ((i >> 1) & 1) + (i >> 2);
            const uint32_t q = n < N ? static_cast<uint32_t>(codes[n * K + k]) : 0u;
            word |= q << (4 * i);
          }
          out[((tile * chunks + c) * 32 + lane) * 4 + s] = word;
        }
  // Pad rows get scale = zero = 0, so they dequantize to 0.
  auto* qp = static_cast<uint32_t*>(qparams);
  for (int64_t tile = 0; tile < tiles; ++tile)
    for (int64_t gr = 0; gr < groups; ++gr)
      for (int r = 0; r < 16; ++r) {
        const int64_t n = tile * 16 + r;
        const uint32_t v =
            n < N ? (uint32_t(scale[n * groups + gr]) | uint32_t(zero[n * groups + gr]) << 16) : 0u;
        qp[(tile * groups + gr) * 16 + 2 * (r % 8) + r / 8] = v;
      }
}

void gemv_int4wo(const void* x, const void* packed, const void* qparams, void* y, int M, int N,
                 int K, int group, const GemvOptions& o) {
  detail::check_gemv_args("gemv_int4wo", x, packed, y, M, N, K);
  LB_CHECK(qparams, "gemv_int4wo: null qparams");
  LB_CHECK(K % group == 0, "gemv_int4wo: K = {} is not a multiple of the group size {}", K, group);
  detail::GemvParams p{x,
                       nullptr,
                       packed,
                       qparams,
                       static_cast<__nv_bfloat16*>(y),
                       M,
                       N,
                       K,
                       detail::log2_group(group)};
  if (group >= 64)
    detail::launch_gemv<detail::Int4GroupFormat>(GemvFormat::Int4wo, p, o);
  else
    detail::launch_gemv<detail::Int4Format>(GemvFormat::Int4wo, p, o);
}

}  // namespace lowbit::cuda
