// Decode-time weight kernels on the GPU: y[M, N] (bf16) = x[M, K] (bf16) · W[N, K]ᵀ with fp32
// accumulation, for M = 1..16 (memory bound: every weight byte is read once and reused for all M
// rows), in the weight formats of the CPU library (src/quant/layouts):
//   bf16     W bf16 [N, K] row-major.
//   int8wo   W int8 [N, K] row-major, float scale per row: y = (x · qᵀ) · scale.
//   float8wo W e4m3 [N, K] row-major, float scale per row: y = x · (w · scale)ᵀ.
//   int4wo-G codes q in [0, 15], bf16 scale and zero per (row, group of G along K):
//            w = (q − 8) · scale + zero; packed offline by pack_int4() into the layout below.
//   int8dq   int8 weights as int8wo, activations quantized per row to int8 (torchao's
//            per-token symmetric math), int32 dot products: y = acc · xscale[m] · wscale[n].
//   float8dq-row  e4m3 weights as float8wo, activations quantized per row to e4m3
//            (scale = amax / 448): y = Σ xq·wq · xscale[m] · wscale[n].
//
// All pointers are device pointers (x, y, weights, scales, workspace) unless a comment says host.
// K must be a multiple of 64 and rows 16-byte aligned; N and M (1..16) are free. Calls are
// asynchronous on the given stream and throw lowbit::Error on bad arguments or a failed launch.
//
// int4 GPU layout (pack_int4): rows are taken in tiles of 16 (N padded with zero rows) and K in
// chunks of 64. One (tile, chunk) block is 512 contiguous bytes = 32 lanes × 16 bytes, and lane
// l = 4g + t holds rows g and g + 8 at k = 16t .. 16t + 15 of the chunk, as four 32-bit words
// (word s covers k0 = 16t + 4s .. k0 + 3). Nibble i of word s is row g + 8·(i & 1), k = k0 +
// 2·((i >> 1) & 1) + (i >> 2), so (word >> 4p) & 0x000f000f yields the bf16x2 pair p of the
// tensor-core A fragment directly (magic-number conversion: 0x4300 | q is the bf16 128 + q).
// Blocks are stored tile-major (all chunks of tile 0, then tile 1, ...), so a warp streams
// contiguous memory. qparams: per (tile, group) 16 words (bf16 scale in the low half, zero in
// the high half), row g at word 2g and row g + 8 at word 2g + 1.
#pragma once

#include <cstddef>
#include <cstdint>

typedef struct CUstream_st* cudaStream_t;  // the CUDA runtime's own declaration

