// AVX-512 VNNI builds of the integer kernels in qgemm.h. Tiles of MR activation rows by NR weight rows
// share their loads; each 64-weight chunk is one vpdpbusd per (row, row) pair, whose 16 int32 lanes hold
// two 32-blocks (lanes 0-7 and 8-15), scaled in float per block.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <bit>
#include <cstring>
#include <vector>

#include "kernels/cpu/qgemm.h"

namespace lowbit::kernels::cpu::vnni {
namespace {

enum class Mode { U8Blocks, U8Tokens, GroupTokens };

// Decode streams weights once: prefetch this far ahead of the chunk being multiplied.
// Software prefetch distance in bytes ahead of the weight stream (8 KiB measured best on AVX-512 hosts).
constexpr int64_t kPrefetch = 8192;

float hsum(__m512 v) {
  const __m512 swapped = _mm512_shuffle_f32x4(v, v, 0x4e);
  const __m256 h = _mm512_castps512_ps256(_mm512_add_ps(v, swapped));
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

int32_t hsum_i(__m512i v) {
  const __m256i h = _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1));
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
  return _mm_cvtsi128_si32(s);
}

// 64 int4 codes of a chunk with one load and one mask: the 32 bytes broadcast to both halves, the lower
// half keeps the low nibbles (weights 0-31), the upper half the high nibbles in place (weights 32-63
// times 16). The products of lanes 8-15 are therefore 16x too large; their scales carry the 1/16 (exact:
// a power of two), so no shift is spent per chunk.
__m512i load_u4(const uint8_t* p) {
  const __m512i v = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  return _mm512_and_si512(v, _mm512_inserti64x4(_mm512_set1_epi8(0x0f), _mm256_set1_epi8(static_cast<char>(0xf0)), 1));
}

// Lanes 0-7 from v, lanes 8-15 from v / 16 (idx from the "h" tables below): the scales of load_u4's products.
__m512 spread_u4(__m512i idx, __m512 v, __m512 v16) { return _mm512_permutex2var_ps(v, idx, v16); }

template <int Bits>
__m512i load_w(const uint8_t* row, int64_t c) {
  if constexpr (Bits == 8) return _mm512_loadu_si512(row + c * 64);
  return load_u4(row + c * 32);
}

// Group scales are read 16 at a time into a register ("window") and spread over each chunk's lanes with
// one permute: for G = 32 a chunk spans two groups (lanes 0-7 and 8-15), for G >= 64 one group.
struct ScaleWindows {
  alignas(64) int32_t g32[8][16];   // chunk position in an 8-chunk window -> lane indices
  alignas(64) int32_t g64[16][16];  // group position in a 16-group window -> lane indices
  alignas(64) int32_t g32h[8][16];  // the same, lanes 8-15 taken from the second (1/16) source
  alignas(64) int32_t g64h[16][16];
  alignas(64) int32_t b2g[4][16];   // block l of a 16-block window -> its group, for G = 32 << s
  ScaleWindows() {
    for (int p = 0; p < 8; ++p)
      for (int l = 0; l < 16; ++l) {
        g32[p][l] = 2 * p + (l >= 8);
        g32h[p][l] = g32[p][l] + (l >= 8 ? 16 : 0);
      }
    for (int p = 0; p < 16; ++p)
      for (int l = 0; l < 16; ++l) {
        g64[p][l] = p;
        g64h[p][l] = p + (l >= 8 ? 16 : 0);
      }
    for (int s = 0; s < 4; ++s)
      for (int l = 0; l < 16; ++l) b2g[s][l] = l >> s;
  }
};
const ScaleWindows kWindows;

__m512 load_window_bf16(const uint16_t* s, int64_t remaining) {
  const __m256i h = remaining >= 16 ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s))
                                    : _mm256_maskz_loadu_epi16(static_cast<__mmask16>((1u << remaining) - 1), s);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

