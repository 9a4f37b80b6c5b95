#include <cuda_runtime.h>

#include "cuda_runtime.h"
#include "lowbit/core/error.h"

namespace lowbit::detail {
namespace {
void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) fail("CUDA error in {}: {} ({})", what, cudaGetErrorString(e), cudaGetErrorName(e));
}

// Compiled like every kernel of the build: whether the current GPU can load it says whether the
// build holds code for that GPU.
__global__ void probe_kernel() {}
}  // namespace

std::string cuda_unavailable_reason() {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e == cudaErrorInsufficientDriver)
    return "no NVIDIA driver here, or one older than this build's CUDA runtime (cudaErrorInsufficientDriver)";
  if (e == cudaErrorNoDevice || (e == cudaSuccess && n == 0)) return "no CUDA device found";
  if (e != cudaSuccess)
    return fmt::format("the CUDA runtime reports {} ({})", cudaGetErrorString(e), cudaGetErrorName(e));
  int dev = 0;
  cudaDeviceProp prop{};
  if (cudaGetDevice(&dev) != cudaSuccess || cudaGetDeviceProperties(&prop, dev) != cudaSuccess)
    return "the CUDA runtime cannot read the device's properties";
  cudaFuncAttributes attr{};
  const cudaError_t k = cudaFuncGetAttributes(&attr, probe_kernel);
  if (k != cudaSuccess) {
    cudaGetLastError();  // not a sticky error: clear it so later last-error checks start clean
    return fmt::format("GPU {} ({}, sm_{}{}) has no code in this build (built for {}: {}); rebuild with "
                       "-DCMAKE_CUDA_ARCHITECTURES={}{}",
                       dev, prop.name, prop.major, prop.minor, LOWBIT_CUDA_ARCHS, cudaGetErrorName(k), prop.major,
                       prop.minor);
  }
  return {};
}

bool cuda_available() { return cuda_unavailable_reason().empty(); }

void* cuda_malloc(size_t nbytes) {
  void* p = nullptr;
  if (nbytes == 0) return nullptr;
  check(cudaMalloc(&p, nbytes), "cudaMalloc");
  return p;
}

void cuda_free(void* p) {
  if (p) cudaFree(p);
}

void cuda_memcpy(void* dst, const void* src, size_t nbytes, CopyKind kind) {
  if (nbytes == 0) return;
  const cudaMemcpyKind k = kind == CopyKind::HostToDevice   ? cudaMemcpyHostToDevice
                           : kind == CopyKind::DeviceToHost ? cudaMemcpyDeviceToHost
                                                            : cudaMemcpyDeviceToDevice;
  check(cudaMemcpy(dst, src, nbytes, k), "cudaMemcpy");
}

void cuda_memset_zero(void* p, size_t nbytes) {
  if (nbytes) check(cudaMemset(p, 0, nbytes), "cudaMemset");
}

}  // namespace lowbit::detail
