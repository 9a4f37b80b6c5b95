// Tensor: a dtype, a shape, strides and an offset over shared storage (host, memory-mapped, or CUDA).
// No autograd. Views share storage; contiguous() and clone() copy.
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "lowbit/core/dtype.h"
#include "lowbit/core/error.h"

namespace lowbit {

enum class Device : uint8_t { CPU, CUDA };
std::string_view device_name(Device d);

using Shape = std::vector<int64_t>;
std::string shape_str(const Shape& s);  // "[4096, 4096]"
int64_t shape_numel(const Shape& s);

class Storage {
 public:
  // Owns `data` and frees it with `release` (may be empty for borrowed memory kept alive by `owner`).
  Storage(void* data, size_t nbytes, Device device, std::function<void(void*)> release,
          std::shared_ptr<const void> owner = nullptr);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  // Host allocations are 64-byte aligned; CUDA allocations come from the CUDA runtime.
  static std::shared_ptr<Storage> allocate(size_t nbytes, Device device = Device::CPU);
  // Memory owned elsewhere (a memory-mapped file): `owner` is kept alive as long as the storage.
  static std::shared_ptr<Storage> borrow(void* data, size_t nbytes, std::shared_ptr<const void> owner);

  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }

 private:
  void* data_;
  size_t nbytes_;
  Device device_;
  std::function<void(void*)> release_;
  std::shared_ptr<const void> owner_;
};

class Tensor {
 public:
  Tensor() = default;  // undefined tensor

  static Tensor empty(const Shape& shape, DType dtype, Device device = Device::CPU);
  static Tensor zeros(const Shape& shape, DType dtype, Device device = Device::CPU);
  // A view of `storage` starting at `offset_bytes` (checked to lie inside it).
  static Tensor from_storage(std::shared_ptr<Storage> storage, const Shape& shape, DType dtype,
                             size_t offset_bytes = 0);
  template <typename T>
  static Tensor from_vector(const std::vector<T>& values, const Shape& shape);
  // float values converted (rounded to nearest even) to a float dtype, or truncated to an integer dtype.
  static Tensor from_floats(const std::vector<float>& values, const Shape& shape, DType dtype);

  bool defined() const { return storage_ != nullptr; }
  DType dtype() const { return dtype_; }
  Device device() const { return storage_ ? storage_->device() : Device::CPU; }
  const Shape& shape() const { return shape_; }
  const Shape& strides() const { return strides_; }
  int64_t dim() const { return static_cast<int64_t>(shape_.size()); }
  int64_t size(int64_t d) const;
  int64_t numel() const { return shape_numel(shape_); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype_); }
  int64_t offset() const { return offset_; }  // in elements
  bool is_contiguous() const;
  const std::shared_ptr<Storage>& storage() const { return storage_; }

  template <typename T>
  T* data() {
    check_access(dtype_of<T>());
    return static_cast<T*>(raw());
  }
  template <typename T>
  const T* data() const {
    check_access(dtype_of<T>());
    return static_cast<const T*>(raw());
  }
  void* raw();
  const void* raw() const;

  Tensor view(const Shape& shape) const;  // contiguous tensors only; one dimension may be -1
  Tensor reshape(const Shape& shape) const;  // a view when possible, else a contiguous copy
  Tensor slice(int64_t dim, int64_t start, int64_t end) const;
  Tensor select(int64_t dim, int64_t index) const;
  Tensor transpose(int64_t a, int64_t b) const;
  Tensor contiguous() const;
  Tensor clone() const;
  Tensor to(DType dtype) const;
  Tensor to(Device device) const;
  void copy_(const Tensor& src);  // same shape; converts dtype; host<->device for contiguous same-dtype

  // Element access through float (host tensors only; slow, for references and tests).
  float get_f32(int64_t flat_index) const;
  std::vector<float> to_f32_vector() const;

  std::string describe() const;  // "bfloat16[4096, 4096] cpu"

 private:
  void check_access(DType requested) const;
  int64_t storage_index(int64_t flat_index) const;

  std::shared_ptr<Storage> storage_;
  DType dtype_ = DType::F32;
  Shape shape_;
  Shape strides_;
  int64_t offset_ = 0;
};

template <typename T>
Tensor Tensor::from_vector(const std::vector<T>& values, const Shape& shape) {
  LB_CHECK(static_cast<int64_t>(values.size()) == shape_numel(shape),
           "from_vector: {} values for shape {}", values.size(), shape_str(shape));
  Tensor t = empty(shape, dtype_of<T>());
  std::copy(values.begin(), values.end(), t.data<T>());
  return t;
}

// Convert `n` elements between dtypes (float<->float rounds to nearest even and saturates float8;
// float->int truncates toward zero and clamps; NaN->int is an error).
void convert_elements(const void* src, DType src_type, void* dst, DType dst_type, int64_t n);

// Read element i of a buffer of dtype t as float (integers converted exactly when they fit).
float load_f32(const void* base, DType t, int64_t i);
void store_f32(void* base, DType t, int64_t i, float v);

}  // namespace lowbit