namespace lowbit::cuda {

constexpr int kGemvMaxM = 16;

struct GemvOptions {
  cudaStream_t stream = nullptr;
  // Programmatic dependent launch (sm_90): the kernel may start while the previous kernel on the
  // stream finishes; it fetches its first weights at once and reads x only after that kernel ended.
  bool pdl = false;
  // Tile configuration (0 .. kGemvConfigs − 1) or −1 for the built-in choice; for tuning and tests.
  int config = -1;
  // SwiGLU epilogue for a fused gate/up weight whose rows alternate in blocks of 8 (rows 16b .. 16b
  // + 7 are gate rows 8b .. 8b + 7, rows 16b + 8 .. 16b + 15 the matching up rows; N a multiple of
  // 16): y is [M, N / 2] with y[m, 8b + i] = bf16(silu(g) · u), g and u the two products rounded to
  // bf16.
  bool swiglu = false;
  // Split-K: 1 .. kGemvMaxSplit CTAs (a thread-block cluster, sm_90) share each row block, every
  // one taking a contiguous share of K; their partial sums meet through distributed shared memory
  // in a fixed order (deterministic, one launch, no workspace). 0 picks the built-in choice.
  int split_k = 0;
};
constexpr int kGemvConfigs = 5;
constexpr int kGemvMaxSplit = 8;
// The configuration the built-in heuristic picks (format: 0 bf16, 1 int8wo, 2 float8wo, 3 int4wo,
// 4 int8dq, 5 float8dq); useful to print what a benchmark measured.
enum class GemvFormat { Bf16, Int8wo, Float8wo, Int4wo, Int8dq, Float8dq };
int gemv_default_config(GemvFormat f, int M, int N, int K);
// The built-in split-K factor for a configuration (1 where the device has no clusters; the
// environment variable LOWBIT_GEMV_SPLIT=1..8 forces one, for measurements).
int gemv_default_split(GemvFormat f, int M, int N, int K, int config);
const char* gemv_config_name(int config);  // e.g. "rt1.wk8"

// bf16 weights.
void gemv_bf16(const void* x, const void* w, void* y, int M, int N, int K,
               const GemvOptions& o = {});

// int8 weights (int8 [N, K]) with a float scale per row.
void gemv_int8wo(const void* x, const int8_t* w, const float* scale, void* y, int M, int N, int K,
                 const GemvOptions& o = {});

// float8 e4m3 weights (bytes [N, K]) with a float scale per row.
void gemv_float8wo(const void* x, const uint8_t* w, const float* scale, void* y, int M, int N,
                   int K, const GemvOptions& o = {});

// int4 weights in the layout above; group is 32, 64, 128 or 256.
size_t int4_packed_bytes(int64_t N, int64_t K);
size_t int4_qparam_bytes(int64_t N, int64_t K, int group);
// Host-side packer: codes int32 [N, K] in 0..15, scale and zero raw bf16 [N, K / group] → the
// buffers (host memory of the sizes above). Throws on a code out of range or a bad shape.
void pack_int4(const int32_t* codes, const uint16_t* scale_bf16, const uint16_t* zero_bf16,
               int64_t N, int64_t K, int group, void* packed, void* qparams);
void gemv_int4wo(const void* x, const void* packed, const void* qparams, void* y, int M, int N,
                 int K, int group, const GemvOptions& o = {});

// Dynamic activation quantization, one scale per row (token):
//   int8:  scale = max(amax / 127, 1e-5), q = clamp(round_half_even(x · (1 / scale)), −127, 127)
//          (torchao's Int8DynamicActivation per-token math, as quantize_q8_tokens on the CPU);
//   e4m3:  scale = amax / 448, q = e4m3(clamp(x / scale, ±448)), 0 where x = 0 (a zero row: no
//   NaN).
// x bf16 [M, K] → xq [M, K] (int8 or e4m3 bytes), xscale float [M].
void quantize_rows_int8(const void* x, int M, int K, int8_t* xq, float* xscale,
                        cudaStream_t stream = nullptr);
void quantize_rows_float8(const void* x, int M, int K, uint8_t* xq, float* xscale,
                          cudaStream_t stream = nullptr);

// Products on quantized activations (the output of the functions above).
void gemv_int8dq(const int8_t* xq, const float* xscale, const int8_t* w, const float* wscale,
                 void* y, int M, int N, int K, const GemvOptions& o = {});
void gemv_float8dq(const uint8_t* xq, const float* xscale, const uint8_t* w, const float* wscale,
                   void* y, int M, int N, int K, const GemvOptions& o = {});

// Both steps (two launches) from bf16 activations; workspace of dq_workspace_bytes(M, K) bytes.
size_t dq_workspace_bytes(int M, int K);
void gemv_int8dq(const void* x, const int8_t* w, const float* wscale, void* y, int M, int N, int K,
                 void* workspace, const GemvOptions& o = {});
void gemv_float8dq(const void* x, const uint8_t* w, const float* wscale, void* y, int M, int N,
                   int K, void* workspace, const GemvOptions& o = {});

// cuBLAS bf16 reference (the same product, for comparison and as a fallback): GemmEx or cuBLASLt
// with its first heuristic algorithm. Handles and a 32 MiB workspace are created on first use.
enum class CublasPath { GemmEx, Lt };
void gemm_bf16_cublas(const void* x, const void* w, void* y, int M, int N, int K, CublasPath path,
                      cudaStream_t stream = nullptr);

}  // namespace lowbit::cuda