__m512 load_window_f32(const float* s, int64_t remaining) {
  return remaining >= 16 ? _mm512_loadu_ps(s)
                         : _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << remaining) - 1), s);
}

// Everything one kernel call needs besides the tile position.
struct Args {
  const Q8Acts* a;
  const uint8_t* w;
  int64_t w_row_bytes;
  const float* wscale;        // per channel (U8 modes)
  const GroupWeights* gw;     // GroupTokens
  int64_t G;
  float* y;
  int64_t ldy;
  const float* act_group;     // [M, K/G]: block modes: Σ dsum per group; token modes: group sums as float
  const float* act_row;       // [M]: U8Blocks: Σ dsum of the row
};

// The output from a tile's sums: scales and the offset corrections of each mode.
template <Mode MD, int Bits>
float finish(const Args& A, int64_t m, int64_t n, float fsum, int32_t isum) {
  const Q8Acts& a = *A.a;
  const int64_t ng = a.K / A.G;
  if constexpr (MD == Mode::U8Blocks) {
    return A.wscale[n] * (fsum - 128.0f * A.act_row[m]);
  } else if constexpr (MD == Mode::U8Tokens) {
    return static_cast<float>(isum - 128 * a.gsum[m]) * a.scale[m] * A.wscale[n];
  } else {
    const GroupWeights& gw = *A.gw;
    const float* gs = gw.gscale + n * ng;
    const float* gsum = A.act_group + m * ng;
    float sx = 0.0f;
    for (int64_t g = 0; g < ng; ++g) sx += gs[g] * gsum[g];
    const float offset = static_cast<float>(1 << (Bits - 1));
    const float v = fsum - offset * sx - static_cast<float>(a.zero[m]) * gw.wsum[n];
    return a.scale[m] * (gw.cscale ? gw.cscale[n] : 1.0f) * v;
  }
}

