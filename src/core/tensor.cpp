#include "lowbit/core/tensor.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include <sys/mman.h>
#include <limits>

#include "cuda_runtime.h"
#include "lowbit/core/float_formats.h"

namespace lowbit {

std::string_view device_name(Device d) { return d == Device::CPU ? "cpu" : "cuda"; }

std::string shape_str(const Shape& s) { return fmt::format("[{}]", fmt::join(s, ", ")); }

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (auto d : s) {
    LB_CHECK(d >= 0, "negative dimension in shape {}", shape_str(s));
    n *= d;
  }
  return n;
}

// ---------------------------------------------------------------- Storage

Storage::Storage(void* data, size_t nbytes, Device device, std::function<void(void*)> release,
                 std::shared_ptr<const void> owner)
    : data_(data), nbytes_(nbytes), device_(device), release_(std::move(release)), owner_(std::move(owner)) {}

Storage::~Storage() {
  if (release_) release_(data_);
}

std::shared_ptr<Storage> Storage::allocate(size_t nbytes, Device device) {
  if (device == Device::CUDA) {
    void* p = detail::cuda_malloc(nbytes);
    return std::make_shared<Storage>(p, nbytes, device, [](void* q) { detail::cuda_free(q); });
  }
  // Large buffers (weights, KV caches) are 2 MiB aligned and asked to live on transparent huge pages:
  // streaming gigabytes of weights through 4 KiB pages costs a TLB miss every 4 KiB.
  constexpr size_t kHuge = size_t{2} << 20;
  const size_t align = nbytes >= kHuge ? kHuge : 64;
  const size_t rounded = (std::max<size_t>(nbytes, 1) + align - 1) / align * align;
  void* p = std::aligned_alloc(align, rounded);
  LB_CHECK(p != nullptr, "out of host memory allocating {} bytes", nbytes);
  if (align == kHuge) ::madvise(p, rounded, MADV_HUGEPAGE);
  return std::make_shared<Storage>(p, nbytes, device, [](void* q) { std::free(q); });
}

std::shared_ptr<Storage> Storage::borrow(void* data, size_t nbytes, std::shared_ptr<const void> owner) {
  return std::make_shared<Storage>(data, nbytes, Device::CPU, nullptr, std::move(owner));
}

// ---------------------------------------------------------------- element conversion

float load_f32(const void* base, DType t, int64_t i) {
  switch (t) {
    case DType::F32: return static_cast<const float*>(base)[i];
    case DType::F16: return f16_to_f32(static_cast<const uint16_t*>(base)[i]);
    case DType::BF16: return bf16_to_f32(static_cast<const uint16_t*>(base)[i]);
    case DType::F8E4M3: return e4m3_to_f32(static_cast<const uint8_t*>(base)[i]);
    case DType::F8E5M2: return e5m2_to_f32(static_cast<const uint8_t*>(base)[i]);
    case DType::I8: return static_cast<float>(static_cast<const int8_t*>(base)[i]);
    case DType::U8: return static_cast<float>(static_cast<const uint8_t*>(base)[i]);
    case DType::I32: return static_cast<float>(static_cast<const int32_t*>(base)[i]);
    case DType::I64: return static_cast<float>(static_cast<const int64_t*>(base)[i]);
  }
  fail("load_f32: invalid dtype");
}

namespace {
template <typename I>
I float_to_int(float v) {
  LB_CHECK(!std::isnan(v), "cannot convert NaN to an integer dtype");
  const double t = std::trunc(static_cast<double>(v));
  const double lo = static_cast<double>(std::numeric_limits<I>::min());
  const double hi = static_cast<double>(std::numeric_limits<I>::max());
  return static_cast<I>(std::clamp(t, lo, hi));
}
}  // namespace

