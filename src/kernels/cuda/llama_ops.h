// The Llama forward pass's GPU kernels other than the weight products (those are in
// weight_gemv.h): embedding, RMSNorm with the residual add, RoPE with the KV-cache append, decode
// and prefill attention, SwiGLU, greedy argmax, weight dequantization for the prefill GEMMs, and
// random weights generated and quantized on the device (benchmarks of 8B shapes need no host
// model).
//
// Conventions: activations between kernels are bf16 row-major [rows, features]; the residual stream
// is float32 (the CPU runner's precision, at a cost of 16 KB per token); all pointers are device
// pointers; every call is asynchronous on `stream` and throws lowbit::Error naming the kernel when
// the launch fails. Positions, token ids and lengths are read from device memory, so a captured
// CUDA graph replays correctly for every decode step.
//
// KV cache: one bf16 array for keys and one for values per layer, [seq][kv_head][pos][head_dim]
// (a layer's slice is what the kernels take), `cap` positions per sequence.
#pragma once

#include <cstddef>
#include <cstdint>

typedef struct CUstream_st* cudaStream_t;

namespace lowbit::cuda {

// Launch the kernels below with programmatic dependent launch (sm_90; off by default): a kernel's
// launch overlaps the end of the previous one. Process-wide; the GPU model sets it from its options.
void set_programmatic_launch(bool on);
bool programmatic_launch();

// x[r, :] = float(table[tokens[r], :]) for r < M; table bf16 [vocab, D]. Token ids outside
// [0, vocab) give a zero row (the host checks ids before they reach the device).
void embed_rows(const void* table, int64_t vocab, const int32_t* tokens, int M, int D, float* x,
                cudaStream_t stream);

// Rows quantized for a dynamic-activation product by the kernel that produces them (RMSNorm,
// SwiGLU), with quantize_rows_int8 / quantize_rows_float8's math (weight_gemv.h) applied to the bf16
// values the kernel would otherwise write: codes [M, D] (int8 or e4m3 bytes, row stride D) and one
// float scale per row. It saves the product a pass over its input. Rows of D % 8 == 0 and
// D ≤ 32768 (rows_codes_ok).
enum class RowQuant { None, Int8, Float8 };
struct RowCodes {
  RowQuant kind = RowQuant::None;
  void* codes = nullptr;
  float* scales = nullptr;
};
bool row_codes_ok(int64_t D);

// int8dq's int32 products standing for the bf16 values bf16(acc[m, n] · xscale[m] · wscale[n])
// (scale_int32_to_bf16's arithmetic): the kernels that read a product's output can take them
// instead, saving the bf16 round trip through memory. Rows of the product's N values.
struct Int32Rows {
  const int32_t* acc = nullptr;
  const float* xscale = nullptr;
  const float* wscale = nullptr;
  explicit operator bool() const { return acc != nullptr; }
};

// For r < M with i = r * row_step + row_off: x[i] += delta[i] (bf16; skipped when delta is null),
// then out[r] = bf16(w · (x[i] · rsqrt(mean(x[i]²) + eps))) — the CPU runner's order of operations.
// Fusing the add saves a pass over the residual; row_step/row_off pick e.g. each sequence's last row.
// With q.kind set, row r is written as q's codes and scale instead (out is not touched). With delta32
// set, delta (null) is those products (rows of D, D % 8 == 0).
void add_rmsnorm(float* x, const void* delta, const float* w, void* out, int M, int D, float eps,
                 int row_step, int row_off, cudaStream_t stream, const RowCodes& q = {},
                 const Int32Rows& delta32 = {});

// RoPE uses a table of (cos, sin) per position and frequency, rope[pos][i][2] for i < HD/2: the
// float32 angle pos · inv_freq[i] (Hugging Face's float32 inverse frequencies, llama3 scaling
// applied) with cos and sin taken in double, as transformers and the CPU runner compute them. The
// host builds it once; kernels only read it. Rotation is Hugging Face's rotate-half: pairs (i, i + HD/2).

struct RopeKvArgs {
  const void* qkv;         // bf16 [M, (H + 2 KV) · HD]: q heads, then k heads, then v heads
  void* q_out;             // bf16 [M, H · HD]: rotated queries
  void* k_cache;           // this layer's keys  [seqs][KV][cap][HD]
  void* v_cache;           // this layer's values, same shape
  const int32_t* pos;      // [M] position of each row
  const float* rope;       // [cap][HD / 2][2]
  int M, H, KV, HD, cap;
  int rows_per_seq;        // row r belongs to sequence r / rows_per_seq
  Int32Rows qkv32 = {};    // when set, the q/k/v values are these products (qkv is not read)
};
// Prefill: q and k rotated at each row's position; rotated keys and the values are written into the
// cache at (sequence, position).
void rope_kv_append(const RopeKvArgs& a, cudaStream_t stream);

struct DecodeAttnArgs {
  const void* qkv;        // bf16 [B, (H + 2 KV) · HD]: this step's q/k/v, not yet rotated
  const float* rope;      // [cap][HD / 2][2]
  void* k_cache;          // this layer, [seqs][KV][cap][HD]; position pos[b] is written here
  void* v_cache;
  const int32_t* pos;     // [B]: sequence b's new token is at pos[b] and attends to 0 .. pos[b]
  void* out;              // bf16 [B, H · HD]
  float* partial_o;       // workspace [B][H][splits][HD]
  float* partial_ml;      // workspace [B][H][splits][2]: running max and sum of each split
  unsigned* counters;     // [B · KV], zero before the first call; every call leaves them zero
  int B, H, KV, HD, cap, splits;
  float scale;            // 1 / sqrt(HD)
};
// Decode attention in one kernel, RoPE and the cache append included. Flash-decoding: the visible
// positions are cut into at most `splits` (≤ 64) equal chunks of at least 64 positions (their size
// and number follow the length read from device memory, so one captured launch serves every step;
// blocks past the last chunk exit at once); a block (chunk, kv head, sequence) rotates the G queries
// sharing the kv head, the block whose chunk holds the new position rotates and stores its key and
// value first, each block leaves a partial softmax-weighted sum, and the last block to finish for a
// (sequence, kv head) merges them (a single chunk writes the output directly). HD 64 or 128; H / KV
// in 1, 2, 4, 8. Under programmatic launch the kernel reads pos and the cached keys and values
// before waiting for the previous kernel: they must come from earlier ones (only qkv may be the
// previous kernel's output).
void attention_decode(const DecodeAttnArgs& a, cudaStream_t stream);
size_t attention_decode_workspace_floats(int B, int H, int HD, int splits);  // both workspaces

struct PrefillAttnArgs {
  const void* q;          // bf16 [B · T, H · HD], row b · T + t at position p0 + t
  const void* k_cache;    // this layer (already holding positions 0 .. p0 + T − 1)
  const void* v_cache;
  void* out;              // bf16 [B · T, H · HD]
  int B, T, p0, H, KV, HD, cap;
  float scale;
};
// Causal attention of T new rows per sequence over the cache, in key tiles with an online softmax:
// O(T · HD) memory, no score matrix. HD 64 or 128.
void attention_prefill(const PrefillAttnArgs& a, cudaStream_t stream);

// Holds the stream for about `microseconds` (profiling: the host queues the work behind it, so the
// timed kernels then run back to back, without the host's launch gaps).
void gpu_sleep(int64_t microseconds, cudaStream_t stream);

// h[m, j] = bf16(silu(g) · u) with g = gu[m, j], u = gu[m, F + j] (the fused gate/up output).
void swiglu(const void* gu, void* h, int M, int F, cudaStream_t stream);
// The same from a fused gate/up output whose columns alternate in blocks of 8 (the row order of
// GemvOptions::swiglu): g = gu[m, 16b + i], u = gu[m, 16b + 8 + i] → h[m, 8b + i]; F % 8 == 0.
// With q.kind set, h is not written: each row goes to q's codes and scale instead.
void swiglu_interleaved(const void* gu, void* h, int M, int F, cudaStream_t stream,
                        const RowCodes& q = {});
// The same as codes from int8dq's int32 gate/up products [M, 2F] (interleaved columns).
void swiglu_interleaved_int32(const Int32Rows& gu, int M, int F, cudaStream_t stream, const RowCodes& q);

// Greedy step, one block per sequence b < B: the index of the largest logit (the lowest index among
// ties, as std::max_element) of row b (logits + b · row_stride, bf16 or float32) becomes token[b];
// when hist is set it is also appended to hist[b · hist_cap + n[b]] (n[b] then grows); pos[b] += 1.
void argmax_advance(const void* logits, bool logits_f32, int64_t row_stride, int B, int V,
                    int32_t* token, int32_t* pos, int32_t* hist, int32_t* n, int hist_cap,
                    cudaStream_t stream);

// ------------------------------------------------------------------ weights for the prefill GEMMs

// Rows [n0, n1) of a weight in a GPU format → bf16 [n1 − n0, K] (what cuBLAS multiplies). int8 and
// e4m3: w = q · scale[n] rounded once; int4 (the layout of weight_gemv.h, n0 a multiple of 16):
// w = bf16(fma(q − 8, scale, zero)), tinygemm's rounding (the GEMV's for groups under 64; with larger
// groups the GEMV rounds no weight, see gemv_int4.cu).
void dequant_rows_int8(const int8_t* q, const float* scale, int64_t n0, int64_t n1, int K, void* out,
                       cudaStream_t stream);
void dequant_rows_float8(const uint8_t* q, const float* scale, int64_t n0, int64_t n1, int K,
                         void* out, cudaStream_t stream);
void dequant_rows_int4(const void* packed, const void* qparams, int64_t n0, int64_t n1, int K,
                       int group, void* out, cudaStream_t stream);

// The dynamic-activation schemes' math for the prefill path: each row quantized as
// quantize_rows_int8 / quantize_rows_float8 (weight_gemv.h) do it, and dequantized back to bf16.
void fake_quantize_rows_int8(const void* x, int M, int K, void* out, cudaStream_t stream);
void fake_quantize_rows_float8(const void* x, int M, int K, void* out, cudaStream_t stream);

// float8dq-tensor's activations: one e4m3 scale (amax / 448) for the whole [M, K] tensor, as the
// CPU reference computes it. `amax` is a device word the call zeroes and fills (|x| as float bits).
// Decode: codes and the (repeated) scale for gemv_float8dq; prefill: the dequantized bf16 values.
void quantize_tensor_float8(const void* x, int M, int K, unsigned* amax, uint8_t* xq, float* xscale,
                            cudaStream_t stream);
void fake_quantize_tensor_float8(const void* x, int M, int K, unsigned* amax, void* out,
                                 cudaStream_t stream);

// The CPU int4 layout (uint8 [N, K/2]: byte j of each 64-weight chunk holds weight j in its low
// nibble and weight j + 32 in its high one; scale and zero bf16 [N, K/G]) → the GPU layout of
// weight_gemv.h, as pack_int4 does on the host. Rows past N (padding to 16) get code 0, scale 0,
// zero 0.
void repack_int4(const uint8_t* cpu_packed, const uint16_t* scale, const uint16_t* zero, int64_t N,
                 int64_t K, int group, void* packed, void* qparams, cudaStream_t stream);

// ------------------------------------------------------------------ random weights (benchmarks)

// Element (n, k) of a random [N, K] matrix is bf16(std · Φ⁻¹(u)) with u from a counter-based hash
// of (seed, n · K + k): every format below quantizes the same bf16 values, on the device.
void random_bf16(void* w, int64_t N, int64_t K, uint64_t seed, float std, cudaStream_t stream);
// int8 symmetric per row (scale = amax / 127.5, q = clamp(round(w / scale), −128, 127)).
void random_int8(int8_t* q, float* scale, int64_t N, int64_t K, uint64_t seed, float std,
                 cudaStream_t stream);
// e4m3 per row (scale = amax / 448).
void random_float8(uint8_t* q, float* scale, int64_t N, int64_t K, uint64_t seed, float std,
                   cudaStream_t stream);
// uint4 asymmetric per group with a float zero point (torchao int4wo math), straight into the GPU
// layout (buffers of int4_packed_bytes / int4_qparam_bytes).
void random_int4(void* packed, void* qparams, int64_t N, int64_t K, int group, uint64_t seed,
                 float std, cudaStream_t stream);
// Fills float32 values with a constant (norm weights).
void fill_f32(float* p, int64_t n, float v, cudaStream_t stream);

}  // namespace lowbit::cuda