// Decode (one activation row against one weight row): straight loops, two accumulators, the weight row
// prefetched ahead. U8Tokens sums in int32; the block modes scale each chunk's two blocks in float.
template <Mode MD, int Bits>
void dot_row(const Args& A, int64_t m, int64_t n, float& fsum, int32_t& isum) {
  const Q8Acts& a = *A.a;
  const int64_t K = a.K, chunks = K / 64;
  const int8_t* xq = a.q.data() + m * K;
  const uint8_t* w = A.w + n * A.w_row_bytes;
  constexpr int64_t kChunkBytes = Bits * 8;
  if constexpr (MD == Mode::U8Tokens) {
    __m512i i0 = _mm512_setzero_si512(), i1 = _mm512_setzero_si512();
    int64_t c = 0;
    for (; c + 2 <= chunks; c += 2) {
      _mm_prefetch(reinterpret_cast<const char*>(w + c * 64 + kPrefetch), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(w + c * 64 + 64 + kPrefetch), _MM_HINT_T0);
      i0 = _mm512_dpbusd_epi32(i0, _mm512_loadu_si512(w + c * 64), _mm512_loadu_si512(xq + c * 64));
      i1 = _mm512_dpbusd_epi32(i1, _mm512_loadu_si512(w + c * 64 + 64), _mm512_loadu_si512(xq + c * 64 + 64));
    }
    if (c < chunks) i0 = _mm512_dpbusd_epi32(i0, _mm512_loadu_si512(w + c * 64), _mm512_loadu_si512(xq + c * 64));
    isum = hsum_i(_mm512_add_epi32(i0, i1));
  } else if constexpr (MD == Mode::U8Blocks) {
    if (a.group == 256) {
      // Blocks of 256: four chunks summed in int32, then one convert and one multiply-add per block.
      const float* d = a.d.data() + m * (K / 256);
      __m512 f[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()};
      const __m512i zero = _mm512_setzero_si512();
      for (int64_t b = 0; b < K / 256; ++b) {
        const uint8_t* wb = w + b * 256;
        const int8_t* xb = xq + b * 256;
        for (int l = 0; l < 4; ++l) _mm_prefetch(reinterpret_cast<const char*>(wb + l * 64 + kPrefetch), _MM_HINT_T0);
        __m512i i0 = _mm512_dpbusd_epi32(zero, _mm512_loadu_si512(wb), _mm512_loadu_si512(xb));
        __m512i i1 = _mm512_dpbusd_epi32(zero, _mm512_loadu_si512(wb + 64), _mm512_loadu_si512(xb + 64));
        i0 = _mm512_dpbusd_epi32(i0, _mm512_loadu_si512(wb + 128), _mm512_loadu_si512(xb + 128));
        i1 = _mm512_dpbusd_epi32(i1, _mm512_loadu_si512(wb + 192), _mm512_loadu_si512(xb + 192));
        f[b & 1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(i0, i1)), _mm512_set1_ps(d[b]), f[b & 1]);
      }
      fsum = hsum(_mm512_add_ps(f[0], f[1]));
      return;
    }
    const float* dexp = a.dexp.data() + m * chunks * 16;
    __m512 f0 = _mm512_setzero_ps(), f1 = _mm512_setzero_ps();
    const __m512i zero = _mm512_setzero_si512();
    int64_t c = 0;
    for (; c + 2 <= chunks; c += 2) {
      _mm_prefetch(reinterpret_cast<const char*>(w + c * 64 + kPrefetch), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(w + c * 64 + 64 + kPrefetch), _MM_HINT_T0);
      const __m512i p0 = _mm512_dpbusd_epi32(zero, _mm512_loadu_si512(w + c * 64), _mm512_loadu_si512(xq + c * 64));
      const __m512i p1 =
          _mm512_dpbusd_epi32(zero, _mm512_loadu_si512(w + c * 64 + 64), _mm512_loadu_si512(xq + c * 64 + 64));
      f0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p0), _mm512_loadu_ps(dexp + c * 16), f0);
      f1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p1), _mm512_loadu_ps(dexp + c * 16 + 16), f1);
    }
    if (c < chunks) {
      const __m512i p0 = _mm512_dpbusd_epi32(zero, _mm512_loadu_si512(w + c * 64), _mm512_loadu_si512(xq + c * 64));
      f0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p0), _mm512_loadu_ps(dexp + c * 16), f0);
    }
    fsum = hsum(_mm512_add_ps(f0, f1));
  }
  (void)kChunkBytes;
}