void store_f32(void* base, DType t, int64_t i, float v) {
  switch (t) {
    case DType::F32: static_cast<float*>(base)[i] = v; return;
    case DType::F16: static_cast<uint16_t*>(base)[i] = f32_to_f16(v); return;
    case DType::BF16: static_cast<uint16_t*>(base)[i] = f32_to_bf16(v); return;
    case DType::F8E4M3: static_cast<uint8_t*>(base)[i] = f32_to_e4m3(v); return;
    case DType::F8E5M2: static_cast<uint8_t*>(base)[i] = f32_to_e5m2(v); return;
    case DType::I8: static_cast<int8_t*>(base)[i] = float_to_int<int8_t>(v); return;
    case DType::U8: static_cast<uint8_t*>(base)[i] = float_to_int<uint8_t>(v); return;
    case DType::I32: static_cast<int32_t*>(base)[i] = float_to_int<int32_t>(v); return;
    case DType::I64: static_cast<int64_t*>(base)[i] = float_to_int<int64_t>(v); return;
  }
  fail("store_f32: invalid dtype");
}

void convert_elements(const void* src, DType st, void* dst, DType dt, int64_t n) {
  if (st == dt) {
    std::memcpy(dst, src, static_cast<size_t>(n) * dtype_size(st));
    return;
  }
  // Integer to integer goes through int64 so large int32/int64 values stay exact.
  if (dtype_is_integer(st) && dtype_is_integer(dt)) {
    for (int64_t i = 0; i < n; ++i) {
      int64_t v = 0;
      switch (st) {
        case DType::I8: v = static_cast<const int8_t*>(src)[i]; break;
        case DType::U8: v = static_cast<const uint8_t*>(src)[i]; break;
        case DType::I32: v = static_cast<const int32_t*>(src)[i]; break;
        default: v = static_cast<const int64_t*>(src)[i]; break;
      }
      switch (dt) {
        case DType::I8: static_cast<int8_t*>(dst)[i] = static_cast<int8_t>(std::clamp<int64_t>(v, -128, 127)); break;
        case DType::U8: static_cast<uint8_t*>(dst)[i] = static_cast<uint8_t>(std::clamp<int64_t>(v, 0, 255)); break;
        case DType::I32:
          static_cast<int32_t*>(dst)[i] = static_cast<int32_t>(
              std::clamp<int64_t>(v, std::numeric_limits<int32_t>::min(), std::numeric_limits<int32_t>::max()));
          break;
        default: static_cast<int64_t*>(dst)[i] = v; break;
      }
    }
    return;
  }
  for (int64_t i = 0; i < n; ++i) store_f32(dst, dt, i, load_f32(src, st, i));
}

// ---------------------------------------------------------------- Tensor

namespace {
Shape contiguous_strides(const Shape& shape) {
  Shape s(shape.size());
  int64_t acc = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    s[i] = acc;
    acc *= std::max<int64_t>(shape[i], 1);
  }
  return s;
}
}  // namespace

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  Tensor t;
  t.storage_ = Storage::allocate(static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype), device);
  t.dtype_ = dtype;
  t.shape_ = shape;
  t.strides_ = contiguous_strides(shape);
  return t;
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  if (device == Device::CUDA)
    detail::cuda_memset_zero(t.raw(), t.nbytes());
  else
    std::memset(t.raw(), 0, t.nbytes());
  return t;
}

Tensor Tensor::from_storage(std::shared_ptr<Storage> storage, const Shape& shape, DType dtype,
                            size_t offset_bytes) {
  const size_t need = static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype);
  LB_CHECK(storage != nullptr, "from_storage: null storage");
  LB_CHECK(offset_bytes % dtype_size(dtype) == 0, "from_storage: offset {} not aligned to {}", offset_bytes,
           dtype_name(dtype));
  LB_CHECK(offset_bytes <= storage->nbytes() && need <= storage->nbytes() - offset_bytes,
           "from_storage: {} bytes at offset {} exceed storage of {} bytes", need, offset_bytes,
           storage->nbytes());
  Tensor t;
  t.storage_ = std::move(storage);
  t.dtype_ = dtype;
  t.shape_ = shape;
  t.strides_ = contiguous_strides(shape);
  t.offset_ = static_cast<int64_t>(offset_bytes / dtype_size(dtype));
  return t;
}

