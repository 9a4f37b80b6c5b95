// safetensors files: memory-mapped reading with a bounded, validated header; atomic writing.
// Format: u64 little-endian header length N, N bytes of JSON ({name: {dtype, shape, data_offsets}},
// optional "__metadata__" of string values), then the data region the offsets index.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "lowbit/core/file_io.h"
#include "lowbit/core/tensor.h"

namespace lowbit {

struct TensorInfo {
  DType dtype;
  Shape shape;
  size_t begin = 0;  // offsets into the data region
  size_t end = 0;
};

class SafetensorsFile {
 public:
  // Opens and validates: every error names the file and, where there is one, the tensor.
  static SafetensorsFile open(const std::filesystem::path& path);

  const std::filesystem::path& path() const { return file_->path(); }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::vector<std::string>& names() const { return names_; }  // in file order
  bool contains(const std::string& name) const { return infos_.count(name) != 0; }
  const TensorInfo& info(const std::string& name) const;
  // A zero-copy view into the mapped file (copied only if the data is misaligned for its dtype).
  Tensor tensor(const std::string& name) const;

 private:
  std::shared_ptr<MappedFile> file_;
  size_t data_start_ = 0;
  std::map<std::string, std::string> metadata_;
  std::map<std::string, TensorInfo> infos_;
  std::vector<std::string> names_;
};

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

// Writes host tensors (any layout; written contiguous) atomically.
void write_safetensors(const std::filesystem::path& path, const NamedTensors& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace lowbit