template <Mode MD, int Bits, int MR, int NR>
void tile(const Args& A, int64_t m0, int64_t n0) {
  const Q8Acts& a = *A.a;
  const int64_t K = a.K, chunks = K / 64;
  // Small tiles (decode) alternate two accumulator sets so the float chain does not serialize chunks.
  constexpr int U = MR * NR <= 2 ? 2 : 1;
  __m512 facc[U][MR][NR];
  __m512i iacc[U][MR][NR];
  for (int u = 0; u < U; ++u)
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < NR; ++j) {
        facc[u][i][j] = _mm512_setzero_ps();
        iacc[u][i][j] = _mm512_setzero_si512();
      }
  const uint8_t* wr[NR];
  for (int j = 0; j < NR; ++j) wr[j] = A.w + (n0 + j) * A.w_row_bytes;
  const int64_t ng = K / A.G;
  constexpr bool kGrouped = MD == Mode::GroupTokens;
  // Chunks per 16-scale window (a power of two) and, for G >= 64, log2 of the chunks per group: shifts
  // and masks only in the loop.
  const int64_t window_mask = (A.G == 32 ? 8 : 16 * A.G / 64) - 1;
  const int group_shift = A.G == 32 ? 0 : __builtin_ctzll(static_cast<uint64_t>(A.G / 64));
  __m512 win[NR], win16[NR];  // win16 = win / 16 for the upper lanes of 4-bit products (see load_u4)
  auto step = [&]<int u>(int64_t c) {
    __m512i wv[NR];
    __m512 sv[NR];
    if constexpr (kGrouped) {
      if ((c & window_mask) == 0) {
        const int64_t g0 = (c * 64) / A.G;
        for (int j = 0; j < NR; ++j) {
          win[j] = load_window_f32(A.gw->gscale + (n0 + j) * ng + g0, ng - g0);
          if constexpr (Bits == 4) win16[j] = _mm512_mul_ps(win[j], _mm512_set1_ps(1.0f / 16));
        }
      }
    }
    __m512i idx = _mm512_setzero_si512();
    if constexpr (kGrouped && Bits == 4)
      idx = _mm512_load_si512(A.G == 32 ? kWindows.g32h[c & 7] : kWindows.g64h[(c >> group_shift) & 15]);
    else if constexpr (kGrouped)
      idx = _mm512_load_si512(A.G == 32 ? kWindows.g32[c & 7] : kWindows.g64[(c >> group_shift) & 15]);
#pragma GCC unroll 4
    for (int j = 0; j < NR; ++j) {
      if constexpr (MR == 1) _mm_prefetch(reinterpret_cast<const char*>(wr[j] + c * (Bits * 8) + kPrefetch), _MM_HINT_T0);
      wv[j] = load_w<Bits>(wr[j], c);
      if constexpr (kGrouped && Bits == 4) sv[j] = spread_u4(idx, win[j], win16[j]);
      else if constexpr (kGrouped) sv[j] = _mm512_permutexvar_ps(idx, win[j]);
    }
#pragma GCC unroll 4
    for (int i = 0; i < MR; ++i) {
      __m512i xv = _mm512_loadu_si512(a.q.data() + (m0 + i) * K + c * 64);
      __asm__("" : "+v"(xv));  // one load, not NR folded ones (as in u4_tile)
      if constexpr (MD == Mode::U8Tokens) {
#pragma GCC unroll 4
        for (int j = 0; j < NR; ++j) iacc[u][i][j] = _mm512_dpbusd_epi32(iacc[u][i][j], wv[j], xv);
      } else {
        __m512 dv = _mm512_setzero_ps();
        if constexpr (MD == Mode::U8Blocks) dv = _mm512_loadu_ps(a.dexp.data() + ((m0 + i) * chunks + c) * 16);
#pragma GCC unroll 4
        for (int j = 0; j < NR; ++j) {
          const __m512 p = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(_mm512_setzero_si512(), wv[j], xv));
          if constexpr (MD == Mode::U8Blocks) facc[u][i][j] = _mm512_fmadd_ps(p, dv, facc[u][i][j]);
          if constexpr (MD == Mode::GroupTokens) facc[u][i][j] = _mm512_fmadd_ps(p, sv[j], facc[u][i][j]);
        }
      }
    }
  };
  int64_t c = 0;
  if constexpr (U == 2)
    for (; c + 2 <= chunks; c += 2) {
      step.template operator()<0>(c);
      step.template operator()<1>(c + 1);
    }
  for (; c < chunks; ++c) step.template operator()<0>(c);
  if constexpr (U == 2)
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < NR; ++j) {
        facc[0][i][j] = _mm512_add_ps(facc[0][i][j], facc[1][i][j]);
        iacc[0][i][j] = _mm512_add_epi32(iacc[0][i][j], iacc[1][i][j]);
      }
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) {
      if constexpr (MD == Mode::U8Tokens)
        A.y[(m0 + i) * A.ldy + n0 + j] = finish<MD, Bits>(A, m0 + i, n0 + j, 0.0f, hsum_i(iacc[0][i][j]));
      else
        A.y[(m0 + i) * A.ldy + n0 + j] = finish<MD, Bits>(A, m0 + i, n0 + j, hsum(facc[0][i][j]), 0);
    }
}