Tensor Tensor::from_floats(const std::vector<float>& values, const Shape& shape, DType dtype) {
  LB_CHECK(static_cast<int64_t>(values.size()) == shape_numel(shape), "from_floats: {} values for shape {}",
           values.size(), shape_str(shape));
  Tensor t = empty(shape, dtype);
  convert_elements(values.data(), DType::F32, t.raw(), dtype, t.numel());
  return t;
}

int64_t Tensor::size(int64_t d) const {
  if (d < 0) d += dim();
  LB_CHECK(d >= 0 && d < dim(), "dimension {} out of range for {}", d, describe());
  return shape_[d];
}

bool Tensor::is_contiguous() const {
  int64_t acc = 1;
  for (size_t i = shape_.size(); i-- > 0;) {
    if (shape_[i] != 1 && strides_[i] != acc) return false;
    acc *= shape_[i];
  }
  return true;
}

void Tensor::check_access(DType requested) const {
  LB_CHECK(defined(), "access to an undefined tensor");
  LB_CHECK(requested == dtype_, "tensor holds {} but was read as {}", dtype_name(dtype_), dtype_name(requested));
}

void* Tensor::raw() {
  LB_CHECK(defined(), "access to an undefined tensor");
  return static_cast<char*>(storage_->data()) + offset_ * static_cast<int64_t>(dtype_size(dtype_));
}
const void* Tensor::raw() const { return const_cast<Tensor*>(this)->raw(); }

Tensor Tensor::view(const Shape& shape) const {
  LB_CHECK(is_contiguous(), "view of a non-contiguous tensor {}", describe());
  Shape s = shape;
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == -1) {
      LB_CHECK(infer < 0, "view: more than one -1 in {}", shape_str(shape));
      infer = static_cast<int64_t>(i);
    } else {
      LB_CHECK(s[i] >= 0, "view: invalid shape {}", shape_str(shape));
      known *= s[i];
    }
  }
  if (infer >= 0) {
    LB_CHECK(known > 0 && numel() % known == 0, "view: cannot view {} as {}", describe(), shape_str(shape));
    s[infer] = numel() / known;
  }
  LB_CHECK(shape_numel(s) == numel(), "view: cannot view {} as {}", describe(), shape_str(shape));
  Tensor t = *this;
  t.shape_ = s;
  t.strides_ = contiguous_strides(s);
  return t;
}

Tensor Tensor::reshape(const Shape& shape) const { return is_contiguous() ? view(shape) : contiguous().view(shape); }

Tensor Tensor::slice(int64_t d, int64_t start, int64_t end) const {
  if (d < 0) d += dim();
  LB_CHECK(d >= 0 && d < dim(), "slice: dimension {} out of range for {}", d, describe());
  LB_CHECK(0 <= start && start <= end && end <= shape_[d], "slice [{}, {}) out of range for dimension {} of {}",
           start, end, d, describe());
  Tensor t = *this;
  t.offset_ += start * strides_[d];
  t.shape_[d] = end - start;
  return t;
}

Tensor Tensor::select(int64_t d, int64_t index) const {
  if (d < 0) d += dim();
  Tensor t = slice(d, index, index + 1);
  t.shape_.erase(t.shape_.begin() + d);
  t.strides_.erase(t.strides_.begin() + d);
  return t;
}

Tensor Tensor::transpose(int64_t a, int64_t b) const {
  if (a < 0) a += dim();
  if (b < 0) b += dim();
  LB_CHECK(a >= 0 && a < dim() && b >= 0 && b < dim(), "transpose({}, {}) out of range for {}", a, b, describe());
  Tensor t = *this;
  std::swap(t.shape_[a], t.shape_[b]);
  std::swap(t.strides_[a], t.strides_[b]);
  return t;
}

int64_t Tensor::storage_index(int64_t flat) const {
  int64_t idx = offset_;
  for (size_t i = shape_.size(); i-- > 0;) {
    idx += (flat % shape_[i]) * strides_[i];
    flat /= shape_[i];
  }
  return idx;
}

