#include "runtime/cuda/device.h"

#include <algorithm>
#include <atomic>

#include "lowbit/core/error.h"

namespace lowbit::gpu {
namespace {

std::atomic<size_t> g_now{0}, g_peak{0};

void account(size_t add) {
  const size_t now = g_now.fetch_add(add) + add;
  size_t peak = g_peak.load();
  while (now > peak && !g_peak.compare_exchange_weak(peak, now)) {
  }
}

}  // namespace

void cuda_fail(cudaError_t e, const char* call, const char* file, int line) {
  fail("CUDA error: {} failed at {}:{}: {} ({})", call, file, line, cudaGetErrorString(e),
       cudaGetErrorName(e));
}

void cublas_fail(cublasStatus_t s, const char* call, const char* file, int line) {
  fail("cuBLAS error: {} failed at {}:{}: status {}", call, file, line, static_cast<int>(s));
}

DeviceArena::~DeviceArena() {
  for (const Block& b : blocks_) cudaFree(b.base);
  g_now.fetch_sub(reserved_);
}

void* DeviceArena::alloc(size_t bytes) {
  bytes = std::max<size_t>((bytes + 255) / 256 * 256, 256);
  for (Block& b : blocks_)
    if (b.size - b.used >= bytes) {
      void* p = b.base + b.used;
      b.used += bytes;
      used_ += bytes;
      return p;
    }
  // Large requests get a block of their own; small ones a fresh shared block.
  const size_t size = bytes > block_bytes_ / 2 ? bytes : block_bytes_;
  void* p = nullptr;
  const cudaError_t e = cudaMalloc(&p, size);
  if (e != cudaSuccess) {
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    fail("CUDA error: cudaMalloc of {} bytes failed: {} ({} of {} MiB free, {} MiB held by lowbit)",
         size, cudaGetErrorString(e), free_b >> 20, total_b >> 20, g_now.load() >> 20);
  }
  blocks_.push_back({static_cast<char*>(p), size, bytes});
  reserved_ += size;
  used_ += bytes;
  account(size);
  return p;
}

size_t arena_bytes_now() { return g_now.load(); }
size_t arena_bytes_peak() { return g_peak.load(); }

cudaStream_t create_stream(bool highest_priority) {
  int least = 0, greatest = 0;
  LB_CUDA(cudaDeviceGetStreamPriorityRange(&least, &greatest));
  cudaStream_t s = nullptr;
  LB_CUDA(cudaStreamCreateWithPriority(&s, cudaStreamNonBlocking, highest_priority ? greatest : least));
  return s;
}
void reset_arena_peak() { g_peak.store(g_now.load()); }

DeviceBuffer::DeviceBuffer(size_t bytes) {
  if (bytes) LB_CUDA(cudaMalloc(&p_, bytes));
}
DeviceBuffer::~DeviceBuffer() {
  if (p_) cudaFree(p_);
}

}  // namespace lowbit::gpu