// Columns [n0, n1) in steps of nr_max weight rows, activation rows in steps of 4: calls
// tile.template operator()<MR, NR>(m, n) with the tile's compile-time shape (MR <= 4, NR <= nr_max <= 4).
template <typename Tile>
void for_each_tile(int64_t M, int64_t n0, int64_t n1, int nr_max, Tile&& tile) {
  for (int64_t n = n0; n < n1; n += nr_max) {
    const int nr = static_cast<int>(std::min<int64_t>(nr_max, n1 - n));
    for (int64_t m = 0; m < M; m += 4) {
      const int mr = static_cast<int>(std::min<int64_t>(4, M - m));
#define LB_Q(MR_, NR_) \
  case (MR_) * 8 + (NR_): tile.template operator()<MR_, NR_>(m, n); break;
      switch (mr * 8 + nr) {
        LB_Q(1, 1) LB_Q(1, 2) LB_Q(1, 3) LB_Q(1, 4)
        LB_Q(2, 1) LB_Q(2, 2) LB_Q(2, 3) LB_Q(2, 4)
        LB_Q(3, 1) LB_Q(3, 2) LB_Q(3, 3) LB_Q(3, 4)
        LB_Q(4, 1) LB_Q(4, 2) LB_Q(4, 3) LB_Q(4, 4)
        default: break;
      }
#undef LB_Q
    }
  }
}

template <Mode MD, int Bits>
void run(const Args& A, int64_t n0, int64_t n1) {
  const int64_t M = A.a->M;
  if constexpr (MD != Mode::GroupTokens) {
    if (M < 4) {
      for (int64_t n = n0; n < n1; ++n)
        for (int64_t m = 0; m < M; ++m) {
          float fsum = 0.0f;
          int32_t isum = 0;
          dot_row<MD, Bits>(A, m, n, fsum, isum);
          A.y[m * A.ldy + n] = finish<MD, Bits>(A, m, n, fsum, isum);
        }
      return;
    }
  }
  // Decode: one weight row at a time (one contiguous stream); prefill: 4 x 4 tiles (measured faster than
  // 4 x 2 or 4 x 3 even where a few accumulators spill).
  for_each_tile(M, n0, n1, M < 4 ? 1 : 4,
                [&]<int MR, int NR>(int64_t m, int64_t n) { tile<MD, Bits, MR, NR>(A, m, n); });
}

// Per-group activation sums as float: block modes from d·Σq, token modes from the integer group sums.
const float* group_sums_blocks(const Q8Acts& a, int64_t G) {
  thread_local std::vector<float> buf;
  const int64_t ng = a.K / G, B = a.group, nb = a.K / B;
  buf.assign(static_cast<size_t>(a.M * ng), 0.0f);
  for (int64_t m = 0; m < a.M; ++m)
    for (int64_t b = 0; b < nb; ++b) buf[m * ng + b * B / G] += a.dsum[m * nb + b];
  return buf.data();
}

// ---------------------------------------------------------------- int4 in window order (qgemm.h)

struct U4Args {
  const Q8Acts* a;
  const uint8_t* w;     // rows of a->ldq / 2 bytes
  const uint16_t* s16;  // bf16 scale [N, K/G]
  const uint16_t* z16;  // bf16 zero [N, K/G]
  int64_t G;
  int shift;            // log2(G / 32): blocks per group
  float* y;
  int64_t ldy;
};

// Window wi of weight row n, per lane (32-block): the product scale (the group's scale, lanes 8-15
// divided by 16 since load_u4 leaves their codes 16x too large) and the zero term z − 8·s, which meets
// the block's d·Σq (w = (q − 8)·s + z, so Σ w·x = s·Σ q·x + (z − 8s)·Σ x per group).
struct U4Window {
  __m512 scale, zterm;
};
[[gnu::always_inline]] inline U4Window u4_window(const U4Args& A, int64_t n, int64_t wi) {
  const int64_t ng = A.a->K / A.G, g0 = (wi * 16) >> A.shift;
  __m512 sw = load_window_bf16(A.s16 + n * ng + g0, ng - g0);
  __m512 zw = load_window_bf16(A.z16 + n * ng + g0, ng - g0);
  if (A.shift) {
    const __m512i idx = _mm512_load_si512(kWindows.b2g[A.shift]);
    sw = _mm512_permutexvar_ps(idx, sw);
    zw = _mm512_permutexvar_ps(idx, zw);
  }
  return {_mm512_mul_ps(sw, _mm512_insertf32x8(_mm512_set1_ps(1.0f), _mm256_set1_ps(1.0f / 16), 1)),
          _mm512_fnmadd_ps(_mm512_set1_ps(8.0f), sw, zw)};
}

