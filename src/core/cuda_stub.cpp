// Built when lowbit is configured without CUDA: every device request is a clear error.
#include "cuda_runtime.h"
#include "lowbit/core/error.h"

namespace lowbit::detail {

bool cuda_available() { return false; }
std::string cuda_unavailable_reason() {
  return "this lowbit was built without CUDA (configured where nvcc was not found, or with -DLOWBIT_CUDA=OFF)";
}
void* cuda_malloc(size_t) { fail("this lowbit was built without CUDA"); }
void cuda_free(void*) {}
void cuda_memcpy(void*, const void*, size_t, CopyKind) { fail("this lowbit was built without CUDA"); }
void cuda_memset_zero(void*, size_t) { fail("this lowbit was built without CUDA"); }

}  // namespace lowbit::detail
