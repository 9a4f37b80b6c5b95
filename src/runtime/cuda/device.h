// Device plumbing for the GPU runtime: checked CUDA/cuBLAS calls and the arena the model allocates
// from.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <vector>

namespace lowbit::gpu {

[[noreturn]] void cuda_fail(cudaError_t e, const char* call, const char* file, int line);
[[noreturn]] void cublas_fail(cublasStatus_t s, const char* call, const char* file, int line);

// Every runtime/cuBLAS call goes through these: the error names the call, the file and the line.
#define LB_CUDA(call)                                                                \
  do {                                                                               \
    const cudaError_t lb_e_ = (call);                                                \
    if (lb_e_ != cudaSuccess) ::lowbit::gpu::cuda_fail(lb_e_, #call, __FILE__, __LINE__); \
  } while (0)
#define LB_CUBLAS(call)                                                                       \
  do {                                                                                        \
    const cublasStatus_t lb_s_ = (call);                                                      \
    if (lb_s_ != CUBLAS_STATUS_SUCCESS) ::lowbit::gpu::cublas_fail(lb_s_, #call, __FILE__, __LINE__); \
  } while (0)

// A bump allocator over large cudaMalloc blocks, all freed with the arena. A model's weights,
// caches and buffers live exactly as long as the model, so nothing is freed one by one: no
// fragmentation, and one cudaMalloc per few hundred MB instead of one per tensor.
class DeviceArena {
 public:
  explicit DeviceArena(size_t block_bytes = size_t(256) << 20) : block_bytes_(block_bytes) {}
  ~DeviceArena();
  DeviceArena(const DeviceArena&) = delete;
  DeviceArena& operator=(const DeviceArena&) = delete;

  void* alloc(size_t bytes);  // 256-byte aligned, never null (throws when the device is full)
  template <typename T>
  T* alloc_n(size_t n) {
    return static_cast<T*>(alloc(n * sizeof(T)));
  }
  size_t reserved() const { return reserved_; }  // bytes obtained from cudaMalloc
  size_t used() const { return used_; }          // bytes handed out

 private:
  struct Block {
    char* base;
    size_t size, used;
  };
  std::vector<Block> blocks_;
  size_t block_bytes_, reserved_ = 0, used_ = 0;
};

// Device bytes held by all arenas right now, and the high-water mark since the last reset (the
// "peak GPU memory" of benchmarks; cuBLAS's workspace is allocated from the model's arena too).
size_t arena_bytes_now();
size_t arena_bytes_peak();
void reset_arena_peak();

// A non-blocking stream at the device's highest priority (the forward pass) or its lowest (work
// that should take only the SMs the forward pass leaves idle: LinearExec's weight staging).
cudaStream_t create_stream(bool highest_priority);

// A temporary device buffer (uploads), freed on scope exit.
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t bytes);
  ~DeviceBuffer();
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void* get() const { return p_; }

 private:
  void* p_ = nullptr;
};

}  // namespace lowbit::gpu