// Activation row m's block scales d and block sums d·Σq for the 16 blocks of window wi.
__m512 u4_window_d(const Q8Acts& a, int64_t m, int64_t wi) {
  const int64_t nb = a.K / 32;
  return load_window_f32(a.d.data() + m * nb + wi * 16, nb - wi * 16);
}
__m512 u4_window_dsum(const Q8Acts& a, int64_t m, int64_t wi) {
  const int64_t nb = a.K / 32;
  return load_window_f32(a.dsum.data() + m * nb + wi * 16, nb - wi * 16);
}

// Decode: one weight row against activation row 0; a window's eight products in two int32 chains, one
// convert and one multiply-add per window, windows taken in pairs so the float sums alternate.
float u4_dot(const U4Args& A, int64_t n) {
  const Q8Acts& a = *A.a;
  const int64_t windows = a.ldq / kU4Window;
  const int8_t* xq = a.q.data();
  const uint8_t* w = A.w + n * (a.ldq / 2);
  const __m512i zero = _mm512_setzero_si512();
  auto window = [&](int64_t wi, __m512& f) {
    const uint8_t* wp = w + wi * 256;
    const int8_t* xp = xq + wi * 512;
    for (int l = 0; l < 4; ++l) _mm_prefetch(reinterpret_cast<const char*>(wp + l * 64 + kPrefetch), _MM_HINT_T0);
    __m512i i0 = _mm512_dpbusd_epi32(zero, load_u4(wp), _mm512_loadu_si512(xp));
    __m512i i1 = _mm512_dpbusd_epi32(zero, load_u4(wp + 32), _mm512_loadu_si512(xp + 64));
#pragma GCC unroll 8
    for (int v = 2; v < 8; v += 2) {
      i0 = _mm512_dpbusd_epi32(i0, load_u4(wp + 32 * v), _mm512_loadu_si512(xp + 64 * v));
      i1 = _mm512_dpbusd_epi32(i1, load_u4(wp + 32 * v + 32), _mm512_loadu_si512(xp + 64 * v + 64));
    }
    const U4Window uw = u4_window(A, n, wi);
    f = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(i0, i1)), _mm512_mul_ps(uw.scale, u4_window_d(a, 0, wi)), f);
    f = _mm512_fmadd_ps(uw.zterm, u4_window_dsum(a, 0, wi), f);
  };
  __m512 f0 = _mm512_setzero_ps(), f1 = _mm512_setzero_ps();
  int64_t wi = 0;
  for (; wi + 2 <= windows; wi += 2) {
    window(wi, f0);
    window(wi + 1, f1);
  }
  if (wi < windows) window(wi, f0);
  return hsum(_mm512_add_ps(f0, f1));
}

// The window terms of rows [n0, n1) as float, once per call, so that prefill tiles (which meet every
// row once per four activation rows) load them instead of converting bf16 again: [row][window][scale, zterm].
const float* u4_prepare_windows(const U4Args& A, int64_t n0, int64_t n1) {
  thread_local std::vector<float> buf;
  const int64_t windows = A.a->ldq / kU4Window;
  buf.resize(static_cast<size_t>((n1 - n0) * windows * 32));
  float* p = buf.data();
  for (int64_t n = n0; n < n1; ++n)
    for (int64_t wi = 0; wi < windows; ++wi, p += 32) {
      const U4Window uw = u4_window(A, n, wi);
      _mm512_storeu_ps(p, uw.scale);
      _mm512_storeu_ps(p + 16, uw.zterm);
    }
  return buf.data();
}

