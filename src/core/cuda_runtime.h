// The few CUDA runtime calls core/ needs, behind plain functions so that core builds without CUDA.
#pragma once

#include <cstddef>
#include <string>

namespace lowbit::detail {

bool cuda_available();
// Why no GPU can be used here (no driver, no device, a build without CUDA), or "" when one can.
std::string cuda_unavailable_reason();
void* cuda_malloc(size_t nbytes);
void cuda_free(void* p);
enum class CopyKind { HostToDevice, DeviceToHost, DeviceToDevice };
void cuda_memcpy(void* dst, const void* src, size_t nbytes, CopyKind kind);
void cuda_memset_zero(void* p, size_t nbytes);

}  // namespace lowbit::detail