Tensor Tensor::contiguous() const {
  if (is_contiguous()) return *this;
  LB_CHECK(device() == Device::CPU, "contiguous() of a strided CUDA tensor is not supported");
  Tensor out = empty(shape_, dtype_);
  const size_t es = dtype_size(dtype_);
  const char* base = static_cast<const char*>(storage_->data());
  char* dst = static_cast<char*>(out.raw());
  const int64_t n = numel();
  // Copy rows of the innermost dimension when it is dense, element by element otherwise.
  const int64_t inner = shape_.empty() ? 1 : shape_.back();
  const bool dense_inner = shape_.empty() || strides_.back() == 1;
  if (dense_inner && inner > 0) {
    for (int64_t r = 0; r < n / inner; ++r)
      std::memcpy(dst + r * inner * es, base + storage_index(r * inner) * es, inner * es);
  } else {
    for (int64_t i = 0; i < n; ++i) std::memcpy(dst + i * es, base + storage_index(i) * es, es);
  }
  return out;
}

Tensor Tensor::clone() const {
  if (!is_contiguous()) return contiguous();
  Tensor out = empty(shape_, dtype_, device());
  out.copy_(*this);
  return out;
}

Tensor Tensor::to(DType dtype) const {
  if (dtype == dtype_) return *this;
  LB_CHECK(device() == Device::CPU, "dtype conversion of a CUDA tensor is done by the CUDA backend");
  Tensor src = contiguous();
  Tensor out = empty(shape_, dtype);
  convert_elements(src.raw(), dtype_, out.raw(), dtype, numel());
  return out;
}

Tensor Tensor::to(Device device) const {
  if (device == this->device()) return *this;
  Tensor src = device == Device::CUDA ? contiguous() : *this;
  LB_CHECK(src.is_contiguous(), "device copy of a strided tensor {}", describe());
  Tensor out = empty(shape_, dtype_, device);
  detail::cuda_memcpy(out.raw(), src.raw(), nbytes(),
                      device == Device::CUDA ? detail::CopyKind::HostToDevice : detail::CopyKind::DeviceToHost);
  return out;
}

void Tensor::copy_(const Tensor& src) {
  LB_CHECK(src.shape_ == shape_, "copy_: shape {} into {}", shape_str(src.shape_), shape_str(shape_));
  if (device() == Device::CPU && src.device() == Device::CPU) {
    Tensor s = src.contiguous();
    LB_CHECK(is_contiguous(), "copy_ into a non-contiguous tensor");
    convert_elements(s.raw(), s.dtype_, raw(), dtype_, numel());
    return;
  }
  LB_CHECK(src.dtype_ == dtype_ && src.is_contiguous() && is_contiguous(),
           "copy_ across devices needs the same dtype and contiguous tensors");
  const auto kind = device() == Device::CUDA
                        ? (src.device() == Device::CUDA ? detail::CopyKind::DeviceToDevice
                                                        : detail::CopyKind::HostToDevice)
                        : detail::CopyKind::DeviceToHost;
  detail::cuda_memcpy(raw(), src.raw(), nbytes(), kind);
}

float Tensor::get_f32(int64_t flat) const {
  LB_CHECK(device() == Device::CPU, "get_f32 on a CUDA tensor");
  LB_CHECK(flat >= 0 && flat < numel(), "index {} out of range for {}", flat, describe());
  return load_f32(storage_->data(), dtype_, storage_index(flat));
}

std::vector<float> Tensor::to_f32_vector() const {
  Tensor c = contiguous();
  if (c.device() != Device::CPU) c = c.to(Device::CPU);
  std::vector<float> v(static_cast<size_t>(numel()));
  convert_elements(c.raw(), dtype_, v.data(), DType::F32, numel());
  return v;
}

std::string Tensor::describe() const {
  if (!defined()) return "undefined tensor";
  return fmt::format("{}{} {}", dtype_name(dtype_), shape_str(shape_), device_name(device()));
}

}  // namespace lowbit