// MR activation rows x NR weight rows: each window's products stay in int32 (MR·NR accumulators), then one
// convert and multiply-add per pair. `wu` holds the weight rows as load_u4 expands them (a.ldq bytes
// each), `terms` their window terms from u4_prepare_windows.
template <int MR, int NR>
void u4_tile(const U4Args& A, const uint8_t* wu, const float* terms, int64_t m0, int64_t n0) {
  const Q8Acts& a = *A.a;
  const int64_t windows = a.ldq / kU4Window;
  __m512 facc[MR][NR];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) facc[i][j] = _mm512_setzero_ps();
  for (int64_t wi = 0; wi < windows; ++wi) {
    __m512i iacc[MR][NR];
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < NR; ++j) iacc[i][j] = _mm512_setzero_si512();
#pragma GCC unroll 8
    for (int v = 0; v < 8; ++v) {
      __m512i wv[NR];
#pragma GCC unroll 4
      for (int j = 0; j < NR; ++j) wv[j] = _mm512_loadu_si512(wu + j * a.ldq + wi * 512 + v * 64);
#pragma GCC unroll 4
      for (int i = 0; i < MR; ++i) {
        __m512i xv = _mm512_loadu_si512(a.q.data() + (m0 + i) * a.ldq + wi * 512 + v * 64);
        // Keep xv in a register: folded into each vpdpbusd it would be loaded NR times, and the loads,
        // not the products, would set the pace.
        __asm__("" : "+v"(xv));
#pragma GCC unroll 4
        for (int j = 0; j < NR; ++j) iacc[i][j] = _mm512_dpbusd_epi32(iacc[i][j], wv[j], xv);
      }
    }
    for (int i = 0; i < MR; ++i) {
      const __m512 dv = u4_window_d(a, m0 + i, wi), ds = u4_window_dsum(a, m0 + i, wi);
      for (int j = 0; j < NR; ++j) {
        const float* t = terms + (j * windows + wi) * 32;
        facc[i][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(iacc[i][j]), _mm512_mul_ps(_mm512_loadu_ps(t), dv), facc[i][j]);
        facc[i][j] = _mm512_fmadd_ps(_mm512_loadu_ps(t + 16), ds, facc[i][j]);
      }
    }
  }
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) A.y[(m0 + i) * A.ldy + n0 + j] = hsum(facc[i][j]);
}

}  // namespace

void qgemm_u8_blocks(const Q8Acts& a, const uint8_t* w, const float* ws, float* y, int64_t ldy, int64_t n0, int64_t n1) {
  const float* rows = group_sums_blocks(a, a.K);  // one group: the whole row
  run<Mode::U8Blocks, 8>({&a, w, a.K, ws, nullptr, a.K, y, ldy, nullptr, rows}, n0, n1);
}

void qgemm_u8_tokens(const Q8Acts& a, const uint8_t* w, const float* ws, float* y, int64_t ldy, int64_t n0, int64_t n1) {
  run<Mode::U8Tokens, 8>({&a, w, a.K, ws, nullptr, a.K, y, ldy, nullptr, nullptr}, n0, n1);
}

