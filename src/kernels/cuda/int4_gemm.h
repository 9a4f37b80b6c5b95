// int4wo's prefill product on Hopper (int4_gemm_sm90.cu): y [M, n] (row stride ldy) = bf16(x · Wᵀ),
// x bf16 [M, K], W in lowbit's GPU int4 layout (weight_gemv.h) with its packed (scale, zero) words.
// Each weight is dequantized inside the product as tinygemm and the int4 GEMV at G < 64 do it: q − 8,
// then one bf16 fma with scale and zero that rounds it to bf16 once (dequant_rows_int4's fp32 fma then
// bf16 rounding agrees but for rare double-rounding ties), and the sums run in fp32 on the bf16 tensor
// cores: the bf16 product over dequantized rows without those rows going through memory.
//
// int4_gemm_bf16_ok: whether it runs here: an sm_90 GPU and this build's sm_90a code; n % 128 == 0,
// K % 64 == 0, group a multiple of 32 dividing K. The call also needs ldy % 8 == 0 and x, y 16-byte
// aligned. All pointers are device pointers; the call is asynchronous on `stream`.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace lowbit::cuda {

bool int4_gemm_bf16_ok(int n, int K, int group);
void int4_gemm_bf16(const void* x, const void* packed, const void* qparams, void* y, int M, int n, int K, int group,
                    int64_t ldy, cudaStream_t stream);

}  // namespace lowbit::cuda