void qgemm_u4_blocks(const Q8Acts& a, const uint8_t* w, const uint16_t* s, const uint16_t* z, int64_t G, float* y,
                     int64_t ldy, int64_t n0, int64_t n1) {
  const U4Args A{&a, w, s, z, G, __builtin_ctzll(static_cast<uint64_t>(G / 32)), y, ldy};
  const int64_t M = a.M;
  if (M == 1) {
    for (int64_t n = n0; n < n1; ++n) y[n] = u4_dot(A, n);
    return;
  }
  // Batched decode and prefill: strips of 4 weight rows, expanded once per strip into a thread-local
  // buffer as load_u4 would (so the tiles only load), against 4 activation rows at a time: 4 x 4 tiles
  // (16 int32 accumulators, 4 weight vectors and one activation vector in registers; the float
  // accumulators, touched once per window, may spill). Measured a little faster than 4 x 3 strips.
  constexpr int kStrip = 4;
  const float* terms = u4_prepare_windows(A, n0, n1);
  const int64_t per_row = a.ldq / kU4Window * 32;
  thread_local std::vector<uint8_t> strip;
  strip.resize(static_cast<size_t>(kStrip * a.ldq));
  for (int64_t n = n0; n < n1; n += kStrip) {
    const int64_t rows = std::min<int64_t>(kStrip, n1 - n);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < a.ldq / 64; ++c)
        _mm512_storeu_si512(strip.data() + r * a.ldq + c * 64, load_u4(w + (n + r) * (a.ldq / 2) + c * 32));
    for_each_tile(M, n, n + rows, kStrip, [&]<int MR, int NR>(int64_t m, int64_t) {
      u4_tile<MR, NR>(A, strip.data(), terms + (n - n0) * per_row, m, n);
    });
  }
}

// Blocks of 32 as the scalar quantize_q8_windows: the same division and reciprocal, and the product
// x·(1/d) rounded half to even by the convert (the default MXCSR mode), so q, d and d·Σq match it bit
// for bit. Block b's four-byte groups land 64 bytes apart (u4_window_x_pos).
void quantize_q8_windows(const float* x, Q8Acts& a) {
  const int64_t M = a.M, K = a.K, nb = K / 32;
#pragma omp parallel for schedule(static) if (M * K > 65536)
  for (int64_t m = 0; m < M; ++m)
    for (int64_t b = 0; b < nb; ++b) {
      const float* xb = x + m * K + b * 32;
      const __m512 x0 = _mm512_loadu_ps(xb), x1 = _mm512_loadu_ps(xb + 16);
      const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(x0), _mm512_abs_ps(x1)));
      const float d = amax / 127.0f;
      const __m512 id = _mm512_set1_ps(d > 0.0f ? 1.0f / d : 0.0f);
      const __m512i lo = _mm512_set1_epi32(-127), hi = _mm512_set1_epi32(127);
      const __m512i q0 = _mm512_min_epi32(_mm512_max_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(x0, id)), lo), hi);
      const __m512i q1 = _mm512_min_epi32(_mm512_max_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(x1, id)), lo), hi);
      alignas(32) int32_t words[8];
      _mm_store_si128(reinterpret_cast<__m128i*>(words), _mm512_cvtepi32_epi8(q0));
      _mm_store_si128(reinterpret_cast<__m128i*>(words + 4), _mm512_cvtepi32_epi8(q1));
      int8_t* dst = a.q.data() + m * a.ldq + u4_window_x_pos(b * 32);
      for (int v = 0; v < 8; ++v) std::memcpy(dst + v * 64, &words[v], 4);
      a.d[m * nb + b] = d;
      a.dsum[m * nb + b] = d * static_cast<float>(_mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1)));
    }
}

void qgemm_group_tokens(const Q8Acts& a, const GroupWeights& gw, float* y, int64_t ldy, int64_t n0, int64_t n1) {
  thread_local std::vector<float> gsum;
  gsum.resize(a.gsum.size());
  for (size_t i = 0; i < gsum.size(); ++i) gsum[i] = static_cast<float>(a.gsum[i]);
  const Args A{&a, gw.w, gw.bits == 8 ? a.K : a.K / 2, nullptr, &gw, gw.G, y, ldy, gsum.data(),
               nullptr};
  if (gw.bits == 8)
    run<Mode::GroupTokens, 8>(A, n0, n1);
  else
    run<Mode::GroupTokens, 4>(A, n0, n1);
}

}  // namespace lowbit::kernels::cpu::vnni
